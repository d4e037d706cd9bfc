"""Feature statistics shared by imputers and fusers: masked means and per-modality z-scoring.

A leaf module (only :mod:`remodiff.store` below it), so ``remodiff.imputers`` and ``remodiff.fusion`` both
use it without importing each other.
"""
from __future__ import annotations

import numpy as np

from remodiff.store import FeatureSet


def masked_mean(x: np.ndarray, available: np.ndarray, axis: int) -> np.ndarray:
    """Mean of ``x`` over ``axis`` counting only available slots (0 where none is available)."""
    weights = available.astype(np.float64)[..., None]
    total = (x * weights).sum(axis=axis)
    count = weights.sum(axis=axis)
    return np.divide(total, count, out=np.zeros_like(total), where=count > 0)


CONSTANT_VARIANCE = 1e-12  # a training variance at or below this: the dimension is constant


class Standardiser:
    """Per-modality, per-dimension z-scoring with training statistics over available slots."""

    def __init__(self, mean: dict[str, np.ndarray], std: dict[str, np.ndarray]):
        self.mean, self.std = mean, std

    @classmethod
    def fit(cls, train: FeatureSet, modalities: list[str] | None = None) -> "Standardiser":
        mean, std = {}, {}
        for m in modalities or train.modalities:
            x, a = train.features[m], train.available[m]
            flat_x, flat_a = x.reshape(-1, 1, x.shape[-1]), a.reshape(-1, 1)
            mean[m] = masked_mean(flat_x, flat_a, axis=0)[0].astype(np.float32)
            var = masked_mean((flat_x - mean[m]) ** 2, flat_a, axis=0)[0]
            # a dimension constant in training (e.g. a tf-idf word no training clip uses) is centred, not scaled:
            # dividing by ~0 would turn any test value into an extreme one
            std[m] = np.where(var > CONSTANT_VARIANCE, np.sqrt(var), 1.0).astype(np.float32)
        return cls(mean, std)

    def transform(self, data: FeatureSet, modality: str) -> np.ndarray:
        """``[N, S, D]`` z-scores of one modality; missing slots are 0 (= the training mean)."""
        z = (data.features[modality] - self.mean[modality]) / self.std[modality]
        return np.where(data.available[modality][..., None], z, 0.0).astype(np.float32)

    def inverse(self, z: np.ndarray, modality: str) -> np.ndarray:
        return (z * self.std[modality] + self.mean[modality]).astype(np.float32)

    def __call__(self, data: FeatureSet, modalities: list[str]) -> np.ndarray:
        """``[N, S, sum D]``; missing slots stay 0 (= the training mean after scaling)."""
        return np.concatenate([self.transform(data, m) for m in modalities], axis=-1)

    def state(self) -> dict:
        return {"mean": self.mean, "std": self.std}
