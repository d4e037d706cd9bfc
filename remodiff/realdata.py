"""``remodiff real-data NAME``: the whole DVC pipeline on a real development set, results committed beside the code.

A dev set's run is described by ``metrics/real/<name>/switches.yaml``::

    data: ravdess-au-mfcc-dev          # its folder under the shared data root
    title: RAVDESS dev, complete training data   # optional: how docs/results.md names the run
    about: ...                         # optional: what the run asks, for docs/results.md
    references: ...                    # optional: outside reference numbers on the same split
    set:                               # `dvc exp run -S` settings; {data} is that folder's absolute path
      - dataset.name=precomputed
      - dataset.root={data}
      - '~features.text'

The run happens in a scratch copy of the project, ``.real/<name>/`` (git-ignored; its own DVC project without git,
so the sample's ``dvc.lock`` and ``metrics/`` stay as they are): the project's files are copied there, the settings
applied to its ``params.yaml``, and the pipeline reproduced (``dvc repro``, each stage timed). Then everything the
pipeline wrote under ``metrics/`` is copied to ``metrics/real/<name>/`` with ``run.json`` (the exact command and
settings, git commit, wall time per stage). ``dvc.yaml`` declares those files as
metrics, so ``dvc metrics diff`` shows what a change does on real data.

The shared data root is ``--shared``, else ``$REMODIFF_SHARED``, else ``../shared/data`` next to the project.
``remodiff results`` writes ``docs/results.md`` from every committed run (:func:`write_results`): results are
generated, never copied by hand.
"""
from __future__ import annotations

import json
import logging
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from remodiff.results import is_training_curve
from remodiff.store import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

REAL_METRICS = Path("metrics") / "real"
SCRATCH = Path(".real")
RUNNING = re.compile(r"Running stage '([^']+)'")


@dataclass
class Switches:
    data: str  # folder of the dev set under the shared data root
    settings: list[str]  # `-S` settings, {data} standing for the dev set's absolute path
    title: str = ""
    about: str = ""
    references: str = ""


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
    unknown = sorted(set(doc) - {"data", "set", "title", "about", "references"})
    if unknown:
        raise ValueError(f"{path}: unknown keys {unknown} (valid: data, set, title, about, references)")
    return Switches(doc["data"], list(doc["set"]), str(doc.get("title") or path.parent.name),
                    " ".join(str(doc.get("about") or "").split()), " ".join(str(doc.get("references") or "").split()))


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


def apply_switches(params: dict, switches: Switches, data: Path) -> None:
    """A dev set's settings applied to ``params``, ``{data}`` standing for its folder ``data``."""
    for setting in switches.settings:
        apply_setting(params, setting.replace("{data}", str(data)))


def project_files(project: Path) -> list[Path]:
    """The project's files as git sees them: tracked plus new ones not ignored (what a commit would hold)."""
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=project,
                         check=True, capture_output=True, text=True).stdout
    return [Path(p) for p in out.split("\0") if p and (project / p).is_file()]


