"""How close a reconstruction is to the held-back truth, on the slots the mask hid."""
from __future__ import annotations

import numpy as np

from remodiff.store import FeatureSet


def reconstruction_metrics(truth: FeatureSet, masked: FeatureSet, restored: FeatureSet) -> dict:
    """Per modality with hidden slots: MSE and mean cosine similarity between truth and reconstruction,
    over the slots that were available in ``truth`` but hidden in ``masked``."""
    out = {}
    for m in truth.modalities:
        hidden = truth.available[m] & ~masked.available[m]
        if not hidden.any():
            continue
        x, y = truth.features[m][hidden].astype(np.float64), restored.features[m][hidden].astype(np.float64)
        norms = np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1)
        cosine = np.divide((x * y).sum(axis=1), norms, out=np.zeros(len(x)), where=norms > 0)
        out[m] = {"mse": float(((x - y) ** 2).mean()), "cosine": float(cosine.mean()), "slots": int(hidden.sum())}
    return out
