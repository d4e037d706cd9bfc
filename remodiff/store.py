"""The one HDF5 reader/writer of ReMoDiff.

Every HDF5 file is written through :func:`atomic_h5`: data goes to ``<name>.partial`` and is renamed
into place only when the writer finishes, so a crash never leaves a truncated file under the real name.
A ``.partial`` left by an interrupted run is reopened by :class:`ClipStore` so work resumes clip by clip.

Layouts (documented in the README):

* segment store ``data/segments/<split>.h5``: ``clips/<clip_id>`` with attrs ``video`` and ``audio_source`` (files
  relative to the dataset root, or null), ``duration``, ``transcript`` (JSON list of S strings, or null),
  ``has_audio``, ``has_video``, ``labels``, ``complete`` and datasets ``given/<modality> [D]``; no decoded media.
* feature set (feature store ``data/features/<split>.h5`` or a group inside another file):
  ``ids [N]``, ``labels [N,L]`` (attr ``label_names``), ``features/<modality> [N,S,D]`` float32 or float16
  (read back as float32), ``available/<modality> [N,S]`` bool.
* per-clip features (the extract stage's resumable scratch, a :class:`ClipStore`):
  ``clips/<clip_id>/{features/<modality> [S,D], available/<modality> [S]}`` with attr ``labels``;
  :func:`save_clip_features` writes it out as a feature set.
"""
from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterator

import h5py
import numpy as np

log = logging.getLogger(__name__)
STRING = h5py.string_dtype()
#: the modalities a clip can have (a run uses those its features section names)
MODALITIES = ("audio", "video", "text")


def partial_path(path: Path) -> Path:
    return path.with_name(path.name + ".partial")


