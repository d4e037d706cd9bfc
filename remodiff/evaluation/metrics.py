"""Downstream metrics. First Impressions: per-trait accuracy = 1 - MAE, "mean accuracy" over the Big Five;
MOSI / MOSEI sentiment: MMSA's metric set; classification: accuracy, F1, UAR. :func:`task_metrics` picks."""
from __future__ import annotations

import logging

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from remodiff.registry import SettingError
from remodiff.tasks import TASKS, check_class_indices, class_indices

log = logging.getLogger(__name__)
BIG_FIVE = ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness")


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Pearson correlation; ``None`` (JSON null) when either side is constant, where r is undefined."""
    t, p = y_true - y_true.mean(), y_pred - y_pred.mean()
    denom = np.sqrt((t**2).sum() * (p**2).sum())
    if denom == 0:
        return None
    return float((t * p).sum() / denom)


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str]) -> dict:
    """Per label ``<name>_acc`` (1 - MAE) and ``<name>_r``; ``mean_acc`` over the Big Five traits present (all
    labels if none is), ``mae`` over all labels, ``pearson_r`` the mean of the defined per-label r."""
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if y_true.shape != y_pred.shape or y_true.ndim != 2 or y_true.shape[1] != len(label_names):
        raise ValueError(f"labels {y_true.shape} / predictions {y_pred.shape} do not fit {len(label_names)} names")
    if not np.all(np.isfinite(y_pred)):
        raise ValueError("predictions contain NaN or inf")
    abs_err = np.abs(y_true - y_pred).mean(axis=0)
    out: dict = {}
    rs = []
    for j, name in enumerate(label_names):
        out[f"{name}_acc"] = float(1.0 - abs_err[j])
        r = pearson_r(y_true[:, j], y_pred[:, j])
        out[f"{name}_r"] = r
        if r is not None:
            rs.append(r)
    undefined = [n for n in label_names if out[f"{n}_r"] is None]
    if undefined:
        log.info("Pearson r undefined (constant series) for %s: reported as null", ", ".join(undefined))
    traits = [j for j, n in enumerate(label_names) if n in BIG_FIVE] or list(range(len(label_names)))
    out["mean_acc"] = float(1.0 - abs_err[traits].mean())
    out["mae"] = float(abs_err.mean())
    out["pearson_r"] = float(np.mean(rs)) if rs else None
    return out


def sentiment_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict:
    """MOSI / MOSEI sentiment (labels in [-3, 3]) with MMSA's definitions and names (thuiar/MMSA,
    ``src/MMSA/utils/metricsTop.py``, ``MetricsTop.__eval_mosei_regression``, also used for MOSI):

    * ``Has0_acc_2`` / ``Has0_F1_score``: negative (< 0) vs non-negative (>= 0), all clips;
    * ``Non0_acc_2`` / ``Non0_F1_score``: negative (< 0) vs positive (> 0), clips with ``y_true == 0`` left out
      (``None`` if every clip is neutral);
    * ``Mult_acc_5`` / ``Mult_acc_7``: both sides clipped to [-2, 2] / [-3, 3] and rounded (``np.round``, half
      to even, as MMSA), then compared;
    * ``MAE``, ``Corr`` (Pearson; ``None`` where undefined, MMSA gives NaN). F1 is scikit-learn's weighted F1.

    Unlike MMSA, values are not rounded to 4 decimals. ``y_true`` / ``y_pred``: ``[N]`` or ``[N, 1]``.
    """
    y_true, y_pred = _single_series(y_true, "labels"), _single_series(y_pred, "predictions")
    if y_true.shape != y_pred.shape or len(y_true) == 0:
        raise ValueError(f"labels {y_true.shape} / predictions {y_pred.shape} must be the same non-empty length")
    has0_true, has0_pred = y_true >= 0, y_pred >= 0
    nonzero = y_true != 0
    non0_true, non0_pred = y_true[nonzero] > 0, y_pred[nonzero] > 0
    out = {
        "Has0_acc_2": float(accuracy_score(has0_true, has0_pred)),
        "Has0_F1_score": float(f1_score(has0_true, has0_pred, average="weighted", zero_division=0)),
        "Non0_acc_2": float(accuracy_score(non0_true, non0_pred)) if nonzero.any() else None,
        "Non0_F1_score": (float(f1_score(non0_true, non0_pred, average="weighted", zero_division=0))
                          if nonzero.any() else None),
    }
    for classes, bound in ((5, 2.0), (7, 3.0)):
        rounded_true = np.round(np.clip(y_true, -bound, bound))
        rounded_pred = np.round(np.clip(y_pred, -bound, bound))
        out[f"Mult_acc_{classes}"] = float(np.mean(rounded_true == rounded_pred))
    out["MAE"] = float(np.abs(y_true - y_pred).mean())
    out["Corr"] = pearson_r(y_true, y_pred)
    return out


def _single_series(values: np.ndarray, what: str) -> np.ndarray:
    values = np.asarray(values, np.float64)
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim != 1:
        raise ValueError(f"sentiment {what} must be [N] or [N, 1], got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise ValueError(f"sentiment {what} contain NaN or inf")
    return values


def classification_metrics(y_true: np.ndarray, probs_or_pred: np.ndarray, classes: list[str]) -> dict:
    """``accuracy``, ``macro_f1``, ``weighted_f1`` and ``uar`` (unweighted average recall = balanced accuracy:
    the mean recall over the classes present in ``y_true``).

    ``y_true``: ``[N]`` or ``[N, 1]`` class indices (floats holding integers); ``probs_or_pred``: ``[N, C]``
    class scores (argmax taken, ties to the lowest index) or ``[N]`` / ``[N, 1]`` class indices. F1 follows
    scikit-learn: macro over the classes present in ``y_true`` or the predictions, a class never predicted
    scores 0.
    """
    n_classes = len(classes)
    if n_classes < 2:
        raise ValueError(f"classification needs at least two classes, got {list(classes)}")
    truth = check_class_indices(y_true, n_classes)
    pred = np.asarray(probs_or_pred)
    if pred.ndim == 2 and pred.shape[1] == n_classes:
        if not np.all(np.isfinite(pred)):
            raise ValueError("class scores contain NaN or inf")
        pred = class_indices(pred)
    else:
        pred = check_class_indices(pred, n_classes)
    if len(pred) != len(truth) or len(truth) == 0:
        raise ValueError(f"{len(truth)} labels / {len(pred)} predictions must be the same non-empty length")
    return {
        "accuracy": float(accuracy_score(truth, pred)),
        "macro_f1": float(f1_score(truth, pred, average="macro", zero_division=0)),
        "weighted_f1": float(f1_score(truth, pred, average="weighted", zero_division=0)),
        "uar": float(np.mean([np.mean(pred[truth == c] == c) for c in np.unique(truth)])),
    }


def task_metrics(task: str, y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str],
                 classes: list[str] | None = None) -> dict:
    """The metrics of a task: regression -> :func:`sentiment_metrics` when the one label is ``sentiment``
    (MOSI / MOSEI), else :func:`regression_metrics` (First Impressions); classification ->
    :func:`classification_metrics` over ``classes``."""
    if task == "regression":
        if list(label_names) == ["sentiment"]:
            return sentiment_metrics(y_true, y_pred)
        return regression_metrics(y_true, y_pred, label_names)
    if task == "classification":
        if not classes:
            raise ValueError("classification metrics need the class names")
        return classification_metrics(y_true, y_pred, classes)
    raise ValueError(f"unknown task {task!r}; valid values: {', '.join(TASKS)}")


def prediction_metrics(predictions, values: np.ndarray) -> dict:
    """:func:`task_metrics` of ``values`` for the clips of ``predictions`` (a :class:`remodiff.results.Predictions`:
    its task, labels, label names and classes)."""
    return task_metrics(predictions.task, predictions.labels, values, predictions.label_names,
                        predictions.classes or None)


def aggregate_predictions(task: str, predictions: list[np.ndarray]) -> np.ndarray:
    """One prediction from K stochastic ones (e.g. a fuser fed K reconstructions of the same clips).

    Regression: the mean. Classification (each ``[N, C]`` class scores): the share of the K samples whose argmax
    is each class, ``[N, C]``; its argmax (:func:`remodiff.tasks.class_indices`) is the majority vote, a tie
    going to the lowest class index.
    """
    if not predictions:
        raise ValueError("no predictions to aggregate")
    stacked = np.stack([np.asarray(p, np.float64) for p in predictions])
    if task == "regression":
        return stacked.mean(axis=0)
    if task == "classification":
        if stacked.ndim != 3:
            raise ValueError(f"classification predictions must be [N, C] class scores, got {stacked.shape[1:]}")
        n_classes = stacked.shape[2]
        votes = np.stack([np.eye(n_classes)[class_indices(p)] for p in stacked])  # [K, N, C] one-hot
        return votes.mean(axis=0)
    raise ValueError(f"unknown task {task!r}; valid values: {', '.join(TASKS)}")


# The metric a task is judged by first (First Impressions, MOSI / MOSEI sentiment, classification): what
# `metric: auto` means in params.yaml.
HEADLINE_METRICS = ("mean_acc", "Has0_acc_2", "accuracy")


def metric_names(task: str, label_names: list[str]) -> list[str]:
    """The keys :func:`task_metrics` gives for ``task`` and ``label_names``, found by scoring two dummy clips (so
    they cannot drift from what the metrics compute)."""
    if task == "classification":
        return sorted(classification_metrics(np.array([0, 1]), np.eye(2), ["a", "b"]))
    labels = np.array([[0.0] * len(label_names), [1.0] * len(label_names)])
    return sorted(task_metrics(task, labels, labels[::-1], label_names))


def headline_metric(task: str, label_names: list[str]) -> str:
    names = metric_names(task, label_names)
    return next(k for k in HEADLINE_METRICS if k in names)


AUTO = "auto"  # compare.metric / report.metric: the task's headline metric


def resolve_metric(task: str, label_names: list[str], metric: str, key: str = "metric") -> str:
    """``metric`` (``auto``: the task's headline, e.g. ``mean_acc`` for First Impressions, ``Has0_acc_2`` for
    MOSI / MOSEI sentiment, ``accuracy`` for classification) after checking that the task's metrics have it."""
    names = metric_names(task, list(label_names))
    if metric == AUTO:
        return headline_metric(task, list(label_names))
    if metric not in names:
        raise SettingError(key, f"{metric!r} is not a metric of this {task} dataset (labels "
                                f"{', '.join(label_names)})", [AUTO, *names])
    return metric



