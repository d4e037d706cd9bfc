"""`remodiff check`: every class of bad setting fails at once with one line naming the key; exact mask names."""
from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
import traceback
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from remodiff.check import SettingError, check_params, reported_errors, resolve_metric
from remodiff.cli import app
from remodiff.evaluation.masks import make_masks, named_settings
from remodiff.features import build_extractor
from remodiff.tasks import Task
from tests.conftest import COMMITTED, ROOT, toy_featureset

runner = CliRunner()


@pytest.fixture
def params(tmp_path, monkeypatch):
    """The committed params.yaml, run from an empty folder (so data/sample is not written yet)."""
    monkeypatch.chdir(tmp_path)
    return copy.deepcopy(COMMITTED)


def failure(params: dict) -> str:
    with pytest.raises(SettingError) as caught:
        check_params(params)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_committed_params_pass_with_auto_metrics(params):
    summary = check_params(params)
    assert "compare 12 imputers by mean_acc" in summary and "report mean_acc" in summary
    assert any("written by the sample stage" in item for item in summary)
    params["eval"]["folds"] = {"k": 5, "group": r"regex:^(\w+)\.", "seed": 1}
    check_params(params)
    del params["eval"]
    assert failure(params) == "params.yaml: eval: missing section"


def set_key(params: dict, dotted: str, value) -> None:
    *parents, last = dotted.split(".")
    section = params
    for name in parents:
        section = section[name]
    section[last] = value