@contextmanager
def atomic_h5(path: str | Path, resume: bool = False, scratch: str | Path | None = None) -> Iterator[h5py.File]:
    """Open ``path.partial`` (or ``scratch``) for writing and rename it to ``path`` on success.

    With ``resume`` an existing partial file is reopened (append mode) instead of truncated.
    On an exception it stays, so a resumable writer can continue from it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(scratch) if scratch is not None else partial_path(path)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    mode = "a" if resume and tmp.exists() else "w"
    with h5py.File(tmp, mode) as f:
        yield f
    os.replace(tmp, path)


def write_text_atomic(path: str | Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    tmp.write_text(text)
    os.replace(tmp, path)


def write_json_atomic(path: str | Path, payload) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False) + "\n")


# --------------------------------------------------------------------------------------------
# Feature sets: what extractors write and imputers / fusers read.
# --------------------------------------------------------------------------------------------
@dataclass
class FeatureSet:
    """Per-clip, per-segment features of several modalities.

    ``features[m]`` is ``[N, S, D]`` float32; ``available[m]`` is ``[N, S]`` bool (False = the modality is
    missing for that clip/segment: naturally, e.g. no transcript, or by a mask). Missing slots hold zeros.
    """

    ids: list[str]
    features: dict[str, np.ndarray]
    available: dict[str, np.ndarray]
    labels: np.ndarray
    label_names: list[str]
    attrs: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.ids)
        if self.labels.shape[0] != n:
            raise ValueError(f"labels have {self.labels.shape[0]} rows for {n} clips")
        if set(self.features) != set(self.available):
            raise ValueError(f"features {sorted(self.features)} and availability {sorted(self.available)} differ")
        for m, x in self.features.items():
            a = self.available[m]
            if x.shape[0] != n or a.shape != x.shape[:2]:
                raise ValueError(f"modality {m!r}: features {x.shape} / availability {a.shape} do not fit {n} clips")

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    @property
    def n_segments(self) -> int:
        return next(iter(self.features.values())).shape[1]

    def __len__(self) -> int:
        return len(self.ids)

    def with_mask(self, mask: dict[str, np.ndarray]) -> "FeatureSet":
        """A copy where a slot is available only if it is available here *and* in ``mask``; missing slots zeroed."""
        features, available = {}, {}
        for m in self.modalities:
            if m not in mask:
                raise ValueError(f"mask has no entry for modality {m!r} (has {sorted(mask)})")
            if mask[m].shape != self.available[m].shape:
                raise ValueError(f"mask for {m!r} has shape {mask[m].shape}, expected {self.available[m].shape}")
            available[m] = self.available[m] & mask[m].astype(bool)
            features[m] = np.where(available[m][..., None], self.features[m], 0.0).astype(np.float32)
        return FeatureSet(list(self.ids), features, available, self.labels.copy(), list(self.label_names), dict(self.attrs))

    def rows(self, indices) -> "FeatureSet":
        """The clips at ``indices`` (in that order)."""
        indices = np.asarray(indices, dtype=int)
        return FeatureSet([self.ids[i] for i in indices], {m: x[indices] for m, x in self.features.items()},
                          {m: a[indices] for m, a in self.available.items()}, self.labels[indices],
                          list(self.label_names), dict(self.attrs))

    def having(self, modalities: list[str]) -> "FeatureSet":
        """The clips that have every one of ``modalities`` (in some segment)."""
        present = np.stack([self.available[m].any(axis=1) for m in modalities], axis=1).all(axis=1)
        return self.rows(np.flatnonzero(present))

    def subset(self, modalities: list[str]) -> "FeatureSet":
        missing = [m for m in modalities if m not in self.features]
        if missing:
            raise ValueError(f"modalities {missing} are not in this feature set (has {self.modalities})")
        return FeatureSet(list(self.ids), {m: self.features[m] for m in modalities},
                          {m: self.available[m] for m in modalities}, self.labels, list(self.label_names), dict(self.attrs))


def concatenate(parts: list[FeatureSet]) -> FeatureSet:
    """One feature set of the clips of ``parts`` (same modalities and labels), in order."""
    first = parts[0]
    return FeatureSet([i for p in parts for i in p.ids],
                      {m: np.concatenate([p.features[m] for p in parts]) for m in first.modalities},
                      {m: np.concatenate([p.available[m] for p in parts]) for m in first.modalities},
                      np.concatenate([p.labels for p in parts]), list(first.label_names), dict(first.attrs))


FEATURE_DTYPES = ("float32", "float16")


def storage_array(x: np.ndarray, dtype: str, modality: str, ids: list[str]) -> np.ndarray:
    """``x`` as stored: ``dtype`` (float32 or float16), refusing values that are (or become) non-finite."""
    if dtype not in FEATURE_DTYPES:
        raise ValueError(f"{modality}: feature dtype must be one of {FEATURE_DTYPES}, got {dtype!r}")
    with np.errstate(over="ignore"):  # overflow is reported below, naming the clips
        stored = x.astype(dtype)
    if not np.all(np.isfinite(stored)):
        bad = np.unique(np.nonzero(~np.isfinite(stored.reshape(len(stored), -1)))[0])
        hint = " (beyond the float16 range; store them as float32)" if np.all(np.isfinite(x)) else ""
        raise ValueError(f"non-finite {modality} features{hint} for clips {[ids[i] for i in bad[:5]]}")
    return stored


def create_featureset(group: h5py.Group, ids: list[str], shapes: dict[str, tuple[int, int]], n_labels: int,
                      label_names: list[str], attrs: dict, dtypes: dict[str, str] | None = None) -> None:
    """The empty layout of a feature set of the clips ``ids``: ``shapes[m]`` = (segments, dim) of modality ``m``;
    features stored as ``dtypes[m]`` (default float32), chunked per clip so it can be filled clip by clip."""
    dtypes = dtypes or {}
    group.create_dataset("ids", data=np.array(ids, dtype=object), dtype=STRING)
    group.create_dataset("labels", (len(ids), n_labels), np.float32)
    group["labels"].attrs["label_names"] = json.dumps(label_names)
    for m, shape in shapes.items():
        dtype = dtypes.get(m, "float32")
        if dtype not in FEATURE_DTYPES:
            raise ValueError(f"{m}: feature dtype must be one of {FEATURE_DTYPES}, got {dtype!r}")
        group.create_dataset(f"features/{m}", (len(ids), *shape), dtype, compression="gzip", shuffle=True,
                             chunks=(1, *shape) if ids and all(shape) else None)
        group.create_dataset(f"available/{m}", (len(ids), shape[0]), bool)
    group.attrs["meta"] = json.dumps(attrs)


def write_featureset(group: h5py.Group, fs: FeatureSet, dtypes: dict[str, str] | None = None) -> None:
    """Write ``fs``; ``dtypes`` gives a modality's storage dtype (default float32; float16 halves the file)."""
    dtypes = dtypes or {}
    create_featureset(group, fs.ids, {m: fs.features[m].shape[1:] for m in fs.modalities}, fs.labels.shape[1],
                      fs.label_names, fs.attrs, dtypes)
    group["labels"][...] = fs.labels.astype(np.float32)
    for m in fs.modalities:
        if len(fs):
            group[f"features/{m}"][...] = storage_array(fs.features[m], dtypes.get(m, "float32"), m, fs.ids)
            group[f"available/{m}"][...] = fs.available[m].astype(bool)


