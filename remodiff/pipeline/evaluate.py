"""Stage ``evaluate``: the downstream metrics of the main chain's imputer (upper bound, imputed, lower bound,
training floor), mean and 95 % CI over seeds."""
from __future__ import annotations

import logging

import h5py
import numpy as np

from remodiff.evaluation.matrix import aggregate, lower_bound_predict, modality_subsets, subset_key
from remodiff.evaluation.metrics import aggregate_predictions, task_metrics
from remodiff.fusion import load_fuser
from remodiff.pipeline.common import FEATURES, MAIN_RUN, MODELS, ImputerRun, seeds_of
from remodiff.store import FeatureSet, load_featureset, read_featureset, write_json_atomic
from remodiff.tasks import Task, check_class_indices

log = logging.getLogger(__name__)


def score(params: dict, seeds: list[int], run: ImputerRun, imputer: str, lower_bound: bool) -> dict:
    """Upper bound (complete test data), the predict-the-training-mean floor, and per protocol setting the
    imputer's reconstructions (mean prediction over its K samples) and, optionally, the lower bound; mean and
    95 % CI over seeds."""
    modalities = list(params["features"])
    train = load_featureset(FEATURES / "train.h5")
    test = load_featureset(FEATURES / "test.h5")
    if len(test) == 0:
        raise ValueError("the test split has no clips: nothing to evaluate (check dataset.root and split_dirs)")
    task = Task.from_attrs(test.attrs)
    classes = list(task.classes) or None

    def metrics(predictions: np.ndarray) -> dict:
        return task_metrics(task.kind, test.labels, predictions, test.label_names, classes)

    floor = training_floor(task, train, len(test))
    runs = []
    for seed in seeds:
        folder = MODELS / "fuser" / f"seed_{seed}"
        full = load_fuser(folder / subset_key(modalities))
        lower = ({subset_key(s): load_fuser(folder / subset_key(s)) for s in modality_subsets(modalities)}
                 if lower_bound else None)
        result = {"complete": metrics(full.predict(test))}
        with h5py.File(run.reconstructed / f"seed_{seed}.h5", "r") as f:
            for protocol in f:
                for setting in f[protocol]:
                    group = f[protocol][setting]
                    samples = [k for k in group if k.startswith("sample_")]
                    # K stochastic reconstructions: mean prediction (regression) or majority vote (classification)
                    predictions = aggregate_predictions(task.kind,
                                                        [full.predict(read_featureset(group[k])) for k in samples])
                    cell = {"imputed": metrics(predictions)}
                    if lower is not None:
                        cell["lower_bound"] = metrics(lower_bound_predict(lower, read_featureset(group["masked"]), floor))
                    result.setdefault(protocol, {})[setting] = cell
        runs.append(result)
    results = aggregate(runs)
    results["train_mean"] = metrics(floor)
    results["imputer"] = imputer
    write_json_atomic(run.downstream, results)
    log.info("evaluate %s: complete %s, training floor %s", imputer, headline(results["complete"]),
             headline(results["train_mean"]))
    return results


def training_floor(task: Task, train: FeatureSet, n: int) -> np.ndarray:
    """The predict-the-training-set baseline: the label mean (regression) or the majority class, one-hot."""
    if not task.is_classification:
        return np.broadcast_to(train.labels.mean(axis=0), (n, train.labels.shape[1])).astype(np.float32)
    counts = np.bincount(check_class_indices(train.labels, len(task.classes)), minlength=len(task.classes))
    return np.broadcast_to(np.eye(len(task.classes), dtype=np.float32)[counts.argmax()], (n, len(task.classes)))


def headline(metrics: dict) -> str:
    key = next(k for k in ("mean_acc", "Has0_acc_2", "accuracy", "mae") if k in metrics)
    return f"{key} {metrics[key]:.4f}"


def run(params: dict) -> dict:
    return score(params, seeds_of(params), MAIN_RUN, params["imputer"]["type"], params["eval"]["lower_bound"])
