"""``remodiff real-data NAME``: the whole DVC pipeline on a real development set, results committed beside the code.

A dev set's run is described by ``metrics/real/<name>/switches.yaml``::

    data: ravdess-au-mfcc-dev          # its folder under the shared data root
    set:                               # `dvc exp run -S` settings; {data} is that folder's absolute path
      - dataset.name=precomputed
      - dataset.root={data}
      - '~features.text'

The run happens in a scratch copy of the project, ``.real/<name>/`` (git-ignored; its own DVC project without git,
so the sample's ``dvc.lock`` and ``metrics/`` stay as they are): the project's files are copied there, the settings
applied to its ``params.yaml``, and every stage reproduced in ``dvc.yaml`` order (one ``dvc repro --single-item`` per
stage, timed). Then everything the pipeline wrote under ``metrics/`` is copied to ``metrics/real/<name>/`` with
``run.json`` (the exact command and settings, git commit, wall time per stage). ``dvc.yaml`` declares those files as
metrics, so ``dvc metrics diff`` shows what a change does on real data.

The shared data root is ``--shared``, else ``$REMODIFF_SHARED``, else ``../shared/data`` next to the project.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from remodiff.store import write_json_atomic

log = logging.getLogger(__name__)

REAL_METRICS = Path("metrics") / "real"
SCRATCH = Path(".real")
# Training curves are `dvc plots` of a run, not metrics to compare; they stay in the scratch copy.
NOT_COPIED = ("fuser_history.json", "imputer_history.json")


@dataclass
class Switches:
    data: str  # folder of the dev set under the shared data root
    settings: list[str]  # `-S` settings, {data} standing for the dev set's absolute path


def shared_root(option: str | Path | None, project: Path) -> Path:
    root = Path(option or os.environ.get("REMODIFF_SHARED") or project.resolve().parent / "shared" / "data")
    if not root.is_dir():
        raise FileNotFoundError(f"shared data root {root} does not exist (pass --shared or set REMODIFF_SHARED)")
    return root.resolve()


def read_switches(path: Path) -> Switches:
    if not path.is_file():
        raise FileNotFoundError(f"no switches file {path}: a dev set NAME needs metrics/real/NAME/switches.yaml")
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc.get("data"), str) or not isinstance(doc.get("set"), list) \
            or not all(isinstance(s, str) for s in doc["set"]):
        raise ValueError(f"{path}: expected `data: <folder>` and `set: [<-S setting>, ...]` (strings)")
    return Switches(doc["data"], list(doc["set"]))


def apply_setting(params: dict, setting: str) -> None:
    """One ``dvc exp run -S`` setting: ``key=value`` replaces an existing key, ``+key=value`` adds a new one,
    ``~key`` removes one (the value is YAML)."""
    remove, add = setting.startswith("~"), setting.startswith("+")
    key, sep, text = setting.lstrip("~+").partition("=")
    if remove == bool(sep):
        raise ValueError(f"setting {setting!r}: expected key=value, +key=value or ~key")
    *parents, last = key.split(".")
    node = params
    for i, part in enumerate(parents):
        if not isinstance(node.get(part), dict):
            raise ValueError(f"setting {setting!r}: {'.'.join(parents[:i + 1])} is not a section of params.yaml")
        node = node[part]
    exists = last in node
    if (remove or not add) and not exists:
        raise ValueError(f"setting {setting!r}: params.yaml has no key {key} (use +{key}=... to add one)")
    if add and exists:
        raise ValueError(f"setting {setting!r}: params.yaml already has {key} (use {key}=... to replace it)")
    if remove:
        del node[last]
    else:
        node[last] = yaml.safe_load(text)


def project_files(project: Path) -> list[Path]:
    """The project's files as git sees them: tracked plus new ones not ignored (what a commit would hold)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=project,
                         check=True, capture_output=True, text=True).stdout
    return [Path(p) for p in out.split("\0") if p and (project / p).is_file()]


