"""k-nearest-neighbour imputation: a clip's missing slots get the mean of its k nearest training clips there.

Distances use only what the clip has: its available (modality, segment) slots, z-scored with training
statistics and flattened. Each slot block is divided by sqrt(D) of its modality so every available slot
weighs the same whatever the modality's width. Clips differ in what they have, so test clips are grouped by
availability pattern, and per pattern and missing modality one scikit-learn ``NearestNeighbors`` index is built
over the training clips that have every slot the pattern compares on *and* every slot being filled: distances
use real values only (never a training clip's own gap) and every neighbour has what it donates, which matters
once training clips are themselves masked. Where no training clip qualifies (or the clip has nothing available
to compare), the slot gets the training mean at that segment position; fewer than k candidates are all used.
"""
from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

from remodiff.imputers.base import IMPUTERS, Imputer, check_positive_int, segment_means
from remodiff.standardise import Standardiser
from remodiff.store import FeatureSet


@IMPUTERS.register("knn")
class KNNImputer(Imputer):
    classical = True

    def __init__(self, k: int = 5):
        check_positive_int("knn", "k", k)
        super().__init__(k=k)

    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        self.modalities = train.modalities
        self.dims = {m: train.features[m].shape[-1] for m in self.modalities}
        self.scaler = Standardiser.fit(train)
        self.reference = {m: train.features[m].copy() for m in self.modalities}
        self.reference_slots = np.stack([train.available[m] for m in self.modalities], axis=1)  # [N, M, S]
        self.keys = self._slot_keys(train)
        self.means = segment_means(train)

    # Saving: the scaler as its arrays (a saved state holds no objects)
    def _state(self) -> dict:
        return {**super()._state(), "scaler": self.scaler.state()}

    def _set_state(self, state: dict) -> None:
        super()._set_state({**state, "scaler": Standardiser(**state["scaler"])})

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
        for g, flat in enumerate(unique):
            pattern = flat.reshape(patterns.shape[1:])
            if not pattern.any():
                continue  # nothing to compare: training mean
            columns = self._slot_columns(pattern)
            rows = np.flatnonzero(group.ravel() == g)
            compared = (self.reference_slots | ~pattern).all(axis=(1, 2))  # training clips with the compared slots
            for i, m in enumerate(self.modalities):
                if pattern[i].all():
                    continue  # nothing of m to fill
                candidates = np.flatnonzero(compared & (self.reference_slots[:, i] | pattern[i]).all(axis=1))
                if not len(candidates):
                    continue  # no training clip has both: training mean
                index = NearestNeighbors(n_neighbors=min(self.params["k"], len(candidates)))
                _, neighbours = index.fit(self.keys[candidates][:, columns]).kneighbors(keys[rows][:, columns])
                out[m][rows] = self.reference[m][candidates[neighbours]].mean(axis=1)  # [n, S, D]
        return out
