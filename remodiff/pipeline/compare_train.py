"""Stage ``compare_train@<imputer>``: one entry of the all-imputer comparison, fitted once per comparison run; with
``compare.fuser: joint`` an imputer that can (cvae, gan, diffusion) is trained together with its fuser
(:mod:`remodiff.joint`), the fuser saved beside it.

Training is its own stage so that sampling settings (``sampling``, ``eval.samples``) re-run only ``compare``."""
from __future__ import annotations

import logging
import time

from remodiff.evaluation.matrix import subset_key
from remodiff.imputers import IMPUTERS, build_imputer
from remodiff.joint import fit_joint, joint_trainable
from remodiff.pipeline.common import compare_seeds, compared
from remodiff.pipeline.runs import Run, runs_of
from remodiff.pipeline.train_fuser import fuser_for_seed
from remodiff.pipeline.train_imputer import fit_imputers, training_summary
from remodiff.progress import progress
from remodiff.results import ImputerRun, compare_run
from remodiff.store import write_json_atomic

log = logging.getLogger(__name__)


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("masks.train", "masks.seed", "imputer.${item.imputer}", "eval.seeds", "eval.folds", "compare.seeds",
          "compare.fuser", "compare.joint", "fuser.type", "fuser.train", "fuser.${fuser.type}")
UNTRACKED = ("compare.imputers",)  # only refuses an imputer not listed there (the matrix is made of them)


def run(params: dict, imputer: str) -> None:
    runs, entry = runs_of(params, compare_seeds(params)), compare_run(compared(params, imputer))
    if trains_jointly(params, imputer):
        fit_jointly(params, imputer, runs, entry)
    else:
        fit_imputers(params, imputer, runs, entry)


def trains_jointly(params: dict, imputer: str) -> bool:
    return params["compare"]["fuser"] == "joint" and joint_trainable(IMPUTERS.get(imputer))


def fit_jointly(params: dict, name: str, runs: list[Run], entry: ImputerRun) -> None:
    """Per run, the imputer and a fuser (``fuser.type``) trained together (``compare.joint``: drop, weight)."""
    cfg = params["compare"]["joint"]
    histories, summaries = {}, {}
    for run in progress(runs, desc=f"compare_train {name}", unit="run"):
        start = time.perf_counter()
        imputer = build_imputer(name, params["imputer"].get(name))
        fuser = fuser_for_seed(params, run.modalities, run.seed)
        history = fit_joint(imputer, fuser, run.train, run.val, cfg["drop"], cfg["weight"], run.seed)
        imputer.save(entry.models / run.name)
        fuser.save(entry.joint_fusers / run.name / subset_key(run.modalities))
        histories[run.name], summaries[run.name] = list(history), imputer.fit_summary
        log.info("joint %s + %s, %s: %.1fs", name, params["fuser"]["type"], run.name, time.perf_counter() - start)
    write_json_atomic(entry.history, [{"run": name, **row} for name, rows in histories.items() for row in rows])
    write_json_atomic(entry.training, training_summary(summaries))