@pytest.mark.parametrize("dotted, value, expected", [
    ("colour", {}, "params.yaml: colour: unknown section (valid: sample, dataset,"),
    ("segment.fsp", 5, "params.yaml: segment.fsp: unknown setting (valid: segments, fps,"),
    ("segment.segments", "5", "params.yaml: segment.segments: must be a positive integer, got '5'"),
    ("sample.n_trian", 3, "params.yaml: sample.n_trian: unknown setting (valid: n_train,"),
    ("eval.lower_bound", "yes", "params.yaml: eval.lower_bound: must be true or false"),
    ("dataset.name", "fi", "params.yaml: dataset.name: unknown dataset 'fi' (valid: crema_d, first_impressions,"),
    ("dataset.root", "no/such/dir", "params.yaml: dataset.root: no/such/dir does not exist"),
    ("dataset.ravdess.val", [1], "params.yaml: dataset.ravdess.val: unknown setting (valid: val_actors, test_actors)"),
    ("features.video.backend", "clip_vit", "params.yaml: features.video.backend: unknown video extractor 'clip_vit' "
                                           "(valid: clip, frame_stats, given, timm)"),
    ("features.audio.backend", "tfidf", "params.yaml: features.audio.backend: unknown audio extractor 'tfidf' "
                                        "(valid: given, hf_audio, logmel)"),
    ("features.depth", {"backend": "logmel"}, "params.yaml: features.depth: not a modality of dataset "
                                              "first_impressions (valid: audio, video, text)"),
    ("features.text", {"backend": "hf_text", "model": "./models/minilm"},
     "params.yaml: features.text.model: './models/minilm' is a local path, and models/minilm does not exist"),
    ("features.video", {"backend": "clip", "model": "local-dir:/no/clip"},
     "params.yaml: features.video.model: 'local-dir:/no/clip' is a local path, and /no/clip does not exist"),
    ("features.video", {"backend": "timm", "model": "vit_base_patch16_224", "checkpoint": "/no/model.safetensors"},
     "params.yaml: features.video.checkpoint: /no/model.safetensors is not a file"),
    ("features.audio.n_mels", 32.5, "params.yaml: features.audio.n_mels: must be int, got 32.5"),
    ("features.video.dtype", "float64", "params.yaml: features.video.dtype: unknown dtype 'float64' "
                                        "(valid: float32, float16)"),
    ("imputer.type", "mice", "params.yaml: imputer.type: unknown imputer 'mice' (valid: cvae, diffusion,"),
    ("imputer.knn.neighbours", 3, "params.yaml: imputer.knn.neighbours: unknown setting (valid: k)"),
    ("imputer.mean.k", 3, "params.yaml: imputer.mean.k: unknown setting (valid: none)"),
    ("imputer.knn.k", 0, "params.yaml: imputer.knn: knn: k must be a positive integer, got 0"),
    ("imputer.cvae.train.seed", 7, "params.yaml: imputer.cvae.train.seed: seeds come from eval.seeds"),
    ("imputer.gan.train.epoch", 3, "params.yaml: imputer.gan.train.epoch: unknown setting (valid: epochs,"),
    ("imputer.gan.train.precision", "fp8", "params.yaml: imputer.gan.train.precision: unknown precision 'fp8' "
                                           "(valid: fp32, fp16, bf16)"),
    ("imputer.diffusion.sampler", "heun", "params.yaml: imputer.diffusion: unknown sampler 'heun'"),
    ("fuser.type", "svm", "params.yaml: fuser.type: unknown fuser 'svm' (valid: auto, early, late, linear, mlp, transformer)"),
    ("fuser.train.schedule", "linear", "params.yaml: fuser.train: training schedule 'linear'; valid values: "
                                       "constant, cosine, plateau"),
    ("fuser.early.train", {"schedule": "linear"}, "params.yaml: fuser.early: training schedule 'linear'; valid "
                                                  "values: constant, cosine, plateau"),
    ("fuser.train.lr", 0, "params.yaml: fuser.train.lr: must be > 0, got 0"),
    ("fuser.linear.refit_on_val", "yes", "params.yaml: fuser.linear.refit_on_val: must be bool, got 'yes'"),
    ("fuser.late.combine", "max", "params.yaml: fuser.late: late fusion combine 'max'"),
    ("fuser.train.seed", 0, "params.yaml: fuser.train.seed: seeds come from eval.seeds"),
    ("fuser.early", 5, "params.yaml: fuser.early: must be a mapping of settings, got 5"),
    ("fuser.early.train", {"seed": 0}, "params.yaml: fuser.early.train.seed: seeds come from eval.seeds"),
    ("masks.protocol", "rand", "params.yaml: masks.protocol: unknown protocol 'rand' (valid: all, fixed,"),
    ("masks.random", [0.7, 0.8], "params.yaml: masks.random: random protocol: missing rate 0.7 is impossible"),
    ("masks.segments", [0.25, 0.25], "params.yaml: masks.segments: segments protocol: settings ['p_0.25'] are "
                                     "listed more than once"),
    ("masks.independent", [{"audio": 0.5, "depth": 0.5}], "params.yaml: masks.independent: independent protocol: "
                                                          "probabilities for unknown modalities ['depth']"),
    ("eval.seeds", [0, 1, 0], "params.yaml: eval.seeds: seeds [0] are listed more than once"),
    ("eval.seeds", [], "params.yaml: eval.seeds: must be a non-empty list of integer seeds"),
    ("compare.seeds", [1, True], "params.yaml: compare.seeds: must be a non-empty list of integer seeds"),
    ("compare.imputers", ["zero", "mice"], "params.yaml: compare.imputers: unknown imputer 'mice' (valid: cvae,"),
    ("compare.metric", "accuracy", "params.yaml: compare.metric: 'accuracy' is not a metric of this regression "
                                   "dataset"),
    ("report.metric", "mean_acc_ci95", "params.yaml: report.metric: 'mean_acc_ci95' is not a metric"),
    ("eval.folds", 5, "params.yaml: eval.folds: must be null or {k, group, seed}"),
    ("eval.folds", {"k": 2, "group": "clip"}, "params.yaml: eval.folds.k: must be an integer >= 3"),
    ("eval.folds", {"k": 5}, "params.yaml: eval.folds.group: is required"),
    ("eval.folds", {"k": 5, "group": "actor"}, "params.yaml: eval.folds.group: 'actor' is not a group rule; valid: "
                                               "crema_d_actor, mmsa_video, ravdess_actor, youtube_id, clip"),
    ("eval.folds", {"k": 5, "group": "regex:(["}, "params.yaml: eval.folds.group: 'regex:([': not a regular"),
    ("eval.folds", {"k": 5, "group": "clip", "shuffle": True}, "params.yaml: eval.folds.shuffle: unknown key"),
    ("compare.resamples", 0, "params.yaml: compare.resamples: must be a positive integer"),
    ("compare.seeds", [0, 7], "params.yaml: compare.seeds: seeds [7] are not in eval.seeds (valid: 0, 1, 2)"),
])
def test_each_bad_setting_fails_with_one_line_naming_its_key(params, dotted, value, expected):
    set_key(params, dotted, value)
    assert failure(params).startswith(expected)


