"""Stage ``segment``: probe every clip (ffmpeg) and cut its timeline and transcript into equal segments.

The segment store records where each clip's media lie, how long it is, whether it has audio, its transcript per
segment, labels and given features -- a few hundred bytes per clip. It keeps no decoded frames or audio: the
extract stage decodes each clip straight into the extractors (remodiff/data/segments.py ``decoded_clips``),
so no stage holds a split's decoded media on disk or in memory."""
from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from remodiff.data import SPLITS, build_dataset
from remodiff.data.asr import build_asr
from remodiff.data.decode import DecodeError, decode_audio, probe, split_transcript
from remodiff.pipeline.common import DATA, PRECOMPUTED, SEGMENTS
from remodiff.progress import progress
from remodiff.store import (ClipStore, FeatureSet, check_splits_agree, layout, read_clip_attrs, write_featureset,
                            write_json_atomic)

log = logging.getLogger(__name__)


# Where probed clips accumulate until a split is complete: outside data/segments, which `dvc repro` empties before
# the stage runs, and git-ignored (*.partial), so an interrupted segmentation resumes clip by clip under DVC too.
SEGMENT_SCRATCH = DATA / "segment.partial"


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("dataset", "segment")


def run(params: dict) -> dict:
    """Probe every clip of every split and cut it into ``segments`` equal parts; unreadable clips are skipped and
    listed. Clips without a transcript are transcribed when ``dataset.asr`` is set (their audio decoded for that).

    A dataset that ships features (``adapter.precomputed``) is not decoded: its feature set of each split is
    stored in the segment store (group ``precomputed``) for the extract stage to write out. A clip without a video
    file (``path`` None) is not decoded either: its transcript and given features are stored with empty media.
    Given features (``dataset.given_features``) are stored per clip as ``given/<modality>``.

    Every split is listed (or its features read) before any clip is probed, so that splits sharing clip ids
    (:meth:`DatasetAdapter.check_disjoint`) or precomputed splits of different feature dimensions fail at once."""
    cfg = params["segment"]
    adapter = build_dataset(params["dataset"])
    asr = None if adapter.precomputed else build_asr(params["dataset"].get("asr"))
    report: dict = {"clips": {}, "skipped": [], "no_audio": [], "no_transcript": [], "transcribed": []}
    feature_sets = {split: adapter.features(split, cfg["segments"]) for split in SPLITS}
    split_clips = {split: adapter.clips_with_given(split) if fs is None else [] for split, fs in feature_sets.items()}
    adapter.check_disjoint({split: [c.id for c in split_clips[split]] if fs is None else fs.ids
                            for split, fs in feature_sets.items()})
    if adapter.precomputed:
        check_splits_agree({split: layout(fs) for split, fs in feature_sets.items()},
                           {split: fs.attrs.get("source", split) for split, fs in feature_sets.items()})
    listed = {c.id for clips in split_clips.values() for c in clips}
    for split in SPLITS:
        precomputed, clips = feature_sets[split], split_clips[split]
        store_config = {"segments": cfg["segments"], "fps": cfg["fps"], "frame_size": cfg["frame_size"],
                        "sample_rate": cfg["sample_rate"], "label_names": adapter.label_names,
                        "task": adapter.task, "classes": adapter.classes, "precomputed": adapter.precomputed,
                        "dataset": params["dataset"]}
        with ClipStore(SEGMENTS / f"{split}.h5", store_config, scratch=SEGMENT_SCRATCH / f"{split}.h5") as store:
            if precomputed is not None:
                store_precomputed(store, precomputed, split, report)
                continue
            todo = [c for c in clips if not store.done(c.id)]
            if len(todo) < len(clips):
                log.info("segment %s: resuming, %d of %d clips already done", split, len(clips) - len(todo), len(clips))
            for clip in [c for c in todo if c.path is None]:
                store_undecoded(store, clip, cfg["segments"])
            store.file.flush()
            todo = [c for c in todo if c.path is not None]

            def work(clip):
                try:
                    return clip, probe(clip.path), None
                except DecodeError as e:
                    return clip, None, str(e)

            root = params["dataset"]["root"]
            with ThreadPoolExecutor(max(1, cfg.get("workers", 1))) as pool:
                for clip, info, error in progress(pool.map(work, todo), total=len(todo), desc=f"segment {split}"):
                    if error is not None:
                        log.warning("skipping %s: %s", clip.id, error)
                        report["skipped"].append({"clip": clip.id, "split": split, "reason": error})
                        continue
                    audio_source = clip.path if info["has_audio"] else clip.audio_path
                    transcript = split_transcript(clip.transcript, cfg["segments"]) if clip.transcript else None
                    transcribed = False
                    if asr is not None and transcript is None and audio_source is not None:
                        text = asr.transcribe(decode_audio(audio_source, cfg["sample_rate"]), cfg["sample_rate"])
                        transcript = split_transcript(text, cfg["segments"]) if text else None
                        transcribed = transcript is not None
                    store.write(clip.id, given_arrays(clip),
                                {"video": relative_to(clip.path, root), "audio_source": relative_to(audio_source, root),
                                 "has_audio": audio_source is not None, "transcript": transcript,
                                 "labels": clip.labels, "duration": info["duration"],
                                 "transcribed": transcribed})
            for cid in sorted(store.clips):
                attrs = read_clip_attrs(store.clips[cid])
                entry = {"clip": cid, "split": split}
                if not attrs["has_audio"] and "audio" not in store.clips[cid].get("given", {}):
                    report["no_audio"].append(entry)
                if attrs["transcript"] is None:
                    report["no_transcript"].append(entry)
                if attrs.get("transcribed"):
                    report["transcribed"].append(entry)
            report["clips"][split] = len(store.clips)
    if SEGMENT_SCRATCH.is_dir() and not any(SEGMENT_SCRATCH.iterdir()):
        SEGMENT_SCRATCH.rmdir()
    adapter.skip_unlabelled_given(listed)
    report["skipped"] = adapter.skipped + report["skipped"]
    report["none_has"] = whole_splits_without(report)
    report["counts"] = {k: len(v) for k, v in report.items() if isinstance(v, list)}
    write_json_atomic(SEGMENTS / "report.json", report)
    log.info("segment: %s clips, %s", report["clips"], report["counts"])
    return report


