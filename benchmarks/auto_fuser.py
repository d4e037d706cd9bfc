"""The `auto` fuser on the real dev sets: which candidate it keeps, and its test score next to each candidate's.

Two regimes, complete test data:

* ``full``: the dev splits (RAVDESS: 960 train / 120 val / 120 test, accuracy %; First Impressions: 5,356 / 582 /
  2,000, mean_acc = 100 (1 - MAE)), seeds 42 1 2 3 4.
* ``small``: ``--subsamples`` random draws of 48 clips of the dev training + validation pool, 36 to train and 12 to
  validate (First Impressions: one clip per YouTube video, so no speaker is in both), each with its own seed (0, 1,
  ...); scored on the whole dev test split (120 / 2,000 clips: the small-data case is about the training clips, and
  a 12-clip test would add noise the comparison does not need) and on 12 test clips drawn with them.

Each candidate (``--candidates``, with its params.yaml section and the run's seed) is fitted once; auto's choice under
each ``selection`` rule (``one_se``, ``best``) comes from ``AutoFusion.select`` over the candidates' validation
scores and standard errors — what ``AutoFusion.fit`` does, which the first run of each regime checks by fitting the
auto fuser itself. Printed per regime: each candidate's and auto's test score per rule (mean ± sd), auto's paired
difference from each candidate (runs better / worse), how often each candidate is picked, and ``oracle`` (the
candidate best on the test clips, a bound no selection rule reaches).

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/auto_fuser.py --sets ravdess fi 2>/dev/null

Writes benchmarks/results/auto_fuser.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import zlib
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from benchmarks.devsets import fi, ravdess, youtube_id  # noqa: E402
from remodiff.evaluation.metrics import task_metrics  # noqa: E402
from remodiff.fusion import build_fuser  # noqa: E402
from remodiff.fusion.auto import SELECTIONS  # noqa: E402
from remodiff.store import FeatureSet, concatenate, write_json_atomic  # noqa: E402
from remodiff.tasks import Task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "auto_fuser.json"
SEEDS = [42, 1, 2, 3, 4]


def score(data: FeatureSet, predictions: np.ndarray) -> float:
    task = Task.from_attrs(data.attrs)
    metric = "accuracy" if task.is_classification else "mean_acc"
    return 100 * task_metrics(task.kind, data.labels, predictions, data.label_names, list(task.classes) or None)[metric]


def small_draw(set_name: str, train: FeatureSet, val: FeatureSet, test: FeatureSet, draw: int
               ) -> tuple[FeatureSet, FeatureSet, FeatureSet]:
    """36 training and 12 validation clips from the dev train + val pool, and 12 test clips, for draw ``draw``."""
    rng = np.random.default_rng(draw)
    pool = concatenate([train, val])
    if set_name == "fi":  # one clip per video: no speaker in both training and validation
        first = {}
        for i in rng.permutation(len(pool)):
            first.setdefault(youtube_id(pool.ids[i]), i)
        order = np.array(list(first.values()))
    else:
        order = rng.permutation(len(pool))
    return pool.rows(order[:36]), pool.rows(order[36:48]), test.rows(rng.permutation(len(test))[:12])


def candidate_runs(candidates: list[str], sections: dict, seed: int, train, val, tests: dict) -> dict:
    """Per candidate: its validation score, the score's standard error over the validation clips, and its score on
    each test set."""
    out = {}
    for name in candidates:
        fuser = build_fuser(name, train.modalities, {**sections.get(name, {}), "train": {
            **sections.get(name, {}).get("train", {}), "seed": seed}})
        fuser.fit(train, val)
        clip_scores = fuser.validation_scores
        out[name] = {"validation_score": float(clip_scores.mean()),
                     "standard_error": float(clip_scores.std(ddof=1) / np.sqrt(len(clip_scores))),
                     **{test_name: score(test, fuser.predict(test)) for test_name, test in tests.items()}}
    return out


def choices(candidates: list[str], scores: dict) -> dict[str, str]:
    """The candidate each selection rule keeps, by AutoFusion.select itself."""
    out = {}
    for rule in SELECTIONS:
        auto = build_fuser("auto", ["audio"], {"candidates": candidates, "selection": rule})
        auto.scores = {c: scores[c]["validation_score"] for c in candidates}
        auto.standard_errors = {c: scores[c]["standard_error"] for c in candidates}
        out[rule] = auto.select()
    return out


def check_auto(candidates: list[str], sections: dict, seed: int, train, val, chosen: dict[str, str]) -> None:
    auto = build_fuser("auto", train.modalities, {"candidates": {c: sections.get(c, {}) for c in candidates},
                                                  "train": {"seed": seed}})
    auto.fit(train, val)
    if auto.chosen != chosen[auto.params["selection"]]:
        raise AssertionError(f"AutoFusion picked {auto.chosen}, the benchmark {chosen}")


def summarise(runs: list[dict], candidates: list[str]) -> dict:
    tests = [k for k in runs[0]["candidates"][candidates[0]] if k not in ("validation_score", "standard_error")]
    out = {"picked": {rule: {c: sum(r["chosen"][rule] == c for r in runs) for c in candidates}
                      for rule in SELECTIONS}}
    for test in tests:
        table = {c: np.array([r["candidates"][c][test] for r in runs]) for c in candidates}
        for rule in SELECTIONS:
            table[f"auto/{rule}"] = np.array([r["candidates"][r["chosen"][rule]][test] for r in runs])
        table["oracle"] = np.array([max(r["candidates"][c][test] for c in candidates) for r in runs])
        out[test] = {name: {"mean": float(v.mean()), "sd": float(v.std(ddof=1)), "per_run": v.tolist()}
                     for name, v in table.items()}
        for rule in SELECTIONS:
            diff = {c: table[f"auto/{rule}"] - table[c] for c in candidates}
            out[test][f"auto/{rule} - candidate"] = {
                c: {"mean": float(d.mean()), "sd": float(d.std(ddof=1)), "auto better": int((d > 0).sum()),
                    "auto worse": int((d < 0).sum())} for c, d in diff.items()}
    return out


def print_summary(set_name: str, regime: str, summary: dict, runs: int) -> None:
    print(f"\n{set_name} {regime} ({runs} runs): picked {summary['picked']}")
    for test, table in summary.items():
        if test == "picked":
            continue
        cells = [f"{name} {row['mean']:.2f} ± {row['sd']:.2f}" for name, row in table.items() if "mean" in row]
        print(f"  test {test}: " + " | ".join(cells))
        for rule in SELECTIONS:
            diffs = [f"{c} {d['mean']:+.2f} ± {d['sd']:.2f} (+{d['auto better']}/-{d['auto worse']})"
                     for c, d in table[f"auto/{rule} - candidate"].items()]
            print(f"    auto/{rule} - " + " | ".join(diffs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["ravdess", "fi"])
    parser.add_argument("--regimes", nargs="+", default=["full", "small"])
    parser.add_argument("--candidates", nargs="+", default=["linear", "early", "mlp"])
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS, help="seeds of the full regime")
    parser.add_argument("--subsamples", type=int, default=20, help="draws of the small regime")
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    sections = yaml.safe_load((ROOT / "params.yaml").read_text())["fuser"]
    results = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    for set_name in args.sets:
        train, val, test = {"ravdess": ravdess, "fi": fi}[set_name]()
        for regime in args.regimes:
            start, runs = time.perf_counter(), []
            if regime == "full":
                plans = [(seed, train, val, {"test": test}) for seed in args.seeds]
            else:
                plans = []
                for draw in range(args.subsamples):
                    small_train, small_val, small_test = small_draw(set_name, train, val, test, draw)
                    plans.append((draw, small_train, small_val, {"test": test, "test12": small_test}))
            for i, (seed, run_train, run_val, tests) in enumerate(plans):
                scores = candidate_runs(args.candidates, sections, seed, run_train, run_val, tests)
                chosen = choices(args.candidates, scores)
                if i == 0:
                    check_auto(args.candidates, sections, seed, run_train, run_val, chosen)
                runs.append({"seed": seed, "chosen": chosen, "candidates": scores})
            summary = summarise(runs, args.candidates)
            results.setdefault(set_name, {})[regime] = {"candidates": args.candidates, "runs": runs,
                                                        "summary": summary,
                                                        "seconds": time.perf_counter() - start}
            write_json_atomic(args.out, results)
            print_summary(set_name, regime, summary, len(runs))


if __name__ == "__main__":
    main()
