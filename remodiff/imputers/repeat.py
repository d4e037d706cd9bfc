"""Frame / segment repetition (the ReMoDiff slides): a missing segment copies the nearest available segment of the same
modality in the same clip.

Ties (two available segments equally far) go to the earlier one. When a clip has no available segment of a
modality there is nothing to repeat, so those slots fall back to the training mean at that segment position
(the ``mean`` imputer's value).
"""
from __future__ import annotations

import numpy as np

from remodiff.imputers.base import IMPUTERS, Imputer, segment_means
from remodiff.store import FeatureSet


@IMPUTERS.register("repeat")
class RepeatImputer(Imputer):
    classical = True

    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        self.modalities = train.modalities
        self.means = segment_means(train)

    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        positions = np.arange(data.n_segments)
        gap = np.abs(positions[:, None] - positions[None, :]).astype(np.float64)  # [S target, S source]
        out = {}
        for m in data.modalities:
            x, available = data.features[m], data.available[m]
            distance = np.where(available[:, None, :], gap, np.inf)                 # [N, S, S]
            source = distance.argmin(axis=2)                                        # first minimum: earlier
            repeated = np.take_along_axis(x, source[..., None], axis=1)
            out[m] = np.where(available.any(axis=1)[:, None, None], repeated, self.means[m][None])
        return out
