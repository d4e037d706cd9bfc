"""Datasets that ship features instead of clips: time-pooling into segments and the generic ``precomputed`` adapter.

``precomputed``: one file per split (``files``, default ``<split>.npz``; ``.npz`` or HDF5 ``.h5`` / ``.hdf5``)
under the dataset root holding

* ``ids`` [N] (strings) and ``labels`` [N] or [N, L] (for classification: the class index),
* one array per modality, ``[N, T, D]``: every other array whose name does not start with ``available_``,
* optionally ``available_<modality>`` [N, T] bool: which time steps hold data (default: all of them).

Each modality's time axis is pooled into ``segment.segments`` parts (:func:`pool_segments`), so a file that is
already ``[N, S, D]`` with ``S = segment.segments`` passes through unchanged.
"""
from __future__ import annotations

import logging
from pathlib import Path

import h5py
import numpy as np

from remodiff.data.adapters import DATASETS, SPLITS, TASKS, Clip, DatasetAdapter, check_split
from remodiff.store import FeatureSet

log = logging.getLogger(__name__)
AVAILABLE_PREFIX = "available_"


def pool_segments(x: np.ndarray, valid: np.ndarray, segments: int, ids: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Mean-pool the valid time steps of each clip into ``segments`` equal parts.

    ``x`` [N, T, D], ``valid`` [N, T] bool -> features [N, segments, D] float32 and availability [N, segments].
    The valid steps of a clip (in time order) are cut into ``segments`` runs of (nearly) equal length; a clip
    with fewer valid steps than segments repeats steps so that every segment gets one; a clip with none has the
    modality missing (zeros, unavailable).
    """
    if x.ndim != 3 or valid.shape != x.shape[:2]:
        raise ValueError(f"expected features [N, T, D] and a validity mask [N, T], got {x.shape} and {valid.shape}")
    bad = np.flatnonzero(((~np.isfinite(x)).any(axis=2) & valid).any(axis=1))
    if len(bad):
        raise ValueError(f"non-finite values in the valid time steps of clips {[ids[i] for i in bad[:5]]}")
    pooled = np.zeros((len(x), segments, x.shape[2]), np.float32)
    available = np.zeros((len(x), segments), bool)
    for i in range(len(x)):
        steps = np.flatnonzero(valid[i])
        if len(steps) == 0:
            continue
        if len(steps) < segments:
            steps = steps[np.floor(np.arange(segments) * len(steps) / segments).astype(int)]
        for s, part in enumerate(np.array_split(steps, segments)):
            pooled[i, s] = x[i, part].mean(axis=0)
        available[i] = True
    return pooled, available


def lengths_mask(lengths, steps: int) -> np.ndarray:
    """[N, steps] bool: the first ``lengths[i]`` steps of row i are valid."""
    lengths = np.minimum(np.asarray(lengths, dtype=int).reshape(-1), steps)
    return np.arange(steps)[None, :] < lengths[:, None]


def usable_labels(adapter: DatasetAdapter, ids: list[str], labels: np.ndarray, split: str) -> np.ndarray:
    """Rows whose labels are finite (and, for classification, one valid class index); the others are skipped
    (logged and listed)."""
    keep = np.all(np.isfinite(labels), axis=1)
    if adapter.task == "classification":
        index = labels[:, 0]
        keep &= (labels.shape[1] == 1) & (index == np.round(index)) & (index >= 0) & (index < len(adapter.classes))
    for i in np.flatnonzero(~keep):
        adapter.skip(ids[i], split, f"unusable label {labels[i].tolist()}"
                     + (f" (expected a class index below {len(adapter.classes)})" if adapter.classes else ""))
    return keep


@DATASETS.register("precomputed")
class Precomputed(DatasetAdapter):
    """Generic precomputed features (layout in the module docstring). Settings: ``files`` ({split: file name},
    default ``<split>.npz``), ``label_names`` (default: ``label_0``, ...), ``task`` and ``classes``."""

    precomputed = True

    def __init__(self, root: str | Path, files: dict[str, str] | None = None, label_names: list[str] | None = None,
                 task: str = "regression", classes: list[str] | None = None):
        super().__init__(root)
        if task not in TASKS:
            raise ValueError(f"precomputed: task must be one of {TASKS}, got {task!r}")
        if task == "classification" and not classes:
            raise ValueError("precomputed: a classification task needs `classes` (the class names, in index order)")
        self.files = {**{s: f"{s}.npz" for s in SPLITS}, **(files or {})}
        self.task, self.classes = task, (list(classes) if task == "classification" else None)
        self.given_label_names = label_names
        self.label_names = list(label_names or [])  # default names once the file says how many columns

    def clips(self, split: str) -> list[Clip]:
        raise TypeError("precomputed: this dataset ships features, not clips (use features())")

    def modalities(self) -> list[str]:
        """The modality arrays of the training file, read without loading them (only ``labels``, whose column
        count names the labels when ``label_names`` is not given)."""
        path = self.expect_file(self.root / self.files["train"], "the train features (.npz or .h5)")
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                names = list(data.files)
                shape = data["labels"].shape if "labels" in names else None
        elif path.suffix in (".h5", ".hdf5"):
            with h5py.File(path, "r") as f:
                names = [k for k in f if isinstance(f[k], h5py.Dataset)]
                shape = f["labels"].shape if "labels" in names else None
        else:
            raise ValueError(f"precomputed: {path} is neither .npz nor .h5/.hdf5")
        if shape is None:
            raise ValueError(f"precomputed: {path} lacks labels (has {sorted(names)})")
        self.label_names = list(self.given_label_names or [f"label_{j}" for j in range(int(np.prod(shape[1:])))])
        return sorted(k for k in names if k not in ("ids", "labels") and not k.startswith(AVAILABLE_PREFIX))

    def read_arrays(self, path: Path) -> dict[str, np.ndarray]:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                return {k: data[k] for k in data.files}
        if path.suffix in (".h5", ".hdf5"):
            with h5py.File(path, "r") as f:
                return {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        raise ValueError(f"precomputed: {path} is neither .npz nor .h5/.hdf5")

    def features(self, split: str, segments: int) -> FeatureSet:
        check_split(split)
        path = self.expect_file(self.root / self.files[split], f"the {split} features (.npz or .h5 with ids, labels "
                                                               f"and one [N, T, D] array per modality)")
        arrays = self.read_arrays(path)
        lacking = [k for k in ("ids", "labels") if k not in arrays]
        if lacking:
            raise ValueError(f"precomputed: {path} lacks {lacking} (has {sorted(arrays)})")
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in arrays.pop("ids").reshape(-1)]
        labels = arrays.pop("labels").astype(np.float32).reshape(len(ids), -1)
        masks = {k[len(AVAILABLE_PREFIX):]: arrays.pop(k).astype(bool) for k in list(arrays)
                 if k.startswith(AVAILABLE_PREFIX)}
        if not arrays:
            raise ValueError(f"precomputed: {path} has no modality arrays besides ids and labels")
        stray = sorted(set(masks) - set(arrays))
        if stray:
            raise ValueError(f"precomputed: {path} has availability masks for unknown modalities {stray}")
        label_names = self.given_label_names or [f"label_{j}" for j in range(labels.shape[1])]
        if len(label_names) != labels.shape[1]:
            raise ValueError(f"precomputed: {path} has {labels.shape[1]} label columns but label_names "
                             f"{label_names}")
        self.label_names = list(label_names)
        keep = usable_labels(self, ids, labels, split)
        kept_ids = [i for i, k in zip(ids, keep) if k]
        features, available = {}, {}
        for m, x in sorted(arrays.items()):
            if x.ndim != 3 or len(x) != len(ids):
                raise ValueError(f"precomputed: {path}: {m} has shape {x.shape}, expected [{len(ids)}, T, D]")
            valid = masks.get(m, np.ones(x.shape[:2], bool))
            if valid.shape != x.shape[:2]:
                raise ValueError(f"precomputed: {path}: available_{m} has shape {valid.shape}, expected {x.shape[:2]}")
            try:
                features[m], available[m] = pool_segments(x[keep].astype(np.float32), valid[keep], segments, kept_ids)
            except ValueError as e:
                raise ValueError(f"precomputed: {path}: {m}: {e}") from None
        log.info("precomputed %s: %d clips, modalities %s", split, int(keep.sum()),
                 {m: x.shape[1:] for m, x in arrays.items()})
        return FeatureSet(kept_ids, features, available, labels[keep], self.label_names,
                          {"source": str(path)})
