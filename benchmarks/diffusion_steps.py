"""Sampling cost vs quality of the diffusion imputer, per sampler and number of steps.

Trains one diffusion imputer (on ``--features <dir>/{train,val,test}.h5`` when present -- a real dev set's are in
``.real/<name>/data/features`` after ``remodiff real-data <name>``; else on a synthetic conditional problem of feature-like size:
3 modalities of 64 / 110 / 128 dims, 5 segments, driven by a shared latent), then imputes the test clips (clip i
misses modality i mod M) with every sampler and steps in {1000, 200, 100, 50, 20, 10, 5}. Per setting it prints
the time per 1,000 imputed clips, the reconstruction MSE (standardised features, missing slots only), the
Fréchet distance between the reconstructed and the true features of the missing slots (Gaussian fits, per
modality, averaged) and, where the data has labels, the downstream headline metric of a fuser (params.yaml
``fuser``) trained on complete training data and fed the reconstructions; each with its ratio to the 1000-step
Euler-Maruyama reference. ``--mode sample`` (default) judges one draw per slot (what the Fréchet distance is
for); ``--mode mean`` averages ``--draws`` draws, as the pipeline's default sampling does. Writes a
quality-vs-time plot.

    python benchmarks/diffusion_steps.py benchmarks/diffusion_steps.png [--quick] [--items N] \\
        [--features .real/ravdess/data/features] [--mode sample|mean] \\
        [--json metrics/diffusion_benchmark.json]   # the report stage then draws the frontier
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

import yaml

from remodiff.diffusion.sampling import evaluations_per_step
from remodiff.evaluation.reconstruction import frechet_distance
from remodiff.fusion import build_fuser, fuser_section
from remodiff.imputers import build_imputer
from remodiff.evaluation.report import data_fingerprint
from remodiff.store import FeatureSet, load_featureset, write_json_atomic
from remodiff.tasks import Task

ROOT = Path(__file__).resolve().parents[1]

STEPS = (1000, 200, 100, 50, 20, 10, 5)
SAMPLERS = {"euler_maruyama": "uniform", "pc": "uniform", "ode": "karras", "ddim": "uniform"}


def synthetic(n: int, rng: np.random.Generator, segments: int = 5, dims=(64, 110, 128), latent: int = 8) -> FeatureSet:
    """Modalities = fixed nonlinear maps of a per-segment latent (clip factor + segment factor) plus noise."""
    z = rng.normal(size=(n, 1, latent)) + 0.5 * rng.normal(size=(n, segments, latent))
    maps = np.random.default_rng(1234)  # the same maps for every split
    features = {}
    for name, d in zip(("audio", "video", "text"), dims):
        weights, offset = maps.normal(size=(latent, d)) / np.sqrt(latent), maps.normal(size=d)
        features[name] = (np.tanh(z) @ weights + offset + 0.3 * rng.normal(size=(n, segments, d))).astype(np.float32)
    available = {m: np.ones((n, segments), bool) for m in features}
    return FeatureSet([f"clip{i}" for i in range(n)], features, available, np.zeros((n, 1), np.float32), ["none"])


def load_data(features_dir: Path) -> tuple[FeatureSet, FeatureSet, FeatureSet, str]:
    if all((features_dir / f"{s}.h5").exists() for s in ("train", "val", "test")):
        return (*(load_featureset(features_dir / f"{s}.h5") for s in ("train", "val", "test")), str(features_dir))
    rng = np.random.default_rng(0)
    return synthetic(100, rng), synthetic(25, rng), synthetic(200, rng), "synthetic (100 train clips)"


def one_missing_modality(data: FeatureSet) -> FeatureSet:
    """Clip i misses modality i mod M on every segment."""
    missing = np.arange(len(data)) % len(data.modalities)
    return data.with_mask({m: np.repeat((missing != k)[:, None], data.n_segments, axis=1)
                           for k, m in enumerate(data.modalities)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plot", type=Path, help="where to write the quality-vs-time PNG")
    parser.add_argument("--features", type=Path, default=Path("data/features"))
    parser.add_argument("--items", type=int, default=64, help="test clips imputed per setting")
    parser.add_argument("--quick", action="store_true", help="16 clips, steps {1000, 100, 20, 5}, short training")
    parser.add_argument("--conditioning", default="mlp", help="mlp (fast on CPU) | transformer")
    parser.add_argument("--sde", default="vp")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--mode", choices=["sample", "mean"], default="sample")
    parser.add_argument("--draws", type=int, default=8, help="draws averaged per slot in --mode mean")
    parser.add_argument("--seed", type=int, default=0, help="seed of the imputer and the fuser")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the runs for the report stage (e.g. metrics/diffusion_benchmark.json)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    steps_list = (1000, 100, 20, 5) if args.quick else STEPS
    epochs = 40 if args.quick else args.epochs

    train, val, test, source = load_data(args.features)
    items = 16 if args.quick else min(args.items, len(test))
    imputer = build_imputer("diffusion", {"preset": "none", "sde": args.sde, "conditioning": args.conditioning,
                                          "mode": args.mode, "draws": args.draws,
                                          "train": {"epochs": epochs, "patience": epochs}})
    start = time.perf_counter()
    imputer.fit(train, val, seed=args.seed)
    print(f"data: {source}; {args.sde.upper()} SDE, {args.conditioning} conditioning; trained "
          f"{len(imputer.history)} epochs in {time.perf_counter() - start:.1f}s on {torch.get_num_threads()} thread(s)")

    picked = FeatureSet(test.ids[:items], {m: x[:items] for m, x in test.features.items()},
                        {m: a[:items] for m, a in test.available.items()}, test.labels[:items], test.label_names,
                        dict(test.attrs))
    masked = one_missing_modality(picked)
    scale = {m: imputer.scaler.std[m] for m in picked.modalities}
    hidden = {m: picked.available[m] & ~masked.available[m] for m in picked.modalities}  # really there, masked

    def mse(restored: FeatureSet) -> float:
        errors = [(((restored.features[m] - picked.features[m]) / scale[m]) ** 2)[hidden[m]].ravel()
                  for m in picked.modalities]
        return float(np.concatenate(errors).mean())

    def frechet(restored: FeatureSet) -> float:
        return float(np.mean([frechet_distance(picked.features[m][hidden[m]] / scale[m],
                                               restored.features[m][hidden[m]] / scale[m])
                              for m in picked.modalities if hidden[m].sum() >= 2]))

    downstream = None
    if "task" in test.attrs:  # labelled data: a fixed fuser on complete training data judges the reconstructions
        params = yaml.safe_load((ROOT / "params.yaml").read_text())["fuser"]
        metrics = Task.from_attrs(test.attrs).metrics(test.label_names)
        metric = metrics.headline
        section = fuser_section(params, params["type"])
        fuser = build_fuser(params["type"], list(train.modalities),
                            {**section, "train": {**section.get("train", {}), "seed": args.seed}})
        fuser.fit(train, val)

        def downstream(restored: FeatureSet) -> float:
            return 100 * metrics.compute(picked.labels, fuser.predict(restored))[metric]

        print(f"downstream: fuser {params['type']}, {metric} x 100: complete {downstream(picked):.2f}")

    rows = []
    for sampler, grid in SAMPLERS.items():
        for steps in steps_list:
            imputer.set_sampling(sampler=sampler, steps=steps, time_grid=grid)
            start = time.perf_counter()
            restored = imputer.impute(masked, np.random.default_rng(0))
            seconds = (time.perf_counter() - start) / items * 1000
            rows.append({"sampler": sampler, "grid": grid, "steps": steps,
                         "evals": steps * evaluations_per_step(sampler), "seconds": seconds, "mse": mse(restored),
                         "frechet": frechet(restored),
                         "downstream": downstream(restored) if downstream is not None else None})
    ref = next(r for r in rows if r["sampler"] == "euler_maruyama" and r["steps"] == 1000)

    print(f"\n{items} test clips, one modality missing each; mode {args.mode}"
          f"{f' ({args.draws} draws)' if args.mode == 'mean' else ''}; reference = Euler-Maruyama, 1000 steps")
    print("| sampler | grid | steps | score evals | s / 1000 imputations | time ratio | MSE | MSE ratio | Fréchet | "
          "downstream | downstream ratio |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        down = (f"{r['downstream']:.2f} | {r['downstream'] / ref['downstream']:.3f}" if r["downstream"] is not None
                else "- | -")
        print(f"| {r['sampler']} | {r['grid']} | {r['steps']} | {r['evals']} | {r['seconds']:.1f} | "
              f"{r['seconds'] / ref['seconds']:.3f} | {r['mse']:.4f} | {r['mse'] / ref['mse']:.3f} | "
              f"{r['frechet']:.3f} | {down} |")

    if args.json is not None:  # the format remodiff/evaluation/report.py reads for its frontier figure
        device = "GPU" if torch.cuda.is_available() else f"CPU, {torch.get_num_threads()} thread(s)"
        runs = [{"label": f"{r['sampler']} ({r['grid']})", "steps": r["steps"], "seconds": r["seconds"] * items / 1000,
                 "mse": r["mse"], "frechet": r["frechet"], "downstream": r["downstream"]} for r in rows]
        write_json_atomic(args.json, {"quality": "mse", "higher_is_better": False, "device": device,
                                      "data": data_fingerprint(test.ids), "source": source, "mode": args.mode,
                                      "draws": args.draws if args.mode == "mean" else 1, "items": items,
                                      "runs": runs})
        print(f"runs: {args.json}")

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for sampler in SAMPLERS:
        mine = [r for r in rows if r["sampler"] == sampler]
        ax.plot([r["seconds"] for r in mine], [r["mse"] for r in mine], marker="o", label=sampler)
        for r in mine:
            ax.annotate(str(r["steps"]), (r["seconds"], r["mse"]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per 1,000 imputations (log)")
    ax.set_ylabel("reconstruction MSE (standardised)")
    ax.set_title("Diffusion imputer: quality vs sampling time (labels = steps)")
    ax.legend()
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    print(f"\nplot: {args.plot}")


if __name__ == "__main__":
    main()
