"""Stage ``train_imputer``: the chosen imputer (``imputer.type``), fitted once per seed of ``eval.seeds``."""
from __future__ import annotations

import logging
import time

from remodiff.imputers import build_imputer
from remodiff.pipeline.common import FEATURES, MAIN_RUN, ImputerRun, seeds_of
from remodiff.store import load_featureset, write_json_atomic
from remodiff.launch import is_main_process

log = logging.getLogger(__name__)


def fit_imputers(params: dict, name: str, seeds: list[int], run: ImputerRun) -> None:
    """One imputer per seed, fitted on the training split (validation for early stopping)."""
    own = dict(params["imputer"].get(name) or {})
    build_imputer(name, own)  # fails at once, naming the valid types, for an unknown name
    train = load_featureset(FEATURES / "train.h5")
    val = load_featureset(FEATURES / "val.h5")
    histories = {}
    for seed in seeds:
        start = time.perf_counter()
        imputer = build_imputer(name, own)
        imputer.fit(train, val, seed=seed)
        if is_main_process():  # under `accelerate launch` every process holds the same trained model
            imputer.save(run.models / f"seed_{seed}")
        histories[seed] = getattr(imputer, "history", None)
        log.info("fit imputer %s, seed %d: %.1fs", name, seed, time.perf_counter() - start)
    if run.history is not None and is_main_process():
        # the first seed's training curve for `dvc plots` (empty for imputers that do not train by gradient)
        write_json_atomic(run.history, histories[seeds[0]] or [])


def run(params: dict) -> None:
    fit_imputers(params, params["imputer"]["type"], seeds_of(params), MAIN_RUN)
