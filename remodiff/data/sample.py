"""Deterministic synthetic dataset in the ChaLearn First Impressions V2 layout.

Generative design (what the sample is built to test: fusion and missing-modality imputation):

* Every clip has latent factors ``z ~ N(0, I)`` (``n_latents``, at least 4). The six labels are
  ``trait_k = clip(0.5 + 0.2 * tanh(w_k . z + e_k), 0, 1)`` with unit-norm random ``w_k`` fixed by the seed
  and ``e_k ~ N(0, label_noise)``, so labels sit near 0.5 with a small spread, like the real ones.
* Each modality sees an overlapping subset of ``z``, each through its own noisy copy
  ``z_j + N(0, OBSERVATION_NOISE)``; latents beyond the fourth reach the labels but no modality.
    - video (z0, z1, z2): a soft-edged disc on a grey, slightly tinted background; radius grows with z0,
      hue runs orange-red -> blue with z1, speed along a circular orbit grows with z2 (random phase/direction/centre).
    - audio (z1, z2, z3): a sine tone, pitch 200-800 Hz on a log scale with z1, level -32..-6 dBFS with z2,
      amplitude-modulation (rhythm) rate 1-6 Hz with z3, plus white noise 45 dB below the tone.
    - transcript (z0, z2, z3): ~25 lowercase words; per latent, 5 words from a positive/negative word
      group pair (positive with probability sigmoid(2 z_j)), the rest filler words, shuffled.
* So each modality alone beats the mean predictor, all three together are best, and any one modality is
  partly predictable from the other two. All latent -> signal maps are monotone (through ``Phi(z)``).
* Everything is a function of ``seed`` and the clip's (split, index) via ``np.random.SeedSequence``; the
  number of encoding ``workers`` changes nothing.
"""
from __future__ import annotations

import argparse
import base64
import colorsys
import csv
import hashlib
import logging
import math
import multiprocessing
import os
import pickle
import shutil
import tempfile
import time
import wave
from dataclasses import dataclass
from pathlib import Path

import ffmpeg
import numpy as np

from remodiff.data.adapters import FirstImpressions
from remodiff.progress import progress

log = logging.getLogger(__name__)

TRAITS = FirstImpressions.label_names  # the layout the sample imitates
SPLIT_FILES = {"train": "training", "val": "validation", "test": "test"}  # annotation_<x>.pkl / transcription_<x>.pkl
SPLIT_INDEX = {"train": 0, "val": 1, "test": 2}

# Which latents each modality carries (indices into z).
VIDEO_LATENTS = (0, 1, 2)
AUDIO_LATENTS = (1, 2, 3)
TEXT_LATENTS = (0, 2, 3)
# Std of the per-modality copy of a latent: keeps modalities informative but not interchangeable.
OBSERVATION_NOISE = 0.3
# Clips per fake "YouTube id", mimicking FI names like ``J4GQm9j0JZ0.003.mp4`` (latents stay independent).
CLIPS_PER_SOURCE = 3

WORD_GROUPS = {  # latent index -> (positive words, negative words)
    0: (["great", "happy", "love", "wonderful", "exciting", "amazing"],
        ["bad", "sad", "hate", "boring", "awful", "terrible"]),
    2: (["fast", "busy", "run", "party", "loud", "energy"],
        ["slow", "calm", "quiet", "rest", "sleep", "tired"]),
    3: (["friends", "together", "team", "family", "people", "share"],
        ["alone", "myself", "private", "single", "own", "apart"]),
}
FILLER_WORDS = ["the", "and", "i", "you", "so", "like", "really", "just", "think", "know",
                "that", "it", "was", "is", "a", "to", "we", "of", "um", "well"]
CONTENT_WORDS_PER_LATENT = 5
FILLER_WORD_RANGE = (8, 13)  # [low, high) -> 23..27 words in total


@dataclass(frozen=True)
class ClipTask:
    """Everything a worker needs to render and encode one clip (small and picklable)."""

    path: str
    wav_dir: str
    seed: int
    split_index: int
    clip_index: int
    z: tuple[float, ...]
    duration: float
    size: int
    fps: int
    sample_rate: int


