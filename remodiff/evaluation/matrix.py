"""The evaluation matrix: upper bound, lower bound, reconstructions, over seeds with 95 % confidence intervals."""
from __future__ import annotations

import itertools
import math

import numpy as np
from scipy import stats

from remodiff.store import FeatureSet


def modality_subsets(modalities: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, the full set included (the lower-bound fusers, one per subset)."""
    return [c for k in range(1, len(modalities) + 1) for c in itertools.combinations(modalities, k)]


def subset_key(subset) -> str:
    """A canonical name for a set of modalities (sorted: HDF5 lists groups alphabetically)."""
    return "+".join(sorted(subset))


def lower_bound_predict(fusers: dict[str, object], masked: FeatureSet) -> np.ndarray:
    """Route each clip to the fuser trained on exactly the modalities it has (available in any segment).

    Missing segments of a present modality stay zero = the training mean after the fuser's z-scoring.
    """
    present = np.stack([masked.available[m].any(axis=1) for m in masked.modalities], axis=1)  # [N, M]
    out: np.ndarray | None = None  # shaped by the first prediction: [N, L] values or [N, C] class probabilities
    for pattern in np.unique(present, axis=0):
        rows = np.nonzero((present == pattern).all(axis=1))[0]
        key = subset_key(m for m, p in zip(masked.modalities, pattern) if p)
        if key not in fusers:
            raise ValueError(f"no lower-bound fuser for modalities {key!r}: clips {rows.tolist()[:5]} have none")
        sub = FeatureSet([masked.ids[i] for i in rows], {m: masked.features[m][rows] for m in masked.modalities},
                         {m: masked.available[m][rows] for m in masked.modalities}, masked.labels[rows],
                         masked.label_names)
        prediction = fusers[key].predict(sub.subset(key.split("+")))
        if out is None:
            out = np.zeros((len(masked), prediction.shape[1]), np.float32)
        out[rows] = prediction
    return out


def ci95(values: list[float]) -> float | None:
    """Half-width of the 95 % confidence interval of the mean (t distribution); None for fewer than 2 values."""
    if len(values) < 2:
        return None
    sem = float(np.std(values, ddof=1)) / math.sqrt(len(values))
    return float(stats.t.ppf(0.975, len(values) - 1) * sem)


def aggregate(runs: list[dict]) -> dict:
    """Mean over seeds of every numeric leaf, plus ``<name>_ci95`` beside it; nested dicts recurse."""
    out: dict = {}
    for key, first in runs[0].items():
        if isinstance(first, dict):
            out[key] = aggregate([r[key] for r in runs])
            continue
        values = [r[key] for r in runs if r[key] is not None]
        out[key] = float(np.mean(values)) if values else None
        out[f"{key}_ci95"] = ci95(values)
    return out
