"""Imputation-aware fusion on the real dev sets: does training the fuser on the imputer's own reconstructions close
the gap between the lower bound (each clip scored by the fuser of exactly its modalities) and the upper bound?

RAVDESS dev (audio + video, 8 emotions, accuracy) and First Impressions dev (audio + text, Big Five, mean_acc =
1 - MAE), each modality of a test clip dropped with probability p (p = 0.25, 0.5; a clip that would lose both keeps
one: the `independent` protocol, masks seed 0). Per seed: the fuser of params.yaml (`fuser.type`, its section,
train seed = the seed) on complete data (upper bound, and `plain`: fed the reconstructions), one per modality
subset (lower bound), and the aware fuser (complete + one masked-and-reconstructed copy of the training clips,
drop probability = the test p) with the frozen imputer (`aware`, folds 0) and, for kNN, with 5 cross-fitted
imputers (`aware_cf`, folds 5). Mean ± 95 % CI (t) over seeds and the paired per-seed differences against the lower bound.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/real_aware.py --datasets ravdess --train patience=10
    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/real_aware.py --datasets fi --train patience=10 batch_size=64

Writes benchmarks/results/real_aware_<datasets>.json and prints the table.
"""
from __future__ import annotations

import argparse
import json
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import yaml

from benchmarks.devsets import fi, ravdess
from remodiff.evaluation.aware import aggregate_samples, fit_aware, gap_closed, training_imputer
from remodiff.evaluation.masks import independent
from remodiff.evaluation.matrix import ci95, lower_bound_predict, modality_subsets, subset_key
from remodiff.evaluation.metrics import task_metrics
from remodiff.fusion import build_fuser
from remodiff.imputers import build_imputer
from remodiff.pipeline.evaluate import training_floor
from remodiff.store import write_json_atomic
from remodiff.tasks import Task

RESULTS = Path(__file__).resolve().parent / "results" / "real_aware.json"  # suffixed with the datasets run
ROWS = ("complete", "lower_bound", "plain", "aware", "aware_cf")


@lru_cache(maxsize=1)
def dev_sets(name: str):
    if name == "fi":
        return fi(), "mean_acc"
    return ravdess(), "accuracy"


def one_seed(name: str, seed: int, params: dict, imputers: list[str], rates: list[float], samples: int,
             folds: int, crossfit: list[str]) -> dict:
    (train, val, test), metric = dev_sets(name)
    task = Task.from_attrs(train.attrs)
    modalities = train.modalities
    fuser_type = params["fuser"]["type"]
    own = dict(params["fuser"].get(fuser_type) or {})

    def fuser(subset):
        return build_fuser(fuser_type, list(subset), {**own, "train": {**own.get("train", {}), "seed": seed}})

    def score(predictions):
        return task_metrics(task.kind, test.labels, predictions, test.label_names, list(task.classes) or None)[metric]

    full = fuser(modalities)
    full.fit(train, val)
    lower = {}
    for subset in modality_subsets(modalities):
        lower[subset_key(subset)] = full if len(subset) == len(modalities) else fuser(subset)
        if len(subset) < len(modalities):
            lower[subset_key(subset)].fit(train.subset(list(subset)), val.subset(list(subset)))
    floor = training_floor(task, train, len(test))
    out = {"complete": score(full.predict(test))}
    for imputer_name in imputers:
        def fitted(part, validation):
            imputer = build_imputer(imputer_name, params["imputer"].get(imputer_name))
            imputer.fit(part, validation, seed=seed)
            return imputer

        main = fitted(train, val)
        k = samples if main.stochastic else 1
        for p in rates:
            setting, mask = next(iter(independent(test, 0, [{m: p for m in modalities}]).items()))
            masked = test.with_mask(mask)
            restored = [main.impute(masked, np.random.default_rng([seed, j])) for j in range(k)]
            cell = {"lower_bound": score(lower_bound_predict(lower, masked, floor)),
                    "plain": score(aggregate_samples(task.kind, [full.predict(r) for r in restored], "plain"))}
            rows = [("aware", 0)] + ([("aware_cf", folds)] if imputer_name in crossfit else [])
            for row, n_folds in rows:
                impute = training_imputer(main, fitted, train, val, n_folds, seed)
                aware = fit_aware(fuser(modalities), train, val, impute, main.impute, p, 1, seed)
                predictions = [aware.predict(r) for r in restored]
                cell[row] = score(aggregate_samples(task.kind, predictions, "plain"))
                if k > 1:
                    cell[f"{row}_agreement"] = score(aggregate_samples(task.kind, predictions, "agreement"))
            out[f"{imputer_name}/p_{p}"] = cell
    return out


