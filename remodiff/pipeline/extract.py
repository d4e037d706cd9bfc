"""Stage ``extract``: per-modality features of every segment into ``data/features/<split>.h5`` (resumable,
shardable over processes).

Each clip's video and audio are decoded here, a few clips ahead of the models (``segment.workers`` ffmpeg
processes), and dropped once its features are stored: memory holds a bounded number of decoded clips and no
stage writes decoded media to disk. Only the media some extractor reads are decoded."""
from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from remodiff.data import SPLITS
from remodiff.data.segments import SegmentedClip, decoded_clips, iter_segment_store
from remodiff.features import build_extractor
from remodiff.pipeline.common import DATA, FEATURES, PRECOMPUTED, SEGMENTS
from remodiff.progress import progress
from remodiff.store import (ClipStore, load_featureset, read_clip_attrs, save_clip_features, save_featureset,
                            storage_array, store_clip_ids, store_config, write_json_atomic)
from remodiff.launch import is_main_process, launched_processes

log = logging.getLogger(__name__)

# Scratch of the extract stage: per-clip features, kept outside data/features (which `dvc repro` empties before
# a run) and git-ignored (*.partial), so an interrupted extraction resumes clip by clip.
EXTRACT_SCRATCH = DATA / "extract.partial"
# Clips read and handed to the extractors together; each model backend's batch_size splits its forward passes.
CLIPS_PER_CHUNK = 16


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count``: every ``count``-th clip of each split, starting at clip ``index``."""

    index: int
    count: int

    def __post_init__(self) -> None:
        if not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index}/{self.count}: need 0 <= index < count")

    @classmethod
    def parse(cls, text: str) -> "Shard":
        """``"i/n"`` (as ``remodiff run extract --shard i/n``)."""
        index, sep, count = text.partition("/")
        if not sep or not index.strip().isdigit() or not count.strip().isdigit():
            raise ValueError(f"shard {text!r}: expected i/n, e.g. 0/4")
        return cls(int(index), int(count))

    @classmethod
    def launched(cls) -> "Shard | None":
        """This process's shard under ``accelerate launch`` / ``torchrun`` (RANK / WORLD_SIZE); None alone."""
        rank, world = launched_processes()
        return cls(rank, world) if world > 1 else None

    def scratch(self, split: str) -> Path:
        return EXTRACT_SCRATCH / f"{split}.shard-{self.index}-of-{self.count}.h5"


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("features", "segment.segments")
UNTRACKED = ("segment.workers",)  # how many clips are decoded at once: the same features, sooner


def run(params: dict, shard: Shard | None = None, merge_only: bool = False) -> None:
    """Per-modality features of every segment into ``data/features/<split>.h5``.

    A modality's settings are its backend's parameters plus ``dtype`` (float32 or float16: how the features
    are stored; readers get float32). With a ``shard`` (default: the launcher's RANK / WORLD_SIZE) only that
    shard's clips are extracted, into their own scratch ``data/extract.partial/<split>.shard-i-of-n.h5``; a run
    without a shard then merges every finished shard scratch, extracts whatever clips no shard did (none with
    ``merge_only``, which fails naming them instead) and writes the feature stores."""
    shard = shard or (None if merge_only else Shard.launched())
    dtypes = {m: cfg.get("dtype", "float32") for m, cfg in params["features"].items()}
    if store_config(SEGMENTS / "train.h5").get("precomputed"):
        if is_main_process() and shard is None:
            for split in SPLITS:
                write_precomputed(split, dtypes)
        return
    extractors = {m: build_extractor(m, {k: v for k, v in cfg.items() if k != "dtype"})
                  for m, cfg in params["features"].items()}
    train_clips = list(iter_segment_store(SEGMENTS / "train.h5"))
    for extractor in extractors.values():
        extractor.fit(train_clips)
    report = {split: extract_split(split, extractors, dtypes, params, shard, merge_only) for split in SPLITS}
    if shard is not None:
        log.info("extract: shard %d/%d done; `remodiff run extract --merge` writes the feature stores",
                 shard.index, shard.count)
        return
    if EXTRACT_SCRATCH.is_dir() and not any(EXTRACT_SCRATCH.iterdir()):
        EXTRACT_SCRATCH.rmdir()
    report["counts"] = {key: sum(len(r[key]) for r in report.values()) for key in ("undecodable", "padded")}
    write_json_atomic(FEATURES / "report.json", report)


