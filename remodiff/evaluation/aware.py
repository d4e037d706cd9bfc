"""Imputation-aware fusion: a fuser trained on the imputer's own reconstructions of randomly masked training clips.

The fuser trained on complete data never sees a reconstruction, so at test time it meets inputs off its training
distribution (a kNN average, a training mean, a generative sample). Here the training set is the complete clips
plus ``copies`` copies in which each clip loses each modality with probability ``p`` (:func:`drop_mask`, every
clip keeping one) and a frozen imputer fills the gaps (:func:`reconstructed_copies`). Only the clips that lost
something are added, so the complete data weighs as before. The imputer is used through its public API only
(``impute``; ``fit`` when cross-fitting) and is never updated by the fuser's loss: the two stay decoupled.

The main imputer has seen the training clips, so its reconstructions of them are optimistic (kNN finds the clip
itself among the neighbours). ``folds = k`` cross-fits instead: k imputers, each fitted without one fold,
reconstruct that fold (:func:`crossfit_imputers`); ``folds = 0`` uses the frozen main imputer.

At test time the K reconstructions of a stochastic imputer give K predictions: :func:`aggregate_samples` takes
their mean / majority vote (``plain``) or weighs each by its agreement with the others (``agreement``).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from remodiff.evaluation.masks import Mask, check_probability, clip_rng, slot_mask
from remodiff.evaluation.metrics import aggregate_predictions
from remodiff.store import FeatureSet, concatenate
from remodiff.tasks import class_indices

AGGREGATIONS = ("plain", "agreement")
STARTS = ("scratch",)  # `finetune` needs a fuser API that continues training; Fuser.fit always starts afresh


def drop_mask(data: FeatureSet, p: float, seed: int, copy: int = 0) -> Mask:
    """Each (clip, modality) the clip has dropped with probability ``p``; a clip that would lose all keeps one of
    its modalities, chosen at random. Draws depend only on (seed, copy, clip id), not on clip order."""
    check_probability("aware", p)
    mods = data.modalities
    present = np.stack([data.available[m].any(axis=1) for m in mods], axis=1)  # [N, M]
    keep = present.copy()
    for i, cid in enumerate(data.ids):
        rng = clip_rng(seed, "aware", str(copy), cid)
        drawn = rng.random(len(mods)) < p
        keep[i] &= ~drawn
        if present[i].any() and not keep[i].any():
            keep[i, rng.choice(np.flatnonzero(present[i]))] = True
    return slot_mask(data, keep)


def lost_something(data: FeatureSet, mask: Mask) -> np.ndarray:
    """``[N]`` bool: the clips that ``mask`` takes a modality slot from."""
    return np.stack([(data.available[m] & ~mask[m]).any(axis=1) for m in data.modalities], axis=1).any(axis=1)


Impute = Callable[[FeatureSet, np.random.Generator], FeatureSet]


def reconstructed_copies(data: FeatureSet, impute: Impute, p: float, copies: int, seed: int) -> FeatureSet:
    """``copies`` masked-and-reconstructed copies of ``data``, only the clips that lost something (their ids
    suffixed ``#aware<copy>``); ``impute(masked, rng)`` fills the gaps."""
    parts = []
    for copy in range(copies):
        mask = drop_mask(data, p, seed, copy)
        rows = np.flatnonzero(lost_something(data, mask))
        if not len(rows):
            continue
        masked = data.with_mask(mask).rows(rows)
        restored = impute(masked, np.random.default_rng([seed, copy]))
        restored.ids = [f"{cid}#aware{copy}" for cid in restored.ids]
        parts.append(restored)
    if not parts:
        return data.rows([])
    return concatenate(parts)


def fold_of(ids: list[str], folds: int, seed: int) -> np.ndarray:
    """``[N]`` fold index per clip, from a per-clip draw (so a clip's fold does not depend on the others)."""
    return np.array([clip_rng(seed, "aware-fold", cid).integers(folds) for cid in ids])


def crossfit_imputers(train: FeatureSet, val: FeatureSet | None, fit: Callable, folds: int,
                      seed: int) -> Impute:
    """An ``impute(masked, rng)`` for training clips where each clip is reconstructed by an imputer fitted
    without its fold: ``fit(train_part, val) -> imputer`` builds and fits one per fold."""
    if folds < 2:
        raise ValueError(f"aware.folds: cross-fitting needs at least 2 folds, got {folds}")
    assigned = fold_of(train.ids, folds, seed)
    fold = dict(zip(train.ids, assigned))
    imputers = [fit(train.rows(np.flatnonzero(assigned != k)), val) for k in range(folds)]

    def impute(masked: FeatureSet, rng: np.random.Generator) -> FeatureSet:
        unknown = [cid for cid in masked.ids if cid not in fold]
        if unknown:
            raise ValueError(f"cross-fitted imputers reconstruct training clips only, not {unknown[:3]}")
        folds_of_rows = np.array([fold[cid] for cid in masked.ids])
        out = None
        for k in np.unique(folds_of_rows):
            rows = np.flatnonzero(folds_of_rows == k)
            restored = imputers[k].impute(masked.rows(rows), rng)
            if out is None:
                out = {m: np.empty((len(masked),) + restored.features[m].shape[1:], np.float32)
                       for m in restored.modalities}
            for m in restored.modalities:
                out[m][rows] = restored.features[m]
        return FeatureSet(list(masked.ids), out, {m: np.ones_like(masked.available[m]) for m in masked.modalities},
                          masked.labels, list(masked.label_names), dict(masked.attrs))

    return impute


def aware_training_set(data: FeatureSet, impute: Impute, p: float, copies: int, seed: int) -> FeatureSet:
    """``data`` as given plus its reconstructed copies: what the aware fuser trains (and selects its epoch) on."""
    return concatenate([data, reconstructed_copies(data, impute, p, copies, seed)])


def training_imputer(imputer, fit: Callable, train: FeatureSet, val: FeatureSet | None, folds: int,
                     seed: int) -> Impute:
    """What reconstructs the masked training clips: the frozen main ``imputer`` (``folds = 0``) or ``folds``
    cross-fitted ones (:func:`crossfit_imputers`, each built and fitted by ``fit(train_part, val)``)."""
    if folds == 0:
        return imputer.impute
    return crossfit_imputers(train, val, fit, folds, seed)


def fit_aware(fuser, train: FeatureSet, val: FeatureSet | None, train_impute: Impute, val_impute: Impute, p: float,
              copies: int, seed: int):
    """Fit ``fuser`` (unfitted, public API) on complete + reconstructed training clips; its validation set (epoch
    selection) gets the same treatment with ``val_impute``, so the epoch kept is the best on that mix too."""
    fuser.fit(aware_training_set(train, train_impute, p, copies, seed),
              None if val is None else aware_training_set(val, val_impute, p, copies, seed))
    return fuser


def agreement_weights(stacked: np.ndarray) -> np.ndarray:
    """``[K, N]`` weights (summing to 1 per clip) of K predictions ``[K, N, L]``: the inverse of each one's
    distance to the K-mean, softened by the clip's median distance (scale-free, and no sample at the mean gets all
    the weight). Identical predictions get equal weights."""
    distance = np.abs(stacked - stacked.mean(axis=0)).sum(axis=2)  # [K, N], L1 (total variation for probabilities)
    soft = np.median(distance, axis=0) + 1e-12
    weights = 1.0 / (distance + soft)
    return weights / weights.sum(axis=0)


def aggregate_samples(task: str, predictions: list[np.ndarray], how: str) -> np.ndarray:
    """One prediction from the fuser's predictions on K reconstructions: ``plain`` = mean (regression) / majority
    vote (classification) as in the evaluate stage; ``agreement`` = the same with each sample weighted by its
    agreement with the others (:func:`agreement_weights`): a weighted mean, or a weighted vote returned as the
    weighted share of each class ``[N, C]``."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aware.aggregate: {how!r}; valid values: {', '.join(AGGREGATIONS)}")
    if how == "plain":
        return aggregate_predictions(task, predictions)
    stacked = np.stack([np.asarray(p, np.float64) for p in predictions])
    if stacked.ndim != 3:
        raise ValueError(f"predictions must be [N, L] values or [N, C] class scores, got {stacked.shape[1:]}")
    weights = agreement_weights(stacked)[..., None]  # [K, N, 1]
    if task == "classification":
        stacked = np.eye(stacked.shape[2])[class_indices(stacked.reshape(-1, stacked.shape[2]))].reshape(stacked.shape)
    return (weights * stacked).sum(axis=0)


def gap_closed(value: float | None, lower: float | None, upper: float | None) -> float | None:
    """Share of the lower -> upper bound gap that ``value`` closes (1 = the upper bound, 0 = the lower bound,
    negative = below it); None where a bound is missing or the gap is not positive."""
    if value is None or lower is None or upper is None or upper - lower <= 0:
        return None
    return (value - lower) / (upper - lower)
