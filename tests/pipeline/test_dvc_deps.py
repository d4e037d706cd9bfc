"""dvc.yaml makes every stage depend on exactly the code it runs (the import closure of its module)."""
import yaml

from remodiff.pipeline import STAGES
from remodiff.check import SECTIONS
from remodiff.pipeline.deps import by_folder, closure, stage_code, stage_params
from remodiff.pipeline.entry import ReadParams
from tests.conftest import ROOT


def dvc_stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_every_stage_lists_exactly_the_code_it_imports():
    stages = dvc_stages()
    assert set(stages) == set(STAGES)
    for name, stage in stages.items():
        script = f"stages/{name}.py"
        code = [d for d in stage["deps"] if d.startswith(("stages/", "remodiff/"))]
        expected = stage_code(script)
        assert sorted(code) == sorted(expected), (
            f"dvc.yaml stage {name}: deps differ from the code it runs; missing {sorted(set(expected) - set(code))}, "
            f"extra {sorted(set(code) - set(expected))} (python -m remodiff.pipeline.deps --write rewrites them)")


def test_closure_follows_lazy_imports_and_parent_packages(tmp_path):
    pkg = tmp_path / "remodiff"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from remodiff.sub import registered  # noqa\n")
    (pkg / "sub" / "registered.py").write_text("")
    (pkg / "lazy.py").write_text("def f():\n    from remodiff.sub import thing\n")
    (pkg / "unused.py").write_text("")
    entry = tmp_path / "entry.py"
    entry.write_text("import os\nfrom remodiff import lazy\n")
    assert closure(entry, tmp_path) == ["remodiff/__init__.py", "remodiff/lazy.py", "remodiff/sub/__init__.py",
                                        "remodiff/sub/registered.py"]


def test_a_package_imported_whole_is_one_folder_dependency(tmp_path):
    pkg = tmp_path / "remodiff"
    for name in ("__init__.py", "whole/__init__.py", "whole/a.py", "whole/inner/__init__.py", "part/__init__.py",
                 "part/used.py", "part/unused.py", "top.py"):
        (pkg / name).parent.mkdir(parents=True, exist_ok=True)
        (pkg / name).write_text("")
    (pkg / "whole" / "__pycache__").mkdir()
    (pkg / "whole" / "__pycache__" / "a.cpython-311.pyc").write_bytes(b"")  # not code: .dvcignore'd
    imported = ["remodiff/__init__.py", "remodiff/part/__init__.py", "remodiff/part/used.py", "remodiff/top.py",
                "remodiff/whole/__init__.py", "remodiff/whole/a.py", "remodiff/whole/inner/__init__.py"]
    assert by_folder(imported, tmp_path) == ["remodiff/__init__.py", "remodiff/part/__init__.py",
                                             "remodiff/part/used.py", "remodiff/top.py", "remodiff/whole"]
    assert "__pycache__/" in (ROOT / ".dvcignore").read_text().splitlines()


def test_training_code_is_not_a_dependency_of_decoding_and_fusers_not_of_imputer_training():
    deps = {name: set(stage["deps"]) for name, stage in dvc_stages().items()}
    assert not any(d.startswith(("remodiff/imputers", "remodiff/fusion", "remodiff/diffusion")) for d in deps["segment"])
    assert "remodiff/training.py" not in deps["extract"]
    assert not any(d.startswith("remodiff/fusion") for d in deps["train_imputer"])
    assert not any(d.startswith("remodiff/imputers") for d in deps["train_fuser"])
    assert "remodiff/evaluation/report.py" in deps["report"] and "remodiff/evaluation/report.py" not in deps["evaluate"]


def test_every_stage_lists_exactly_the_params_its_module_declares():
    for name, stage in dvc_stages().items():
        assert stage["params"] == stage_params(name), (
            f"dvc.yaml stage {name}: params differ from PARAMS of remodiff/pipeline/{name}.py "
            "(python -m remodiff.pipeline.deps --write rewrites them)")


def test_check_knows_exactly_the_sections_the_stages_read():
    read = {key.split(".")[0] for name in STAGES for key in stage_params(name)}
    assert read == set(SECTIONS)


def test_read_params_notes_the_settings_used_not_the_sections_passed_through():
    read: set[str] = set()
    params = ReadParams({"masks": {"train": None, "seed": 0}, "fuser": {"type": "early", "early": {"hidden": 8}},
                         "eval": {"seeds": [0]}}, read)
    assert params["masks"]["train"] is None and params["eval"]["seeds"] == [0]
    assert read == {"masks.train", "eval.seeds"}
    section = params["fuser"]
    assert dict(section[section["type"]]) == {"hidden": 8}
    assert params["masks"].get("folds") is None
    assert read == {"masks.train", "eval.seeds", "fuser.type", "fuser.early", "fuser.early.hidden", "masks.folds"}
    assert list(params["fuser"]) == ["type", "early"] and "fuser" in read