def task_attrs(config: dict) -> dict:
    """The feature sets' task convention, from the segment store's config."""
    return {"task": config.get("task", "regression"), "classes": config.get("classes")}


def write_precomputed(split: str, dtypes: dict[str, str]) -> None:
    """A dataset's own features (kept by the segment stage) as the feature store; ``params.features`` keys pick
    which of its modalities to keep (their extractor settings do not apply, only ``dtype``)."""
    path = SEGMENTS / f"{split}.h5"
    config = store_config(path)
    fs = load_featureset(path, group=PRECOMPUTED)
    unknown = [m for m in dtypes if m not in fs.modalities]
    if unknown:
        raise ValueError(f"features lists modalities {unknown} that the dataset's precomputed features lack; "
                         f"it has {fs.modalities}: make the keys of params.features a subset of these")
    fs = fs.subset(list(dtypes))
    fs.attrs = {**fs.attrs, **task_attrs(config), "extractors": "precomputed", "modalities": list(dtypes)}
    save_featureset(FEATURES / f"{split}.h5", fs, dtypes)
    log.info("extract %s: %d clips of precomputed %s features, no extractor run", split, len(fs),
             ", ".join(f"{m} {fs.features[m].shape[2]}-d" for m in fs.modalities))


def extract_split(split: str, extractors: dict, dtypes: dict[str, str], params: dict, shard: Shard | None = None,
                  merge_only: bool = False) -> dict:
    """Extract one split; returns what its report.json entry says (clips stored, undecodable and padded clips)."""
    segments = SEGMENTS / f"{split}.h5"
    config = store_config(segments)
    all_ids = store_clip_ids(segments)
    ids = all_ids if shard is None else all_ids[shard.index::shard.count]
    # Per-clip results are reused only under the same extractor settings and the same segmentation.
    scratch_config = {"features": params["features"], "segments": config}
    scratch = EXTRACT_SCRATCH / f"{split}.h5" if shard is None else shard.scratch(split)
    media = set().union(*(e.media for e in extractors.values()))
    seconds = {m: 0.0 for m in extractors}
    missing = {m: 0 for m in extractors}
    started = time.perf_counter()
    with ClipStore(scratch, scratch_config) as store:
        shard_files = [] if shard is not None else merge_shards(store, split)
        todo = [cid for cid in ids if not store.done(cid)]
        if merge_only and todo:
            raise ValueError(f"extract --merge {split}: {len(todo)} clips are in no finished shard, e.g. {todo[:5]}; "
                             "run the missing shards (or extract without --merge to do them here)")
        if len(todo) < len(ids):
            log.info("extract %s: resuming, %d of %d clips already done", split, len(ids) - len(todo), len(ids))
        bars = {m: progress(total=len(ids), initial=len(ids) - len(todo), desc=f"extract {split} {m}", position=i)
                for i, m in enumerate(extractors)}
        clips = decoded_clips(segments, media, only=set(todo), workers=params["segment"].get("workers", 1),
                              ahead=CLIPS_PER_CHUNK)
        while batch := list(islice(clips, CLIPS_PER_CHUNK)):
            for clip, error in batch:
                if error is not None:  # kept in the scratch (a resumed or merged run does not retry it), not stored
                    log.warning("extract %s: skipping %s: %s", split, clip.id, error)
                    store.write(clip.id, {}, {"labels": clip.labels, "undecodable": error}, flush=False)
            chunk = [clip for clip, error in batch if error is None]
            results = {}
            for m, extractor in extractors.items():
                start = time.perf_counter()
                results[m] = extract_chunk(extractor, chunk)
                seconds[m] += time.perf_counter() - start
                missing[m] += sum(not present for _, present in results[m])
                bars[m].update(len(batch))
            for i, clip in enumerate(chunk):
                arrays = {}
                for m, per_clip in results.items():
                    x, present = per_clip[i]
                    arrays[f"features/{m}"] = storage_array(x[None], dtypes[m], m, [clip.id])[0]
                    arrays[f"available/{m}"] = np.full(len(x), present)
                store.write(clip.id, arrays, {"labels": clip.labels, "padded": clip.padded}, flush=False)
            store.file.flush()  # once per chunk: an interruption loses at most one chunk's work
        for bar in bars.values():
            bar.close()
        attrs = {clip_id: read_clip_attrs(store.clips[clip_id]) for clip_id in ids}
        undecodable = [{"clip": c, "reason": a["undecodable"]} for c, a in attrs.items() if "undecodable" in a]
        report = {"clips": len(ids) - len(undecodable), "undecodable": undecodable,
                  "padded": [c for c, a in attrs.items() if a.get("padded")]}
        if shard is None:  # a shard's scratch is renamed into place on exit, for a merge to collect
            stored = [c for c, a in attrs.items() if "undecodable" not in a]
            save_clip_features(FEATURES / f"{split}.h5", store, stored,
                               {m: (params["segment"]["segments"], e.dim) for m, e in extractors.items()},
                               config["label_names"], {"extractors": params["features"], "modalities": list(dtypes),
                                                       **task_attrs(config)}, dtypes)
    if shard is None:
        # the ClipStore renamed its partial on success; the feature set now holds everything
        for path in [scratch, *shard_files]:
            path.unlink()
    elapsed = time.perf_counter() - started
    log.info("extract %s: %d clips (%d now, %d undecodable) in %.1fs, %.2f clips/s (decoding %s)", split, len(ids),
             len(todo), len(undecodable), elapsed, len(todo) / max(elapsed, 1e-9),
             ", ".join(sorted(media)) or "nothing")
    for m in extractors:
        log.info("extract %s %s: %d without the modality, model time %.1fs", split, m, missing[m], seconds[m])
    return report


