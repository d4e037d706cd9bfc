"""The pipeline stages as plain functions of the parsed ``params.yaml``; ``stages/*.py`` and the CLI call these.

Each stage reads its inputs from, and writes its outputs to, the fixed paths below (the same ones that
``dvc.yaml`` declares), so ``dvc repro`` and ``remodiff run <stage>`` do exactly the same work.
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from remodiff.data.adapters import SPLITS, build_dataset
from remodiff.data.decode import DecodeError, segment_clip
from remodiff.evaluation.masks import load_masks, make_masks, save_masks
from remodiff.evaluation.metrics import regression_metrics
from remodiff.evaluation.reconstruction import reconstruction_metrics
from remodiff.features import SegmentedClip, build_extractor
from remodiff.features.base import iter_segment_store
from remodiff.fusion import build_fuser, load_fuser
from remodiff.imputers import build_imputer, load_imputer
from remodiff.store import (ClipStore, FeatureSet, atomic_h5, load_featureset, read_clip_attrs, read_featureset,
                            save_featureset, write_featureset, write_json_atomic)

log = logging.getLogger(__name__)

DATA = Path("data")
SEGMENTS = DATA / "segments"
FEATURES = DATA / "features"
MASKS = DATA / "masks" / "test.h5"
RECONSTRUCTED = DATA / "reconstructed" / "test.h5"
MODELS = Path("models")
METRICS = Path("metrics")


def sample(params: dict) -> None:
    """Generate the embedded synthetic sample (First Impressions V2 layout) at ``params.dataset.root``."""
    from remodiff.data.sample import generate_sample

    generate_sample(params["dataset"]["root"], **params["sample"])


def segment(params: dict) -> dict:
    """Decode every clip of every split into ``segments`` equal parts; undecodable clips are skipped and listed."""
    cfg = params["segment"]
    adapter = build_dataset(params["dataset"])
    store_config = {"segments": cfg["segments"], "fps": cfg["fps"], "frame_size": cfg["frame_size"],
                    "sample_rate": cfg["sample_rate"], "label_names": adapter.label_names,
                    "dataset": params["dataset"]}
    report: dict = {"clips": {}, "skipped": [], "no_audio": [], "no_transcript": [], "padded": []}
    for split in SPLITS:
        clips = adapter.clips(split)
        with ClipStore(SEGMENTS / f"{split}.h5", store_config) as store:
            todo = [c for c in clips if not store.done(c.id)]
            if len(todo) < len(clips):
                log.info("segment %s: resuming, %d of %d clips already done", split, len(clips) - len(todo), len(clips))

            def work(clip):
                try:
                    return clip, segment_clip(clip.path, clip.transcript, cfg["segments"], cfg["fps"],
                                              cfg["frame_size"], cfg["sample_rate"]), None
                except DecodeError as e:
                    return clip, None, str(e)

            with ThreadPoolExecutor(max(1, cfg.get("workers", 1))) as pool:
                for clip, seg, error in tqdm(pool.map(work, todo), total=len(todo), desc=f"segment {split}"):
                    if error is not None:
                        log.warning("skipping %s: %s", clip.id, error)
                        report["skipped"].append({"clip": clip.id, "split": split, "reason": error})
                        continue
                    store.write(clip.id, {"frames": seg.frames, "audio": seg.audio},
                                {"has_audio": seg.has_audio, "transcript": seg.transcript, "labels": clip.labels,
                                 "duration": seg.duration, "padded": seg.padded})
            for cid in sorted(store.clips):
                attrs = read_clip_attrs(store.clips[cid])
                entry = {"clip": cid, "split": split}
                if not attrs["has_audio"]:
                    report["no_audio"].append(entry)
                if attrs["transcript"] is None:
                    report["no_transcript"].append(entry)
                if attrs["padded"]:
                    report["padded"].append(entry)
            report["clips"][split] = len(store.clips)
    report["counts"] = {k: len(v) for k, v in report.items() if isinstance(v, list)}
    write_json_atomic(SEGMENTS / "report.json", report)
    log.info("segment: %s clips, %s", report["clips"], report["counts"])
    return report


def extract(params: dict) -> None:
    """Per-modality features of every segment into ``data/features/<split>.h5``."""
    extractors = {m: build_extractor(m, cfg) for m, cfg in params["features"].items()}
    train_clips = list(iter_segment_store(SEGMENTS / "train.h5", with_media=False))
    for extractor in extractors.values():
        extractor.fit(train_clips)
    for split in SPLITS:
        start = time.perf_counter()
        store = SEGMENTS / f"{split}.h5"
        ids, labels, features, available = [], [], {m: [] for m in extractors}, {m: [] for m in extractors}
        for clip in tqdm(iter_segment_store(store), desc=f"extract {split}"):
            ids.append(clip.id)
            labels.append(clip.labels)
            for m, extractor in extractors.items():
                x, present = extract_one(extractor, clip)
                features[m].append(x)
                available[m].append(np.full(len(x), present))
        n_segments = params["segment"]["segments"]
        fs = FeatureSet(
            ids=ids,
            features={m: np.stack(v) if v else np.zeros((0, n_segments, extractors[m].dim), np.float32)
                      for m, v in features.items()},
            available={m: np.stack(v) if v else np.zeros((0, n_segments), bool) for m, v in available.items()},
            labels=np.array(labels, np.float32).reshape(len(ids), -1),
            label_names=label_names_of(store),
            attrs={"extractors": params["features"]},
        )
        save_featureset(FEATURES / f"{split}.h5", fs)
        log.info("extract %s: %d clips in %.1fs", split, len(ids), time.perf_counter() - start)


def extract_one(extractor, clip: SegmentedClip) -> tuple[np.ndarray, bool]:
    n_segments = len(clip.frames)
    if not extractor.has_modality(clip):
        return np.zeros((n_segments, extractor.dim), np.float32), False
    x = extractor.extract(clip)
    if x.shape != (n_segments, extractor.dim):
        raise ValueError(f"{extractor.modality} extractor gave {x.shape} for clip {clip.id}, "
                         f"expected {(n_segments, extractor.dim)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"non-finite {extractor.modality} features for clip {clip.id}")
    return x, True


def label_names_of(store: Path) -> list[str]:
    with h5py.File(store, "r") as f:
        return json.loads(f.attrs["config"])["label_names"]


def masks(params: dict) -> None:
    """Test-time missing-modality masks, saved once so every imputer and fuser sees the same ones."""
    cfg = params["masks"]
    test = load_featureset(FEATURES / "test.h5")
    made = make_masks(test, cfg["protocol"], cfg["seed"])
    save_masks(MASKS, made, test.ids, cfg)
    log.info("masks: %d patterns for %d test clips", len(made), len(test))


def imputer_params(params: dict) -> tuple[str, dict]:
    cfg = params["imputer"]
    name = cfg["type"]
    return name, dict(cfg.get(name) or {})


def train_imputer(params: dict) -> None:
    name, own = imputer_params(params)
    imputer = build_imputer(name, own)  # fails at once, naming the valid types, for an unknown name
    train = load_featureset(FEATURES / "train.h5")
    val = load_featureset(FEATURES / "val.h5")
    start = time.perf_counter()
    imputer.fit(train, val, seed=params["imputer"]["seed"])
    imputer.save(MODELS / "imputer")
    log.info("train_imputer %s: %.1fs", name, time.perf_counter() - start)


def reconstruct(params: dict) -> None:
    """Masked and reconstructed test sets per missing pattern, plus reconstruction-quality metrics."""
    imputer = load_imputer(MODELS / "imputer")
    test = load_featureset(FEATURES / "test.h5")
    patterns = load_masks(MASKS, test.ids)
    quality = {}
    with atomic_h5(RECONSTRUCTED) as f:
        for i, (pattern, mask) in enumerate(tqdm(patterns.items(), desc="reconstruct")):
            masked = test.with_mask(mask)
            rng = np.random.default_rng([params["imputer"]["seed"], i])
            restored = imputer.impute(masked, rng)
            write_featureset(f.create_group(f"{pattern}/masked"), masked)
            write_featureset(f.create_group(f"{pattern}/reconstructed"), restored)
            quality[pattern] = reconstruction_metrics(test, masked, restored)
    write_json_atomic(METRICS / "reconstruction.json", quality)


def train_fuser(params: dict) -> None:
    cfg = params["fuser"]
    modalities = list(params["features"])
    fuser = build_fuser(cfg["type"], modalities, cfg.get(cfg["type"]))
    train = load_featureset(FEATURES / "train.h5")
    val = load_featureset(FEATURES / "val.h5")
    start = time.perf_counter()
    fuser.fit(train, val, history_path=METRICS / "fuser_history.json")
    fuser.save(MODELS / "fuser")
    log.info("train_fuser %s: %.1fs", cfg["type"], time.perf_counter() - start)


def evaluate(params: dict) -> dict:
    """Upper bound (complete test data), the predict-the-training-mean floor, and each reconstructed pattern."""
    fuser = load_fuser(MODELS / "fuser")
    train = load_featureset(FEATURES / "train.h5")
    test = load_featureset(FEATURES / "test.h5")
    if len(test) == 0:
        raise ValueError("the test split has no clips: nothing to evaluate (check dataset.root and split_dirs)")
    names = test.label_names
    floor = np.broadcast_to(train.labels.mean(axis=0), test.labels.shape)
    results = {"complete": regression_metrics(test.labels, fuser.predict(test), names),
               "train_mean": regression_metrics(test.labels, floor, names)}
    with h5py.File(RECONSTRUCTED, "r") as f:
        for pattern in f:
            restored = read_featureset(f[f"{pattern}/reconstructed"])
            results[pattern] = regression_metrics(test.labels, fuser.predict(restored), names)
    write_json_atomic(METRICS / "downstream.json", results)
    log.info("evaluate: complete mean_acc %.4f, train-mean floor %.4f", results["complete"]["mean_acc"],
             results["train_mean"]["mean_acc"])
    return results


STAGES = {f.__name__: f for f in (sample, segment, extract, masks, train_imputer, reconstruct, train_fuser, evaluate)}
