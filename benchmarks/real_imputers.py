"""Every imputer on the real dev sets: reconstruction error and what it is worth downstream, against the lower bound.

On ``benchmarks.devsets`` (RAVDESS AU + MFCC, First Impressions V2 audio + text), per seed:

* one fuser (``fuser.type`` of params.yaml, its own settings) trained on complete training data, plus the lower
  bound's fusers, one per modality subset (each clip scored by the fuser of exactly the modalities it has);
* every imputer fitted on the training split (validation for early stopping) with its ``imputer.<name>`` and
  ``sampling.<name>`` settings of params.yaml, plus the few per-dataset overrides in :data:`OVERRIDES`;
* test masks: audio and video (FI: audio and text) each dropped with p in {0.25, 0.5}, a clip that would lose
  every modality keeping one at random (the issue's reference protocol), and on FI each fixed pattern (audio
  missing, text missing) on every clip;
* reconstruction MSE per modality in standardised units (training mean / std; only the dropped slots that were
  really there), and the downstream headline metric of the fuser fed the reconstruction.

Mean and 95 % CI (t distribution) over seeds 42, 1, 2, 3, 4. ``zero`` writes raw zeros (extreme after
standardisation); the papers' zero-fill on standardised features is ``mean``.

    OMP_NUM_THREADS=1 python benchmarks/real_imputers.py [--sets ravdess fi] [--seeds 42 1 2 3 4] \\
        [--json benchmarks/results/real_imputers.json]
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks import devsets
from remodiff.evaluation.matrix import ci95, lower_bound_predict, modality_subsets, subset_key
from remodiff.evaluation.metrics import headline_metric, task_metrics
from remodiff.fusion import build_fuser
from remodiff.imputers import build_imputer
from remodiff.pipeline.evaluate import training_floor
from remodiff.scaling import Standardiser
from remodiff.store import FeatureSet, write_json_atomic
from remodiff.tasks import Task

ROOT = Path(__file__).resolve().parents[1]
IMPUTERS = ("zero", "mean", "knn", "gmm", "cvae", "gan", "diffusion")
GENERATIVE = ("cvae", "gan", "diffusion")
RATES = (0.25, 0.5)
SEEDS = (42, 1, 2, 3, 4)
# Per-dataset settings on top of params.yaml, so the whole benchmark (5 seeds, both sets) fits about 20 minutes on
# one core: larger batches for the fuser and, on FI (5,300 training clips), for the neural imputers, and fewer
# diffusion epochs on FI (its denoising loss barely moves after a few epochs there: little cross-modal signal).
# Early stopping on the validation split is unchanged.
FI_BATCH = {"train": {"batch_size": 256}}
OVERRIDES = {"ravdess": {"fuser": {"train": {"batch_size": 64}}},
             "fi": {"imputer": {"cvae": FI_BATCH, "gan": FI_BATCH,
                                "diffusion": {"train": {"epochs": 15, "patience": 5, "batch_size": 256}}},
                    "fuser": FI_BATCH}}


def dev_set(name: str) -> tuple[FeatureSet, FeatureSet, FeatureSet]:
    """``(train, val, test)`` of a dev set, each carrying its task."""
    return getattr(devsets, name)()


def deep_merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = deep_merge(out.get(key) or {}, value) if isinstance(value, dict) else value
    return out


def drop_independent(data: FeatureSet, p: float, rng: np.random.Generator) -> FeatureSet:
    """Each (clip, modality) dropped with probability ``p``; a clip that would lose every modality keeps one
    drawn at random."""
    n, m = len(data), len(data.modalities)
    dropped = rng.random((n, m)) < p
    everything = dropped.all(axis=1)
    dropped[np.flatnonzero(everything), rng.integers(m, size=int(everything.sum()))] = False
    return data.with_mask({name: np.repeat(~dropped[:, [i]], data.n_segments, axis=1)
                           for i, name in enumerate(data.modalities)})


def drop_modality(data: FeatureSet, gone: str) -> FeatureSet:
    return data.with_mask({m: np.full(data.available[m].shape, m != gone) for m in data.modalities})


def mask_settings(name: str, test: FeatureSet, seed: int) -> dict[str, FeatureSet]:
    settings = {f"p={p}": drop_independent(test, p, np.random.default_rng([seed, int(p * 100)])) for p in RATES}
    if name == "fi":
        settings.update({f"{m} missing": drop_modality(test, m) for m in test.modalities})
    return settings


def reconstruction_mse(scaler: Standardiser, test: FeatureSet, masked: FeatureSet, restored: FeatureSet) -> dict:
    """Per modality, the MSE in standardised units over the slots the mask hid that the clip really had."""
    out = {}
    for m in test.modalities:
        hidden = test.available[m] & ~masked.available[m]
        if hidden.any():
            error = (scaler.transform(restored, m) - scaler.transform(test, m))[hidden]
            out[m] = float((error ** 2).mean())
    return out


def run_set(name: str, params: dict, seeds: list[int]) -> dict:
    train, val, test = dev_set(name)
    params = deep_merge(params, {"imputer": OVERRIDES.get(name, {}).get("imputer", {})})
    fuser_type = params["fuser"]["type"]
    fuser_params = deep_merge(params["fuser"][fuser_type], OVERRIDES.get(name, {}).get("fuser", {}))
    task = Task.from_attrs(test.attrs)
    metric = headline_metric(task.kind, test.label_names)
    scaler = Standardiser.fit(train)
    floor = training_floor(task, train, len(test))

    def score(predictions: np.ndarray) -> float:
        value = task_metrics(task.kind, test.labels, predictions, test.label_names, list(task.classes) or None)[metric]
        return 100 * value

    runs: dict = {}  # setting -> row -> quantity -> [value per seed]

    def record(setting: str, row: str, quantity: str, value: float) -> None:
        runs.setdefault(setting, {}).setdefault(row, {}).setdefault(quantity, []).append(value)

    seconds: dict[str, list[float]] = {}
    for seed in seeds:
        fusers = {}
        for subset in modality_subsets(test.modalities):
            own = deep_merge(fuser_params, {"train": {"seed": seed}})
            fusers[subset_key(subset)] = fuser = build_fuser(fuser_type, list(subset), own)
            fuser.fit(train.subset(list(subset)), val.subset(list(subset)))
        full = fusers[subset_key(test.modalities)]
        record("complete", fuser_type, metric, score(full.predict(test)))
        masks = mask_settings(name, test, seed)
        for setting, masked in masks.items():
            record(setting, "lower bound", metric, score(lower_bound_predict(fusers, masked, floor)))
        for imputer_name in IMPUTERS:
            start = time.perf_counter()
            imputer = build_imputer(imputer_name, {**(params["imputer"].get(imputer_name) or {}),
                                                   **(params["sampling"].get(imputer_name) or {})})
            imputer.fit(train, val, seed=seed)
            for i, (setting, masked) in enumerate(masks.items()):
                restored = imputer.impute(masked, np.random.default_rng([seed, i]))
                for m, value in reconstruction_mse(scaler, test, masked, restored).items():
                    record(setting, imputer_name, f"mse_{m}", value)
                record(setting, imputer_name, metric, score(full.predict(restored)))
            seconds.setdefault(imputer_name, []).append(time.perf_counter() - start)
            print(f"  {name} seed {seed} {imputer_name}: {seconds[imputer_name][-1]:.1f}s", flush=True)

    summary = {setting: {row: {q: {"mean": float(np.mean(v)), "ci95": ci95(v), "runs": v} for q, v in rows.items()}
                         for row, rows in table.items()} for setting, table in runs.items()}
    return {"metric": metric, "fuser": fuser_type, "fuser_params": fuser_params, "seeds": seeds,
            "imputer_params": {n: {"imputer": params["imputer"].get(n), "sampling": params["sampling"].get(n)}
                               for n in IMPUTERS},
            "seconds_per_fit_and_impute": {n: float(np.mean(s)) for n, s in seconds.items()},
            "sizes": {"train": len(train), "val": len(val), "test": len(test)}, "results": summary}


def cell(entry: dict | None) -> str:
    if entry is None:
        return "-"
    ci = entry["ci95"]
    return f"{entry['mean']:.2f}" + (f" ± {ci:.2f}" if ci is not None else "")


def print_tables(name: str, result: dict) -> None:
    metric = result["metric"]
    complete = result["results"]["complete"][result["fuser"]][metric]
    print(f"\n### {name}: {metric} x 100 (fuser {result['fuser']}, complete test data {cell(complete)}), "
          f"MSE in standardised units; seeds {result['seeds']}")
    for setting, table in result["results"].items():
        if setting == "complete":
            continue
        quantities = sorted({q for row in table.values() for q in row if q.startswith("mse_")})
        print(f"\n{setting}\n\n| imputer | {metric} | " + " | ".join(quantities) + " |")
        print("|---|---|" + "---|" * len(quantities))
        for row, values in table.items():
            label = "zero (raw 0; literature zero-fill = mean)" if row == "zero" else row
            print(f"| {label} | {cell(values.get(metric))} | " + " | ".join(cell(values.get(q)) for q in quantities)
                  + " |")


def print_paired(name: str, result: dict) -> None:
    """The best generative imputer per setting against mean, knn and the lower bound: the mean paired difference
    over seeds (same masks, same fuser) with its 95 % CI."""
    metric = result["metric"]
    print(f"\n{name}: best generative imputer minus each reference, {metric} x 100, paired over seeds")
    print("\n| setting | best generative | - mean | - knn | - lower bound |\n|---|---|---|---|---|")
    for setting, table in result["results"].items():
        if setting == "complete":
            continue
        best = max(GENERATIVE, key=lambda row: table[row][metric]["mean"])
        ours = np.array(table[best][metric]["runs"])
        gaps = [ours - np.array(table[ref][metric]["runs"]) for ref in ("mean", "knn", "lower bound")]
        print(f"| {setting} | {best} | " + " | ".join(f"{g.mean():+.2f} ± {ci95(list(g)):.2f}" for g in gaps) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["ravdess", "fi"], choices=["ravdess", "fi"])
    parser.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    parser.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "real_imputers.json")
    parser.add_argument("--tables", action="store_true", help="only print the tables of the existing --json")
    parser.add_argument("--mode", choices=["mean", "sample"], default=None,
                        help="override sampling.<name>.mode of gmm, cvae, gan and diffusion (default: params.yaml)")
    args = parser.parse_args()
    if args.tables:
        for name, result in json.loads(args.json.read_text()).items():
            print_tables(name, result)
            print_paired(name, result)
        return
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("TQDM_DISABLE", "1")  # per-epoch progress bars of ~100 model fits
    torch.set_num_threads(1)
    params = yaml.safe_load(args.params.read_text())
    if args.mode is not None:  # one draw per slot instead of the conditional mean, to compare the two
        for name in ("gmm", *GENERATIVE):
            params["sampling"][name] = {**(params["sampling"].get(name) or {}), "mode": args.mode}
    results = json.loads(args.json.read_text()) if args.json.exists() else {}
    for name in args.sets:
        start = time.perf_counter()
        results[name] = run_set(name, params, args.seeds)
        results[name]["seconds"] = time.perf_counter() - start
        results[name]["command"] = "OMP_NUM_THREADS=1 python " + " ".join(sys.argv)
        print_tables(name, results[name])
        print_paired(name, results[name])
        print(f"\n{name}: {results[name]['seconds']:.0f}s on {torch.get_num_threads()} thread(s)")
        write_json_atomic(args.json, results)
    print(f"results: {args.json}")


if __name__ == "__main__":
    main()
