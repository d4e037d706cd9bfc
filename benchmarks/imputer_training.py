"""Training time of the neural imputers at the pipeline's scale, with the params.yaml settings.

~100 training / 25 validation clips x 5 segments x (64 + 110 + 128)-dim features, synthesised from a shared
latent so that validation improves and early stopping behaves as on real features. Prints wall time, epochs
run and the time for the full epoch budget (the worst case, no early stop).

    OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/imputer_training.py [--threads 2]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import yaml

from remodiff.imputers import build_imputer
from remodiff.store import FeatureSet

DIMS = {"audio": 64, "video": 110, "text": 128}


def synthetic(n: int, seed: int, segments: int = 5, latent: int = 8) -> FeatureSet:
    weights = np.random.default_rng(1234)
    maps = {m: weights.normal(size=(latent, d)) / np.sqrt(latent) for m, d in DIMS.items()}
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, segments, latent))
    features = {m: (np.tanh(z @ w) + 0.1 * rng.normal(size=(n, segments, w.shape[1]))).astype(np.float32)
                for m, w in maps.items()}
    return FeatureSet([f"c{seed}_{i}" for i in range(n)], features,
                      {m: np.ones((n, segments), bool) for m in DIMS}, rng.random((n, 5)).astype(np.float32),
                      [f"t{i}" for i in range(5)])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--imputers", nargs="+", default=["cvae", "gan"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    params = yaml.safe_load(open(args.params))["imputer"]
    train, val = synthetic(100, seed=0), synthetic(25, seed=1)
    for name in args.imputers:
        imputer = build_imputer(name, params.get(name))
        start = time.perf_counter()
        imputer.fit(train, val, seed=0)
        seconds = time.perf_counter() - start
        epochs = len(imputer.history)
        budget = imputer.train_cfg.epochs
        best = min(row["val_loss"] for row in imputer.history)
        print(f"{name}: {seconds:.1f} s for {epochs} epochs ({seconds / epochs * 1000:.0f} ms/epoch, "
              f"{args.threads} threads); full budget of {budget} epochs ~ {seconds / epochs * budget:.0f} s; "
              f"best val MSE (z-scored, hidden columns) {best:.3f}")


if __name__ == "__main__":
    main()
