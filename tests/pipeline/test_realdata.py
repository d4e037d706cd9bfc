"""`remodiff real-data NAME`: settings applied like `dvc exp run -S`, the scratch project, the collected results
(on a tiny fake project and dev set, so it runs DVC on one cheap stage)."""
import json
import subprocess

import pytest
import yaml
from typer.testing import CliRunner

from remodiff.cli import app
from remodiff.realdata import apply_setting, prepare_scratch, real_data, shared_root

SCORE = ("import json, pathlib, yaml; p = yaml.safe_load(open('params.yaml')); "
         "n = len(list(pathlib.Path(p['dataset']['root']).iterdir())); "
         "json.dump({'score': p['x']['scale'] * n}, open('metrics/score.json', 'w'))")


def test_settings_replace_add_and_remove_like_dvc_exp_run():
    params = {"dataset": {"name": "a", "sub": {"k": 1}}, "features": {"text": {"backend": "tfidf"}}}
    apply_setting(params, "dataset.name=precomputed")
    apply_setting(params, "+dataset.sub.extra=[1, 2]")
    apply_setting(params, "~features.text")
    apply_setting(params, "features={audio: {backend: given}}")
    assert params == {"dataset": {"name": "precomputed", "sub": {"k": 1, "extra": [1, 2]}},
                      "features": {"audio": {"backend": "given"}}}
    for bad, message in [("dataset.nope=1", "no key dataset.nope"), ("+dataset.name=x", "already has"),
                         ("dataset.name.deep=1", "dataset.name is not a section"), ("dataset.name", "expected")]:
        with pytest.raises(ValueError, match=message):
            apply_setting(params, bad)


@pytest.fixture
def tiny_project(tmp_path, monkeypatch):
    """A git project with one DVC stage reading params, and a shared root holding the dev set `tiny`."""
    project, shared = tmp_path / "project", tmp_path / "shared"
    (shared / "tiny-dev").mkdir(parents=True)
    for name in ("a.npz", "b.npz", "c.npz"):
        (shared / "tiny-dev" / name).write_bytes(b"x")
    (project / "metrics" / "real" / "tiny").mkdir(parents=True)
    (project / "params.yaml").write_text("dataset: {root: data/sample}\nx: {scale: 1}\n")
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"score": {
        "cmd": f'python -c "{SCORE}"', "params": ["x", "dataset.root"],
        "metrics": [{"metrics/score.json": {"cache": False}}]}}}))
    (project / "metrics" / "score.json").write_text('{"score": -1}')  # the sample's result: not copied
    (project / "metrics" / "real" / "tiny" / "switches.yaml").write_text(
        "data: tiny-dev\nset: ['dataset.root={data}', 'x.scale=10']\n")
    (project / ".gitignore").write_text("/.real\n")
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    monkeypatch.delenv("REMODIFF_SHARED", raising=False)
    return project, shared


def test_scratch_project_has_the_switches_and_no_old_results(tiny_project):
    project, shared = tiny_project
    scratch, switches = prepare_scratch(project, "tiny", shared)
    assert scratch == project / ".real" / "tiny" and switches.data == "tiny-dev"
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    assert params == {"dataset": {"root": str(shared / "tiny-dev")}, "x": {"scale": 10}}
    assert not (scratch / "metrics" / "score.json").exists() and (scratch / "dvc.yaml").is_file()
    assert "no_scm = true" in (scratch / ".dvc" / "config").read_text()
    assert (project / "params.yaml").read_text().startswith("dataset: {root: data/sample}")  # untouched


def test_real_data_runs_dvc_and_commits_metrics_with_the_command(tiny_project):
    project, shared = tiny_project
    run = real_data("tiny", project=project, shared=shared)
    dest = project / "metrics" / "real" / "tiny"
    assert json.loads((dest / "score.json").read_text()) == {"score": 30}  # 3 files x scale 10
    recorded = json.loads((dest / "run.json").read_text())
    assert recorded == run and recorded["command"] == "remodiff real-data tiny"
    assert recorded["settings"] == ["dataset.root={data}", "x.scale=10"]
    assert list(recorded["stage_seconds"]) == ["score"]
    assert json.loads((project / "metrics" / "score.json").read_text()) == {"score": -1}  # the sample's stays
    # the switches file is not committed: the run says its tree differs from the commit; committed, it does not
    assert recorded["dirty"] is True
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], cwd=project, check=True)
    subprocess.run([*git, "commit", "-qm", "all"], cwd=project, check=True)
    assert real_data("tiny", project=project, shared=shared)["dirty"] is False
    (project / "README.md").write_text("notes\n")  # not read by the run
    assert real_data("tiny", project=project, shared=shared)["dirty"] is False
    (project / "params.yaml").write_text("dataset: {root: data/sample}\nx: {scale: 2}\n")
    assert real_data("tiny", project=project, shared=shared)["dirty"] is True


