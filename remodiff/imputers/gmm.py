"""Gaussian-mixture imputation ("Hallucination is all you need": variational Bayesian GMM, 2 components, diagonal
covariances).

Dimensionality reduction: the raw joint vector (64 + 110 + 128 dims for ~500 training segments) is too wide
for a mixture, so each modality is z-scored and projected by its own PCA to ``pca_dims`` dimensions, fitted
on the available training segments of that modality (segments pooled: every segment is one sample). The
mixture is fitted on the concatenated codes of the training segments: where every one has every modality, by
scikit-learn's variational ``BayesianGaussianMixture``; where some lack a modality (natural gaps, or training
clips masked so that few or none are complete), by expectation-maximisation with missing values
(:func:`fit_mixture_with_gaps`) on every segment with at least one modality, so no segment's available codes
are thrown away.

Imputation works per segment: the responsibilities of the components come from the codes of the modalities
available at that segment only (with diagonal covariances the marginal of a component over the available
dimensions is just those dimensions), and since the covariances are diagonal the missing codes given a
component are independent of the available ones: ``mode: mean`` fills the responsibility-weighted component
means, ``mode: sample`` draws a component from the responsibilities and then a code from its Gaussian. The
codes go back through the PCA inverse and the z-scoring inverse.
"""
from __future__ import annotations

import logging

import numpy as np
from scipy.special import logsumexp
from sklearn.decomposition import PCA
from sklearn.mixture import BayesianGaussianMixture

from remodiff.imputers.base import IMPUTERS, MODES, Imputer
from remodiff.standardise import Standardiser
from remodiff.store import FeatureSet

log = logging.getLogger(__name__)


@IMPUTERS.register("gmm")
class GMMImputer(Imputer):
    sampling_settings = ("mode",)
    classical = True

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
        codes, observed = self._codes(train), self._observed(train)
        usable = observed.any(axis=-1)
        codes, observed = codes[usable], observed[usable]  # [segments with data, d]
        if len(codes) < self.params["components"]:
            raise ValueError(f"gmm: {len(codes)} training segments have a modality, fewer than the "
                             f"{self.params['components']} mixture components")
        if observed.all():
            mixture = BayesianGaussianMixture(n_components=self.params["components"], covariance_type="diag",
                                              max_iter=self.params["max_iter"], random_state=seed).fit(codes)
            self.weights, self.means, self.variances = mixture.weights_, mixture.means_, mixture.covariances_
        else:
            log.info("gmm: %d of %d training segments lack a modality; fitting the mixture by EM with missing values",
                     int((~observed.all(axis=1)).sum()), len(codes))
            self.weights, self.means, self.variances = fit_mixture_with_gaps(
                codes, observed, self.params["components"], self.params["max_iter"], seed)

    # Saving: the scaler as its arrays (a saved state holds no objects)
    def _state(self) -> dict:
        return {**super()._state(), "scaler": self.scaler.state()}

    def _set_state(self, state: dict) -> None:
        super()._set_state({**state, "scaler": Standardiser(**state["scaler"])})

    def _codes(self, data: FeatureSet) -> np.ndarray:
        """``[N, S, sum pca_dims]`` PCA codes of every segment (meaningless where the modality is missing)."""
        return np.concatenate([(self.scaler.transform(data, m) - self.centre[m]) @ self.basis[m].T
                               for m in self.modalities], axis=-1)

    def _observed(self, data: FeatureSet) -> np.ndarray:
        """``[N, S, sum pca_dims]`` whether each code dimension's modality is available at that segment."""
        return np.concatenate([np.repeat(data.available[m][..., None], len(self.basis[m]), axis=-1)
                               for m in self.modalities], axis=-1)

    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        n, s = len(data), data.n_segments
        codes = self._codes(data).reshape(n * s, -1).astype(np.float64)
        observed = self._observed(data).reshape(n * s, -1)
        responsibility = responsibilities(codes, observed, self.weights, self.means, self.variances)
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


def responsibilities(codes: np.ndarray, observed: np.ndarray, weights: np.ndarray, means: np.ndarray,
                     variances: np.ndarray) -> np.ndarray:
    """``[n, K]`` posterior component probabilities of each row from its observed dims only (with diagonal
    covariances a component's marginal over them is just those dims)."""
    log_density = -0.5 * ((codes[:, None, :] - means[None]) ** 2 / variances[None]
                          + np.log(2 * np.pi * variances[None]))
    log_joint = np.log(weights)[None] + (log_density * observed[:, None, :]).sum(axis=2)
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def fit_mixture_with_gaps(codes: np.ndarray, observed: np.ndarray, components: int, max_iter: int, seed: int,
                          tol: float = 1e-4, reg: float = 1e-6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Maximum-likelihood diagonal Gaussian mixture of rows ``codes [n, d]`` observed where ``observed [n, d]``:
    EM where a missing dim enters the M-step through its expectation under the component (its mean; its variance
    plus the shift of the mean), the exact EM for data missing at random. Starts from ``components`` random rows
    (their missing dims at 0, the PCA centre) and stops when no mean moves by ``tol``.
    Returns ``(weights [K], means [K, d], variances [K, d])``."""
    codes, observed = codes.astype(np.float64), observed.astype(np.float64)
    filled, squares = codes * observed, codes ** 2 * observed  # missing dims contribute nothing
    count = observed.sum(axis=0).clip(min=1.0)
    spread = squares.sum(axis=0) / count - (filled.sum(axis=0) / count) ** 2
    means = filled[np.random.default_rng(seed).choice(len(codes), components, replace=False)]
    variances = np.tile(spread.clip(min=reg), (components, 1))
    weights = np.full(components, 1.0 / components)
    for _ in range(max_iter):
        r = responsibilities(codes, observed, weights, means, variances)                     # [n, K]
        total = r.sum(axis=0).clip(min=1e-12)[:, None]                                      # [K, 1]
        seen = r.T @ observed                                                                # [K, d] observed mass
        new_means = (r.T @ filled + (total - seen) * means) / total
        observed_part = r.T @ squares - 2 * new_means * (r.T @ filled) + new_means ** 2 * seen
        missing_part = (total - seen) * (variances + (means - new_means) ** 2)
        variances = (observed_part + missing_part).clip(min=0.0) / total + reg  # clip: round-off
        shift = np.abs(new_means - means).max()
        means, weights = new_means, total[:, 0] / len(codes)
        if shift < tol:
            break
    return weights, means, variances
