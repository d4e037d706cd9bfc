"""Downstream metrics. First Impressions: per-trait accuracy = 1 - MAE, "mean accuracy" over the Big Five."""
from __future__ import annotations

import logging

import numpy as np

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
