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

The comparison trains such a fuser per imputer with ``compare.fuser: own`` (:mod:`remodiff.pipeline.compare`).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from remodiff.evaluation.masks import Mask, check_probability, clip_rng, slot_mask
from remodiff.store import FeatureSet, concatenate



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
        raise ValueError(f"compare.own.folds: cross-fitting needs at least 2 folds, got {folds}")
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
