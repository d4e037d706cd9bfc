"""The real development sets of ``../shared/data`` as ``(train, val, test)`` feature sets, for benchmarks.

* ``ravdess``: ``ravdess-au-mfcc-dev`` through the ``precomputed`` adapter (video 35-d action units, audio 259-d
  MFCC values, one segment, 8 emotions; train = actors 1-16, val = 17-18, test = 19-20).
* ``fi``: ``fi-v2-audio-text``: audio = the 26 given librosa statistics, text = the pipeline's ``tfidf`` extractor
  over the official transcripts (one segment), labels = Big Five + interview. test = the official validation
  split; val = the official training clips of every 10th YouTube video (grouped, so no speaker leaks into val).

The pipeline reads the same data through its adapters (README, "Real data"); this module lets a benchmark score
models on exactly these splits without running DVC.
"""
from __future__ import annotations

import csv
import pickle
import zlib
from pathlib import Path

import numpy as np

from remodiff.data import build_dataset
from remodiff.features import SegmentedClip, build_extractor
from remodiff.store import FeatureSet

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
EMOTIONS = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
TRAITS = ["extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness", "interview"]


def ravdess(root: Path = SHARED / "ravdess-au-mfcc-dev") -> tuple[FeatureSet, FeatureSet, FeatureSet]:
    adapter = build_dataset({"name": "precomputed", "root": str(root), "precomputed": {
        "task": "classification", "label_names": ["emotion"],
        "classes": EMOTIONS}})
    sets = tuple(adapter.features(split, 1) for split in ("train", "val", "test"))
    for fs in sets:  # the task, as the pipeline's extract stage records it in the feature stores
        fs.attrs.update(task="classification", classes=EMOTIONS)
    return sets


def youtube_id(video_file: str) -> str:
    return video_file.rsplit(".", 2)[0]


def fi(root: Path = SHARED / "fi-v2-audio-text", text_features: int = 256) -> tuple[FeatureSet, FeatureSet, FeatureSet]:
    with open(root / "audio_features.csv") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c not in ("video_file", "split")]
    labels, transcripts = {}, {}
    for official in ("training", "validation"):
        with open(root / f"annotation_{official}.pkl", "rb") as f:
            annotation = pickle.load(f, encoding="latin1")
        for clip in annotation[TRAITS[0]]:
            labels[clip] = [float(annotation[t][clip]) for t in TRAITS]
        with open(root / f"transcription_{official}.pkl", "rb") as f:
            transcripts.update(pickle.load(f, encoding="latin1"))

    def split_of(row: dict) -> str:
        if row["split"] == "validation":
            return "test"
        return "val" if zlib.crc32(youtube_id(row["video_file"]).encode()) % 10 == 0 else "train"

    clips = {s: [r for r in rows if split_of(r) == s and r["video_file"] in labels] for s in ("train", "val", "test")}
    text = build_extractor("text", {"backend": "tfidf", "max_features": text_features})

    def segmented(r: dict) -> SegmentedClip:
        words = (transcripts.get(r["video_file"]) or "").strip()
        return SegmentedClip(r["video_file"], np.zeros((1, 0, 0, 0, 3), np.uint8), np.zeros((1, 0), np.float32),
                             True, [words] if words else None, labels[r["video_file"]], 0.0, 16000)

    text.fit([segmented(r) for r in clips["train"]])
    sets = []
    for split, split_rows in clips.items():
        audio = np.array([[float(r[c]) for c in columns] for r in split_rows], np.float32)[:, None, :]
        has_text = np.array([bool((transcripts.get(r["video_file"]) or "").strip()) for r in split_rows])
        words = np.zeros((len(split_rows), 1, text.dim), np.float32)
        with_text = [segmented(r) for r, t in zip(split_rows, has_text) if t]
        if with_text:
            words[has_text] = np.stack(text.extract_batch(with_text))
        sets.append(FeatureSet([r["video_file"] for r in split_rows], {"audio": audio, "text": words},
                               {"audio": np.ones((len(split_rows), 1), bool), "text": has_text[:, None]},
                               np.array([labels[r["video_file"]] for r in split_rows], np.float32), list(TRAITS),
                               {"task": "regression", "classes": None}))
    return tuple(sets)


if __name__ == "__main__":
    for name, loader in (("ravdess", ravdess), ("fi", fi)):
        for split, fs in zip(("train", "val", "test"), loader()):
            print(name, split, len(fs), {m: fs.features[m].shape[1:] for m in fs.modalities},
                  {m: int((~fs.available[m].any(1)).sum()) for m in fs.modalities}, "missing")
