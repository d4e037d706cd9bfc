"""Fusers trained for missing inputs: does modality dropout in fuser training (``train_masking``, ``masked_as``,
``mask_validation``) help on the real dev sets once test modalities go missing and an imputer fills them?

Per dev set (RAVDESS: audio + video, accuracy %; First Impressions: audio + text, mean_acc = 100 (1 - MAE)) and
seed (42 1 2 3 4): each variant of the fuser is trained on the dev training clips (validation = the dev val clips)
and scored on the complete test clips and on test clips whose modalities are each dropped with probability p
(the `independent` protocol: a clip keeps one), filled by the `mean` imputer or by `knn` (k = 10), both fitted on
the training clips. Every masked score is the mean over ``--draws`` mask draws (masks seeds 0..draws-1), so the
mask draw adds little noise; the seeds then differ only in the fuser's training. Printed: mean ± sd over seeds per
column, and each variant's paired per-seed difference from ``plain`` run with the same ``--set`` (mean ± sd, and
in how many seeds it is above / below plain).

Variants (``--variants``): ``plain`` (train_masking 0); ``drop<P>`` = train_masking P/100 with the fuser's
``masked_as``; suffixes ``-mean`` / ``-missing`` set masked_as, ``-val`` adds mask_validation; ``copies`` = the
training and validation clips plus one copy per modality with it set to the training mean (marked available: a
`mean` reconstruction), the fixed-pattern augmentation of the scikit-learn reference in ../shared/README.md.

The runs behind benchmarks/results/fuser_masking.json (``--table`` prints them; prefix each with
``OMP_NUM_THREADS=1 PYTHONPATH=.``, append ``2>/dev/null``):

    python benchmarks/fuser_masking.py --sets ravdess fi --fusers early \
        --variants plain drop25 drop25-val drop50 drop50-val copies
    python benchmarks/fuser_masking.py --sets ravdess --fusers early --variants plain drop25 drop50 \
        --set input_dropout=0
    python benchmarks/fuser_masking.py --sets ravdess --fusers late transformer \
        --variants plain drop25-missing drop25-mean drop25-mean-val
    python benchmarks/fuser_masking.py --sets ravdess --fusers mlp --variants plain drop25 drop25-val copies
    python benchmarks/fuser_masking.py --sets fi --fusers late transformer --variants plain drop25-missing drop25-mean

``--set KEY=VALUE`` adds a fuser setting to every variant run (recorded as a ``+KEY=VALUE`` suffix of its name).
Results are merged into benchmarks/results/fuser_masking.json (per set, fuser, variant: the per-seed scores).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TQDM_DISABLE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402

from benchmarks.devsets import fi, ravdess  # noqa: E402
from remodiff.evaluation.masks import independent  # noqa: E402
from remodiff.evaluation.metrics import task_metrics  # noqa: E402
from remodiff.fusion import build_fuser  # noqa: E402
from remodiff.imputers import build_imputer  # noqa: E402
from remodiff.scaling import Standardiser  # noqa: E402
from remodiff.store import FeatureSet, concatenate, write_json_atomic  # noqa: E402
from remodiff.tasks import Task  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "fuser_masking.json"
SEEDS = [42, 1, 2, 3, 4]
RATES = [0.25, 0.5]
FILLS = {"mean": {}, "knn": {"k": 10}}
VARIANT = re.compile(r"^(plain|copies|drop(\d+)((?:-mean|-missing|-val)*))$")


def variant_params(variant: str) -> dict:
    """The fuser settings a variant name adds to the fuser's params.yaml section."""
    match = VARIANT.match(variant)
    if match is None:
        raise ValueError(f"variant {variant!r}: plain, copies or drop<P>[-mean|-missing][-val]")
    if match.group(2) is None:
        return {"train_masking": 0.0}
    params = {"train_masking": int(match.group(2)) / 100, "mask_validation": "-val" in match.group(3)}
    for masked_as in ("mean", "missing"):
        if f"-{masked_as}" in match.group(3):
            params["masked_as"] = masked_as
    return params


def with_mean_copies(data: FeatureSet, means: dict[str, np.ndarray]) -> FeatureSet:
    """``data`` plus one copy per modality with that modality set to ``means`` (still marked available)."""
    copies = [data]
    for m in data.modalities:
        features = dict(data.features, **{m: np.broadcast_to(means[m], data.features[m].shape).copy()})
        copies.append(FeatureSet([f"{i}#no_{m}" for i in data.ids], features, data.available, data.labels,
                                 data.label_names, data.attrs))
    return concatenate(copies)


