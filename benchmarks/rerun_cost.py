"""What one changed setting costs after a full run: `dvc exp run -S <setting>` against the full `dvc repro`.

A copy of the project's tracked files (a fresh git repository in a temporary folder, the venv of this checkout on
PATH) runs the whole pipeline once, commits its dvc.lock, then runs one experiment per setting given and prints
its wall time, the ratio to the full run and the stages it re-ran. Goal (issue "Fail in seconds, recompute only
what changed"): a sampling-only change such as the diffusion sampler's steps costs <= 10 % of the full run.

    PYTHONPATH=. python benchmarks/rerun_cost.py sampling.diffusion.steps=5 imputer.gan.hidden=32 eval.samples=3
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from remodiff.realdata import project_files

ROOT = Path(__file__).resolve().parents[1]


# DVC's lines that mark where a run's time goes: set-up, each stage's process, its lock-file update, the commit
MILESTONES = re.compile(r"Reproducing experiment|Running stage '[^']+'|Updating lock file|Ran experiment")


def timed(command: list[str], cwd: Path, env: dict) -> tuple[float, str, list[tuple[float, str]]]:
    """Wall time, output, and the seconds at which each :data:`MILESTONES` line was printed."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, milestones = [], []
    for line in process.stdout:
        lines.append(line)
        if found := MILESTONES.search(line):
            milestones.append((time.perf_counter() - start, found.group(0)))
    if process.wait() != 0:
        sys.exit(f"{' '.join(command)} failed:\n{''.join(lines)[-6000:]}")
    return time.perf_counter() - start, "".join(lines), milestones


def copy_project(target: Path) -> None:
    """The project's files as git sees them (:func:`remodiff.realdata.project_files`), lock and metrics included."""
    for name in project_files(ROOT):
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target / name)


def git(target: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost", *args], cwd=target,
                   check=True, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("settings", nargs="+", help="section.key=value, one experiment each")
    args = parser.parse_args()
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "HF_HUB_OFFLINE": "1",
           "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        copy_project(project)
        # the shared data and the package of this checkout, as in a clone beside ../shared
        (Path(tmp) / "shared").symlink_to(ROOT.parent / "shared")
        env["PYTHONPATH"] = str(project)
        git(project, "init", "-q")
        git(project, "add", "-A")
        git(project, "commit", "-qm", "project")
        full, _, _ = timed(["dvc", "repro", "--force"], project, env)
        print(f"full dvc repro: {full:.0f} s")
        git(project, "add", "-A")
        git(project, "commit", "-qm", "full run", "--allow-empty")  # a deterministic re-run may change nothing
        for setting in args.settings:
            seconds, output, milestones = timed(["dvc", "exp", "run", "-S", setting], project, env)
            rerun = sorted(set(re.findall(r"Running stage '([^']+)'", output)))
            print(f"-S {setting}: {seconds:.0f} s = {seconds / full:.1%} of the full run; re-ran {rerun}")
            print("    at " + "; ".join(f"{at:.1f} s {what}" for at, what in milestones) + f"; {seconds:.1f} s done")


if __name__ == "__main__":
    main()
