"""Gaussian-mixture imputation ("Hallucination is all you need": variational Bayesian GMM, 2 components, diagonal
covariances).

Dimensionality reduction: the raw joint vector (64 + 110 + 128 dims for ~500 training segments) is too wide
for a mixture, so each modality is z-scored and projected by its own PCA to ``pca_dims`` dimensions, fitted
on the available training segments of that modality (segments pooled: every segment is one sample). The
mixture is fitted on the concatenated codes of the training segments where every modality is available.

Imputation works per segment: the responsibilities of the components come from the codes of the modalities
available at that segment only (with diagonal covariances the marginal of a component over the available
dimensions is just those dimensions), and since the covariances are diagonal the missing codes given a
component are independent of the available ones: ``mode: mean`` fills the responsibility-weighted component
means, ``mode: sample`` draws a component from the responsibilities and then a code from its Gaussian. The
codes go back through the PCA inverse and the z-scoring inverse.
"""
from __future__ import annotations

import numpy as np
from scipy.special import logsumexp
from sklearn.decomposition import PCA
from sklearn.mixture import BayesianGaussianMixture

from remodiff.imputers.base import IMPUTERS, MODES, Imputer
from remodiff.scaling import Standardiser
from remodiff.store import FeatureSet


@IMPUTERS.register("gmm")
class GMMImputer(Imputer):
    name = "gmm"
    sampling_settings = ("mode",)

    def __init__(self, components: int = 2, pca_dims: int = 4, mode: str = "mean", max_iter: int = 500):
        if components < 1 or pca_dims < 1 or max_iter < 1:
            raise ValueError(f"gmm: components, pca_dims and max_iter must be positive, got "
                             f"{components}, {pca_dims}, {max_iter}")
        super().__init__(components=components, pca_dims=pca_dims, mode=mode, max_iter=max_iter)
        self.apply_sampling()

    def apply_sampling(self) -> None:
        if self.params["mode"] not in MODES:
            raise ValueError(f"gmm: mode {self.params['mode']!r}; valid values: {', '.join(MODES)}")
        self.stochastic = self.params["mode"] == "sample"

    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        self.modalities = train.modalities
        self.scaler = Standardiser.fit(train)
        # per-modality PCA, kept as plain arrays: code = (z - centre) @ basis.T, z = code @ basis + centre
        self.centre, self.basis = {}, {}
        for m in self.modalities:
            z = self.scaler.transform(train, m)[train.available[m]]
            if len(z) < 2:
                raise ValueError(f"gmm: modality {m!r} has {len(z)} available training segments, need 2 or more")
            pca = PCA(n_components=min(self.params["pca_dims"], z.shape[1], len(z)), random_state=seed).fit(z)
            self.centre[m], self.basis[m] = pca.mean_.astype(np.float32), pca.components_.astype(np.float32)
        complete = np.logical_and.reduce([train.available[m] for m in self.modalities])
        codes = self._codes(train)[complete]
        if len(codes) < self.params["components"]:
            raise ValueError(f"gmm: {len(codes)} training segments have every modality, fewer than the "
                             f"{self.params['components']} mixture components")
        mixture = BayesianGaussianMixture(n_components=self.params["components"], covariance_type="diag",
                                          max_iter=self.params["max_iter"], random_state=seed).fit(codes)
        self.weights, self.means, self.variances = mixture.weights_, mixture.means_, mixture.covariances_

    def _codes(self, data: FeatureSet) -> np.ndarray:
        """``[N, S, sum pca_dims]`` PCA codes of every segment (meaningless where the modality is missing)."""
        return np.concatenate([(self.scaler.transform(data, m) - self.centre[m]) @ self.basis[m].T
                               for m in self.modalities], axis=-1)

    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        n, s = len(data), data.n_segments
        codes = self._codes(data).reshape(n * s, -1).astype(np.float64)
        observed = np.concatenate([np.repeat(data.available[m].reshape(-1, 1), len(self.basis[m]), axis=1)
                                   for m in self.modalities], axis=1)                      # [N*S, d]
        # log N(code_d; mean_kd, var_kd) summed over the observed dims only -> responsibilities [N*S, K]
        log_density = -0.5 * ((codes[:, None, :] - self.means[None]) ** 2 / self.variances[None]
                              + np.log(2 * np.pi * self.variances[None]))
        log_joint = np.log(self.weights)[None] + (log_density * observed[:, None, :]).sum(axis=2)
        responsibility = np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))
        if self.params["mode"] == "mean":
            filled = responsibility @ self.means
        else:
            # inverse-CDF draw of one component per segment, then a Gaussian draw around its mean
            u = rng.random(len(responsibility))[:, None]
            component = np.minimum((responsibility.cumsum(axis=1) < u).sum(axis=1), len(self.weights) - 1)
            noise = rng.standard_normal(codes.shape)
            filled = self.means[component] + np.sqrt(self.variances[component]) * noise
        out, start = {}, 0
        for m in self.modalities:
            width = len(self.basis[m])
            z = filled[:, start:start + width] @ self.basis[m] + self.centre[m]
            out[m] = self.scaler.inverse(z.reshape(n, s, -1), m)
            start += width
        return out