def test_a_leftover_key_of_the_previous_extractor_backend_is_named_without_loading_a_model(params):
    params["features"]["video"]["backend"] = "timm"  # `thumb: 4` of frame_stats is still there
    params["features"]["video"]["model"] = "vit_base_patch16_224"
    params["features"]["video"]["checkpoint"] = "/nowhere/model.safetensors"
    assert failure(params).startswith("params.yaml: features.video.thumb: unknown setting (valid: model, checkpoint,")
    del params["features"]["video"]["thumb"]
    params["features"]["video"]["checkpoint"] = 3
    assert failure(params).startswith("params.yaml: features.video.checkpoint: ")
    with pytest.raises(ValueError, match="features.video: unknown settings \\['model'\\] for extractor 'frame_stats'; "
                                         "valid values: thumb"):
        build_extractor("video", {"backend": "frame_stats", "model": "x"})  # a stage building it says the same


def test_a_classification_dataset_refuses_regression_metrics_and_text_without_transcripts(params, tmp_path):
    params["dataset"].update(name="ravdess", root=str(tmp_path))
    assert failure(params).startswith("params.yaml: features.text: dataset ravdess has no transcripts")
    del params["features"]["text"]
    # the defaults, written for audio + video + text, fit the run's two modalities, saying once what they left out
    params["compare"]["metric"] = "auto"
    summary = check_params(params)
    notes = [item for item in summary if item.startswith("masks.")]
    assert notes[0].startswith("masks.independent: the probabilities of text are left out (not a modality of this "
                               "run)")
    assert notes[1].startswith("masks.random: rates [0.6] are left out: impossible with 2 modalities")
    params["masks"]["independent"] = [{"audio": 0.5, "depth": 0.5}]  # no modality at all: still refused
    assert failure(params).startswith("params.yaml: masks.independent: independent protocol: probabilities for "
                                      "unknown modalities ['depth']")
    params["masks"]["independent"] = [{"audio": 0.5}]
    params["masks"]["random"] = [0.6, 0.7]  # nothing left: refused
    assert failure(params).startswith("params.yaml: masks.random: random protocol: missing rate 0.6 is impossible "
                                      "with 2 modalities")
    params["masks"]["random"] = [0.0, 0.5]
    params["compare"]["metric"] = "mean_acc"
    assert failure(params).startswith("params.yaml: compare.metric: 'mean_acc' is not a metric of this "
                                      "classification dataset")
    assert "(valid: auto, accuracy, macro_f1, uar, weighted_f1)" in failure(params)
    params["compare"]["metric"] = "auto"
    assert "compare 12 imputers by accuracy" in check_params(params)


