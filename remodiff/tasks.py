"""The task a dataset declares, how its predictions are scored, and its metric family.

A feature set declares its task in ``attrs["task"]``: ``"regression"`` (the default; labels ``[N, L]`` floats) or
``"classification"`` (labels ``[N, 1]`` holding the class index as a float; ``attrs["classes"]`` names the classes).
Each kind is one :class:`Task` subclass, registered in :data:`TASKS` under that name: its labels' checks, the
validation score fusers early-stop on, how K stochastic predictions become one, the predict-the-training-set floor
and its :class:`MetricFamily` (the downstream metrics, their headline, direction and per-clip terms). Fusers and
evaluation share it without importing each other.

Metric families: First Impressions (and any regression but MOSI / MOSEI's): per-label accuracy = 1 - MAE, "mean
accuracy" over the Big Five; MOSI / MOSEI sentiment: MMSA's metric set; classification: accuracy, F1, UAR.
"""
from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from sklearn.metrics import accuracy_score, f1_score

from remodiff.registry import Registry

log = logging.getLogger(__name__)
BIG_FIVE = ("extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness")


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> float | None:
    """Pearson correlation; ``None`` (JSON null) when either side is constant, where r is undefined."""
    t, p = y_true - y_true.mean(), y_pred - y_pred.mean()
    denom = np.sqrt((t**2).sum() * (p**2).sum())
    if denom == 0:
        return None
    return float((t * p).sum() / denom)


def mean_acc_columns(label_names: list[str]) -> list[int]:
    """The labels ``mean_acc`` averages: the Big Five traits present, all labels if none is."""
    return [j for j, n in enumerate(label_names) if n in BIG_FIVE] or list(range(len(label_names)))


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
    out["mean_acc"] = float(1.0 - abs_err[mean_acc_columns(label_names)].mean())
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


