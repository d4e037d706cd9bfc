"""The all-imputer comparison of the pipeline's stages on the RAVDESS dev set, 5-fold by actor (or the official
split), params.yaml's fuser: prints ``metrics/comparison.md`` (mean ± CI over runs, bootstrap marks against the
best classical imputer) and the pooled out-of-fold accuracies of the main chain.

The dev set's features are written as the extract stage would (``data/features/<split>.h5`` in ``--workdir``), then
the stages from masks to compare_table run in-process (no DVC). Masks: audio and video each dropped with
p = 0.25 and 0.5 (the issue's reference protocol).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/compare_ravdess.py --workdir /tmp/ravdess-compare \\
        [--seeds 42 1 2 3 4] [--k 5 | --official] [--imputers zero mean knn]
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import torch
import yaml

from benchmarks.devsets import ravdess
from benchmarks.folds_ravdess import CLASSES
from remodiff.pipeline import stage
from remodiff.store import save_featureset

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workdir", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 1, 2, 3, 4])
    parser.add_argument("--k", type=int, default=5)
    parser.add_argument("--official", action="store_true", help="the official split instead of folds")
    parser.add_argument("--imputers", nargs="+", default=["zero", "mean", "knn"])
    parser.add_argument("--table-only", action="store_true", help="only compare_table, on --workdir's earlier run")
    args = parser.parse_args()
    torch.set_num_threads(1)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    args.workdir.mkdir(parents=True, exist_ok=True)
    os.chdir(args.workdir)
    params["features"] = {"audio": {}, "video": {}}
    params["eval"].update(seeds=args.seeds, folds=None if args.official else
                          {"k": args.k, "group": "ravdess_actor", "seed": 0})
    params["masks"].update(protocol="independent", independent=[{"audio": p, "video": p} for p in (0.25, 0.5)])
    params["imputer"]["type"] = "mean"
    params["compare"].update(imputers=args.imputers, seeds=None, metric="accuracy")
    if not args.table_only:
        for name, part in zip(("train", "val", "test"), ravdess()):
            part.attrs.update(task="classification", classes=CLASSES)
            save_featureset(f"data/features/{name}.h5", part)
        for name in ("masks", "train_imputer", "reconstruct", "train_fuser", "evaluate"):
            stage(name)(params)
        for imputer in args.imputers:
            stage("compare_train")(params, imputer)
            stage("compare")(params, imputer)
    stage("compare_table")(params)
    print(Path("metrics/comparison.md").read_text())
    downstream = json.loads(Path("metrics/downstream.json").read_text())
    for title, result in (("over runs", downstream), ("pooled out-of-fold", downstream.get("pooled"))):
        if result:
            cells = {s: c["lower_bound"]["accuracy"] for s, c in result["independent"].items()}
            print(f"main chain (mean), {title}: complete {result['complete']['accuracy']:.4f} ± "
                  f"{result['complete']['accuracy_ci95'] or 0:.4f}; lower bound {cells}")


if __name__ == "__main__":
    main()