def test_masks_that_cannot_hide_what_they_are_named_for_are_refused(params):
    params["masks"]["independent"] = [{"audio": 1.0, "video": 1.0, "text": 1.0}]
    assert failure(params) == (
        "params.yaml: masks.independent: independent protocol: {'audio': 1.0, 'video': 1.0, 'text': 1.0} drops "
        "every modality with p = 1, but every clip keeps one modality, so p = 1 for all of them is impossible; use "
        "p < 1 for at least one")
    assert list(named_settings("independent", [{"audio": 1.0, "video": 0.9}], ["audio", "video"])) == \
        ["pa_1.0-pv_0.9"]
    with pytest.raises(ValueError, match="every modality with p = 1"):
        named_settings("independent", [{"audio": 1.0}], ["audio"])
    params["masks"]["independent"] = [{"audio": 0.5}]
    params["masks"]["segments"] = [0.5, 1.0]
    assert failure(params) == ("params.yaml: masks.segments: segments protocol: p = 1 is impossible, as every clip "
                               "keeps one segment of each modality; use p < 1")


def test_precomputed_features_keys_are_checked_against_the_files_arrays(params, tmp_path):
    rng = np.random.default_rng(0)
    for split in ("train", "val", "test"):
        np.savez(tmp_path / f"{split}.npz", ids=np.array([f"{split}a", f"{split}b"]), labels=rng.random((2, 2)),
                 audio=rng.random((2, 4, 3)), video=rng.random((2, 4, 5)))
    params["dataset"].update(name="precomputed", root=str(tmp_path))
    assert failure(params) == ("params.yaml: features.text: not a modality of dataset precomputed "
                               "(valid: audio, video)")
    del params["features"]["text"]
    params["features"]["audio"] = {"dtype": "float16"}  # no extractor runs: only dtype applies
    params["masks"].update(random=[0.0, 0.5], independent=[{"audio": 0.5}])
    params["report"]["metric"] = "label_1_acc"  # label names from the file's label columns
    assert "report label_1_acc" in check_params(params)
    params["dataset"]["precomputed"]["files"] = {"train": "other.npz"}
    assert failure(params).startswith("params.yaml: dataset.precomputed: Precomputed: expected the train features")


def test_resolve_metric_gives_each_tasks_headline_for_auto():
    regression = Task.of("regression")
    assert resolve_metric(regression, ["extraversion", "openness"], "auto") == "mean_acc"
    assert resolve_metric(regression, ["sentiment"], "auto") == "Has0_acc_2"
    assert resolve_metric(Task.of("classification", ["calm", "sad"]), ["emotion"], "auto") == "accuracy"
    assert resolve_metric(regression, ["sentiment"], "Mult_acc_7") == "Mult_acc_7"
    with pytest.raises(SettingError, match=r"^params.yaml: report.metric: 'mean_acc' is not a metric of this "
                                           r"regression dataset \(labels sentiment\) \(valid: auto, Corr,"):
        resolve_metric(regression, ["sentiment"], "mean_acc", "report.metric")