def copy_project(project: Path, scratch: Path, keep: bool = False) -> None:
    """``scratch`` (replaced; ``keep``: updated in place, its outputs and lock kept): a DVC project (no git) with the
    project's files, without its metrics and lock."""
    if scratch.exists() and not keep:
        shutil.rmtree(scratch)
    for rel in project_files(project):
        if rel.parts[0] in ("metrics", SCRATCH.name) or rel.name == "dvc.lock":
            continue  # the run writes its own metrics and lock
        (scratch / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(project / rel, scratch / rel)
    for folder in ("metrics", ".dvc"):
        (scratch / folder).mkdir(parents=True, exist_ok=True)
    (scratch / ".dvc" / "config").write_text("[core]\n    analytics = false\n    no_scm = true\n")


def prepare_scratch(project: Path, name: str, shared: Path, update: bool = False) -> tuple[Path, Switches]:
    """``.real/<name>/``: a fresh DVC project (no git) with the project's code and the dev set's params; ``update``:
    the existing one with the current code and params, so DVC re-runs only the stages they change."""
    switches = read_switches(project / REAL_METRICS / name / "switches.yaml")
    data = shared / switches.data
    if not data.is_dir():
        raise FileNotFoundError(f"dev set {name}: {data} does not exist")
    scratch = project / SCRATCH / name
    copy_project(project, scratch, keep=update and scratch.is_dir())
    params = yaml.safe_load((scratch / "params.yaml").read_text())
    apply_switches(params, switches, data)
    (scratch / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return scratch, switches


def scratch_env(scratch: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(scratch), "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1",
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def reproduce(scratch: Path, stages: list[str] | None = None) -> dict[str, float]:
    """One ``dvc repro`` of the whole pipeline (or ``stages`` and what they need); returns the wall seconds of each
    stage that ran, from DVC's ``Running stage`` lines (each stage's time includes writing its lock entry)."""
    env = {**scratch_env(scratch), "PYTHONUNBUFFERED": "1"}  # lines arrive when printed, so the times are right
    command = [sys.executable, "-m", "dvc", "repro", "--no-commit", *(stages or [])]
    seconds: dict[str, float] = {}
    current, started = None, time.perf_counter()
    with subprocess.Popen(command, cwd=scratch, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as dvc:
        for line in dvc.stdout:
            sys.stdout.write(line)
            running = RUNNING.match(line)
            if running:
                if current is not None:
                    seconds[current] = round(time.perf_counter() - started, 1)
                current, started = running.group(1), time.perf_counter()
    if current is not None:
        seconds[current] = round(time.perf_counter() - started, 1)
    if dvc.returncode:
        raise RuntimeError(f"dvc repro failed in {scratch} (exit {dvc.returncode}) during stage {current}")
    return seconds


def collect_metrics(scratch: Path, dest: Path) -> list[str]:
    """Copy what the run wrote under ``metrics/`` to ``dest`` (replacing an earlier run's files)."""
    for old in dest.rglob("*"):
        if old.is_file() and old.name != "switches.yaml":
            old.unlink()
    copied = []
    for path in sorted((scratch / "metrics").rglob("*")):
        # training curves stay in the scratch copy (as metrics, DVC would parse ~2 MB of them as YAML at the end
        # of every `dvc exp run`)
        if path.is_file() and not is_training_curve(path):
            rel = path.relative_to(scratch / "metrics")
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, dest / rel)
            copied.append(str(rel))
    return copied


#: what a run's results depend on; a changed README or doc does not make a run "dirty"
RUN_INPUTS = ("remodiff", "stages", "params.yaml", "dvc.yaml", "pyproject.toml")


def git_commit(project: Path, switches: Path | None = None) -> dict:
    """The commit the run's code comes from, and whether what the run reads differs from it: a changed or new file
    of :data:`RUN_INPUTS`, or the run's own switches file changed or not yet committed."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=project, capture_output=True, text=True).stdout.strip()
    paths = [*RUN_INPUTS, *([str(switches)] if switches is not None else [])]
    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--", *paths))}


def real_data(name: str, project: Path = Path("."), shared: str | Path | None = None,
              stages: list[str] | None = None, update: bool = False) -> dict:
    """Run the pipeline on dev set ``name`` (all stages, or ``stages``) and record the results; returns run.json.
    ``update``: in the existing scratch, re-running only what the current code and settings change; run.json then
    keeps the earlier run's stage times of the stages that did not run (``updated``: the stages that did)."""
    project = project.resolve()
    started = time.perf_counter()
    code = git_commit(project, project / REAL_METRICS / name / "switches.yaml")  # the code copied into the scratch
    scratch, switches = prepare_scratch(project, name, shared_root(shared, project), update)
    seconds = reproduce(scratch, stages)
    dest = project / REAL_METRICS / name
    earlier = json.loads((dest / "run.json").read_text()) if update and (dest / "run.json").is_file() else None
    copied = collect_metrics(scratch, dest)
    segments_report = scratch / "data" / "segments" / "report.json"
    wall = round(time.perf_counter() - started, 1)
    if earlier is not None:
        updated, seconds = list(seconds), {**earlier["stage_seconds"], **seconds}
        wall = round(earlier["wall_seconds"] + wall, 1)
    run = {"command": f"remodiff real-data {name}{' --update' if update else ''}", "data": switches.data,
           "settings": switches.settings, **code, "stage_seconds": seconds, "wall_seconds": wall,
           "cpus": os.cpu_count(),
           "python": sys.version.split()[0], "platform": platform.platform(), "metrics": copied,
           "segment_counts": (json.loads(segments_report.read_text()).get("counts")
                              if segments_report.is_file() else None)}
    if earlier is not None:
        run["updated"] = {"stages": updated, "earlier_commit": earlier["commit"]}
    write_json_atomic(dest / "run.json", run)
    log.info("real-data %s: done in %.0f s; results in %s", name, run["wall_seconds"], dest)
    return run


RESULTS_DOC = Path("docs") / "results.md"


def results_markdown(project: Path = Path(".")) -> str:
    """``docs/results.md``: for every committed real-data run (``metrics/real/<name>/``), what it asks, its
    references, how it was run, the comparison table the pipeline wrote and how long each compared imputer trained.
    Made from the committed files alone, so the document always says what the metrics say."""
    lines = ["# Results on the real development sets", "",
             "Generated by `remodiff results` from `metrics/real/<name>/` (re-run a set with `remodiff real-data "
             "<name>`, then `remodiff results`); do not edit by hand. Each table is the pipeline's own "
             "`comparison.md` of that run.", ""]
    for folder in sorted(p.parent for p in (project / REAL_METRICS).glob("*/run.json")):
        switches = read_switches(folder / "switches.yaml")
        run = json.loads((folder / "run.json").read_text())
        lines += [f"## {switches.title}", ""]
        if switches.about:
            lines += [switches.about, ""]
        if switches.references:
            lines += [f"References: {switches.references}", ""]
        stages = run.get("stage_seconds", {})
        lines += [f"Run: `{run['command']}` at commit `{run['commit'][:10]}`{' (uncommitted changes)' if run.get('dirty') else ''}, "
                  f"{run['wall_seconds']:.0f} s on {run.get('cpus', '?')} CPU cores ({len(stages)} stages); "
                  f"settings `{'`, `'.join(switches.settings)}`.", ""]
        comparison = folder / "comparison.md"
        if comparison.is_file():
            lines += ["#" * 2 + line if line.startswith("#") else line
                      for line in comparison.read_text().splitlines()]
        lines += training_lines(folder / "training")
    return "\n".join(lines).rstrip() + "\n"


def training_lines(folder: Path) -> list[str]:
    """Per compared imputer that trains by gradient: the epoch kept and the epochs run, per run, and the cap."""
    rows = []
    for path in sorted(folder.glob("*.json")):
        summary = json.loads(path.read_text())
        if not summary:
            continue
        runs = summary["runs"].values()
        rows.append(f"| {path.stem} | {', '.join(str(r['best_epoch']) for r in runs)} | "
                    f"{', '.join(str(r['epochs']) for r in runs)} | {max(r['epoch_cap'] for r in runs)} | "
                    f"{summary['at_cap']} |")
    if not rows:
        return []
    return ["### Imputer training", "", "Epoch kept (by the validation criterion) and epochs run, per run; `at cap`: "
            "runs whose kept epoch was the last one allowed.", "",
            "| imputer | epoch kept | epochs run | cap | at cap |", "|---|---|---|---|---|", *rows, ""]


def write_results(project: Path = Path(".")) -> Path:
    write_text_atomic(project / RESULTS_DOC, results_markdown(project))
    return project / RESULTS_DOC
