"""The evaluation matrix: upper bound, lower bound, reconstructions, over seeds with 95 % confidence intervals."""
from __future__ import annotations

import itertools
import logging
import math
from typing import Callable

import numpy as np
from scipy import stats

from remodiff.store import FeatureSet

log = logging.getLogger(__name__)


def modality_subsets(modalities: list[str]) -> list[tuple[str, ...]]:
    """Every non-empty subset, the full set included (the lower-bound fusers, one per subset)."""
    return [c for k in range(1, len(modalities) + 1) for c in itertools.combinations(modalities, k)]


def subset_key(subset) -> str:
    """A canonical name for a set of modalities (sorted: HDF5 lists groups alphabetically)."""
    return "+".join(sorted(subset))


def lower_bound_predict(fusers: dict[str, object], masked: FeatureSet, floor: np.ndarray) -> np.ndarray:
    """Route each clip to the fuser trained on exactly the modalities it has (available in any segment).

    Missing segments of a present modality stay zero = the training mean after the fuser's z-scoring. A clip
    with nothing left (a mask on top of natural missingness, e.g. no transcript) gets the training ``floor``
    prediction: with no input, the best a model can do is the training-set baseline.
    """
    present = np.stack([masked.available[m].any(axis=1) for m in masked.modalities], axis=1)  # [N, M]
    out = np.array(floor, dtype=np.float32, copy=True)  # [N, L] values or [N, C] class probabilities
    empty = int((~present.any(axis=1)).sum())
    if empty:
        log.info("lower bound: %d of %d clips have no modality left; they get the training floor", empty, len(out))
    for pattern in np.unique(present, axis=0):
        if not pattern.any():
            continue
        rows = np.nonzero((present == pattern).all(axis=1))[0]
        key = subset_key(m for m, p in zip(masked.modalities, pattern) if p)
        if key not in fusers:
            raise ValueError(f"no lower-bound fuser for modalities {key!r}: clips {rows.tolist()[:5]} have none")
        out[rows] = fusers[key].predict(masked.rows(rows).subset(key.split("+")))
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


def hierarchical_bootstrap(differences: list[np.ndarray | Callable[[np.ndarray], float]], sizes: list[int],
                           resamples: int, seed: int) -> np.ndarray:
    """Resampled mean metric differences of a paired comparison over runs and clips.

    ``differences[r]`` is run ``r``'s difference of the two models: per clip (an array, for metrics that are a mean
    over clips) or ``clips -> difference on those clips`` (indices, with repeats: F1, r, recomputed), ``sizes[r]``
    that run's number of clips. Each resample draws runs with replacement, then clips within each drawn run with
    replacement (the same clips for both models: paired), and averages the drawn runs' differences. Returns
    ``resamples`` values; their 2.5 and 97.5 percentiles bound the 95 % interval. Per-clip arrays are resampled all
    at once (the comparison table makes hundreds of these).
    """
    if not differences or len(differences) != len(sizes) or min(sizes) < 1:
        raise ValueError(f"a bootstrap needs runs with clips, got clip counts {sizes}")
    rng = np.random.default_rng(seed)
    if all(isinstance(d, np.ndarray) for d in differences):
        drawn = rng.integers(len(sizes), size=(resamples, len(sizes)))
        run_means = np.empty(drawn.shape)
        for r, delta in enumerate(differences):
            where = drawn == r
            run_means[where] = delta[rng.integers(sizes[r], size=(int(where.sum()), sizes[r]))].mean(axis=1)
        return run_means.mean(axis=1)
    out = np.empty(resamples)
    for b in range(resamples):
        drawn = rng.integers(len(sizes), size=len(sizes))
        out[b] = np.mean([differences[r](rng.integers(sizes[r], size=sizes[r])) for r in drawn])
    return out