def write_params(folder: Path, params: dict) -> Path:
    path = folder / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_cli_check_prints_ok_or_one_error_line_and_exits_2(params, tmp_path):
    ok = runner.invoke(app, ["check", "--params", str(write_params(tmp_path, params))])
    assert ok.exit_code == 0 and ok.output.startswith("params.yaml: OK (dataset first_impressions")
    params["fuser"]["train"]["seed"] = 1
    bad = runner.invoke(app, ["check", "--params", str(write_params(tmp_path, params))])
    assert bad.exit_code == 2
    assert bad.output.splitlines() == ["error: params.yaml: fuser.train.seed: seeds come from eval.seeds (and "
                                       "compare.seeds for the comparison), one model per seed; remove this key"]
    missing = runner.invoke(app, ["check", "--params", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2 and missing.output.startswith("error: ") and len(missing.output.splitlines()) == 1


def test_debug_shows_the_traceback(params, tmp_path, monkeypatch):
    params["imputer"]["type"] = "mice"
    path = str(write_params(tmp_path, params))
    for args, env in ((["--debug"], {}), ([], {"REMODIFF_DEBUG": "1"})):
        result = runner.invoke(app, ["check", "--params", path, *args], env=env)
        assert isinstance(result.exception, SettingError) and result.exit_code == 1
        assert "Traceback" in "".join(traceback.format_exception(*result.exc_info))
    monkeypatch.delenv("REMODIFF_DEBUG", raising=False)
    with pytest.raises(SystemExit) as stopped, reported_errors():
        raise FileNotFoundError("data/features/train.h5 not found: run the extract stage")
    assert stopped.value.code == 2


def test_mask_setting_names_are_exact_and_unique():
    fs = toy_featureset(12)  # audio, video, text
    made = make_masks(fs, {"independent": [{"audio": 0.25}, {"audio": 0.2}], "random": [0.25, 0.2],
                           "segments": [0.25, 0.2]}, seed=0)
    assert {"independent/pa_0.25-pv_0.0-pt_0.0", "independent/pa_0.2-pv_0.0-pt_0.0", "random/mr_0.25",
            "random/mr_0.2", "segments/p_0.25", "segments/p_0.2"} == {p.key for p in made}
    with pytest.raises(ValueError, match=r"random protocol: settings \['mr_0.3'\] are listed more than once"):
        make_masks(fs, {"random": [0.3, 0.30]}, seed=0)
    # modalities sharing an initial are named in full
    assert list(named_settings("independent", [{"audio": 0.5}], ["audio", "acoustic"])) == \
        ["paudio_0.5-pacoustic_0.0"]


def test_every_stage_checks_params_first_and_fails_in_one_line(params, tmp_path):
    params["features"]["video"]["backend"] = "timm"  # `thumb: 4` of frame_stats is left over
    write_params(tmp_path, params)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    env.pop("REMODIFF_DEBUG", None)
    done = subprocess.run([sys.executable, str(ROOT / "stages" / "extract.py")], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: params.yaml: features.video.thumb: unknown setting (valid:")
    assert not (tmp_path / "data").exists()  # nothing ran


@pytest.mark.parametrize("setting, value, message", [
    ("epochs", 0, "imputer.cvae.train.epochs: must be >= 1, got 0"),
    ("epochs", -5, "imputer.cvae.train.epochs: must be >= 1"),
    ("batch_size", 0, "imputer.cvae.train.batch_size: must be >= 1"),
    ("lr", -0.001, "imputer.cvae.train.lr: must be > 0"),
    ("lr", 0, "imputer.cvae.train.lr: must be > 0"),
    ("patience", -1, "imputer.cvae.train.patience: must be >= 0"),
    ("lr", "1e-3", "imputer.cvae.train.lr: must be float, got the string '1e-3': YAML reads"),
])
def test_training_numbers_are_range_checked_naming_the_key(setting, value, message):
    params = yaml.safe_load(open("params.yaml"))
    params["imputer"]["cvae"]["train"][setting] = value
    with pytest.raises(SettingError, match=re.escape(message)):
        check_params(params)


@pytest.mark.parametrize("imputer, key, value, message", [
    ("diffusion", "sample_batch", 0, "must be >= 1, got 0"),
    ("diffusion", "sample_batch", 2.5, "must be int or null, got 2.5"),
    ("diffusion", "corrector_steps", -1, "must be >= 0, got -1"),
    ("diffusion", "snr", 0.0, "must be > 0, got 0.0"),
    ("diffusion", "guidance", -1.0, "must be >= 0, got -1.0"),
    ("diffusion", "eps", 1.0, "must be > 0 and < 1, got 1.0"),
    ("diffusion", "eps", "1e-3", "must be float or null, got the string '1e-3': YAML reads"),
    ("diffusion", "steps", 0, "must be >= 1, got 0"),
    ("cvae", "draws", 0, "must be >= 1, got 0"),
])
def test_sampling_numbers_are_range_checked_naming_the_key(params, imputer, key, value, message):
    params["sampling"][imputer][key] = value
    assert failure(params).startswith(f"params.yaml: sampling.{imputer}.{key}: {message}")