# ---------------------------------------------------------------------------------------- seeding
def _clip_rngs(seed: int, split_index: int, clip_index: int) -> dict[str, np.random.Generator]:
    """Independent generators per clip and purpose, so no stream depends on another's draw count."""
    children = np.random.SeedSequence([seed, split_index, clip_index]).spawn(4)
    return {name: np.random.default_rng(child) for name, child in zip(["latent", "video", "audio", "text"], children)}


def _trait_weights(seed: int, n_latents: int) -> np.ndarray:
    # Unit-norm rows keep w.z ~ N(0, 1), so tanh neither saturates nor stays linear.
    w = np.random.default_rng([seed, 1_000_003]).normal(size=(len(TRAITS), n_latents))
    return w / np.linalg.norm(w, axis=1, keepdims=True)


def _phi(x: float) -> float:
    """Standard normal CDF: maps a N(0, 1) latent uniformly onto (0, 1)."""
    return 0.5 * (1.0 + math.erf(x / math.sqrt(2.0)))


def clip_id(seed: int, split: str, clip_index: int) -> str:
    """FI-style file name ``<11-char id>.<nnn>.mp4``; ids are per split so no source spans two splits."""
    source, part = divmod(clip_index, CLIPS_PER_SOURCE)
    digest = hashlib.sha256(f"remodiff-sample:{seed}:{split}:{source}".encode()).digest()
    return f"{base64.urlsafe_b64encode(digest).decode()[:11]}.{part:03d}.mp4"


# ------------------------------------------------------------------------------------- modalities
def make_labels(z: np.ndarray, weights: np.ndarray, rng: np.random.Generator, label_noise: float) -> dict[str, float]:
    noise = rng.normal(0.0, label_noise, size=len(TRAITS)) if label_noise > 0 else np.zeros(len(TRAITS))
    scores = np.clip(0.5 + 0.2 * np.tanh(weights @ z + noise), 0.0, 1.0)
    return {trait: float(score) for trait, score in zip(TRAITS, scores)}


def _observe(z: np.ndarray, latents: tuple[int, ...], rng: np.random.Generator) -> list[float]:
    return [float(z[j] + rng.normal(0.0, OBSERVATION_NOISE)) for j in latents]


def make_transcript(z: np.ndarray, rng: np.random.Generator) -> str:
    seen = _observe(z, TEXT_LATENTS, rng)
    words: list[str] = []
    for j, value in zip(TEXT_LATENTS, seen):
        positive, negative = WORD_GROUPS[j]
        p_positive = 1.0 / (1.0 + math.exp(-2.0 * value))
        for _ in range(CONTENT_WORDS_PER_LATENT):
            group = positive if rng.random() < p_positive else negative
            words.append(group[rng.integers(len(group))])
    n_filler = int(rng.integers(*FILLER_WORD_RANGE))
    words.extend(FILLER_WORDS[i] for i in rng.integers(len(FILLER_WORDS), size=n_filler))
    return " ".join(words[i] for i in rng.permutation(len(words)))


def make_frames(z: np.ndarray, rng: np.random.Generator, *, duration: float, size: int, fps: int) -> np.ndarray:
    """[T, size, size, 3] uint8 frames of one moving disc; vectorised over time and pixels."""
    z0, z1, z2 = _observe(z, VIDEO_LATENTS, rng)
    n_frames = int(round(duration * fps))
    radius = size * (0.10 + 0.15 * _phi(z0))
    # Hue 0.04-0.70 (orange-red -> blue): starting off pure red keeps decoded hues from wrapping past 1.0.
    rgb = np.array(colorsys.hsv_to_rgb(0.04 + 0.66 * _phi(z1), 1.0, 1.0), dtype=np.float32)
    speed = size * (0.1 + 1.4 * _phi(z2))  # pixels per second along the orbit
    orbit = 0.2 * size
    # Nuisance: background tint, orbit centre jitter, start phase and direction.
    background = np.clip(0.45 + rng.normal(0.0, 0.03, size=3), 0.0, 1.0).astype(np.float32)
    centre = size / 2 + rng.uniform(-0.03, 0.03, size=2) * size
    phase = rng.uniform(0.0, 2 * np.pi)
    direction = rng.choice([-1.0, 1.0])

    t = np.arange(n_frames) / fps
    angle = phase + direction * speed / orbit * t
    cx = (centre[0] + orbit * np.cos(angle)).astype(np.float32)[:, None, None]
    cy = (centre[1] + orbit * np.sin(angle)).astype(np.float32)[:, None, None]
    grid = np.arange(size, dtype=np.float32) + 0.5
    dist = np.sqrt((grid[None, None, :] - cx) ** 2 + (grid[None, :, None] - cy) ** 2)
    # One-pixel soft edge, so sub-pixel motion still changes pixels (frame differences track speed).
    coverage = np.clip(radius - dist + 0.5, 0.0, 1.0)[..., None]
    frames = background + coverage * (rgb - background)
    return (frames * 255.0 + 0.5).astype(np.uint8)