def whole_splits_without(report: dict) -> dict[str, list[str]]:
    """A split none of whose clips has audio (or a transcript) is a dataset without that modality, not thousands of
    faulty clips (RAVDESS has no transcripts): its clips leave the per-clip lists, the split is named once."""
    whole: dict[str, list[str]] = {}
    for key in ("no_audio", "no_transcript"):
        per_split = {split: sum(e["split"] == split for e in report[key]) for split in report["clips"]}
        whole[key] = [split for split, n in per_split.items() if n and n == report["clips"][split]]
        report[key] = [e for e in report[key] if e["split"] not in whole[key]]
        if whole[key]:
            log.info("segment: no clip of %s has %s", ", ".join(whole[key]),
                     "audio" if key == "no_audio" else "a transcript")
    return whole


def relative_to(path, root) -> str | None:
    """``path`` relative to the dataset root (a moved or re-mounted dataset still resolves), absolute outside it."""
    if path is None:
        return None
    path, root = Path(path).resolve(), Path(root).resolve()
    return str(path.relative_to(root)) if path.is_relative_to(root) else str(path)


def given_arrays(clip) -> dict:
    return {f"given/{m}": row for m, row in clip.given.items()}


def store_undecoded(store: ClipStore, clip, segments: int) -> None:
    """A clip without video (its audio is missing unless given): the transcript's words per segment, its given
    features."""
    store.write(clip.id, given_arrays(clip),
                {"video": None, "audio_source": None, "has_audio": False, "has_video": False, "labels": clip.labels,
                 "duration": 0.0,
                 "transcript": split_transcript(clip.transcript, segments) if clip.transcript else None,
                 "transcribed": False}, flush=False)  # nothing to decode: one flush for all of them


def store_precomputed(store: ClipStore, fs: FeatureSet, split: str, report: dict) -> None:
    """Keep a dataset's own features in the segment store; clips lacking audio / text entirely are reported."""
    if PRECOMPUTED in store.file:
        del store.file[PRECOMPUTED]
    write_featureset(store.file.create_group(PRECOMPUTED), fs)
    for modality, key in (("audio", "no_audio"), ("text", "no_transcript")):
        if modality in fs.available:
            missing = ~fs.available[modality].any(axis=1)
            report[key] += [{"clip": cid, "split": split} for cid, m in zip(fs.ids, missing) if m]
    report["clips"][split] = len(fs)