def masked_tests(train: FeatureSet, val: FeatureSet, test: FeatureSet, draws: int) -> dict:
    """``{(fill, p): [reconstructed test set per draw]}``."""
    imputers = {}
    for fill, settings in FILLS.items():
        imputers[fill] = build_imputer(fill, settings)
        imputers[fill].fit(train, val, seed=0)
    out = {}
    for p in RATES:
        masks = [next(iter(independent(test, draw, [{m: p for m in test.modalities}]).values()))
                 for draw in range(draws)]
        for fill, imputer in imputers.items():
            out[fill, p] = [imputer.impute(test.with_mask(mask)) for mask in masks]
    return out


def one_run(fuser_type: str, section: dict, variant: str, seed: int, train, val, test, tests: dict,
            overrides: dict) -> dict:
    task = Task.from_attrs(train.attrs)
    metric = "accuracy" if task.is_classification else "mean_acc"

    def score(data: FeatureSet, predictions: np.ndarray) -> float:
        return 100 * task_metrics(task.kind, data.labels, predictions, data.label_names,
                                  list(task.classes) or None)[metric]

    params = {**section, **overrides, **variant_params(variant), "train": {**section.get("train", {}), "seed": seed}}
    if variant == "copies":
        means = Standardiser.fit(train).mean
        train, val = with_mean_copies(train, means), with_mean_copies(val, means)
    fuser = build_fuser(fuser_type, train.modalities, params)
    fuser.fit(train, val)
    row = {"complete": score(test, fuser.predict(test))}
    for (fill, p), sets in tests.items():
        row[f"p{p}/{fill}"] = float(np.mean([score(s, fuser.predict(s)) for s in sets]))
    return row


def summary_lines(results: dict, set_name: str, fuser_type: str) -> list[str]:
    runs = results[set_name][fuser_type]
    columns = list(next(iter(runs.values()))["per_seed"][0])
    lines = [f"{set_name} {fuser_type}: " + " | ".join(columns)]
    for variant, entry in runs.items():
        table = np.array([[row[c] for c in columns] for row in entry["per_seed"]])
        cells = [f"{m:6.2f} ± {s:4.2f}" for m, s in zip(table.mean(0), table.std(0, ddof=1))]
        lines.append(f"  {variant:22s} " + " | ".join(cells))
        base_name = "plain" + variant[variant.index("+"):] if "+" in variant else "plain"  # same --set settings
        plain = runs.get(base_name)
        if plain is not None and variant != base_name and plain["seeds"] == entry["seeds"]:
            base = np.array([[row[c] for c in columns] for row in plain["per_seed"]])
            diff = table - base
            cells = [f"{m:+6.2f} ± {s:4.2f} (+{(d > 0).sum()}/-{(d < 0).sum()})"
                     for m, s, d in zip(diff.mean(0), diff.std(0, ddof=1), diff.T)]
            lines.append(f"  {'  - ' + base_name:22s} " + " | ".join(cells))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=["ravdess", "fi"])
    parser.add_argument("--fusers", nargs="+", default=["early"])
    parser.add_argument("--variants", nargs="+", default=["plain", "drop25", "drop25-val", "drop50", "drop50-val"])
    parser.add_argument("--seeds", nargs="+", type=int, default=SEEDS)
    parser.add_argument("--draws", type=int, default=5, help="test mask draws per rate (masks seeds 0..draws-1)")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                        help="fuser settings for every variant (e.g. input_dropout=0); recorded in the variant's name")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--table", action="store_true", help="only print the saved results")
    args = parser.parse_args()
    results = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    if args.table:
        for set_name, per_fuser in results.items():
            for fuser_type in per_fuser:
                print("\n".join(summary_lines(results, set_name, fuser_type)))
        return
    torch.set_num_threads(1)
    sections = yaml.safe_load((ROOT / "params.yaml").read_text())["fuser"]
    overrides = {k: yaml.safe_load(v) for k, v in (item.split("=", 1) for item in args.set)}
    suffix = "".join(f"+{item}" for item in args.set)
    for set_name in args.sets:
        train, val, test = {"ravdess": ravdess, "fi": fi}[set_name]()
        tests = masked_tests(train, val, test, args.draws)
        for fuser_type in args.fusers:
            for variant in args.variants:
                start = time.perf_counter()
                rows = [one_run(fuser_type, sections.get(fuser_type) or {}, variant, seed, train, val, test, tests,
                                overrides) for seed in args.seeds]
                results.setdefault(set_name, {}).setdefault(fuser_type, {})[variant + suffix] = {
                    "seeds": args.seeds, "draws": args.draws, "per_seed": rows,
                    "params": {**overrides, **variant_params(variant)}, "seconds": time.perf_counter() - start}
                write_json_atomic(args.out, results)
                print("\n".join(summary_lines(results, set_name, fuser_type)), flush=True)


if __name__ == "__main__":
    main()