def prepare_scratch(project: Path, name: str, shared: Path) -> tuple[Path, Switches]:
    """``.real/<name>/``: a fresh DVC project (no git) with the project's code and the dev set's params."""
    switches = read_switches(project / REAL_METRICS / name / "switches.yaml")
    data = shared / switches.data
    if not data.is_dir():
        raise FileNotFoundError(f"dev set {name}: {data} does not exist")
    scratch = project / SCRATCH / name
    if scratch.exists():
        shutil.rmtree(scratch)
    for rel in project_files(project):
        if rel.parts[0] in ("metrics", SCRATCH.name) or rel.name == "dvc.lock":
            continue  # the run writes its own metrics and lock
        (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / rel, scratch / rel)
    for folder in ("metrics", ".dvc"):
        (scratch / folder).mkdir(parents=True, exist_ok=True)
    (scratch / ".dvc" / "config").write_text("[core]\n    analytics = false\n    no_scm = true\n")
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    for setting in switches.settings:
        apply_setting(params, setting.replace("{data}", str(data)))
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return scratch, switches


def scratch_env(scratch: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(scratch), "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def stage_names(scratch: Path) -> list[str]:
    """Every stage of the scratch's pipeline in ``dvc.yaml`` order (upstream first), matrix entries expanded."""
    out = subprocess.run(["dvc", "stage", "list", "--name-only"], cwd=scratch, env=scratch_env(scratch),
                         check=True, capture_output=True, text=True).stdout
    return out.split()


def reproduce(scratch: Path, stages: list[str]) -> dict[str, float]:
    """``dvc repro`` of each stage in turn; returns the wall seconds of each (DVC's own start-up included)."""
    seconds = {}
    for stage in stages:
        log.info("real-data: dvc repro %s", stage)
        start = time.perf_counter()
        subprocess.run(["dvc", "repro", "--single-item", "--no-commit", stage], cwd=scratch,
                       env=scratch_env(scratch), check=True)
        seconds[stage] = round(time.perf_counter() - start, 1)
    return seconds


def collect_metrics(scratch: Path, dest: Path) -> list[str]:
    """Copy what the run wrote under ``metrics/`` to ``dest`` (replacing an earlier run's files)."""
    for old in dest.rglob("*"):
        if old.is_file() and old.name != "switches.yaml":
            old.unlink()
    copied = []
    for path in sorted((scratch / "metrics").rglob("*")):
        if path.is_file() and path.name not in NOT_COPIED:
            rel = path.relative_to(scratch / "metrics")
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / rel)
            copied.append(str(rel))
    return copied


def git_commit(project: Path) -> dict:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True).stdout.strip()
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def real_data(name: str, project: Path = Path("."), shared: str | Path | None = None,
              stages: list[str] | None = None) -> dict:
    """Run the pipeline on dev set ``name`` (all stages, or ``stages``) and record the results; returns run.json."""
    project = project.resolve()
    started = time.perf_counter()
    scratch, switches = prepare_scratch(project, name, shared_root(shared, project))
    seconds = reproduce(scratch, stages or stage_names(scratch))
    dest = project / REAL_METRICS / name
    copied = collect_metrics(scratch, dest)
    segments_report = scratch / "data" / "segments" / "report.json"
    run = {"command": f"remodiff real-data {name}", "data": switches.data, "settings": switches.settings,
           **git_commit(project), "stage_seconds": seconds,
           "wall_seconds": round(time.perf_counter() - started, 1), "cpus": os.cpu_count(),
           "python": sys.version.split()[0], "platform": platform.platform(), "metrics": copied,
           "segment_counts": (json.loads(segments_report.read_text()).get("counts")
                              if segments_report.is_file() else None)}
    write_json_atomic(dest / "run.json", run)
    log.info("real-data %s: done in %.0f s; results in %s", name, run["wall_seconds"], dest)
    return run
