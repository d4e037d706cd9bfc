"""Stage ``train_imputer``: the chosen imputer (``imputer.type``), fitted once per run (seed of ``eval.seeds``, and
fold with ``eval.folds``)."""
from __future__ import annotations

import logging
import time

from remodiff.imputers import build_imputer
from remodiff.pipeline.runs import Run, runs_of
from remodiff.results import MAIN_RUN, ImputerRun
from remodiff.store import write_json_atomic
from remodiff.launch import is_main_process

log = logging.getLogger(__name__)


def fit_imputers(params: dict, name: str, runs: list[Run], paths: ImputerRun) -> None:
    """One imputer per run, fitted on the run's training clips (its validation clips for early stopping)."""
    own = dict(params["imputer"].get(name) or {})
    build_imputer(name, own)  # fails at once, naming the valid types, for an unknown name
    histories = {}
    for run in runs:
        start = time.perf_counter()
        imputer = build_imputer(name, own)
        imputer.fit(run.train, run.val, seed=run.seed)
        if is_main_process():  # under `accelerate launch` every process holds the same trained model
            imputer.save(paths.models / run.name)
        histories[run.name] = getattr(imputer, "history", None)
        log.info("fit imputer %s, %s: %.1fs", name, run.name, time.perf_counter() - start)
    if paths.history is not None and is_main_process():
        # the first run's training curve for `dvc plots` (empty for imputers that do not train by gradient)
        write_json_atomic(paths.history, histories[runs[0].name] or [])


def run(params: dict) -> None:
    fit_imputers(params, params["imputer"]["type"], runs_of(params), MAIN_RUN)
