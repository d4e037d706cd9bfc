"""Missing-modality protocols: which (clip, modality, segment) slots are hidden at test time.

A mask is ``{modality: [N, S] bool}`` with True = available. The ``masks`` stage saves every pattern of the
configured protocols once (``data/masks/test.h5``), so every imputer and fuser sees exactly the same ones.
Natural missingness (no audio track, no transcript) is merged when a mask is applied
(``FeatureSet.with_mask`` keeps a slot only if both say available).

Randomness is per clip: each clip's draws come from a generator seeded by (seed, protocol, setting, clip id),
so a clip's mask does not depend on the order of the clips or on batching (IMDer's batch-order protocol
dropped modalities even at MR = 0; that cannot happen here).

Protocols and their pattern names (``<protocol>/<setting>``):

* ``fixed``: every non-empty proper subset of the modalities missing for every clip, e.g.
  ``fixed/video_missing``, ``fixed/audio+text_missing`` (MMIN's six patterns with three modalities).
* ``random``: missing rate MR = dropped (clip, modality) slots / all slots, each clip keeping at least one
  modality, e.g. ``random/mr_0.3``. Exactly ``round(MR x slots)`` slots are dropped (so the achieved rate is
  MR to the nearest slot): the slots with the smallest per-clip uniform draws go first, skipping any that would
  leave a clip empty. MR above (M-1)/M is impossible and refused.
* ``independent``: each modality dropped per clip with its own probability (``p_audio``, ``p_video``,
  ``p_text``: the "hallucination" study's test-time probabilities); a clip that would lose all keeps one,
  chosen at random. Pattern ``independent/pa_0.5-pv_0.0-pt_0.0``.
* ``segments``: every modality loses each segment with probability p (at least one segment kept per clip and
  modality): what frame repetition is for. Pattern ``segments/p_0.4``.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path
from typing import Callable

import h5py
import numpy as np

from remodiff.registry import Registry
from remodiff.store import STRING, FeatureSet, atomic_h5

Mask = dict[str, np.ndarray]  # modality -> [N, S] available
Masks = dict[str, Mask]  # pattern name -> mask
PROTOCOLS: Registry[Callable[..., Masks]] = Registry("missing-modality protocol")


def clip_rng(seed: int, *keys: str) -> np.random.Generator:
    digest = hashlib.sha256("\0".join(keys).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def slot_mask(data: FeatureSet, keep: np.ndarray) -> Mask:
    """Broadcast a per-(clip, modality) ``keep [N, M]`` over segments."""
    return {m: np.repeat(keep[:, j, None], data.n_segments, axis=1) for j, m in enumerate(data.modalities)}


@PROTOCOLS.register("fixed")
def fixed(data: FeatureSet, seed: int, settings=None) -> Masks:
    mods = data.modalities
    out = {}
    for k in range(1, len(mods)):
        for gone in itertools.combinations(mods, k):
            keep = np.array([[m not in gone for m in mods]] * len(data))
            out["+".join(gone) + "_missing"] = slot_mask(data, keep.reshape(len(data), len(mods)))
    return out


def random_keep(data: FeatureSet, seed: int, rate: float) -> np.ndarray:
    n, m = len(data), len(data.modalities)
    most = (m - 1) / m
    if not 0.0 <= rate <= most + 1e-9:
        raise ValueError(f"missing rate {rate} is impossible with {m} modalities when every clip keeps one "
                         f"(valid: 0 to {most:.3f})")
    draws = np.stack([clip_rng(seed, "random", cid).random(m) for cid in data.ids])  # [N, M]
    keep = np.ones((n, m), bool)
    target = round(rate * n * m)
    dropped = 0
    for flat in np.argsort(draws, axis=None, kind="stable"):
        if dropped == target:
            break
        i, j = divmod(int(flat), m)
        if keep[i].sum() > 1:
            keep[i, j] = False
            dropped += 1
    return keep


@PROTOCOLS.register("random")
def random_rate(data: FeatureSet, seed: int, settings=(0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)) -> Masks:
    return {f"mr_{rate:.1f}": slot_mask(data, random_keep(data, seed, rate)) for rate in settings}


@PROTOCOLS.register("independent")
def independent(data: FeatureSet, seed: int, settings=None) -> Masks:
    mods = data.modalities
    out = {}
    for probs in settings or [{m: 0.5 for m in mods}]:
        unknown = sorted(set(probs) - set(mods))
        if unknown:
            raise ValueError(f"independent protocol: probabilities for unknown modalities {unknown} (have {mods})")
        p = np.array([float(probs.get(m, 0.0)) for m in mods])
        name = "-".join(f"p{m[0]}_{probs.get(m, 0.0):.1f}" for m in mods)
        keep = np.empty((len(data), len(mods)), bool)
        for i, cid in enumerate(data.ids):
            rng = clip_rng(seed, "independent", name, cid)
            keep[i] = rng.random(len(mods)) >= p
            if not keep[i].any():
                keep[i, rng.integers(len(mods))] = True
        out[name] = slot_mask(data, keep)
    return out


@PROTOCOLS.register("segments")
def segments(data: FeatureSet, seed: int, settings=(0.2, 0.4)) -> Masks:
    out = {}
    for p in settings:
        mask = {}
        for m in data.modalities:
            keep = np.empty((len(data), data.n_segments), bool)
            for i, cid in enumerate(data.ids):
                rng = clip_rng(seed, "segments", f"{p}", m, cid)
                keep[i] = rng.random(data.n_segments) >= p
                if not keep[i].any():
                    keep[i, rng.integers(data.n_segments)] = True
            mask[m] = keep
        out[f"p_{p:.1f}"] = mask
    return out


def make_masks(data: FeatureSet, protocols: dict, seed: int) -> Masks:
    """All patterns of ``protocols`` (``{name: settings or None}``), named ``<protocol>/<setting>``."""
    out = {}
    for name, settings in protocols.items():
        build = PROTOCOLS.get(name)
        made = build(data, seed) if settings is None else build(data, seed, settings)
        out.update({f"{name}/{setting}": mask for setting, mask in made.items()})
    return out


def missing_rate(mask: Mask) -> float:
    """Fraction of hidden (clip, modality) slots, a slot counting as hidden when all its segments are."""
    hidden = np.stack([~a.any(axis=1) for a in mask.values()], axis=1)
    return float(hidden.mean())


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
        out = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Group) and any(isinstance(v, h5py.Dataset) for v in obj.values()):
                out[name] = {m: obj[m][()].astype(bool) for m in obj}

        f["patterns"].visititems(visit)
        return out
