"""Every fuser on the two real dev sets, complete test data, 5 seeds: mean ± 95 % CI (t) next to the references.

    python benchmarks/real_fusers.py                      # all fusers, both sets, seeds 42 1 2 3 4
    python benchmarks/real_fusers.py --fusers early linear --sets ravdess

Fusers run with their params.yaml sections (which equal the code defaults). ``early@old`` is today's early
network (with its per-modality projection) under the settings main had before issue 12: validation-*loss*
stopping, no input dropout, dropout 0.1, lr 2e-3, batch 16, weight decay 1e-4, patience 30, constant lr.
Scores: RAVDESS test accuracy (%), FI ``mean_acc`` (1 - MAE over the Big Five). Results go to
benchmarks/results/real_fusers.json. Torch runs on one thread.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")  # one line per fuser instead of progress bars

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from scipy import stats  # noqa: E402

from benchmarks.devsets import fi, ravdess  # noqa: E402
from remodiff.evaluation.metrics import classification_metrics, regression_metrics  # noqa: E402
from remodiff.fusion import build_fuser  # noqa: E402
from remodiff.store import FeatureSet, write_json_atomic  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SEEDS = [42, 1, 2, 3, 4]
FUSERS = ["early", "late", "transformer", "linear", "mlp"]
REFERENCES = {"ravdess": "sklearn MLPClassifier(256) 52.3 ± 3.9 % accuracy",
              "fi": "ridge audio+text 89.26 (0.8926 mean_acc)"}
OLD_EARLY = {"hidden": 64, "dropout": 0.1, "input_dropout": 0.0, "monitor": "loss",
             "train": {"epochs": 300, "batch_size": 16, "lr": 0.002, "weight_decay": 0.0001, "patience": 30,
                       "min_epochs": 0, "schedule": "constant"}}


def mean_ci(values: list[float]) -> tuple[float, float]:
    values = np.asarray(values, float)
    if len(values) < 2:
        return float(values.mean()), float("nan")
    half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
    return float(values.mean()), float(half)


def score(name: str, test, predictions: np.ndarray) -> float:
    if name == "ravdess":
        return 100 * classification_metrics(test.labels, predictions, test.attrs["classes"])["accuracy"]
    return regression_metrics(test.labels, predictions, test.label_names)["mean_acc"]


def fuser_params(fuser: str) -> dict:
    if fuser == "early@old":
        return json.loads(json.dumps(OLD_EARLY))
    section = yaml.safe_load((ROOT / "params.yaml").read_text())["fuser"].get(fuser) or {}
    return json.loads(json.dumps(section))


def markdown_table(results: dict) -> str:
    """One row per fuser, one column per dev set, the references in the last row."""
    names = list(dict.fromkeys(name for per_set in results.values() for name in per_set))
    sets = [s for s in ("ravdess", "fi") if s in results]
    heads = {"ravdess": "RAVDESS dev, accuracy %", "fi": "FI dev, mean_acc (1 − MAE)"}
    lines = ["| fuser | " + " | ".join(heads[s] for s in sets) + " |", "|---" * (len(sets) + 1) + "|"]
    for name in names:
        cells = []
        for s in sets:
            row = results[s].get(name)
            digits = 1 if s == "ravdess" else 4
            cells.append(f"{row['mean']:.{digits}f} ± {row['ci95']:.{digits}f}" if row else "–")
        lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
    lines.append("| reference | " + " | ".join(REFERENCES[s] for s in sets) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fusers", nargs="+", default=FUSERS, help=f"of {FUSERS + ['early@old']}")
    parser.add_argument("--sets", nargs="+", default=["ravdess", "fi"])
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "real_fusers.json"))
    parser.add_argument("--table", action="store_true", help="only print the saved results as a markdown table")
    args = parser.parse_args()
    if args.table:
        print(markdown_table(json.loads(Path(args.out).read_text())))
        return
    torch.set_num_threads(1)
    loaders = {"ravdess": ravdess, "fi": fi}
    results = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    for set_name in args.sets:
        train, val, test = loaders[set_name]()
        for fuser_name in args.fusers:
            scores, seconds = [], []
            for seed in args.seeds:
                params = fuser_params(fuser_name)
                params["train"] = {**params.get("train", {}), "seed": seed}
                start = time.perf_counter()
                fuser = build_fuser(fuser_name.split("@")[0], train.modalities, params)
                fuser.fit(train, val)
                seconds.append(time.perf_counter() - start)
                scores.append(score(set_name, test, fuser.predict(test)))
            mean, half = mean_ci(scores)
            unit = "%" if set_name == "ravdess" else ""
            print(f"{set_name:8s} {fuser_name:12s} {mean:.4f} ± {half:.4f}{unit}  per seed "
                  f"{[round(s, 4) for s in scores]}  {np.mean(seconds):.1f} s/fit   "
                  f"reference: {REFERENCES[set_name]}", flush=True)
            results.setdefault(set_name, {})[fuser_name] = {
                "mean": mean, "ci95": half, "scores": scores, "seeds": args.seeds,
                "seconds_per_fit": float(np.mean(seconds)), "params": fuser_params(fuser_name),
                "metric": "accuracy %" if set_name == "ravdess" else "mean_acc (1 - MAE, Big Five)",
                "reference": REFERENCES[set_name]}
            write_json_atomic(args.out, results)


if __name__ == "__main__":
    main()
