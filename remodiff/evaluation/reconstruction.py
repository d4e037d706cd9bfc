"""How close a reconstruction is to the held-back truth, on the slots the mask hid."""
from __future__ import annotations

import numpy as np
from scipy import linalg

from remodiff.store import FeatureSet


def frechet_distance(real: np.ndarray, fake: np.ndarray, ridge: float = 1e-6) -> float:
    """Fréchet distance between Gaussians fitted to the rows of ``real`` and ``fake`` (``[n, D]`` each).

    ``|mu_r - mu_f|^2 + tr(C_r + C_f - 2 (C_r C_f)^(1/2))``, with ``ridge`` x the mean real variance added to
    both covariance diagonals so the matrix square root exists. When there are no more rows than
    dimensions the covariances are rank-deficient, so both sets are first projected onto the top ``n - 1``
    principal directions of the real rows (where the real covariance has support); the distance is then
    that of those directions.
    """
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    if real.ndim != 2 or real.shape[1:] != fake.shape[1:]:
        raise ValueError(f"frechet_distance needs two [n, D] arrays of the same D, got {real.shape} and {fake.shape}")
    if len(real) < 2 or len(fake) < 2:
        raise ValueError(f"frechet_distance needs at least 2 rows per set, got {len(real)} and {len(fake)}")
    n, dim = real.shape
    if n <= dim:
        centre = real.mean(axis=0)
        _, _, directions = np.linalg.svd(real - centre, full_matrices=False)
        basis = directions[:n - 1].T                     # [D, n-1]
        real, fake = (real - centre) @ basis, (fake - centre) @ basis
    cov_real, cov_fake = np.atleast_2d(np.cov(real, rowvar=False)), np.atleast_2d(np.cov(fake, rowvar=False))
    eps = ridge * max(float(np.trace(cov_real)) / len(cov_real), 1e-12)
    cov_real, cov_fake = cov_real + eps * np.eye(len(cov_real)), cov_fake + eps * np.eye(len(cov_fake))
    cross = linalg.sqrtm(cov_real @ cov_fake).real  # tiny imaginary parts are round-off
    mean_gap = real.mean(axis=0) - fake.mean(axis=0)
    distance = mean_gap @ mean_gap + np.trace(cov_real) + np.trace(cov_fake) - 2.0 * np.trace(cross)
    return float(max(distance, 0.0))


def reconstruction_metrics(truth: FeatureSet, masked: FeatureSet, restored: FeatureSet) -> dict:
    """Per modality with hidden slots: MSE, mean cosine similarity and Fréchet distance between truth and
    reconstruction, over the slots that were available in ``truth`` but hidden in ``masked`` (Fréchet: null
    below 2 such slots)."""
    out = {}
    for m in truth.modalities:
        hidden = truth.available[m] & ~masked.available[m]
        if not hidden.any():
            continue
        x, y = truth.features[m][hidden].astype(np.float64), restored.features[m][hidden].astype(np.float64)
        norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        cosine = np.divide((x * y).sum(axis=1), norms, out=np.zeros(len(x)), where=norms > 0)
        out[m] = {"mse": float(((x - y) ** 2).mean()), "cosine": float(cosine.mean()),
                  "frechet": frechet_distance(x, y) if len(x) >= 2 else None, "slots": int(hidden.sum())}
    return out
