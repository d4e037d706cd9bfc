"""The task a dataset declares, and how predictions become class indices.

A feature set declares its task in ``attrs["task"]``: ``"regression"`` (the default; labels ``[N, L]`` floats) or
``"classification"`` (labels ``[N, 1]`` holding the class index as a float; ``attrs["classes"]`` names the classes).
A leaf module (numpy only), so fusers and metrics share it without importing each other.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TASKS = ("regression", "classification")


@dataclass(frozen=True)
class Task:
    kind: str = "regression"
    classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in TASKS:
            raise ValueError(f"unknown task {self.kind!r}; valid values: {', '.join(TASKS)}")
        if self.kind == "classification" and len(self.classes) < 2:
            raise ValueError(f"a classification task needs at least two class names, got {list(self.classes)}")

    @classmethod
    def from_attrs(cls, attrs: dict) -> "Task":
        kind = attrs.get("task", "regression")
        return cls(kind, tuple(attrs.get("classes") or ()) if kind == "classification" else ())

    @property
    def is_classification(self) -> bool:
        return self.kind == "classification"

    def check_labels(self, labels: np.ndarray) -> None:
        """Refuse labels that do not fit the task (non-finite values; class indices out of range or fractional)."""
        if labels.ndim != 2:
            raise ValueError(f"labels must be [N, L], got shape {labels.shape}")
        if not np.all(np.isfinite(labels)):
            raise ValueError("labels contain NaN or inf")
        if self.is_classification:
            check_class_indices(labels, len(self.classes))


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


def clip_scores(task: Task, predictions: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``[N]`` per-clip validation scores (higher is better): 1 / 0 for a right / wrong :func:`class_indices` of
    ``[N, C]`` class scores, or minus the clip's mean absolute error over its ``[N, L]`` labels."""
    predictions = np.asarray(predictions)
    if task.is_classification:
        return (class_indices(predictions) == check_class_indices(labels, len(task.classes))).astype(np.float64)
    return -np.abs(predictions - np.asarray(labels)).mean(axis=1, dtype=np.float64)


def task_score(task: Task, predictions: np.ndarray, labels: np.ndarray) -> float:
    """The one validation score fusers early-stop on and are selected by (higher is better): the mean of
    :func:`clip_scores`, i.e. the accuracy, or minus the mean absolute error (every label weighs the same)."""
    return float(clip_scores(task, predictions, labels).mean())


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
