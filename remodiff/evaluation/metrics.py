"""Which downstream metric a setting means (``compare.metric``, ``report.metric``: a name or ``auto``, the task's
headline) and the metrics of a run's predictions. The metrics themselves are the task's
(:class:`remodiff.tasks.MetricFamily`)."""
from __future__ import annotations

import numpy as np

from remodiff.registry import SettingError
from remodiff.tasks import METRIC_FAMILIES, Task


def prediction_metrics(predictions, values: np.ndarray) -> dict:
    """The metrics of ``values`` for the clips of ``predictions`` (a :class:`remodiff.results.Predictions`: its
    task, labels, label names and classes)."""
    return predictions.metrics.compute(predictions.labels, values)


AUTO = "auto"  # compare.metric / report.metric: the task's headline metric


def resolve_metric(task: Task, label_names: list[str], metric: str, key: str = "metric") -> str:
    """``metric`` (``auto``: the headline of the task's metric family, e.g. ``mean_acc`` for First Impressions,
    ``Has0_acc_2`` for MOSI / MOSEI sentiment, ``accuracy`` for classification) after checking that the family has
    it."""
    family = task.metrics(label_names)
    if metric == AUTO:
        return family.headline
    if metric not in family.names():
        raise SettingError(key, f"{metric!r} is not a metric of this {task.name} dataset (labels "
                                f"{', '.join(label_names)})", [AUTO, *family.names()])
    return metric


def metric_of_results(results: dict, setting: str, key: str) -> str:
    """The metric a table or figure of ``results`` (a downstream.json: ``complete`` holds every metric) shows:
    ``setting``, or for ``auto`` the headline among them (of the family that computed them)."""
    names = sorted(k for k in results.get("complete", {}) if not k.endswith("_ci95"))
    if setting == AUTO:
        return next((f.headline for f in METRIC_FAMILIES if f.headline in names), names[0] if names else AUTO)
    if setting not in names:
        raise SettingError(key, f"{setting!r} is not among the metrics of this run", [AUTO, *names])
    return setting
