from typer.testing import CliRunner

from remodiff.cli import app
from remodiff.imputers import IMPUTERS
from remodiff.store import save_featureset
from tests.conftest import toy_featureset

runner = CliRunner()


def test_list_prints_registered_names_one_per_line():
    out = runner.invoke(app, ["list", "imputers"])
    assert out.exit_code == 0
    assert out.stdout.split() == IMPUTERS.names() and "mean" in IMPUTERS.names()
    assert runner.invoke(app, ["list", "extractors"]).stdout.split()[:1]
    assert runner.invoke(app, ["list", "gizmos"]).exit_code != 0


def test_info_summarises_a_feature_store(tmp_path):
    save_featureset(tmp_path / "f.h5", toy_featureset(4))
    out = runner.invoke(app, ["info", str(tmp_path / "f.h5")])
    assert out.exit_code == 0
    assert "features/audio: (4, 5, 8) float32" in out.stdout and "ids: (4,)" in out.stdout


def test_run_rejects_unknown_stage():
    out = runner.invoke(app, ["run", "nope"])
    assert out.exit_code != 0 and "valid" in out.output
