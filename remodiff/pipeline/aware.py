"""Stage ``aware``: imputation-aware fusion (:mod:`remodiff.evaluation.aware`). Per run (seed, and fold), a fuser trained on
complete + masked-and-reconstructed training clips (the seed's frozen imputer, or ``aware.folds`` cross-fitted ones),
scored on every mask pattern of ``data/reconstructed`` next to the plain fuser, the lower and the upper bound of
``metrics/downstream.json``, with the share of the lower -> upper gap it closes."""
from __future__ import annotations

import json
import logging
import shutil

from remodiff.evaluation.aware import aggregate_samples, fit_aware, gap_closed, training_imputer
from remodiff.evaluation.matrix import aggregate
from remodiff.evaluation.metrics import headline_metric, task_metrics
from remodiff.imputers import build_imputer, load_imputer
from remodiff.pipeline.common import with_sampling
from remodiff.pipeline.runs import runs_of
from remodiff.pipeline.train_fuser import fuser_for_seed
from remodiff.results import (MAIN_RUN, METRICS, MODELS, protocol_cells, read_reconstruction,
                              reconstruction_patterns)
from remodiff.store import write_json_atomic
from remodiff.tasks import Task

log = logging.getLogger(__name__)
AWARE_MODELS = MODELS / "fuser_aware"
AWARE_METRICS = METRICS / "aware.json"


def run(params: dict) -> dict:
    cfg = params["aware"]
    shutil.rmtree(AWARE_MODELS, ignore_errors=True)
    AWARE_MODELS.mkdir(parents=True)
    if not cfg["enabled"]:
        result = {"enabled": False}
        write_json_atomic(AWARE_METRICS, result)
        log.info("aware: off (aware.enabled: false); switch on with `dvc exp run -S aware.enabled=true`")
        return result
    modalities = list(params["features"])
    imputer_type = params["imputer"]["type"]
    runs = []
    for run in runs_of(params):
        task = Task.from_attrs(run.test.attrs)

        def metrics(predictions, test=run.test):
            return task_metrics(task.kind, test.labels, predictions, test.label_names, list(task.classes) or None)

        def fitted(part, validation, seed=run.seed):
            imputer = build_imputer(imputer_type, params["imputer"].get(imputer_type))
            imputer.fit(part, validation, seed=seed)
            return with_sampling(imputer, params)

        imputer = with_sampling(load_imputer(MAIN_RUN.models / run.name), params)
        impute_train = training_imputer(imputer, fitted, run.train, run.val, cfg["folds"], run.seed)
        fuser = fit_aware(fuser_for_seed(params, modalities, run.seed), run.train, run.val, impute_train,
                          imputer.impute, cfg["drop"], cfg["copies"], run.seed)
        fuser.save(AWARE_MODELS / run.name)
        result = {"complete": metrics(fuser.predict(run.test))}
        store = MAIN_RUN.reconstruction(run.name)
        for pattern in reconstruction_patterns(store):
            _, samples = read_reconstruction(store, pattern)
            result.setdefault(pattern.protocol, {})[pattern.setting] = metrics(
                aggregate_samples(task.kind, [fuser.predict(s) for s in samples], cfg["aggregate"]))
        runs.append(result)
    aware = aggregate(runs)
    result = with_references(aware, load_downstream(), headline_metric(task.kind, run.test.label_names))
    result.update(enabled=True, imputer=imputer_type, drop=cfg["drop"], folds=cfg["folds"],
                  aggregate=cfg["aggregate"])
    write_json_atomic(AWARE_METRICS, result)
    return result


def load_downstream() -> dict:
    if not MAIN_RUN.downstream.is_file():
        raise FileNotFoundError(f"{MAIN_RUN.downstream} not found: the aware stage reports next to the evaluate "
                                "stage's results; run `dvc repro evaluate` first")
    return json.loads(MAIN_RUN.downstream.read_text())


def with_references(aware: dict, downstream: dict, metric: str) -> dict:
    """Per protocol setting: ``imputed_aware`` (the aware fuser on the reconstructions) beside ``imputed``,
    ``lower_bound`` and ``complete`` of ``downstream``, and ``gap_closed``: the share of the lower -> upper bound
    gap of ``metric`` that the plain fuser (``imputed``) and the aware one close."""
    out = {"complete": downstream["complete"], "complete_aware": aware["complete"], "metric": metric}
    upper = downstream["complete"].get(metric)
    for protocol, setting, scores in protocol_cells(aware):
        reference = downstream.get(protocol, {}).get(setting)
        if reference is None:
            raise ValueError(f"{MAIN_RUN.downstream} has no {protocol}/{setting}: re-run the evaluate stage")
        cell = {"imputed_aware": scores, "imputed": reference["imputed"]}
        lower = reference.get("lower_bound", {}).get(metric)
        if "lower_bound" in reference:
            cell["lower_bound"] = reference["lower_bound"]
        cell["gap_closed"] = {"imputed": gap_closed(reference["imputed"].get(metric), lower, upper),
                              "imputed_aware": gap_closed(scores.get(metric), lower, upper)}
        out.setdefault(protocol, {})[setting] = cell
    return out
