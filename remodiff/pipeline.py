"""The pipeline stages as plain functions of the parsed ``params.yaml``; ``stages/*.py`` and the CLI call these.

Each stage reads its inputs from, and writes its outputs to, the fixed paths below (the same ones that
``dvc.yaml`` declares), so ``dvc repro`` and ``remodiff run <stage>`` do exactly the same work.
"""
from __future__ import annotations

import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path

import h5py
import numpy as np
from tqdm.auto import tqdm

from remodiff.data import SPLITS, build_dataset
from remodiff.data.asr import build_asr
from remodiff.data.decode import DecodeError, segment_clip, split_transcript
from remodiff.evaluation.masks import PROTOCOLS, load_masks, make_masks, save_masks
from remodiff.evaluation.matrix import aggregate, lower_bound_predict, modality_subsets, subset_key
from remodiff.evaluation.metrics import aggregate_predictions, task_metrics
from remodiff.evaluation.reconstruction import reconstruction_metrics
from remodiff.features import SegmentedClip, build_extractor
from remodiff.features.base import iter_segment_store
from remodiff.fusion import build_fuser, load_fuser
from remodiff.imputers import build_imputer, load_imputer
from remodiff.tasks import Task, check_class_indices
from remodiff.training import is_main_process, launched_processes
from remodiff.store import (ClipStore, FeatureSet, atomic_h5, collect_featureset, load_featureset, read_clip_attrs,
                            read_featureset, save_featureset, storage_array, write_featureset, write_json_atomic,
                            write_text_atomic)

log = logging.getLogger(__name__)

DATA = Path("data")
SAMPLE = DATA / "sample"
SEGMENTS = DATA / "segments"
FEATURES = DATA / "features"
MASKS = DATA / "masks" / "test.h5"
RECONSTRUCTED = DATA / "reconstructed"
MODELS = Path("models")
METRICS = Path("metrics")
REPORTS = Path("reports")


def sample(params: dict) -> None:
    """Generate the embedded synthetic sample (First Impressions V2 layout) in ``data/sample``.

    Always there, never at ``dataset.root``: DVC empties a stage's outputs before running it, so an output at
    ``dataset.root`` would delete a real dataset that the root points at."""
    from remodiff.data.sample import generate_sample

    generate_sample(SAMPLE, **params["sample"])


# Where decoded clips accumulate until a split is complete: outside data/segments, which `dvc repro` empties before
# the stage runs, and git-ignored (*.partial), so an interrupted segmentation resumes clip by clip under DVC too.
SEGMENT_SCRATCH = DATA / "segment.partial"


def segment(params: dict) -> dict:
    """Decode every clip of every split into ``segments`` equal parts; undecodable clips are skipped and listed.

    A dataset that ships features (``adapter.precomputed``) is not decoded: its feature set of each split is
    stored in the segment store (group ``precomputed``) for the extract stage to write out."""
    cfg = params["segment"]
    adapter = build_dataset(params["dataset"])
    asr = None if adapter.precomputed else build_asr(params["dataset"].get("asr"))
    report: dict = {"clips": {}, "skipped": [], "no_audio": [], "no_transcript": [], "padded": [], "transcribed": []}
    for split in SPLITS:
        precomputed = adapter.features(split, cfg["segments"])
        clips = adapter.clips(split) if precomputed is None else []
        # label names of precomputed files are known once a split is read
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

            def work(clip):
                try:
                    return clip, segment_clip(clip.path, clip.transcript, cfg["segments"], cfg["fps"],
                                              cfg["frame_size"], cfg["sample_rate"], clip.audio_path), None
                except DecodeError as e:
                    return clip, None, str(e)

            with ThreadPoolExecutor(max(1, cfg.get("workers", 1))) as pool:
                for clip, seg, error in tqdm(pool.map(work, todo), total=len(todo), desc=f"segment {split}"):
                    if error is not None:
                        log.warning("skipping %s: %s", clip.id, error)
                        report["skipped"].append({"clip": clip.id, "split": split, "reason": error})
                        continue
                    transcribed = False
                    if asr is not None and seg.transcript is None and seg.has_audio:
                        text = asr.transcribe(seg.audio.reshape(-1), cfg["sample_rate"])
                        seg.transcript = split_transcript(text, cfg["segments"]) if text else None
                        transcribed = seg.transcript is not None
                    store.write(clip.id, {"frames": seg.frames, "audio": seg.audio},
                                {"has_audio": seg.has_audio, "transcript": seg.transcript, "labels": clip.labels,
                                 "duration": seg.duration, "padded": seg.padded, "transcribed": transcribed})
            for cid in sorted(store.clips):
                attrs = read_clip_attrs(store.clips[cid])
                entry = {"clip": cid, "split": split}
                if not attrs["has_audio"]:
                    report["no_audio"].append(entry)
                if attrs["transcript"] is None:
                    report["no_transcript"].append(entry)
                if attrs["padded"]:
                    report["padded"].append(entry)
                if attrs.get("transcribed"):
                    report["transcribed"].append(entry)
            report["clips"][split] = len(store.clips)
    if SEGMENT_SCRATCH.is_dir() and not any(SEGMENT_SCRATCH.iterdir()):
        SEGMENT_SCRATCH.rmdir()
    report["skipped"] = adapter.skipped + report["skipped"]
    report["counts"] = {k: len(v) for k, v in report.items() if isinstance(v, list)}
    write_json_atomic(SEGMENTS / "report.json", report)
    log.info("segment: %s clips, %s", report["clips"], report["counts"])
    return report