def summarise(runs: list[dict]) -> dict:
    """Mean ± CI per row, the paired differences against the lower bound and the plain fuser, the gap closed."""
    def stat(values):
        return {"mean": float(np.mean(values)), "ci95": ci95(values), "per_seed": values}

    summary = {"complete": stat([r["complete"] for r in runs])}
    for cell in (k for k in runs[0] if k != "complete"):
        rows = {row: [r[cell][row] for r in runs] for row in runs[0][cell]}
        upper = summary["complete"]["mean"]
        entry = {row: stat(v) for row, v in rows.items()}
        for row in (r for r in rows if r.startswith("aware")):
            entry[f"{row} - lower_bound"] = stat(list(np.subtract(rows[row], rows["lower_bound"])))
            entry[f"{row} - plain"] = stat(list(np.subtract(rows[row], rows["plain"])))
            entry[f"{row} gap_closed"] = gap_closed(entry[row]["mean"], entry["lower_bound"]["mean"], upper)
        summary[cell] = entry
    return summary


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", nargs="+", default=["ravdess", "fi"])
    parser.add_argument("--imputers", nargs="+", default=["mean", "knn"])
    parser.add_argument("--rates", nargs="+", type=float, default=[0.25, 0.5])
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 1, 2, 3, 4])
    parser.add_argument("--samples", type=int, default=5, help="K reconstructions of a stochastic imputer")
    parser.add_argument("--folds", type=int, default=5, help="cross-fitted imputers of the aware_cf row")
    parser.add_argument("--crossfit", nargs="*", default=["knn"],
                        help="imputers that also get the cross-fitted row (the mean imputer hardly depends on a fold)")
    parser.add_argument("--train", nargs="*", default=[], metavar="KEY=VALUE",
                        help="overrides of the fuser's train params (e.g. patience=10), recorded in the results")
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default=None, help="default benchmarks/results/real_aware_<datasets>.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = yaml.safe_load(open(args.params))
    own = params["fuser"].setdefault(params["fuser"]["type"], {})
    own["train"] = {**own.get("train", {}), **{k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in args.train)}}
    out = Path(args.out) if args.out else RESULTS.with_name(f"real_aware_{'_'.join(args.datasets)}.json")
    results = {"command": "python benchmarks/real_aware.py " + " ".join(
        f"--{k} {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in vars(args).items()
        if k not in ("params", "out") and v not in ([], None)), "fuser": params["fuser"]["type"],
        "fuser_params": params["fuser"].get(params["fuser"]["type"])}
    for name in args.datasets:
        start = time.perf_counter()
        runs = [one_seed(name, seed, params, args.imputers, args.rates, args.samples, args.folds, args.crossfit)
                for seed in args.seeds]
        results[name] = summarise(runs)
        results[name]["seconds"] = time.perf_counter() - start
        write_json_atomic(out, results)
        print_table(name, results[name])
    print(f"wrote {out}")


def print_table(name: str, summary: dict) -> None:
    def show(s):
        return f"{100 * s['mean']:6.2f} ± {100 * (s['ci95'] or 0):4.2f}"

    print(f"\n{name} ({summary['seconds']:.0f} s): complete {show(summary['complete'])}")
    for cell, entry in summary.items():
        if cell in ("complete", "seconds"):
            continue
        parts = [f"{row} {show(entry[row])}" for row in entry if isinstance(entry[row], dict) and " " not in row]
        diffs = [f"{row} {show(entry[row])}" for row in entry if row.endswith("- lower_bound")]
        gaps = [f"{row} {entry[row]:.2f}" if entry[row] is not None else f"{row} n/a"
                for row in entry if row.endswith("gap_closed")]
        print(f"  {cell}: " + " | ".join(parts))
        print(f"      paired: " + " | ".join(diffs) + " | " + " | ".join(gaps))


if __name__ == "__main__":
    main()