def read_featureset(group: h5py.Group, modalities: list[str] | None = None) -> FeatureSet:
    names = list(group["features"]) if modalities is None else modalities
    missing = [m for m in names if m not in group["features"]]
    if missing:
        raise ValueError(f"{group.file.filename}: no features for modality {missing}; the store has {list(group['features'])}")
    return FeatureSet(
        ids=[s.decode() if isinstance(s, bytes) else s for s in group["ids"][()]],
        features={m: group[f"features/{m}"][()].astype(np.float32, copy=False) for m in names},
        available={m: group[f"available/{m}"][()].astype(bool) for m in names},
        labels=group["labels"][()],
        label_names=json.loads(group["labels"].attrs["label_names"]),
        attrs=json.loads(group.attrs.get("meta", "{}")),
    )


def check_splits_agree(shapes: dict[str, dict[str, tuple[int, ...]]], sources: dict[str, str],
                       from_axis: int = 1) -> None:
    """Refuse splits that cannot meet in one model: ``shapes[split][name]`` (a modality's array, or ``labels``, read
    from ``sources[split]``) must name the same arrays in every split, of the same shape from ``from_axis`` on (1:
    all but the clip axis; 2: the feature dimension only, for raw arrays whose time axis may differ)."""
    first, *others = shapes
    for split in others:
        for name in sorted(set(shapes[first]) ^ set(shapes[split])):
            has, lacks = (first, split) if name in shapes[first] else (split, first)
            raise ValueError(f"{name}: {sources[has]} ({has}) has it, {sources[lacks]} ({lacks}) does not; every "
                             f"split needs the same modalities")
        for name, shape in shapes[first].items():
            other = shapes[split][name]
            if tuple(shape[from_axis:]) != tuple(other[from_axis:]):
                raise ValueError(f"{name}: shape {list(shape)} in {sources[first]} ({first}) but {list(other)} in "
                                 f"{sources[split]} ({split}); every split needs the same feature dimensions")


def layout(fs: FeatureSet) -> dict[str, tuple[int, ...]]:
    """The shapes :func:`check_splits_agree` compares: labels and each modality's features."""
    return {"labels": fs.labels.shape, **{m: x.shape for m, x in fs.features.items()}}


def save_featureset(path: str | Path, fs: FeatureSet, dtypes: dict[str, str] | None = None) -> None:
    with atomic_h5(path) as f:
        write_featureset(f, fs, dtypes)


