"""Composition baselines of the seeds: zeros and the training mean.

Which one is the literature's "zero-fill": papers zero the *standardised* features, which is the training mean
in raw units, i.e. ``mean`` here. ``zero`` writes raw zeros, which after the fuser's standardisation sit
``mean / std`` standard deviations from the data (tens on MFCC features): a much harsher baseline.
"""
from __future__ import annotations

import numpy as np

from remodiff.imputers.base import IMPUTERS, Imputer, segment_means
from remodiff.store import FeatureSet


@IMPUTERS.register("zero")
class ZeroImputer(Imputer):
    """Missing features become raw zeros (the ReMoDiff slides, the hallucination study); not the papers' zero-fill
    on standardised features, which is :class:`MeanImputer`."""

    label = "zero (raw 0)"  # not the literature's zero-fill of standardised features (that equals `mean`)
    classical = True

    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        self.modalities = train.modalities
        self.shapes = {m: train.features[m].shape[1:] for m in train.modalities}

    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {m: np.zeros_like(data.features[m]) for m in data.modalities}


@IMPUTERS.register("mean")
class MeanImputer(Imputer):
    """Missing features become the training mean of that modality at that segment position (the hallucination
    study); the same as zero-filling standardised features, the literature's "zero-fill"."""

    classical = True

    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        self.modalities = train.modalities
        self.means = segment_means(train)

    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {m: np.broadcast_to(self.means[m], data.features[m].shape).copy() for m in data.modalities}