def make_audio(z: np.ndarray, rng: np.random.Generator, *, duration: float, sample_rate: int) -> np.ndarray:
    """Mono float32 waveform in [-1, 1]: AM sine tone plus white noise at a fixed SNR."""
    z1, z2, z3 = _observe(z, AUDIO_LATENTS, rng)
    n_samples = int(round(duration * sample_rate))
    pitch = 200.0 * 4.0 ** _phi(z1)  # 200-800 Hz, log scale
    level = 10.0 ** ((-32.0 + 26.0 * _phi(z2)) / 20.0)  # -32..-6 dBFS peak
    am_rate = 1.0 + 5.0 * _phi(z3)  # Hz
    t = np.arange(n_samples) / sample_rate
    carrier = np.sin(2 * np.pi * pitch * t + rng.uniform(0, 2 * np.pi))
    # Depth 0.8 keeps the carrier the dominant spectral peak while the envelope clearly pulses.
    envelope = 1.0 - 0.4 * (1.0 - np.cos(2 * np.pi * am_rate * t + rng.uniform(0, 2 * np.pi)))
    # Noise relative to the tone: a fixed floor would dominate quiet clips' spectral centroid (tracking z2, not z1).
    noise = rng.normal(0.0, level * 10.0 ** (-45.0 / 20.0), size=n_samples)
    return np.clip(level * envelope * carrier + noise, -1.0, 1.0).astype(np.float32)


