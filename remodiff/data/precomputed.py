"""Datasets that ship features instead of clips: time-pooling into segments and the generic ``precomputed`` adapter.

``precomputed``: one file per split (``files``, default ``<split>.npz``; ``.npz`` or HDF5 ``.h5`` / ``.hdf5``)
under the dataset root holding

* ``ids`` [N] (strings) and ``labels`` [N] or [N, L] (for classification: the class index),
* one array per modality, ``[N, T, D]``: every other array whose name does not start with ``available_``,
* optionally ``available_<modality>`` [N, T] bool: which time steps hold data (default: all of them).

Each modality's time axis is pooled into ``segment.segments`` parts (:func:`pool_segments`), so a file that is
already ``[N, S, D]`` with ``S = segment.segments`` passes through unchanged.

``remodiff check`` reads the headers of all three files (:meth:`Precomputed.modalities`): a file that cannot be
read, has no clips, or whose modalities or feature dimensions differ from another split's fails there, in one
line naming the files.
"""
from __future__ import annotations

import logging
import zipfile
import zlib
from collections import Counter
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from remodiff.data.adapters import DATASETS, SPLITS, Clip, DatasetAdapter, check_split
from remodiff.registry import UnknownNameError, one_line
from remodiff.store import FeatureSet, check_splits_agree
from remodiff.tasks import TASKS

log = logging.getLogger(__name__)
AVAILABLE_PREFIX = "available_"
# What a damaged file raises while read: truncated (BadZipFile, EOFError, OSError from HDF5), corrupt data
# (BadZipFile on a CRC, zlib.error, ValueError)
UNREADABLE = (OSError, EOFError, ValueError, zipfile.BadZipFile, zlib.error)
# readers of the .npy header versions np.save writes (3.0 only for non-latin-1 field names)
NPY_HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Around reading ``path``: a damaged file is one line naming it instead of the reader's traceback."""
    if path.stat().st_size == 0:  # the readers' own words for it (no data left, not a zip file) hide the cause
        raise ValueError(f"precomputed: cannot read {path}: the file is empty (0 bytes)")
    try:
        yield
    except UNREADABLE as e:
        raise ValueError(f"precomputed: cannot read {path}: {one_line(e) or type(e).__name__}") from None


def array_shapes(path: Path) -> dict[str, tuple[int, ...]]:
    """The shape of every array of an .npz or HDF5 file, from the headers alone (no array is loaded)."""
    with reading(path):
        if path.suffix == ".npz":
            shapes = {}
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    with archive.open(member) as f:
                        version = np.lib.format.read_magic(f)
                        shape = NPY_HEADERS[version](f)[0] if version in NPY_HEADERS else \
                            np.lib.format.read_array(f, allow_pickle=False).shape
                    shapes[member.removesuffix(".npy")] = shape
            return shapes
        if path.suffix in (".h5", ".hdf5"):
            with h5py.File(path, "r") as f:
                return {k: f[k].shape for k in f if isinstance(f[k], h5py.Dataset)}
    raise ValueError(f"precomputed: {path} is neither .npz nor .h5/.hdf5")


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


