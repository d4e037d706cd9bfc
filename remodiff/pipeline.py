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
from remodiff.evaluation.masks import PROTOCOLS, load_masks, make_masks, save_masks
from remodiff.evaluation.matrix import aggregate, lower_bound_predict, modality_subsets, subset_key
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
RECONSTRUCTED = DATA / "reconstructed"
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
    """Test-time missing-modality masks of every configured protocol, saved once for all imputers and fusers."""
    cfg = params["masks"]
    test = load_featureset(FEATURES / "test.h5")
    chosen = list(PROTOCOLS.names()) if cfg["protocol"] == "all" else [cfg["protocol"]]
    made = make_masks(test, {name: cfg.get(name) for name in chosen}, cfg["seed"])
    save_masks(MASKS, made, test.ids, cfg)
    log.info("masks: %d patterns (%s) for %d test clips", len(made), ", ".join(chosen), len(test))


def seeds_of(params: dict) -> list[int]:
    seeds = params["eval"]["seeds"]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"eval.seeds must be a non-empty list of distinct integers, got {seeds}")
    return list(seeds)


def train_imputer(params: dict) -> None:
    """One imputer per seed of ``eval.seeds``, fitted on the training split (validation for early stopping)."""
    cfg = params["imputer"]
    name, own = cfg["type"], dict(cfg.get(cfg["type"]) or {})
    build_imputer(name, own)  # fails at once, naming the valid types, for an unknown name
    train = load_featureset(FEATURES / "train.h5")
    val = load_featureset(FEATURES / "val.h5")
    histories = {}
    for seed in seeds_of(params):
        start = time.perf_counter()
        imputer = build_imputer(name, own)
        imputer.fit(train, val, seed=seed)
        imputer.save(MODELS / "imputer" / f"seed_{seed}")
        histories[seed] = getattr(imputer, "history", None)
        log.info("train_imputer %s seed %d: %.1fs", name, seed, time.perf_counter() - start)
    # the first seed's training curve for `dvc plots` (empty for imputers that do not train by gradient)
    write_json_atomic(METRICS / "imputer_history.json", histories[seeds_of(params)[0]] or [])


def reconstruct(params: dict) -> None:
    """Masked and reconstructed test sets, per seed and pattern (K samples for stochastic imputers),
    plus reconstruction quality averaged over seeds."""
    test = load_featureset(FEATURES / "test.h5")
    patterns = load_masks(MASKS, test.ids)
    samples = params["eval"]["samples"]
    quality_runs = []
    for seed in seeds_of(params):
        imputer = load_imputer(MODELS / "imputer" / f"seed_{seed}")
        k = samples if imputer.stochastic else 1
        quality = {}
        with atomic_h5(RECONSTRUCTED / f"seed_{seed}.h5") as f:
            for i, (pattern, mask) in enumerate(tqdm(patterns.items(), desc=f"reconstruct seed {seed}")):
                masked = test.with_mask(mask)
                write_featureset(f.create_group(f"{pattern}/masked"), masked)
                for j in range(k):
                    restored = imputer.impute(masked, np.random.default_rng([seed, i, j]))
                    write_featureset(f.create_group(f"{pattern}/sample_{j}"), restored)
                    if j == 0:
                        quality.update(nest(pattern, reconstruction_metrics(test, masked, restored)))
        quality_runs.append(quality)
    write_json_atomic(METRICS / "reconstruction.json", aggregate(quality_runs))


def nest(pattern: str, value: dict) -> dict:
    """``"random/mr_0.3"`` -> ``{"random": {"mr_0.3": value}}`` (metrics read as ``random.mr_0.3.<name>``)."""
    protocol, setting = pattern.split("/", 1)
    return {protocol: {setting: value}} if value else {}


def fuser_for_seed(params: dict, modalities: list[str], seed: int):
    cfg = params["fuser"]
    own = dict(cfg.get(cfg["type"]) or {})
    own["train"] = {**own.get("train", {}), "seed": seed}
    return build_fuser(cfg["type"], modalities, own)


def train_fuser(params: dict) -> None:
    """Per seed: the fuser on complete data (upper bound, fed with reconstructions) and, for the lower bound,
    one fuser per proper subset of the modalities, trained and tested on that subset only."""
    modalities = list(params["features"])
    train = load_featureset(FEATURES / "train.h5")
    val = load_featureset(FEATURES / "val.h5")
    subsets = modality_subsets(modalities) if params["eval"]["lower_bound"] else [tuple(modalities)]
    for seed in seeds_of(params):
        for subset in subsets:
            start = time.perf_counter()
            fuser = fuser_for_seed(params, list(subset), seed)
            history = METRICS / "fuser_history.json" if seed == seeds_of(params)[0] and len(subset) == len(
                modalities) else None
            fuser.fit(train.subset(list(subset)), val.subset(list(subset)), history_path=history)
            fuser.save(MODELS / "fuser" / f"seed_{seed}" / subset_key(subset))
            log.info("train_fuser %s on %s, seed %d: %.1fs", params["fuser"]["type"], subset_key(subset), seed,
                     time.perf_counter() - start)


def evaluate(params: dict) -> dict:
    """Upper bound (complete test data), the predict-the-training-mean floor, and per protocol setting the
    imputer's reconstructions (mean prediction over its K samples) and the lower bound; mean and 95 % CI over
    seeds."""
    modalities = list(params["features"])
    train = load_featureset(FEATURES / "train.h5")
    test = load_featureset(FEATURES / "test.h5")
    if len(test) == 0:
        raise ValueError("the test split has no clips: nothing to evaluate (check dataset.root and split_dirs)")
    names = test.label_names
    runs = []
    for seed in seeds_of(params):
        folder = MODELS / "fuser" / f"seed_{seed}"
        full = load_fuser(folder / subset_key(modalities))
        lower = ({subset_key(s): load_fuser(folder / subset_key(s)) for s in modality_subsets(modalities)}
                 if params["eval"]["lower_bound"] else None)
        run = {"complete": regression_metrics(test.labels, full.predict(test), names)}
        with h5py.File(RECONSTRUCTED / f"seed_{seed}.h5", "r") as f:
            for protocol in f:
                for setting in f[protocol]:
                    group = f[protocol][setting]
                    samples = [k for k in group if k.startswith("sample_")]
                    predictions = np.mean([full.predict(read_featureset(group[k])) for k in samples], axis=0)
                    cell = {"imputed": regression_metrics(test.labels, predictions, names)}
                    if lower is not None:
                        masked = read_featureset(group["masked"])
                        cell["lower_bound"] = regression_metrics(test.labels, lower_bound_predict(lower, masked), names)
                    run.setdefault(protocol, {})[setting] = cell
        runs.append(run)
    results = aggregate(runs)
    floor = np.broadcast_to(train.labels.mean(axis=0), test.labels.shape)
    results["train_mean"] = regression_metrics(test.labels, floor, names)
    results["imputer"] = params["imputer"]["type"]
    write_json_atomic(METRICS / "downstream.json", results)
    log.info("evaluate: complete mean_acc %.4f, train-mean floor %.4f", results["complete"]["mean_acc"],
             results["train_mean"]["mean_acc"])
    return results


STAGES = {f.__name__: f for f in (sample, segment, extract, masks, train_imputer, reconstruct, train_fuser, evaluate)}
