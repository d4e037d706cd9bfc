"""Official split vs grouped k-fold cross-validation on the RAVDESS dev set (actors 1-20): complete-data accuracy of
params.yaml's fuser (``fuser.type`` with its settings), mean and 95 % CI over runs, plus pooled out-of-fold.

Official: train = actors 1-16, val = 17-18, test = 19-20, one run per seed. Folds: the 1,200 clips pooled and
dealt to k folds by actor (``ravdess_actor``), run (fold, seed) tests on its fold; the pooled out-of-fold accuracy
scores every clip once (from the fold where it was test), per seed.

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/folds_ravdess.py [--seeds 42 1 2 3 4] [--k 5]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml

from benchmarks.devsets import ravdess
from remodiff.evaluation.folds import cross_validation, pool
from remodiff.evaluation.matrix import ci95
from remodiff.evaluation.metrics import classification_metrics
from remodiff.fusion import build_fuser

CLASSES = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]


def accuracy_of(params: dict, seed: int, split: dict) -> tuple[float, np.ndarray]:
    cfg = params["fuser"]
    own = dict(cfg.get(cfg["type"]) or {})
    own["train"] = {**own.get("train", {}), "seed": seed, "device": "cpu"}
    fuser = build_fuser(cfg["type"], split["train"].modalities, own)
    fuser.fit(split["train"], split["val"])
    scores = fuser.predict(split["test"])
    return classification_metrics(split["test"].labels, scores, CLASSES)["accuracy"], scores


def summary(values: list[float]) -> str:
    ci = ci95(values)
    return f"{100 * np.mean(values):.1f} ± {100 * ci:.1f} % (n = {len(values)})" if ci else f"{100 * values[0]:.1f} %"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = yaml.safe_load(open(args.params))
    train, val, test = ravdess()
    for part in (train, val, test):  # what the extract stage records for a classification dataset
        part.attrs.update(task="classification", classes=CLASSES)
    start = time.perf_counter()
    official = [accuracy_of(params, seed, {"train": train, "val": val, "test": test})[0] for seed in args.seeds]
    print(f"fuser {params['fuser']['type']}, official split (test actors 19-20): {summary(official)}  "
          f"[{time.perf_counter() - start:.0f}s]", flush=True)
    pooled = pool([train, val, test])
    folds = cross_validation(pooled, args.k, "ravdess_actor", 0)
    runs, out_of_fold = [], []
    start = time.perf_counter()
    for seed in args.seeds:
        truth, predicted = [], []
        for split in folds:
            accuracy, scores = accuracy_of(params, seed, split)
            runs.append(accuracy)
            truth.append(split["test"].labels)
            predicted.append(scores)
        out_of_fold.append(classification_metrics(np.concatenate(truth), np.concatenate(predicted), CLASSES)["accuracy"])
        print(f"  seed {seed}: folds {[round(100 * a, 1) for a in runs[-args.k:]]}, out-of-fold "
              f"{100 * out_of_fold[-1]:.1f}", flush=True)
    print(f"fuser {params['fuser']['type']}, {args.k}-fold by actor: runs {summary(runs)}, pooled out-of-fold "
          f"{summary(out_of_fold)}  [{time.perf_counter() - start:.0f}s]")


if __name__ == "__main__":
    main()
