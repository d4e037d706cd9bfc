"""Missing-modality masks: which (clip, modality, segment) slots a protocol hides at test time.

A mask is ``{modality: [N, S] bool}`` with True = available. Masks are a stage output (``data/masks``), so
every imputer and fuser sees exactly the same ones. Natural missingness (no audio track, no transcript) is
merged later, when a mask is applied (``FeatureSet.with_mask`` keeps a slot only if both say available).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from remodiff.registry import Registry
from remodiff.store import STRING, FeatureSet, atomic_h5

Masks = dict[str, dict[str, np.ndarray]]  # pattern name -> modality -> [N, S] available
PROTOCOLS: Registry[Callable[..., Masks]] = Registry("missing-modality protocol")


@PROTOCOLS.register("fixed")
def fixed_single(data: FeatureSet, rng: np.random.Generator) -> Masks:
    """One pattern per modality: that modality missing for every test clip (``<modality>_missing``)."""
    shape = (len(data), data.n_segments)
    return {f"{gone}_missing": {m: np.full(shape, m != gone) for m in data.modalities} for gone in data.modalities}


def make_masks(data: FeatureSet, protocol: str, seed: int) -> Masks:
    return PROTOCOLS.get(protocol)(data, np.random.default_rng(seed))


def save_masks(path: str | Path, masks: Masks, ids: list[str], meta: dict) -> None:
    with atomic_h5(path) as f:
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=STRING)
        f.attrs["meta"] = json.dumps(meta)
        for pattern, per_modality in masks.items():
            for m, mask in per_modality.items():
                f.create_dataset(f"patterns/{pattern}/{m}", data=mask.astype(bool))


def load_masks(path: str | Path, ids: list[str]) -> Masks:
    with h5py.File(path, "r") as f:
        stored = [s.decode() if isinstance(s, bytes) else s for s in f["ids"][()]]
        if stored != list(ids):
            raise ValueError(f"{path} was made for other clips than the feature store's; re-run the masks stage")
        return {p: {m: f[f"patterns/{p}/{m}"][()].astype(bool) for m in f[f"patterns/{p}"]} for p in f["patterns"]}
