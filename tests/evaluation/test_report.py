"""The report stage on small hand-made metrics and stores: figures, summary tables, optional inputs skipped."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from remodiff.pipeline import stage
from remodiff.evaluation.report import (BENCHMARK_FIGURE, COMPARISON_FIGURE, FEATURE_FIGURE, FIGURES, FIXED_FIGURE, SUMMARY,
                                        TRAINING_FIGURE, data_fingerprint)
from remodiff.evaluation.masks import make_masks
from remodiff.results import MASKS, Pattern, ReconstructionWriter, save_masks
from remodiff.store import save_featureset
from tests.conftest import ROOT, toy_featureset


def cell(value: float, ci: float | None, metric: str = "mean_acc") -> dict:
    return {metric: value, f"{metric}_ci95": ci, "mae": 1 - value, "mae_ci95": ci}


def downstream() -> dict:
    return {
        "complete": cell(0.93, 0.004),
        "fixed": {
            "audio_missing": {"imputed": cell(0.8123, 0.011), "lower_bound": cell(0.905, 0.02)},
            "video_missing": {"imputed": cell(0.87, 0.013), "lower_bound": cell(0.91, 0.01)},
            "audio+video_missing": {"imputed": cell(0.84, 0.03), "lower_bound": cell(0.88, None)},
        },
        "random": {f"mr_{r:.1f}": {"imputed": cell(0.93 - r / 4, 0.01), "lower_bound": cell(0.93 - r / 8, 0.005)}
                   for r in (0.0, 0.3, 0.6)},
        "train_mean": {"mean_acc": 0.86, "mae": 0.14},
        "imputer": "knn",
    }


def reconstruction() -> dict:
    return {"fixed": {"audio_missing": {"audio": {"mse": 0.25, "mse_ci95": 0.03, "cosine": 0.7, "cosine_ci95": 0.02,
                                                  "frechet": 4.5, "frechet_ci95": 0.5, "slots": 40.0,
                                                  "slots_ci95": 0.0}},
                      "video_missing": {"video": {"mse": 0.5, "mse_ci95": 0.04, "cosine": 0.6, "cosine_ci95": 0.01,
                                                  "frechet": None, "frechet_ci95": None, "slots": 40.0,
                                                  "slots_ci95": 0.0}}}}


def write_stores(root: Path) -> None:
    """A test set, its masks store (the patterns' rates and labels) and seed 0's reconstructions of the fixed audio
    and video patterns (2 noisy samples each)."""
    test = toy_featureset(8, seed=3)
    save_featureset(root / "data/features/test.h5", test)
    save_masks(root / MASKS, make_masks(test, {"fixed": None, "random": [0.0, 0.3, 0.6]}, 0), test.ids, {})
    rng = np.random.default_rng(0)
    with ReconstructionWriter(root / "data/reconstructed/seed_0.h5") as out:
        for m in ("audio", "video"):
            mask = {k: np.full((len(test), test.n_segments), k != m) for k in test.modalities}
            samples = []
            for _ in range(2):
                restored = test.subset(test.modalities)
                restored.features = {**test.features, m: test.features[m] + rng.normal(size=test.features[m].shape)}
                samples.append(restored)
            out.add(Pattern("fixed", f"{m}_missing"), test.with_mask(mask), samples)


def write_metrics(root: Path, **files) -> None:
    (root / "metrics").mkdir(parents=True, exist_ok=True)
    for name, payload in files.items():
        (root / "metrics" / f"{name}.json").write_text(json.dumps(payload))


def params(metric: str = "mean_acc", benchmark: str | None = "metrics/diffusion_benchmark.json") -> dict:
    return {"report": {"metric": metric, "benchmark": benchmark}, "eval": {"seeds": [0, 1]},
            "compare": {"imputers": ["zero", "knn"]}}


def comparison() -> dict:
    """Two compared imputers, the lower bound, and `gan`: left over from a run where it was compared."""
    return {"upper_bound": cell(0.93, 0.004), "train_mean": cell(0.86, None),
            "labels": {"zero": "zero (raw 0)", "knn": "knn", "gan": "gan"}, "classical": ["zero", "knn"],
            "random": {f"mr_{r}": {"zero": cell(0.93 - r / 2, 0.01), "knn": cell(0.93 - r / 5, 0.01),
                                   "gan": cell(0.93 - r / 6, 0.01), "lower_bound": cell(0.93 - r / 4, 0.01)}
                       for r in (0.0, 0.3, 0.6)}}


BENCHMARK = {"quality": "frechet", "device": "cpu", "runs": [
    {"label": "ddim", "steps": 10, "seconds": 1.0, "frechet": 9.0},
    {"label": "ddim", "steps": 50, "seconds": 5.0, "frechet": 6.0},
    {"label": "euler_maruyama", "steps": 50, "seconds": 6.0, "frechet": 7.0},   # slower and worse than ddim 50
    {"label": "euler_maruyama", "steps": 200, "seconds": 20.0, "frechet": 5.5},
]}
HISTORY = [{"epoch": e, "train_loss": 1.0 / (e + 1), "val_loss": 1.2 / (e + 1)} for e in range(5)]


def measured_on_the_test_clips(benchmark: dict) -> dict:
    return {**benchmark, "data": data_fingerprint(toy_featureset(8, seed=3).ids)}


def test_every_figure_and_the_summary_tables_from_hand_made_inputs(tmp_path, monkeypatch):
    write_metrics(tmp_path, downstream=downstream(), reconstruction=reconstruction(), fuser_history=HISTORY,
                  imputer_history=[{"epoch": e, "train_loss": 5.0 / (e + 1)} for e in range(3)],
                  diffusion_benchmark=measured_on_the_test_clips(BENCHMARK), comparison=comparison())
    write_stores(tmp_path)
    monkeypatch.chdir(tmp_path)
    figures = stage("report")(params())

    for name in FIGURES:
        image = imread(tmp_path / "reports" / name)
        assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300, name
    summary = (tmp_path / "reports/summary.md").read_text()
    assert "Imputer: `knn`" in summary
    assert "| upper bound: complete test data | 0.93 ± 0.004 |" in summary
    assert "| floor: predict the training mean | 0.86 |" in summary
    # single missing modalities first; a null CI prints the value alone
    fixed_rows = [line for line in summary.splitlines() if "_missing |" in line and line.count("|") == 4]
    assert fixed_rows == ["| audio_missing | 0.8123 ± 0.011 | 0.905 ± 0.02 |",
                          "| video_missing | 0.87 ± 0.013 | 0.91 ± 0.01 |",
                          "| audio+video_missing | 0.84 ± 0.03 | 0.88 |"]
    assert "| mr_0.6 | 0.78 ± 0.01 | 0.855 ± 0.005 |" in summary
    assert "| fixed | audio_missing | audio | 0.25 ± 0.03 | 0.7 ± 0.02 | 4.5 ± 0.5 | 40 |" in summary
    assert "| fixed | video_missing | video | 0.5 ± 0.04 | 0.6 ± 0.01 | — | 40 |" in summary
    # the frontier: every run but euler_maruyama 50 steps (ddim 50 is faster and better)
    assert "| euler_maruyama | 50 | 6 | 7 |  |" in summary
    assert "| euler_maruyama | 200 | 20 | 5.5 | yes |" in summary
    assert f"- `{FEATURE_FIGURE}`: " in summary and "per modality: audio, video" in summary
    assert "training loss per epoch: fuser (all modalities), imputer (knn)" in summary
    assert summary.count("![") == len(FIGURES)
    # the comparison shows only the imputers compare.imputers lists, `zero` named for what it writes
    assert "(zero, knn)" in figures[COMPARISON_FIGURE] and "gan" not in figures[COMPARISON_FIGURE]


def test_missing_optional_inputs_are_skipped_and_stale_figures_removed(tmp_path, monkeypatch, caplog):
    classification = {"complete": {"accuracy": 0.9, "accuracy_ci95": None},
                      "fixed": {"text_missing": {"imputed": {"accuracy": 0.7, "accuracy_ci95": None}}},
                      "train_mean": {"accuracy": 0.5}, "imputer": "mean"}
    write_metrics(tmp_path, downstream=classification, imputer_history=[])
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / FEATURE_FIGURE).write_bytes(b"stale")
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO"):
        figures = stage("report")(params(metric="accuracy"))

    # every declared figure exists (dvc.yaml lists them); the ones without inputs say so, the stale one is replaced
    assert sorted(p.name for p in (tmp_path / "reports").glob("*.png")) == sorted(FIGURES)
    sizes = {name: imread(tmp_path / "reports" / name).shape for name in FIGURES}
    assert all(sizes[name][0] < sizes[FIXED_FIGURE][0] for name in FIGURES[1:]), sizes
    summary = (tmp_path / "reports/summary.md").read_text()
    assert "| text_missing | 0.7 |" in summary
    for name in FIGURES[1:]:
        assert f"- `{name}`: skipped" in summary
    assert "metrics/reconstruction.json` is absent" in summary
    assert "diffusion_benchmark.json is absent" in caplog.text
    assert figures[TRAINING_FIGURE] is None and figures[BENCHMARK_FIGURE] is None


def test_an_absent_metric_fails_naming_the_available_ones(tmp_path, monkeypatch):
    write_metrics(tmp_path, downstream=downstream())
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="report.metric: 'accuracy' is not among the metrics of this run \\(valid: auto, mae, mean_acc\\)"):
        stage("report")(params(metric="accuracy"))


def test_a_benchmark_measured_on_other_data_is_not_shown(tmp_path, monkeypatch, caplog):
    write_metrics(tmp_path, downstream=downstream(), diffusion_benchmark={**BENCHMARK, "data": "the sample"})
    write_stores(tmp_path)
    monkeypatch.chdir(tmp_path)
    with caplog.at_level("INFO"):
        figures = stage("report")(params())
    assert figures[BENCHMARK_FIGURE] is None
    assert f"- `{BENCHMARK_FIGURE}`: skipped" in (tmp_path / "reports" / SUMMARY).read_text()
    assert "measured on other data" in caplog.text


def test_a_malformed_benchmark_file_is_an_error_not_a_skip(tmp_path, monkeypatch):
    write_metrics(tmp_path, downstream=downstream(), diffusion_benchmark=measured_on_the_test_clips(
        {"quality": "frechet", "runs": [{"label": "ddim", "steps": 10}]}))
    write_stores(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="run 0 needs .*'seconds', 'frechet'"):
        stage("report")(params())


def test_dvc_yaml_declares_each_report_file_and_no_folder():
    """The report stage's outputs are the files write_report writes, one by one (a folder output breaks
    `dvc exp run <stage>` on a clone whose cache lacks the report)."""
    import yaml
    report = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["report"]
    assert report["outs"] == [f"reports/{SUMMARY}"]
    assert report["plots"] == [f"reports/{name}" for name in FIGURES]
