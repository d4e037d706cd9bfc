"""Random values ("replacement with random values" of the hallucination study): each missing feature is drawn uniformly
between that dimension's minimum and maximum over the available training segments of its modality.

The hallucination study draws from [0, 1]; our features are not normalised to that range, so the per-dimension training
range plays its role. Draws come from the generator passed to ``impute`` only.
"""
from __future__ import annotations

import numpy as np

from remodiff.imputers.base import IMPUTERS, Imputer
from remodiff.store import FeatureSet


@IMPUTERS.register("random")
class UniformImputer(Imputer):
    stochastic = True
    classical = True

    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        self.modalities = train.modalities
        self.low, self.high = {}, {}
        for m in train.modalities:
            seen = train.features[m][train.available[m]]  # [slots, D]
            if len(seen) == 0:
                raise ValueError(f"random: modality {m!r} has no available training segment to take a range from")
            self.low[m], self.high[m] = seen.min(axis=0), seen.max(axis=0)

    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {m: rng.uniform(self.low[m], self.high[m], size=data.features[m].shape).astype(np.float32)
                for m in data.modalities}
