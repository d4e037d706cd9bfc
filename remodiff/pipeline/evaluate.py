"""Stage ``evaluate``: the downstream metrics of the main chain's imputer (upper bound, imputed, lower bound,
training floor), mean and 95 % CI over runs, pooled out-of-fold with ``eval.folds``; per-clip predictions of every
run saved (``data/predictions/main/<run>.h5``)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from remodiff.evaluation.matrix import aggregate, lower_bound_predict, modality_subsets, subset_key
from remodiff.evaluation.metrics import prediction_metrics
from remodiff.fusion import load_fuser
from remodiff.pipeline.runs import Run, runs_of
from remodiff.progress import progress
from remodiff.results import (IMPUTED, LOWER_BOUND, MAIN_RUN, SHARED_FUSERS, ImputerRun, Pattern, Predictions,
                              concatenate_predictions, read_reconstruction, reconstruction_patterns, save_predictions)
from remodiff.store import FeatureSet, write_json_atomic
from remodiff.tasks import Task

log = logging.getLogger(__name__)


def predict_run(params: dict, run: Run, paths: ImputerRun, lower_bound: bool, fusers: Path = SHARED_FUSERS
                ) -> Predictions:
    """The run's fuser (from ``fusers``: the shared ones, or a comparison entry's own) on its complete test clips
    and, per mask pattern, on the imputer's reconstructions (its K samples aggregated) and optionally the lower bound
    (each clip scored by the shared fuser of its available modalities); the same for its validation clips under the
    fixed patterns, where they were reconstructed."""
    modalities = run.modalities
    task = Task.from_attrs(run.test.attrs)
    folder = SHARED_FUSERS / run.name
    full = load_fuser(fusers / run.name / subset_key(modalities))
    lower = ({subset_key(s): load_fuser(folder / subset_key(s)) for s in modality_subsets(modalities)}
             if lower_bound else None)

    def predict(clips: FeatureSet, store) -> Predictions:
        floor = task.floor(run.train.labels, len(clips))
        cells, available = {}, {}
        for pattern in reconstruction_patterns(store):
            masked, samples = read_reconstruction(store, pattern)
            # K stochastic reconstructions: mean prediction (regression) or majority vote (classification)
            cells[pattern.key] = {IMPUTED: task.aggregate([full.predict(s) for s in samples])}
            if lower is not None:
                cells[pattern.key][LOWER_BOUND] = lower_bound_predict(lower, masked, floor)
            available[pattern.key] = np.stack([masked.available[m].any(axis=1) for m in modalities], axis=1)
        return Predictions(list(clips.ids), clips.labels, list(clips.label_names), task.name, list(task.classes),
                           full.predict(clips) if len(clips) else np.zeros((0, 0), np.float32), cells, modalities,
                           available)

    predictions = predict(run.test, paths.reconstruction(run.name))
    validation = paths.reconstruction(run.name, validation=True)
    if len(run.val) and validation.exists():
        predictions.validation = predict(run.val, validation)
    return predictions


def metrics_of(predictions: Predictions) -> dict:
    """``{complete: metrics, <protocol>: {<setting>: {imputed: metrics[, lower_bound: metrics]}}}``."""
    result = {"complete": prediction_metrics(predictions, predictions.complete)}
    for pattern, kinds in predictions.cells.items():
        protocol, setting = Pattern.split_key(pattern)
        result.setdefault(protocol, {})[setting] = {kind: prediction_metrics(predictions, values)
                                                    for kind, values in kinds.items()}
    return result


def score(params: dict, runs: list[Run], paths: ImputerRun, imputer: str, lower_bound: bool,
          fusers: Path = SHARED_FUSERS, about: dict | None = None) -> dict:
    """Upper bound (complete test data), the predict-the-training-mean floor, and per protocol setting the
    imputer's reconstructions and, optionally, the lower bound; mean and 95 % CI over runs, and with folds
    ``pooled``: the out-of-fold predictions of each seed (every clip once) scored together, mean and CI over seeds.
    ``about``: more keys to record beside the imputer's name."""
    if any(len(run.test) == 0 for run in runs):
        raise ValueError("the test split has no clips: nothing to evaluate (check dataset.root and split_dirs)")
    task = Task.from_attrs(runs[0].test.attrs)
    metrics = task.metrics(runs[0].test.label_names)
    per_run, per_seed = [], {}
    for run in progress(runs, desc=f"evaluate {imputer}", unit="run"):
        predictions = predict_run(params, run, paths, lower_bound, fusers)
        save_predictions(paths.prediction(run.name), predictions)
        result = metrics_of(predictions)
        result["train_mean"] = metrics.compute(run.test.labels, task.floor(run.train.labels, len(run.test)))
        per_run.append(result)
        per_seed.setdefault(run.seed, []).append(predictions)
    results = aggregate(per_run)
    if runs[0].fold is not None:
        results["pooled"] = aggregate([metrics_of(concatenate_predictions(parts)) for parts in per_seed.values()])
    results.update({"imputer": imputer, **(about or {})})
    write_json_atomic(paths.downstream, results)
    headline = metrics.headline
    log.info("evaluate %s: complete %s %.4f, training floor %s %.4f", imputer, headline, results["complete"][headline],
             headline, results["train_mean"][headline])
    return results


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("masks.train", "masks.seed", "eval.seeds", "eval.folds", "eval.lower_bound", "imputer.type")


def run(params: dict) -> dict:
    return score(params, runs_of(params), MAIN_RUN, params["imputer"]["type"], params["eval"]["lower_bound"])
