"""Stage ``train_imputer``: the chosen imputer (``imputer.type``), fitted once per run (seed of ``eval.seeds``, and
fold with ``eval.folds``)."""
from __future__ import annotations

import logging
import time

from remodiff.imputers import build_imputer
from remodiff.pipeline.runs import Run, runs_of
from remodiff.progress import progress
from remodiff.results import MAIN_RUN, ImputerRun
from remodiff.store import write_json_atomic
from remodiff.launch import is_main_process

log = logging.getLogger(__name__)


def fit_imputers(params: dict, name: str, runs: list[Run], paths: ImputerRun) -> None:
    """One imputer per run, fitted on the run's training clips (its validation clips for early stopping)."""
    own = dict(params["imputer"].get(name) or {})
    build_imputer(name, own)  # fails at once, naming the valid types, for an unknown name
    histories, summaries = {}, {}
    for run in progress(runs, desc=f"train_imputer {name}", unit="run"):
        start = time.perf_counter()
        imputer = build_imputer(name, own)
        imputer.fit(run.train, run.val, seed=run.seed)
        if is_main_process():  # under `accelerate launch` every process holds the same trained model
            imputer.save(paths.models / run.name)
        histories[run.name] = list(getattr(imputer, "history", None) or [])
        summaries[run.name] = getattr(imputer, "fit_summary", None)
        log.info("fit imputer %s, %s: %.1fs", name, run.name, time.perf_counter() - start)
    if not is_main_process():
        return
    if paths.training is None:  # the main chain: the first run's training curve for `dvc plots`
        write_json_atomic(paths.history, histories[runs[0].name])
        return
    # a comparison entry: every run's curve, and per run how long it trained and which epoch it kept
    write_json_atomic(paths.history, [{"run": name, **row} for name, rows in histories.items() for row in rows])
    write_json_atomic(paths.training, training_summary(summaries))


def training_summary(summaries: dict[str, dict | None]) -> dict:
    """``{runs: {run: {epochs, best_epoch, epoch_cap}}, ...}`` and over runs the smallest best epoch and whether any
    run kept its last allowed epoch (``at_cap``: still improving when stopped); ``{}`` for imputers that do not train
    by gradient."""
    runs = {name: summary for name, summary in summaries.items() if summary}
    if not runs:
        return {}
    return {"runs": runs, "min_best_epoch": min(s["best_epoch"] for s in runs.values()),
            "max_epochs": max(s["epochs"] for s in runs.values()),
            "at_cap": sum(s["best_epoch"] >= s["epoch_cap"] - 1 for s in runs.values())}


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("masks.train", "masks.seed", "imputer.type", "imputer.${imputer.type}", "eval.seeds", "eval.folds")


def run(params: dict) -> None:
    fit_imputers(params, params["imputer"]["type"], runs_of(params), MAIN_RUN)