PRECOMPUTED = "precomputed"  # the segment store's group holding a dataset's own feature set


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


def extract(params: dict, shard: Shard | None = None, merge_only: bool = False) -> None:
    """Per-modality features of every segment into ``data/features/<split>.h5``.

    A modality's settings are its backend's parameters plus ``dtype`` (float32 or float16: how the features
    are stored; readers get float32). With a ``shard`` (default: the launcher's RANK / WORLD_SIZE) only that
    shard's clips are extracted, into their own scratch ``data/extract.partial/<split>.shard-i-of-n.h5``; a run
    without a shard then merges every finished shard scratch, extracts whatever clips no shard did (none with
    ``merge_only``, which fails naming them instead) and writes the feature stores."""
    shard = shard or (None if merge_only else Shard.launched())
    dtypes = {m: cfg.get("dtype", "float32") for m, cfg in params["features"].items()}
    if segment_config(SEGMENTS / "train.h5").get("precomputed"):
        if is_main_process() and shard is None:
            for split in SPLITS:
                write_precomputed(split, dtypes)
        return
    extractors = {m: build_extractor(m, {k: v for k, v in cfg.items() if k != "dtype"})
                  for m, cfg in params["features"].items()}
    train_clips = list(iter_segment_store(SEGMENTS / "train.h5", with_media=False))
    for extractor in extractors.values():
        extractor.fit(train_clips)
    for split in SPLITS:
        extract_split(split, extractors, dtypes, params, shard, merge_only)
    if shard is not None:
        log.info("extract: shard %d/%d done; `remodiff run extract --merge` writes the feature stores",
                 shard.index, shard.count)
        return
    if EXTRACT_SCRATCH.is_dir() and not any(EXTRACT_SCRATCH.iterdir()):
        EXTRACT_SCRATCH.rmdir()


