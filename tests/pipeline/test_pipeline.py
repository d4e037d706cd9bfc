"""End to end: `dvc repro` on a tiny generated sample in a temporary git repository."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from remodiff.pipeline import STAGES
from remodiff.pipeline.deps import undeclared
from remodiff.pipeline.entry import PARAMS_READ
from remodiff.results import load_predictions
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # whole-pipeline / scale-out runs: `pytest -m "not slow"` leaves them out

TINY = {
    "sample": {"n_train": 24, "n_val": 8, "n_test": 8, "duration": 2.0, "size": 32, "fps": 10, "seed": 3},
    "segment": {"segments": 5, "fps": 5, "frame_size": 32, "sample_rate": 16000, "workers": 2},
}
READS = "params_read.jsonl"  # what each stage run read of params.yaml (remodiff.pipeline.entry.PARAMS_READ)


def run(cmd: list[str], cwd: Path) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1", PARAMS_READ: str(cwd / READS),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout + done.stderr


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    repo = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(ROOT / name, repo / name)
    for name in ("stages", "remodiff"):
        shutil.copytree(ROOT / name, repo / name, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    params["fuser"]["train"]["epochs"] = 150
    params["eval"]["seeds"] = [0, 1]
    params["masks"]["random"] = [0.0, 0.3]
    params["masks"]["segments"] = [0.4]
    params["compare"]["imputers"] = ["zero", "knn"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / ".gitignore").write_text("/data\n/models\n")
    run(["git", "init", "-q"], repo)
    run(["dvc", "init", "-q"], repo)
    run(["dvc", "config", "core.analytics", "false"], repo)
    # stage scripts import the package from this copy, as a user's clone would
    os.environ["PYTHONPATH"] = f"{repo}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    try:
        first = run(["dvc", "repro"], repo)
        yield repo, first
    finally:
        os.environ["PYTHONPATH"] = os.environ["PYTHONPATH"].split(os.pathsep, 1)[1]


def test_repro_writes_finite_metrics_and_complete_data_beats_the_mean(project):
    repo, _ = project
    metrics = json.loads((repo / "metrics" / "downstream.json").read_text())
    assert {"complete", "train_mean", "fixed", "random", "independent", "segments"} <= set(metrics)
    assert len(metrics["fixed"]) == 6 and set(metrics["random"]) == {"mr_0.0", "mr_0.3"}
    cells = [metrics["complete"], metrics["train_mean"]] + [
        cell[kind] for protocol in ("fixed", "random", "independent", "segments")
        for cell in metrics[protocol].values() for kind in ("imputed", "lower_bound")]
    for cell in cells:
        assert 0.0 < cell["mean_acc"] <= 1.0 and 0.0 <= cell["mae"] < 1.0
    assert metrics["complete"]["mean_acc_ci95"] is not None  # two seeds
    assert metrics["complete"]["mean_acc"] > metrics["train_mean"]["mean_acc"]
    # with nothing missing, reconstruction and lower bound are the complete-data model itself
    assert metrics["random"]["mr_0.0"]["imputed"]["mean_acc"] == pytest.approx(metrics["complete"]["mean_acc"])
    quality = json.loads((repo / "metrics" / "reconstruction.json").read_text())
    assert set(quality["fixed"]["video_missing"]) == {"video"} and quality["fixed"]["video_missing"]["video"]["mse"] > 0
    report = json.loads((repo / "data" / "segments" / "report.json").read_text())
    assert report["clips"] == {"train": 24, "val": 8, "test": 8} and report["skipped"] == []
    assert (repo / "reports" / "fixed_patterns.png").is_file() and (repo / "reports" / "feature_space.png").is_file()
    assert "| video_missing |" in (repo / "reports" / "summary.md").read_text()
    comparison = json.loads((repo / "metrics" / "comparison.json").read_text())
    row = comparison["fixed"]["audio_missing"]
    assert set(row) == {"zero", "knn", "lower_bound", "auto"} and comparison["runs"] == 2  # compare.seeds null: eval's
    # each row is tested against the best classical imputer (not itself) and the lower bound
    tested = [name for name in ("zero", "knn") if "best_classical" in row[name]["paired"]]
    paired = row[tested[0]]["paired"]["best_classical"]
    assert len(tested) == 1 and paired["ci95_low"] <= paired["ci95_high"]
    assert set(row["auto"]["paired"]) == {"best_classical", "lower_bound"}
    for path in ("data/predictions/main/seed_1.h5", "data/predictions/compare/knn/seed_0.h5"):
        assert len(load_predictions(repo / path).ids) == 8  # every test clip
    assert comparison["upper_bound"]["mean_acc"] == pytest.approx(metrics["complete"]["mean_acc"], abs=0.02)
    assert "| audio_missing |" in (repo / "metrics" / "comparison.md").read_text()


def test_same_params_and_seeds_give_identical_metrics(project):
    repo, _ = project
    before = (repo / "metrics" / "downstream.json").read_text()
    for stage in ("train_fuser", "evaluate"):  # retrain the fusers from scratch, then score again
        run(["dvc", "repro", "--force", "--single-item", stage], repo)
    assert (repo / "metrics" / "downstream.json").read_text() == before


def changed_stages(repo: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], repo).strip().splitlines()[-1] or "{}"))


def test_a_change_invalidates_only_the_stages_that_use_it(project):
    repo, _ = project
    assert changed_stages(repo) == set()
    gan, params_file = repo / "remodiff" / "imputers" / "gan.py", repo / "params.yaml"
    original_gan, original_params = gan.read_text(), params_file.read_text()
    try:
        gan.write_text(original_gan + "# touched\n")
        # compare cross-fits imputers with compare.own.folds, so it runs every imputer's code; compare_table and
        # report read the imputers' labels from the compare stages' results, not from the imputer code
        assert changed_stages(repo) == {"train_imputer", "reconstruct", "compare_train@zero", "compare_train@knn",
                                        "compare@zero", "compare@knn"}
        gan.write_text(original_gan)
        params = yaml.safe_load(original_params)
        params["imputer"]["gan"]["hidden"] = 8  # an imputer neither selected nor compared
        params["fuser"]["late"]["hidden"] = 8  # a fuser not selected
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        assert changed_stages(repo) == set()
        params["eval"]["samples"] = 2  # sampling only: nothing is retrained
        params_file.write_text(yaml.safe_dump(params, sort_keys=False))
        assert changed_stages(repo) == {"reconstruct", "compare@zero", "compare@knn"}
    finally:
        gan.write_text(original_gan)
        params_file.write_text(original_params)


def test_second_repro_is_up_to_date_and_imputer_switch_reruns_only_downstream(project):
    repo, _ = project
    assert "up to date" in run(["dvc", "status"], repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["imputer"]["type"] = "mean"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["dvc", "repro"], repo)
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    # compare_table reads the main chain's lower bound (imputer-independent: its table stays the same)
    assert ran == {"train_imputer", "reconstruct", "evaluate", "compare_table", "report"}
    metrics = json.loads((repo / "metrics" / "downstream.json").read_text())
    assert metrics["imputer"] == "mean" and metrics["fixed"]["video_missing"]["imputed"]["mean_acc"] > 0


def test_unknown_imputer_fails_naming_the_valid_types(project):
    repo, _ = project
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["imputer"]["type"] = "nope"
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    # DVC itself refuses first: the stage's params name the imputer's own section
    with pytest.raises(AssertionError, match="'imputer.nope' are missing"):
        run(["dvc", "repro", "train_imputer"], repo)



def test_every_stage_reads_only_the_params_it_declares(project):
    """What each stage run of the repro read of params.yaml is inside its dvc.yaml params, so DVC reruns it when a
    setting it uses changes."""
    repo, _ = project
    params = yaml.safe_load((repo / "params.yaml").read_text())
    reads = [json.loads(line) for line in (repo / READS).read_text().splitlines()]
    assert {r["stage"] for r in reads} == set(STAGES)
    missing = {f"{r['stage']} {r['args']}": undeclared(r["stage"], r["read"], params, r["args"]) for r in reads}
    assert not any(missing.values()), f"stages read params they do not declare: {missing}"