def metric_of_results(results: dict, setting: str, key: str) -> str:
    """The metric a table or figure of ``results`` (a downstream.json: ``complete`` holds every metric) shows:
    ``setting``, or for ``auto`` the headline metric among them."""
    names = sorted(k for k in results.get("complete", {}) if not k.endswith("_ci95"))
    if setting == AUTO:
        return next((k for k in HEADLINE_METRICS if k in names), names[0] if names else AUTO)
    if setting not in names:
        raise SettingError(key, f"{setting!r} is not among the metrics of this run", [AUTO, *names])
    return setting


LOWER_IS_BETTER = ("mae", "MAE")


def higher_is_better(metric: str) -> bool:
    return metric not in LOWER_IS_BETTER


def clip_scores(task: str, metric: str, y_true: np.ndarray, y_pred: np.ndarray, label_names: list[str],
                classes: list[str] | None = None) -> np.ndarray | None:
    """Per-clip terms whose mean is ``metric`` (accuracies, MAE, ``<label>_acc``), so a bootstrap can resample
    clips cheaply; None for metrics that are not a mean over clips (F1, UAR, Pearson r)."""
    if task == "classification":
        if metric != "accuracy":
            return None
        return (class_indices(np.asarray(y_pred)) == check_class_indices(y_true, len(classes))).astype(float)
    y_true, y_pred = np.asarray(y_true, np.float64), np.asarray(y_pred, np.float64)
    if list(label_names) == ["sentiment"]:
        t, p = y_true.reshape(-1), y_pred.reshape(-1)
        bounds = {"Mult_acc_5": 2.0, "Mult_acc_7": 3.0}
        if metric == "Has0_acc_2":
            return ((t >= 0) == (p >= 0)).astype(float)
        if metric == "MAE":
            return np.abs(t - p)
        if metric in bounds:
            b = bounds[metric]
            return (np.round(np.clip(t, -b, b)) == np.round(np.clip(p, -b, b))).astype(float)
        return None
    abs_err = np.abs(y_true - y_pred)
    traits = [j for j, n in enumerate(label_names) if n in BIG_FIVE] or list(range(len(label_names)))
    if metric == "mean_acc":
        return 1.0 - abs_err[:, traits].mean(axis=1)
    if metric == "mae":
        return abs_err.mean(axis=1)
    per_label = {f"{n}_acc": j for j, n in enumerate(label_names)}
    return 1.0 - abs_err[:, per_label[metric]] if metric in per_label else None