def check_class_indices(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """``[N]`` int class indices from ``[N]`` or ``[N, 1]`` float labels; anything else is refused."""
    labels = np.asarray(labels)
    if labels.ndim == 2 and labels.shape[1] == 1:
        labels = labels[:, 0]
    if labels.ndim != 1:
        raise ValueError(f"class labels must be [N] or [N, 1] class indices, got shape {labels.shape}")
    valid = np.isfinite(labels) & (labels == np.round(labels)) & (labels >= 0) & (labels < n_classes)
    if not valid.all():
        bad = labels[~valid][:5].tolist()
        raise ValueError(f"class labels must be integers in [0, {n_classes}); found {bad}")
    return labels.astype(np.int64)


def class_indices(predictions: np.ndarray) -> np.ndarray:
    """``[N]`` predicted class index from ``[N, C]`` scores (probabilities, vote shares); ties go to the lowest
    index (``np.argmax`` returns the first maximum)."""
    predictions = np.asarray(predictions)
    if predictions.ndim != 2:
        raise ValueError(f"class scores must be [N, C], got shape {predictions.shape}")
    return predictions.argmax(axis=1)


class MetricFamily(abc.ABC):
    """What a task's predictions are scored by: :meth:`compute`'s metrics, the ``headline`` (the one a task is judged
    by first: what ``metric: auto`` means), the metrics where lower is better, and :meth:`per_clip` terms."""

    headline: ClassVar[str]
    lower_is_better: ClassVar[tuple[str, ...]] = ()

    @abc.abstractmethod
    def compute(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict:
        """Every metric of predictions ``y_pred`` against labels ``y_true``."""

    @abc.abstractmethod
    def per_clip(self, metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray | None:
        """Per-clip terms whose mean is ``metric``, so a bootstrap can resample clips cheaply; None for metrics that
        are not a mean over clips (F1, UAR, Pearson r)."""

    @abc.abstractmethod
    def two_clips(self) -> np.ndarray:
        """Labels of two different clips (for :meth:`names`)."""

    def names(self) -> list[str]:
        """The keys :meth:`compute` gives, found by scoring two dummy clips (so they cannot drift from it)."""
        labels = self.two_clips()
        return sorted(self.compute(labels, labels[::-1]))


class TraitMetrics(MetricFamily):
    """Regression labels scored per label (First Impressions' traits): :func:`regression_metrics`."""

    headline = "mean_acc"
    lower_is_better = ("mae",)

    def __init__(self, label_names: list[str]):
        self.label_names = list(label_names)

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict:
        return regression_metrics(y_true, y_pred, self.label_names)

    def per_clip(self, metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray | None:
        abs_err = np.abs(np.asarray(y_true, np.float64) - np.asarray(y_pred, np.float64))
        if metric == "mean_acc":
            return 1.0 - abs_err[:, mean_acc_columns(self.label_names)].mean(axis=1)
        if metric == "mae":
            return abs_err.mean(axis=1)
        per_label = {f"{n}_acc": j for j, n in enumerate(self.label_names)}
        return 1.0 - abs_err[:, per_label[metric]] if metric in per_label else None

    def two_clips(self) -> np.ndarray:
        return np.array([[0.0] * len(self.label_names), [1.0] * len(self.label_names)])


class SentimentMetrics(MetricFamily):
    """MOSI / MOSEI's one ``sentiment`` label: :func:`sentiment_metrics`."""

    headline = "Has0_acc_2"
    lower_is_better = ("MAE",)
    bounds = {"Mult_acc_5": 2.0, "Mult_acc_7": 3.0}  # the range each multi-class accuracy clips to

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict:
        return sentiment_metrics(y_true, y_pred)

    def per_clip(self, metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray | None:
        t, p = np.asarray(y_true, np.float64).reshape(-1), np.asarray(y_pred, np.float64).reshape(-1)
        if metric == "Has0_acc_2":
            return ((t >= 0) == (p >= 0)).astype(float)
        if metric == "MAE":
            return np.abs(t - p)
        if metric in self.bounds:
            b = self.bounds[metric]
            return (np.round(np.clip(t, -b, b)) == np.round(np.clip(p, -b, b))).astype(float)
        return None

    def two_clips(self) -> np.ndarray:
        return np.array([[0.0], [1.0]])


class ClassificationMetrics(MetricFamily):
    """Class labels: :func:`classification_metrics` over the classes of ``task`` (a :class:`Classification`)."""

    headline = "accuracy"

    def __init__(self, task: "Classification"):
        self.task = task

    def compute(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict:
        return classification_metrics(y_true, y_pred, list(self.task.classes))

    def per_clip(self, metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray | None:
        return self.task.clip_scores(y_pred, y_true) if metric == "accuracy" else None

    def two_clips(self) -> np.ndarray:
        return np.array([[0.0], [1.0]])


METRIC_FAMILIES = (TraitMetrics, SentimentMetrics, ClassificationMetrics)


def higher_is_better(metric: str) -> bool:
    """Whether a larger ``metric`` is better, in whichever family computes it (an error, MAE: no)."""
    return not any(metric in family.lower_is_better for family in METRIC_FAMILIES)


TASKS: Registry[type["Task"]] = Registry("task")


class Task(abc.ABC):
    """A task kind (a subclass, registered in :data:`TASKS` under its ``name``) with its class names, if any."""

    name: ClassVar[str] = ""  # set by TASKS.register
    classes: tuple[str, ...] = ()
    #: its models predict class scores ``[N, C]`` rather than the labels' values ``[N, L]``
    is_classification: ClassVar[bool] = False

    @staticmethod
    def of(kind: str, classes=()) -> "Task":
        """The task ``kind`` (a name in :data:`TASKS`) with ``classes`` where it takes them."""
        return TASKS.build(kind, **TASKS.settings_from(kind, {"classes": tuple(classes or ())}))

    @staticmethod
    def from_attrs(attrs: dict) -> "Task":
        """The task a feature set declares in its ``attrs``."""
        return Task.of(attrs.get("task", "regression"), attrs.get("classes"))

    def check_labels(self, labels: np.ndarray) -> None:
        """Refuse labels that do not fit the task (not ``[N, L]``, non-finite values)."""
        if labels.ndim != 2:
            raise ValueError(f"labels must be [N, L], got shape {labels.shape}")
        if not np.all(np.isfinite(labels)):
            raise ValueError("labels contain NaN or inf")

    @abc.abstractmethod
    def targets(self, labels: np.ndarray) -> np.ndarray:
        """What a model is fitted to: the labels ``[N, L]``, or class indices ``[N]``."""

    @abc.abstractmethod
    def clip_scores(self, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """``[N]`` per-clip validation scores (higher is better)."""

    def score(self, predictions: np.ndarray, labels: np.ndarray) -> float:
        """The one validation score fusers early-stop on and are selected by (higher is better): the mean of
        :meth:`clip_scores`, i.e. the accuracy, or minus the mean absolute error (every label weighs the same)."""
        return float(self.clip_scores(predictions, labels).mean())

    def aggregate(self, predictions: list[np.ndarray]) -> np.ndarray:
        """One prediction from K stochastic ones (e.g. a fuser fed K reconstructions of the same clips)."""
        if not predictions:
            raise ValueError("no predictions to aggregate")
        return self.combine(np.stack([np.asarray(p, np.float64) for p in predictions]))

    @abc.abstractmethod
    def combine(self, stacked: np.ndarray) -> np.ndarray:
        """:meth:`aggregate` of K predictions stacked ``[K, N, P]``."""

    @abc.abstractmethod
    def floor(self, train_labels: np.ndarray, n: int) -> np.ndarray:
        """The predict-the-training-set baseline for ``n`` clips, from the training labels."""

    @abc.abstractmethod
    def metrics(self, label_names: list[str]) -> MetricFamily:
        """The metric family of this task with these labels."""


@TASKS.register("regression")
@dataclass(frozen=True)
class Regression(Task):
    """Labels ``[N, L]`` floats, predicted as values."""

    def targets(self, labels: np.ndarray) -> np.ndarray:
        return labels

    def clip_scores(self, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Minus the clip's mean absolute error over its labels."""
        return -np.abs(np.asarray(predictions) - np.asarray(labels)).mean(axis=1, dtype=np.float64)

    def combine(self, stacked: np.ndarray) -> np.ndarray:
        """The mean."""
        return stacked.mean(axis=0)

    def floor(self, train_labels: np.ndarray, n: int) -> np.ndarray:
        """The training label mean."""
        return np.broadcast_to(train_labels.mean(axis=0), (n, train_labels.shape[1])).astype(np.float32)

    def metrics(self, label_names: list[str]) -> MetricFamily:
        """MOSI / MOSEI's family for their one ``sentiment`` label, else per-label accuracies."""
        return SentimentMetrics() if list(label_names) == ["sentiment"] else TraitMetrics(label_names)


@TASKS.register("classification")
@dataclass(frozen=True)
class Classification(Task):
    """Labels ``[N, 1]`` = the class index into ``classes``; predictions are class scores ``[N, C]``
    (:func:`class_indices` gives the class)."""

    classes: tuple[str, ...]
    is_classification: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if len(self.classes) < 2:
            raise ValueError(f"a classification task needs at least two class names, got {list(self.classes)}")

    def check_labels(self, labels: np.ndarray) -> None:
        """Also refuse class indices out of range or fractional."""
        super().check_labels(labels)
        check_class_indices(labels, len(self.classes))

    def targets(self, labels: np.ndarray) -> np.ndarray:
        return check_class_indices(labels, len(self.classes))

    def clip_scores(self, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """1 / 0 for a right / wrong :func:`class_indices` of the ``[N, C]`` class scores."""
        return (class_indices(np.asarray(predictions)) == self.targets(labels)).astype(np.float64)

    def combine(self, stacked: np.ndarray) -> np.ndarray:
        """The share of the K samples whose argmax is each class, ``[N, C]``; its argmax (:func:`class_indices`) is
        the majority vote, a tie going to the lowest class index."""
        if stacked.ndim != 3:
            raise ValueError(f"classification predictions must be [N, C] class scores, got {stacked.shape[1:]}")
        n_classes = stacked.shape[2]
        votes = np.stack([np.eye(n_classes)[class_indices(p)] for p in stacked])  # [K, N, C] one-hot
        return votes.mean(axis=0)

    def floor(self, train_labels: np.ndarray, n: int) -> np.ndarray:
        """The majority class, one-hot."""
        counts = np.bincount(self.targets(train_labels), minlength=len(self.classes))
        return np.broadcast_to(np.eye(len(self.classes), dtype=np.float32)[counts.argmax()], (n, len(self.classes)))

    def metrics(self, label_names: list[str]) -> MetricFamily:
        return ClassificationMetrics(self)


def one_standard_error(clip_scores: dict[str, np.ndarray]) -> str:
    """The one-standard-error rule (Breiman et al., CART; Hastie et al., ESL 7.10) over candidates' per-clip
    validation scores (higher is better), listed simplest first: the first candidate whose mean score is within one
    standard error (over the clips) of the best mean. On a few dozen validation clips the plain best is often a
    lucky draw; this keeps the simpler candidate unless another is clearly better."""
    means = {name: float(np.mean(scores)) for name, scores in clip_scores.items()}
    best = max(means, key=means.get)  # the first of the best
    scores = np.asarray(clip_scores[best], np.float64)
    error = float(scores.std(ddof=1) / np.sqrt(len(scores))) if len(scores) > 1 else 0.0
    return next(name for name, mean in means.items() if mean >= means[best] - error)
