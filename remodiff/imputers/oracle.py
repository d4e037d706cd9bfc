"""Cheating references that look at the test clip's label (the oracle models of "Hallucination is all you need"),
to bracket what feature reconstruction can gain or lose. Never a method to report as an imputer.

The hallucination study has class labels: "sample from the same class", "sample from a different class" and "the
class-conditioned mean", with the donor clips taken from the test set. Our labels are regression targets
(personality traits in [0, 1]), so "class" becomes distance between label vectors (Euclidean):

* ``oracle_same``: the missing modality comes from the training clip whose label vector is nearest;
* ``oracle_other``: from the training clip whose label vector is farthest (the most different "class");
* ``oracle_mean``: the mean over the ``k`` training clips with the nearest label vectors.

Donors are training clips (never the test clip itself, which would make the oracle an identity), and for a
modality only training clips that have it at every segment are donors. Deterministic: ties go to the
lower training index.
"""
from __future__ import annotations

import abc

import numpy as np
from scipy.spatial.distance import cdist

from remodiff.imputers.base import IMPUTERS, Imputer, check_positive_int
from remodiff.store import FeatureSet


class LabelOracle(Imputer):
    """Fills each modality with the mean of donor training clips chosen by label distance (:meth:`donors`)."""

    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        self.modalities = train.modalities
        if not np.all(np.isfinite(train.labels)):
            raise ValueError(f"{self.name}: the training labels are not all finite")
        self.labels = train.labels.astype(np.float64)
        self.candidates, self.features = {}, {}
        for m in self.modalities:
            complete = train.available[m].all(axis=1)
            if not complete.any():
                raise ValueError(f"{self.name}: no training clip has modality {m!r} at every segment")
            self.candidates[m] = np.flatnonzero(complete)
            self.features[m] = train.features[m][complete]

    @abc.abstractmethod
    def donors(self, distance: np.ndarray) -> np.ndarray:
        """``[N, k]`` column indices of the donors given label distances ``[N, candidates]``."""

    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        if data.labels.shape[1:] != self.labels.shape[1:] or not np.all(np.isfinite(data.labels)):
            raise ValueError(f"{self.name}: needs finite labels of shape [N, {self.labels.shape[1]}], got "
                             f"{data.labels.shape} (oracles read the test labels)")
        out = {}
        for m in self.modalities:
            distance = cdist(data.labels.astype(np.float64), self.labels[self.candidates[m]])
            out[m] = self.features[m][self.donors(distance)].mean(axis=1)
        return out


@IMPUTERS.register("oracle_same")
class SameLabelOracle(LabelOracle):
    def donors(self, distance: np.ndarray) -> np.ndarray:
        return distance.argmin(axis=1)[:, None]


@IMPUTERS.register("oracle_other")
class OtherLabelOracle(LabelOracle):
    def donors(self, distance: np.ndarray) -> np.ndarray:
        return distance.argmax(axis=1)[:, None]


@IMPUTERS.register("oracle_mean")
class MeanLabelOracle(LabelOracle):
    def __init__(self, k: int = 5):
        check_positive_int("oracle_mean", "k", k)
        super().__init__(k=k)

    def donors(self, distance: np.ndarray) -> np.ndarray:
        k = min(self.params["k"], distance.shape[1])
        return np.argsort(distance, axis=1, kind="stable")[:, :k]