def usable_labels(adapter: DatasetAdapter, ids: list[str], labels: np.ndarray, split: str, source: str) -> np.ndarray:
    """Rows whose labels are finite (and, for classification, one valid class index); another is an error naming
    the clip, its label and ``source``, or with ``dataset.drop_bad_labels`` skipped
    (:meth:`DatasetAdapter.bad_label`)."""
    keep = np.all(np.isfinite(labels), axis=1)
    if adapter.task == "classification":
        index = labels[:, 0]
        keep &= (labels.shape[1] == 1) & (index == np.round(index)) & (index >= 0) & (index < len(adapter.classes))
    expected = f"a class index below {len(adapter.classes)}" if adapter.classes else "finite numbers"
    for i in np.flatnonzero(~keep):
        adapter.bad_label(ids[i], split, f"label {labels[i].tolist()} in {source}: expected {expected}")
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
            raise UnknownNameError(f"precomputed: unknown task {task!r}", TASKS.names())
        if task == "classification" and not classes:
            raise ValueError("precomputed: a classification task needs `classes` (the class names, in index order)")
        self.files = {**{s: f"{s}.npz" for s in SPLITS}, **(files or {})}
        self.task, self.classes = task, (list(classes) if task == "classification" else None)
        self.given_label_names = label_names
        self.label_names = list(label_names or [])  # default names once the file says how many columns

    def clips(self, split: str) -> list[Clip]:
        raise TypeError("precomputed: this dataset ships features, not clips (use features())")

    def modalities(self) -> list[str]:
        """The modality arrays of the files, read from their headers without loading them: every split's file is
        readable, has clips and holds the same modalities with the same feature dimensions as the training file,
        whose ``labels`` column count names the labels when ``label_names`` is not given."""
        paths = {split: self.split_file(split) for split in SPLITS}
        shapes = {split: array_shapes(path) for split, path in paths.items()}
        modalities = {}
        for split, path in paths.items():
            lacking = [k for k in ("ids", "labels") if k not in shapes[split]]
            if lacking:
                raise ValueError(f"precomputed: {path} lacks {lacking} (has {sorted(shapes[split])})")
            if int(np.prod(shapes[split]["ids"])) == 0:
                raise ValueError(f"precomputed: {path} has no clips")
            modalities[split] = {k: shape for k, shape in shapes[split].items()
                                 if k not in ("ids", "labels") and not k.startswith(AVAILABLE_PREFIX)}
            for m, shape in modalities[split].items():
                if len(shape) != 3:
                    raise ValueError(f"precomputed: {path}: {m} has shape {list(shape)}, expected [N, T, D]")
        try:  # the time axis may differ between files (it is pooled), the feature dimension may not
            check_splits_agree(modalities, {split: str(path) for split, path in paths.items()}, from_axis=2)
        except ValueError as e:
            raise ValueError(f"precomputed: {e}") from None
        label_columns = int(np.prod(shapes["train"]["labels"][1:]))
        self.label_names = list(self.given_label_names or [f"label_{j}" for j in range(label_columns)])
        return sorted(modalities["train"])

    def split_file(self, split: str) -> Path:
        return self.expect_file(self.root / self.files[split], f"the {split} features (.npz or .h5 with ids, labels "
                                                               f"and one [N, T, D] array per modality)")

    def read_arrays(self, path: Path) -> dict[str, np.ndarray]:
        with reading(path):
            if path.suffix == ".npz":
                with np.load(path, allow_pickle=False) as data:
                    return {k: data[k] for k in data.files}
            if path.suffix in (".h5", ".hdf5"):
                with h5py.File(path, "r") as f:
                    return {k: f[k][()] for k in f if isinstance(f[k], h5py.Dataset)}
        raise ValueError(f"precomputed: {path} is neither .npz nor .h5/.hdf5")

    def features(self, split: str, segments: int) -> FeatureSet:
        check_split(split)
        path = self.split_file(split)
        arrays = self.read_arrays(path)
        lacking = [k for k in ("ids", "labels") if k not in arrays]
        if lacking:
            raise ValueError(f"precomputed: {path} lacks {lacking} (has {sorted(arrays)})")
        ids = [i.decode() if isinstance(i, bytes) else str(i) for i in arrays.pop("ids").reshape(-1)]
        if not ids:
            raise ValueError(f"precomputed: {path} has no clips")
        repeated = sorted(i for i, n in Counter(ids).items() if n > 1)
        if repeated:
            raise ValueError(f"precomputed: {path} lists clip ids {repeated[:5]} more than once")
        labels = arrays.pop("labels")
        if labels.shape[:1] != (len(ids),) or labels.dtype.kind not in "biuf":
            raise ValueError(f"precomputed: {path}: labels are {labels.dtype} of shape {list(labels.shape)}, expected "
                             f"numbers (class indices for classification) of shape [{len(ids)}] or [{len(ids)}, L]")
        labels = labels.astype(np.float32).reshape(len(ids), -1)
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
        keep = usable_labels(self, ids, labels, split, str(path))
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