def merge_shards(store: ClipStore, split: str) -> list[Path]:
    """Copy the clips of every finished shard scratch of ``split`` made with ``store``'s settings into ``store``;
    returns the shard files merged."""
    merged = []
    for path in sorted(EXTRACT_SCRATCH.glob(f"{split}.shard-*-of-*.h5")):
        if not store.merge(path):
            log.warning("extract %s: %s was made with other settings, not merged", split, path)
            continue
        merged.append(path)
        log.info("extract %s: merged %s", split, path)
    return merged


def extract_chunk(extractor, clips: list[SegmentedClip]) -> list[tuple[np.ndarray, bool]]:
    """``(features [S, D], present)`` per clip; the clips having the modality go to the extractor together."""
    present = [clip for clip in clips if extractor.has_modality(clip)]
    extracted = dict(zip([c.id for c in present], extractor.extract_batch(present) if present else []))
    results = []
    for clip in clips:
        n_segments = len(clip.frames)
        if clip.id not in extracted:
            results.append((np.zeros((n_segments, extractor.dim), np.float32), False))
            continue
        x = extracted[clip.id]
        if x.shape != (n_segments, extractor.dim):
            raise ValueError(f"{extractor.modality} extractor gave {x.shape} for clip {clip.id}, "
                             f"expected {(n_segments, extractor.dim)}")
        if not np.all(np.isfinite(x)):
            raise ValueError(f"non-finite {extractor.modality} features for clip {clip.id}")
        results.append((x.astype(np.float32, copy=False), True))
    return results
