"""k-nearest-neighbour imputation: a clip's missing slots get the mean of its k nearest training clips there.

Distances use only what the clip has: its available (modality, segment) slots, z-scored with training
statistics and flattened. Each slot block is divided by sqrt(D) of its modality so every available slot
weighs the same whatever the modality's width. Clips differ in what they have, so test clips are grouped
by availability pattern and one scikit-learn ``NearestNeighbors`` index is built per pattern over the same
slots of the training clips (a training slot that is itself missing counts as the training mean, 0).
A neighbour lacking the slot being filled is skipped in the mean; if all k lack it, or the clip has nothing
available to compare, the slot gets the training mean at that segment position.
"""
from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from remodiff.imputers.base import IMPUTERS, Imputer, check_positive_int, segment_means
from remodiff.scaling import Standardiser, masked_mean
from remodiff.store import FeatureSet


@IMPUTERS.register("knn")
class KNNImputer(Imputer):
    name = "knn"

    def __init__(self, k: int = 5):
        check_positive_int("knn", "k", k)
        super().__init__(k=k)

    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        self.modalities = train.modalities
        self.dims = {m: train.features[m].shape[-1] for m in self.modalities}
        self.scaler = Standardiser.fit(train)
        self.reference = {m: train.features[m].copy() for m in self.modalities}
        self.reference_available = {m: train.available[m].copy() for m in self.modalities}
        self.keys = self._slot_keys(train)
        self.means = segment_means(train)

    def _slot_keys(self, data: FeatureSet) -> np.ndarray:
        """``[N, sum_m S * D_m]``: weighted z-scores of every slot, modality-major then segment."""
        parts = [self.scaler.transform(data, m) / np.sqrt(self.dims[m]) for m in self.modalities]
        return np.concatenate([p.reshape(len(data), -1) for p in parts], axis=1)

    def _slot_columns(self, available: np.ndarray) -> np.ndarray:
        """Key columns of the available slots of one pattern ``available [M, S]``."""
        return np.concatenate([np.repeat(available[i], self.dims[m]) for i, m in enumerate(self.modalities)])

    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {m: np.broadcast_to(self.means[m], data.features[m].shape).copy() for m in self.modalities}
        patterns = np.stack([data.available[m] for m in self.modalities], axis=1)  # [N, M, S]
        unique, group = np.unique(patterns.reshape(len(data), -1), axis=0, return_inverse=True)
        keys = self._slot_keys(data)
        k = min(self.params["k"], len(self.keys))
        for g, pattern in enumerate(unique):
            columns = self._slot_columns(pattern.reshape(patterns.shape[1:]))
            if not columns.any():
                continue  # nothing to compare: training mean
            rows = np.flatnonzero(group.ravel() == g)
            index = NearestNeighbors(n_neighbors=k).fit(self.keys[:, columns])
            _, neighbours = index.kneighbors(keys[rows][:, columns])  # [n, k]
            for m in self.modalities:
                x, a = self.reference[m][neighbours], self.reference_available[m][neighbours]  # [n,k,S,D], [n,k,S]
                mean = masked_mean(x, a, axis=1)                                              # [n, S, D]
                out[m][rows] = np.where(a.any(axis=1)[..., None], mean, self.means[m][None])
        return out