def test_update_reruns_only_what_changed_and_keeps_the_earlier_stage_times(tiny_project):
    project, shared = tiny_project
    first = real_data("tiny", project=project, shared=shared)
    again = real_data("tiny", project=project, shared=shared, update=True)  # nothing changed: DVC runs nothing
    assert again["updated"]["stages"] == [] and again["stage_seconds"] == first["stage_seconds"]
    assert again["command"] == "remodiff real-data tiny --update"
    switches = project / "metrics" / "real" / "tiny" / "switches.yaml"
    switches.write_text(switches.read_text().replace("x.scale=10", "x.scale=2"))
    changed = real_data("tiny", project=project, shared=shared, update=True)
    assert changed["updated"]["stages"] == ["score"]
    assert json.loads((project / "metrics" / "real" / "tiny" / "score.json").read_text()) == {"score": 6}


def test_results_document_is_made_from_the_committed_runs(tiny_project):
    from remodiff.realdata import results_markdown

    project, shared = tiny_project
    (project / "metrics" / "real" / "tiny" / "switches.yaml").write_text(
        "data: tiny-dev\ntitle: Tiny dev set\nabout: what it asks\nreferences: ridge 1.0\n"
        "set: ['dataset.root={data}', 'x.scale=10']\n")
    real_data("tiny", project=project, shared=shared)
    (project / "metrics" / "real" / "tiny" / "comparison.md").write_text("# accuracy per imputer\n\n| a | b |\n")
    text = results_markdown(project)
    assert "## Tiny dev set" in text and "what it asks" in text and "References: ridge 1.0" in text
    assert "### accuracy per imputer" in text and "`remodiff real-data tiny`" in text


def test_shared_root_from_the_environment_and_clear_errors(tiny_project, monkeypatch):
    project, shared = tiny_project
    monkeypatch.setenv("REMODIFF_SHARED", str(shared))
    assert shared_root(None, project) == shared.resolve()
    result = CliRunner().invoke(app, ["real-data", "nope", "--shared", str(shared)])
    assert result.exit_code == 2 and "metrics/real/nope/switches.yaml" in result.output
    monkeypatch.setenv("REMODIFF_SHARED", str(project / "nowhere"))
    with pytest.raises(FileNotFoundError, match="REMODIFF_SHARED"):
        shared_root(None, project)


def test_collected_results_leave_the_training_curves_in_the_scratch(tmp_path):
    from remodiff.realdata import collect_metrics
    from remodiff.results import FUSER_HISTORY, MAIN_RUN, compare_run, is_training_curve
    assert all(is_training_curve(p) for p in (FUSER_HISTORY, MAIN_RUN.history, compare_run("cvae").history))
    assert not any(is_training_curve(p) for p in (MAIN_RUN.downstream, compare_run("cvae").training))
    scratch, dest = tmp_path / "scratch", tmp_path / "dest"
    for name in ("downstream.json", "fuser_history.json", "imputer_history.json", "training/cvae.json",
                 "training/cvae.history.json", "compare/cvae/downstream.json"):
        (scratch / "metrics" / name).parent.mkdir(parents=True, exist_ok=True)
        (scratch / "metrics" / name).write_text("{}")
    (dest / "training").mkdir(parents=True)
    (dest / "training" / "gan.history.json").write_text("[]")  # an earlier run's: replaced like every result
    assert collect_metrics(scratch, dest) == ["compare/cvae/downstream.json", "downstream.json", "training/cvae.json"]
    assert sorted(str(p.relative_to(dest)) for p in dest.rglob("*.json")) == [
        "compare/cvae/downstream.json", "downstream.json", "training/cvae.json"]