# --------------------------------------------------------------------------------------- encoding
def _write_wav(path: str, audio: np.ndarray, sample_rate: int) -> None:
    pcm = np.round(audio * 32767.0).astype("<i2")
    with wave.open(path, "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(sample_rate)
        f.writeframes(pcm.tobytes())


def _encode_clip(task: ClipTask) -> str:
    rngs = _clip_rngs(task.seed, task.split_index, task.clip_index)
    z = np.asarray(task.z)
    frames = make_frames(z, rngs["video"], duration=task.duration, size=task.size, fps=task.fps)
    audio = make_audio(z, rngs["audio"], duration=task.duration, sample_rate=task.sample_rate)
    with tempfile.TemporaryDirectory(dir=task.wav_dir) as tmp:
        wav_path = os.path.join(tmp, "audio.wav")
        _write_wav(wav_path, audio, task.sample_rate)
        video_in = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{task.size}x{task.size}", r=task.fps)
        audio_in = ffmpeg.input(wav_path)
        out = ffmpeg.output(
            video_in, audio_in, task.path,
            vcodec="libx264", pix_fmt="yuv420p", preset="ultrafast", crf=18, r=task.fps,
            # One encoder thread per clip: parallelism comes from the worker processes.
            threads=1,
            acodec="aac", ac=1, ar=task.sample_rate, audio_bitrate="64k",
            map_metadata=-1, fflags="+bitexact", flags="+bitexact",
        ).global_args("-nostdin", "-loglevel", "error").overwrite_output()
        try:
            out.run(input=frames.tobytes(), capture_stdout=True, capture_stderr=True)
        except ffmpeg.Error as err:
            raise RuntimeError(f"ffmpeg failed on {task.path}: {err.stderr.decode(errors='replace')}") from None
    return task.path


def _run_tasks(tasks: list[ClipTask], workers: int) -> None:
    bar = progress(total=len(tasks), desc="encoding sample clips", unit="clip", leave=False)
    try:
        if workers <= 1:
            for task in tasks:
                _encode_clip(task)
                bar.update()
            return
        # spawn: safe even if the caller already holds threads or a CUDA context.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_encode_clip, tasks, chunksize=1):
                bar.update()
    finally:
        bar.close()


# ------------------------------------------------------------------------------------------ public
def _dump_pickle(path: Path, payload) -> None:
    with open(path, "wb") as f:
        # Protocol 2, like the original (python 2) FI pickles; loads with encoding="latin1" too.
        pickle.dump(payload, f, protocol=2)


def generate_sample(root: str | Path, *, n_train: int = 100, n_val: int = 25, n_test: int = 25,
                    duration: float = 6.0, size: int = 96, fps: int = 25, sample_rate: int = 16000,
                    n_latents: int = 4, label_noise: float = 0.05, seed: int = 0, workers: int = 2) -> dict:
    """Write a synthetic FI-V2-layout dataset to ``root`` (replacing it) and return a summary.

    The summary holds ``root``, ``clips`` (clips per split), ``total_clips`` and ``seconds`` taken.
    With ``workers > 1`` clips are encoded in spawn-started processes (safe next to threads or CUDA), so a
    script calling this needs the usual ``if __name__ == "__main__":`` guard.
    """
    if n_latents < 4:
        raise ValueError(f"n_latents must be >= 4 (the modalities use z0..z3), got {n_latents}")
    if size < 16 or size % 2:
        raise ValueError(f"size must be an even number >= 16 (yuv420p), got {size}")
    if duration <= 0 or fps <= 0 or sample_rate <= 0:
        raise ValueError("duration, fps and sample_rate must be positive")
    if shutil.which("ffmpeg") is None:
        raise RuntimeError("the ffmpeg binary is not on PATH")

    start = time.perf_counter()
    root = Path(root)
    partial = root.with_name(root.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)  # left by an interrupted run
    partial.mkdir(parents=True)
    wav_dir = partial / "_tmp_audio"
    wav_dir.mkdir()

    weights = _trait_weights(seed, n_latents)
    counts = {"train": n_train, "val": n_val, "test": n_test}
    tasks: list[ClipTask] = []
    latent_rows: list[list] = []
    for split, n_clips in counts.items():
        split_index = SPLIT_INDEX[split]
        (partial / split).mkdir()
        annotations: dict[str, dict[str, float]] = {trait: {} for trait in TRAITS}
        transcripts: dict[str, str] = {}
        for clip_index in range(n_clips):
            name = clip_id(seed, split, clip_index)
            rngs = _clip_rngs(seed, split_index, clip_index)
            z = rngs["latent"].normal(size=n_latents)
            for trait, score in make_labels(z, weights, rngs["latent"], label_noise).items():
                annotations[trait][name] = score
            transcripts[name] = make_transcript(z, rngs["text"])
            latent_rows.append([name, split, *(repr(float(v)) for v in z)])
            tasks.append(ClipTask(str(partial / split / name), str(wav_dir), seed, split_index, clip_index,
                                  tuple(float(v) for v in z), duration, size, fps, sample_rate))
        if len(transcripts) != n_clips:
            raise RuntimeError(f"clip id collision in split {split!r}")
        _dump_pickle(partial / f"annotation_{SPLIT_FILES[split]}.pkl", annotations)
        _dump_pickle(partial / f"transcription_{SPLIT_FILES[split]}.pkl", transcripts)

    with open(partial / "latents.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video", "split", *(f"z{j}" for j in range(n_latents))])
        writer.writerows(latent_rows)

    log.info("encoding %d synthetic clips (%dx%d, %.1f s) with %d worker(s)", len(tasks), size, size, duration, workers)
    _run_tasks(tasks, workers)
    shutil.rmtree(wav_dir)

    if root.exists():
        shutil.rmtree(root)
    os.replace(partial, root)
    seconds = time.perf_counter() - start
    log.info("wrote synthetic sample to %s in %.1f s", root, seconds)
    return {"root": str(root), "clips": counts, "total_clips": len(tasks), "seconds": seconds}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Generate the synthetic FI-V2-layout sample dataset.")
    parser.add_argument("root")
    parser.add_argument("--n-train", type=int, default=100)
    parser.add_argument("--n-val", type=int, default=25)
    parser.add_argument("--n-test", type=int, default=25)
    parser.add_argument("--duration", type=float, default=6.0)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    summary = generate_sample(args.root, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test,
                              duration=args.duration, size=args.size, seed=args.seed, workers=args.workers)
    print(summary)


if __name__ == "__main__":
    main()