def load_featureset(path: str | Path, modalities: list[str] | None = None, group: str | None = None) -> FeatureSet:
    """The feature set stored at ``path`` (or in its ``group``, e.g. a segment store's precomputed features)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"feature store {path} does not exist; run the extract stage first")
    with h5py.File(path, "r") as f:
        return read_featureset(f if group is None else f[group], modalities)


def load_splits(paths: dict[str, Path]) -> dict[str, FeatureSet]:
    """The feature sets of several splits (``{split: feature store}``), refused unless they agree in modalities,
    feature dimensions and label columns (:func:`check_splits_agree`)."""
    sets = {split: load_featureset(path) for split, path in paths.items()}
    check_splits_agree({split: layout(fs) for split, fs in sets.items()}, {split: str(p) for split, p in paths.items()})
    return sets


# --------------------------------------------------------------------------------------------
# Clip stores: one group per clip, written incrementally and resumable.
# --------------------------------------------------------------------------------------------
class ClipStore:
    """Writes one HDF5 group per clip into ``<path>.partial``; finished clips survive an interruption.

    Use as a context manager: on a clean exit the file is renamed to ``path``. A re-run after a crash
    reopens the ``.partial`` and :meth:`done` tells which clips are already complete. ``scratch`` puts the
    partial file elsewhere, e.g. outside a DVC output, which DVC empties before re-running a stage.
    """

    def __init__(self, path: str | Path, attrs: dict, scratch: str | Path | None = None):
        self.path = Path(path)
        self.attrs = attrs
        self.scratch = Path(scratch) if scratch is not None else partial_path(self.path)
        self._ctx = atomic_h5(self.path, resume=True, scratch=self.scratch)

    def __enter__(self) -> "ClipStore":
        self.file = self._ctx.__enter__()
        stored = self.file.attrs.get("config")
        config = json.dumps(self.attrs, sort_keys=True)
        if stored is not None and stored != config:
            # An interrupted run with other settings: its clips are not reusable.
            log.warning("%s: settings changed since the interrupted run, starting over", self.scratch)
            for key in list(self.file):
                del self.file[key]
        self.file.attrs["config"] = config
        self.clips = self.file.require_group("clips")
        return self

    def __exit__(self, *exc) -> None:
        self._ctx.__exit__(*exc)

    def done(self, clip_id: str) -> bool:
        return clip_id in self.clips and bool(self.clips[clip_id].attrs.get("complete", False))

    def merge(self, path: str | Path) -> bool:
        """Copy the finished clips of another clip store file made with the same settings (a shard's) that this
        one lacks; False (nothing copied) when its settings differ."""
        with h5py.File(path, "r") as other:
            if other.attrs.get("config") != self.file.attrs["config"]:
                return False
            for clip_id, group in other["clips"].items():
                if group.attrs.get("complete", False) and not self.done(clip_id):
                    other.copy(group, self.clips, name=clip_id)
        self.file.flush()
        return True

    def write(self, clip_id: str, arrays: dict[str, np.ndarray], attrs: dict, flush: bool = True) -> None:
        """Store one clip; ``flush=False`` leaves flushing to the caller (many cheap clips: a flush each costs
        more than writing them)."""
        if clip_id in self.clips:
            del self.clips[clip_id]
        g = self.clips.create_group(clip_id)
        for name, value in arrays.items():
            g.create_dataset(name, data=value, compression="gzip", shuffle=True)
        for key, value in attrs.items():
            g.attrs[key] = json.dumps(value)
        g.attrs["complete"] = True  # set last: a clip cut off mid-write is redone
        if flush:
            self.file.flush()


def save_clip_features(path: str | Path, store: ClipStore, ids: list[str], shapes: dict[str, tuple[int, int]],
                       label_names: list[str], attrs: dict, dtypes: dict[str, str] | None = None) -> None:
    """The feature set of the clips ``ids`` (in that order) of a per-clip feature store (layout above), written to
    ``path`` one clip at a time: memory holds one clip's features however many clips there are. ``shapes`` gives
    each modality's (segments, dim); per-clip features are already in their storage dtype."""
    labels = []
    for clip_id in ids:
        if not store.done(clip_id):
            raise ValueError(f"{store.path}: clip {clip_id} has no features yet")
        labels.append(read_clip_attrs(store.clips[clip_id])["labels"])
    labels = np.array(labels, np.float32).reshape(len(ids), -1) if ids else np.zeros((0, len(label_names)), np.float32)
    with atomic_h5(path) as f:
        create_featureset(f, ids, shapes, labels.shape[1], label_names, attrs, dtypes)
        f["labels"][...] = labels
        for i, clip_id in enumerate(ids):
            g = store.clips[clip_id]
            for m in shapes:
                f[f"features/{m}"][i] = g[f"features/{m}"][()]
                f[f"available/{m}"][i] = g[f"available/{m}"][()]


def read_clip_attrs(group: h5py.Group) -> dict:
    return {k: json.loads(v) for k, v in group.attrs.items() if k != "complete"}


def store_config(path: str | Path) -> dict:
    """The settings a clip store (a segment store) was written with."""
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["config"])


def store_clip_ids(path: str | Path) -> list[str]:
    """The ids of a clip store's clips, sorted."""
    with h5py.File(path, "r") as f:
        return sorted(f["clips"])


def iter_store_clips(path: str | Path, only: Collection[str] | None = None) -> Iterator[tuple[str, dict, dict]]:
    """``(clip_id, attrs, given)`` of a clip store's clips in id order (``only``: just those ids), one at a time;
    ``given`` holds the clip's dataset-given feature rows per modality."""
    with h5py.File(path, "r") as f:
        for clip_id in sorted(f["clips"]):
            if only is not None and clip_id not in only:
                continue
            g = f["clips"][clip_id]
            yield clip_id, read_clip_attrs(g), ({m: row[()] for m, row in g["given"].items()} if "given" in g else {})


def describe(path: str | Path) -> str:
    """A human summary of any ReMoDiff HDF5 file (used by ``remodiff info``)."""
    lines = [str(path)]
    with h5py.File(path, "r") as f:
        for key, value in f.attrs.items():
            lines.append(f"  attr {key}: {value if len(str(value)) < 200 else str(value)[:200] + '...'}")

        def visit(name, obj):
            if name.startswith("clips/") and name.count("/") > 1:
                return
            if isinstance(obj, h5py.Dataset):
                lines.append(f"  {name}: {obj.shape} {obj.dtype}")

        f.visititems(visit)
        if "clips" in f:
            clips = f["clips"]
            complete = sum(bool(clips[c].attrs.get("complete", False)) for c in clips)
            lines.append(f"  clips: {len(clips)} ({complete} complete)")
            for cid in list(clips)[:3]:
                shapes = ", ".join(f"{k} {clips[cid][k].shape}" for k in clips[cid])
                lines.append(f"    {cid}: {shapes}")
    return "\n".join(lines)