def segment_config(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return json.loads(f.attrs["config"])


def task_attrs(config: dict) -> dict:
    """The feature sets' task convention, from the segment store's config."""
    return {"task": config.get("task", "regression"), "classes": config.get("classes")}


def write_precomputed(split: str, dtypes: dict[str, str]) -> None:
    """A dataset's own features (kept by the segment stage) as the feature store; ``params.features`` keys pick
    which of its modalities to keep (their extractor settings do not apply, only ``dtype``)."""
    path = SEGMENTS / f"{split}.h5"
    config = segment_config(path)
    with h5py.File(path, "r") as f:
        fs = read_featureset(f[PRECOMPUTED])
    unknown = [m for m in dtypes if m not in fs.modalities]
    if unknown:
        raise ValueError(f"features lists modalities {unknown} that the dataset's precomputed features lack; "
                         f"it has {fs.modalities}: make the keys of params.features a subset of these")
    fs = fs.subset(list(dtypes))
    fs.attrs = {**fs.attrs, **task_attrs(config), "extractors": "precomputed"}
    save_featureset(FEATURES / f"{split}.h5", fs, dtypes)
    log.info("extract %s: %d clips of precomputed %s features, no extractor run", split, len(fs),
             ", ".join(f"{m} {fs.features[m].shape[2]}-d" for m in fs.modalities))


def extract_split(split: str, extractors: dict, dtypes: dict[str, str], params: dict, shard: Shard | None = None,
                  merge_only: bool = False) -> None:
    segments = SEGMENTS / f"{split}.h5"
    config = segment_config(segments)
    with h5py.File(segments, "r") as f:
        all_ids = sorted(f["clips"])
    ids = all_ids if shard is None else all_ids[shard.index::shard.count]
    # Per-clip results are reused only under the same extractor settings and the same segmentation.
    scratch_config = {"features": params["features"], "segments": config}
    scratch = EXTRACT_SCRATCH / f"{split}.h5" if shard is None else shard.scratch(split)
    seconds = {m: 0.0 for m in extractors}
    missing = {m: 0 for m in extractors}
    with ClipStore(scratch, scratch_config) as store:
        shard_files = [] if shard is not None else merge_shards(store, split)
        todo = [cid for cid in ids if not store.done(cid)]
        if merge_only and todo:
            raise ValueError(f"extract --merge {split}: {len(todo)} clips are in no finished shard, e.g. {todo[:5]}; "
                             "run the missing shards (or extract without --merge to do them here)")
        if len(todo) < len(ids):
            log.info("extract %s: resuming, %d of %d clips already done", split, len(ids) - len(todo), len(ids))
        bars = {m: tqdm(total=len(ids), initial=len(ids) - len(todo), desc=f"extract {split} {m}", position=i)
                for i, m in enumerate(extractors)}
        clips = iter_segment_store(segments, only=set(todo))
        while chunk := list(islice(clips, CLIPS_PER_CHUNK)):
            results = {}
            for m, extractor in extractors.items():
                start = time.perf_counter()
                results[m] = extract_chunk(extractor, chunk)
                seconds[m] += time.perf_counter() - start
                missing[m] += sum(not present for _, present in results[m])
                bars[m].update(len(chunk))
            for i, clip in enumerate(chunk):
                arrays = {}
                for m, per_clip in results.items():
                    x, present = per_clip[i]
                    arrays[f"features/{m}"] = storage_array(x[None], dtypes[m], m, [clip.id])[0]
                    arrays[f"available/{m}"] = np.full(len(x), present)
                store.write(clip.id, arrays, {"labels": clip.labels})
        for bar in bars.values():
            bar.close()
        if shard is None:  # a shard's scratch is renamed into place on exit, for a merge to collect
            fs = collect_featureset(store, ids, {m: e.dim for m, e in extractors.items()},
                                    params["segment"]["segments"], config["label_names"],
                                    {"extractors": params["features"], **task_attrs(config)})
            save_featureset(FEATURES / f"{split}.h5", fs, dtypes)
    if shard is None:
        # the ClipStore renamed its partial on success; the feature set now holds everything
        for path in [scratch, *shard_files]:
            path.unlink()
    for m in extractors:
        log.info("extract %s %s: %d clips (%d extracted now, %d without the modality) in %.1fs, %.1f clips/s",
                 split, m, len(ids), len(todo), missing[m], seconds[m], len(todo) / max(seconds[m], 1e-9))


def merge_shards(store: ClipStore, split: str) -> list[Path]:
    """Copy the clips of every finished shard scratch of ``split`` made with ``store``'s settings into ``store``;
    returns the shard files merged."""
    merged = []
    for path in sorted(EXTRACT_SCRATCH.glob(f"{split}.shard-*-of-*.h5")):
        with h5py.File(path, "r") as shard:
            if shard.attrs.get("config") != store.file.attrs["config"]:
                log.warning("extract %s: %s was made with other settings, not merged", split, path)
                continue
            for clip_id, group in shard["clips"].items():
                if group.attrs.get("complete", False) and not store.done(clip_id):
                    shard.copy(group, store.clips, name=clip_id)
        store.file.flush()
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


@dataclass(frozen=True)
class ImputerRun:
    """Where one imputer's models, reconstructions and metrics go: the main chain or a comparison entry."""

    models: Path
    reconstructed: Path
    quality: Path
    downstream: Path
    history: Path | None = None


MAIN_RUN = ImputerRun(MODELS / "imputer", RECONSTRUCTED, METRICS / "reconstruction.json",
                      METRICS / "downstream.json", METRICS / "imputer_history.json")
COMPARE = Path("compare")


def compare_run(imputer: str) -> ImputerRun:
    return ImputerRun(MODELS / "compare" / imputer, DATA / "compare" / imputer,
                      METRICS / "compare" / imputer / "reconstruction.json",
                      METRICS / "compare" / imputer / "downstream.json")


def fit_imputers(params: dict, name: str, seeds: list[int], run: ImputerRun) -> None:
    """One imputer per seed, fitted on the training split (validation for early stopping)."""
    own = dict(params["imputer"].get(name) or {})
    build_imputer(name, own)  # fails at once, naming the valid types, for an unknown name
    train = load_featureset(FEATURES / "train.h5")
    val = load_featureset(FEATURES / "val.h5")
    histories = {}
    for seed in seeds:
        start = time.perf_counter()
        imputer = build_imputer(name, own)
        imputer.fit(train, val, seed=seed)
        if is_main_process():  # under `accelerate launch` every process holds the same trained model
            imputer.save(run.models / f"seed_{seed}")
        histories[seed] = getattr(imputer, "history", None)
        log.info("fit imputer %s, seed %d: %.1fs", name, seed, time.perf_counter() - start)
    if run.history is not None and is_main_process():
        # the first seed's training curve for `dvc plots` (empty for imputers that do not train by gradient)
        write_json_atomic(run.history, histories[seeds[0]] or [])


def reconstruct_test(params: dict, seeds: list[int], run: ImputerRun) -> None:
    """Masked and reconstructed test sets per seed and pattern (K samples for stochastic imputers), plus
    reconstruction quality averaged over seeds."""
    test = load_featureset(FEATURES / "test.h5")
    patterns = load_masks(MASKS, test.ids)
    samples = params["eval"]["samples"]
    quality_runs = []
    for seed in seeds:
        imputer = load_imputer(run.models / f"seed_{seed}")
        k = samples if imputer.stochastic else 1
        quality: dict = {}
        with atomic_h5(run.reconstructed / f"seed_{seed}.h5") as f:
            for i, (pattern, mask) in enumerate(tqdm(patterns.items(), desc=f"reconstruct seed {seed}")):
                masked = test.with_mask(mask)
                write_featureset(f.create_group(f"{pattern}/masked"), masked)
                for j in range(k):
                    restored = imputer.impute(masked, np.random.default_rng([seed, i, j]))
                    write_featureset(f.create_group(f"{pattern}/sample_{j}"), restored)
                    if j == 0:
                        protocol, setting = pattern.split("/", 1)
                        quality.setdefault(protocol, {})[setting] = reconstruction_metrics(test, masked, restored)
        quality_runs.append(quality)
    write_json_atomic(run.quality, aggregate(quality_runs))


def train_imputer(params: dict) -> None:
    fit_imputers(params, params["imputer"]["type"], seeds_of(params), MAIN_RUN)


def reconstruct(params: dict) -> None:
    reconstruct_test(params, seeds_of(params), MAIN_RUN)


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
            if is_main_process():  # under `accelerate launch` every process holds the same trained model
                fuser.save(MODELS / "fuser" / f"seed_{seed}" / subset_key(subset))
            log.info("train_fuser %s on %s, seed %d: %.1fs", params["fuser"]["type"], subset_key(subset), seed,
                     time.perf_counter() - start)


def score(params: dict, seeds: list[int], run: ImputerRun, imputer: str, lower_bound: bool) -> dict:
    """Upper bound (complete test data), the predict-the-training-mean floor, and per protocol setting the
    imputer's reconstructions (mean prediction over its K samples) and, optionally, the lower bound; mean and
    95 % CI over seeds."""
    modalities = list(params["features"])
    train = load_featureset(FEATURES / "train.h5")
    test = load_featureset(FEATURES / "test.h5")
    if len(test) == 0:
        raise ValueError("the test split has no clips: nothing to evaluate (check dataset.root and split_dirs)")
    task = Task.from_attrs(test.attrs)
    classes = list(task.classes) or None

    def metrics(predictions: np.ndarray) -> dict:
        return task_metrics(task.kind, test.labels, predictions, test.label_names, classes)

    floor = training_floor(task, train, len(test))
    runs = []
    for seed in seeds:
        folder = MODELS / "fuser" / f"seed_{seed}"
        full = load_fuser(folder / subset_key(modalities))
        lower = ({subset_key(s): load_fuser(folder / subset_key(s)) for s in modality_subsets(modalities)}
                 if lower_bound else None)
        result = {"complete": metrics(full.predict(test))}
        with h5py.File(run.reconstructed / f"seed_{seed}.h5", "r") as f:
            for protocol in f:
                for setting in f[protocol]:
                    group = f[protocol][setting]
                    samples = [k for k in group if k.startswith("sample_")]
                    # K stochastic reconstructions: mean prediction (regression) or majority vote (classification)
                    predictions = aggregate_predictions(task.kind,
                                                        [full.predict(read_featureset(group[k])) for k in samples])
                    cell = {"imputed": metrics(predictions)}
                    if lower is not None:
                        cell["lower_bound"] = metrics(lower_bound_predict(lower, read_featureset(group["masked"]), floor))
                    result.setdefault(protocol, {})[setting] = cell
        runs.append(result)
    results = aggregate(runs)
    results["train_mean"] = metrics(floor)
    results["imputer"] = imputer
    write_json_atomic(run.downstream, results)
    log.info("evaluate %s: complete %s, training floor %s", imputer, headline(results["complete"]),
             headline(results["train_mean"]))
    return results


def training_floor(task: Task, train: FeatureSet, n: int) -> np.ndarray:
    """The predict-the-training-set baseline: the label mean (regression) or the majority class, one-hot."""
    if not task.is_classification:
        return np.broadcast_to(train.labels.mean(axis=0), (n, train.labels.shape[1])).astype(np.float32)
    counts = np.bincount(check_class_indices(train.labels, len(task.classes)), minlength=len(task.classes))
    return np.broadcast_to(np.eye(len(task.classes), dtype=np.float32)[counts.argmax()], (n, len(task.classes)))


def headline(metrics: dict) -> str:
    key = next(k for k in ("mean_acc", "Has0_acc_2", "accuracy", "mae") if k in metrics)
    return f"{key} {metrics[key]:.4f}"


def evaluate(params: dict) -> dict:
    return score(params, seeds_of(params), MAIN_RUN, params["imputer"]["type"], params["eval"]["lower_bound"])


def compare_seeds(params: dict) -> list[int]:
    return list(params["compare"].get("seeds") or seeds_of(params))


def compare(params: dict, imputer: str) -> None:
    """One entry of the all-imputer comparison (a DVC ``matrix`` stage): fit, reconstruct and score ``imputer``
    on the shared masks with the shared fusers."""
    if imputer not in params["compare"]["imputers"]:
        raise ValueError(f"{imputer!r} is not in compare.imputers {params['compare']['imputers']}")
    seeds, run = compare_seeds(params), compare_run(imputer)
    fit_imputers(params, imputer, seeds, run)
    reconstruct_test(params, seeds, run)
    score(params, seeds, run, imputer, lower_bound=False)


def compare_table(params: dict) -> dict:
    """Collect the comparison entries into ``metrics/comparison.json`` (``<protocol>.<setting>.<imputer>.<metric>``,
    plus ``upper_bound`` and ``train_mean``) and a Markdown table of the chosen metric."""
    metric = params["compare"]["metric"]
    table: dict = {}
    for imputer in params["compare"]["imputers"]:
        result = json.loads(compare_run(imputer).downstream.read_text())
        table.setdefault("upper_bound", result["complete"])
        table.setdefault("train_mean", result["train_mean"])
        for protocol, settings in result.items():
            if protocol in ("complete", "train_mean", "imputer"):
                continue
            for setting, cell in settings.items():
                table.setdefault(protocol, {}).setdefault(setting, {})[imputer] = cell["imputed"]
    write_json_atomic(METRICS / "comparison.json", table)
    write_text_atomic(METRICS / "comparison.md", comparison_markdown(table, params["compare"]["imputers"], metric))
    return table


def comparison_markdown(table: dict, imputers: list[str], metric: str) -> str:
    def cell(values: dict) -> str:
        if metric not in values:
            raise ValueError(f"compare.metric {metric!r} is not among the metrics {sorted(values)}")
        ci = values.get(f"{metric}_ci95")
        return f"{values[metric]:.4f}" + (f" ± {ci:.4f}" if ci is not None else "")

    lines = [f"# {metric} per imputer (upper bound {cell(table['upper_bound'])}, "
             f"train-mean floor {cell(table['train_mean'])})", ""]
    for protocol, settings in table.items():
        if protocol in ("upper_bound", "train_mean"):
            continue
        lines += [f"## {protocol}", "", "| setting | " + " | ".join(imputers) + " |",
                  "|---|" + "---|" * len(imputers)]
        lines += [f"| {setting} | " + " | ".join(cell(row[i]) for i in imputers) + " |" for setting, row in settings.items()]
        lines.append("")
    return "\n".join(lines)


def report(params: dict) -> dict[str, str | None]:
    """Figures and a Markdown summary of the metrics, the first seed's reconstructions and the loss histories;
    returns figure name -> caption (None = skipped: its inputs are absent)."""
    from remodiff.evaluation.report import write_report  # matplotlib is imported by this stage only

    cfg = params["report"]
    benchmark = Path(cfg["benchmark"]) if cfg.get("benchmark") else None
    return write_report(REPORTS, METRICS, FEATURES / "test.h5", RECONSTRUCTED, seeds_of(params)[0], cfg["metric"],
                        benchmark)


STAGES = {f.__name__: f for f in (sample, segment, extract, masks, train_imputer, reconstruct, train_fuser, evaluate,
                                  report, compare_table)}
