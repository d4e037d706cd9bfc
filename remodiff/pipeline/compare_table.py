"""Stage ``compare_table``: the all-imputer comparison collected into ``metrics/comparison.{json,md}``, each imputer
tested against the best classical imputer by a hierarchical paired bootstrap over runs and clips."""
from __future__ import annotations

import json
import logging

import numpy as np

from remodiff.evaluation.matrix import hierarchical_bootstrap
from remodiff.evaluation.metrics import (CLASSICAL_IMPUTERS, LOWER_BOUND, clip_scores, higher_is_better, imputer_label,
                                         metric_of_results, task_metrics)
from remodiff.evaluation.predictions import Predictions, load_predictions
from remodiff.pipeline.common import MAIN_RUN, METRICS, compare_run, compare_seeds
from remodiff.pipeline.runs import run_names
from remodiff.store import write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

RESAMPLES = 2000  # compare.resamples when absent
NOT_PROTOCOLS = ("upper_bound", "train_mean", "runs", "resamples")  # comparison.json keys beside the protocols
BETTER, WORSE = "*", "†"


def run(params: dict) -> dict:
    """``metrics/comparison.json``: ``<protocol>.<setting>.<imputer>.<metric>`` (mean and CI over runs), beside
    each imputer ``paired`` (its bootstrap test against the setting's best classical imputer), the main chain's
    ``lower_bound`` per setting, ``upper_bound`` and ``train_mean``; and a Markdown table of ``compare.metric``."""
    cfg = params["compare"]
    imputers = list(cfg["imputers"])
    ignored = sorted(d.name for d in (METRICS / "compare").glob("*") if d.is_dir() and d.name not in imputers)
    if ignored:
        log.info("compare_table: ignoring %s under %s: not in compare.imputers", ", ".join(ignored), METRICS / "compare")
    results = {i: json.loads(compare_run(i).downstream.read_text()) for i in imputers}
    metric = metric_of_results(results[imputers[0]], cfg["metric"], "compare.metric")
    names = run_names(params, compare_seeds(params))
    table: dict = {"upper_bound": results[imputers[0]]["complete"], "train_mean": results[imputers[0]]["train_mean"],
                   "runs": len(names), "resamples": cfg.get("resamples", RESAMPLES)}
    for imputer, result in results.items():
        for protocol, settings in result.items():
            if protocol in ("complete", "train_mean", "pooled", "imputer"):
                continue
            for setting, cell in settings.items():
                table.setdefault(protocol, {}).setdefault(setting, {})[imputer] = dict(cell["imputed"])
    main = METRICS / "downstream.json"  # the lower bound does not depend on the imputer: the main chain's
    if main.exists():
        lower = json.loads(main.read_text())
        for protocol, settings in table.items():
            for setting, row in (settings.items() if protocol not in NOT_PROTOCOLS else ()):
                cell = lower.get(protocol, {}).get(setting, {})
                if LOWER_BOUND in cell:
                    row[LOWER_BOUND] = cell[LOWER_BOUND]
    predictions = {i: [load_predictions(compare_run(i).predictions / f"{name}.h5") for name in names]
                   for i in imputers}
    if any(LOWER_BOUND in row for protocol, settings in table.items() if protocol not in NOT_PROTOCOLS
           for row in settings.values()):  # is dropping the missing modality better than imputing it?
        predictions[LOWER_BOUND] = [load_predictions(MAIN_RUN.predictions / f"{name}.h5") for name in names]
    mark_against_best_classical(table, predictions, metric, table["resamples"])
    write_json_atomic(METRICS / "comparison.json", table)
    write_text_atomic(METRICS / "comparison.md", comparison_markdown(table, imputers, metric))
    return table


def best_classical(row: dict, imputers: list[str], metric: str) -> str | None:
    classical = [i for i in imputers if i in CLASSICAL_IMPUTERS and row.get(i, {}).get(metric) is not None]
    if not classical:
        return None
    sign = 1 if higher_is_better(metric) else -1
    return max(classical, key=lambda i: sign * row[i][metric])


def mark_against_best_classical(table: dict, predictions: dict[str, list[Predictions]], metric: str,
                                resamples: int) -> None:
    """Per setting, each imputer's ``paired`` entry: the mean difference to the best classical imputer of that
    setting (positive = better, whatever the metric's direction) and its 95 % bootstrap interval. An entry
    ``lower_bound`` in ``predictions`` (the main chain's) is tested by its lower-bound predictions."""
    imputers = list(predictions)
    for protocol, settings in table.items():
        if protocol in NOT_PROTOCOLS:
            continue
        for setting, row in settings.items():
            reference = best_classical(row, imputers, metric)
            if reference is None:
                continue
            for imputer in imputers:
                if imputer == reference:
                    continue
                pairs = [(predictions[imputer][r], predictions[reference][r]) for r in range(len(predictions[imputer]))]
                kind = LOWER_BOUND if imputer == LOWER_BOUND else "imputed"
                diffs = hierarchical_bootstrap([paired_difference(a, b, f"{protocol}/{setting}", metric, kind)
                                                for a, b in pairs], [len(a.ids) for a, _ in pairs], resamples, seed=0)
                low, high = np.percentile(diffs, [2.5, 97.5])
                row[imputer]["paired"] = {"reference": reference, "metric": metric,
                                          "difference": float(np.mean(diffs)), "ci95_low": float(low),
                                          "ci95_high": float(high)}


def paired_difference(a: Predictions, b: Predictions, pattern: str, metric: str, kind: str = "imputed"):
    """``clips -> metric(a) - metric(b)`` on those clips of one run (sign: positive = ``a`` better); ``kind``: which
    of ``a``'s predictions (``imputed`` or ``lower_bound``) against ``b``'s imputed ones."""
    if a.ids != b.ids:
        raise ValueError(f"the compared imputers' predictions cover different clips ({pattern}); re-run compare")
    sign = 1.0 if higher_is_better(metric) else -1.0
    pa, pb = a.cells[pattern][kind], b.cells[pattern]["imputed"]
    per_clip = [clip_scores(a.task, metric, a.labels, p, a.label_names, a.classes) for p in (pa, pb)]
    if per_clip[0] is not None:
        delta = sign * (per_clip[0] - per_clip[1])
        return lambda clips: float(delta[clips].mean())

    def on_clips(clips: np.ndarray) -> float:  # metrics that are not a mean over clips (F1, r): recomputed
        scored = [task_metrics(a.task, a.labels[clips], p[clips], a.label_names, a.classes or None)[metric]
                  for p in (pa, pb)]
        return sign * (float(scored[0] or 0.0) - float(scored[1] or 0.0))

    return on_clips


def comparison_markdown(table: dict, imputers: list[str], metric: str) -> str:
    def cell(values: dict | None) -> str:
        if values is None:
            return "—"
        if metric not in values:
            raise ValueError(f"compare.metric {metric!r} is not among the metrics {sorted(values)}")
        ci = values.get(f"{metric}_ci95")
        return f"{values[metric]:.4f}" + (f" ± {ci:.4f}" if ci is not None else "")

    def marked(values: dict, imputer: str, reference: str | None) -> str:
        text = cell(values)
        if imputer == reference:
            return f"**{text}**"
        paired = values.get("paired")
        if paired and paired["ci95_low"] > 0:
            return text + " " + BETTER
        if paired and paired["ci95_high"] < 0:
            return text + " " + WORSE
        return text

    lines = [f"# {metric} per imputer: mean ± 95 % CI over {table['runs']} runs (folds × seeds)", "",
             f"Upper bound (complete data) {cell(table['upper_bound'])}; train-mean floor {cell(table['train_mean'])}.",
             ""]
    for protocol, settings in table.items():
        if protocol in NOT_PROTOCOLS:
            continue
        columns = list(settings)
        references = {s: best_classical(settings[s], imputers, metric) for s in columns}
        lines += [f"## {protocol}", "", "| imputer | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns),
                  "| upper bound (complete data) | " + " | ".join(cell(table["upper_bound"]) for _ in columns) + " |"]
        lines += [f"| {imputer_label(i)} | " + " | ".join(marked(settings[s][i], i, references[s])
                                                                  for s in columns) + " |" for i in imputers]
        if any(LOWER_BOUND in settings[s] for s in columns):
            lines.append("| lower bound (available modalities only) | "
                         + " | ".join(marked(settings[s][LOWER_BOUND], LOWER_BOUND, references[s])
                                      if LOWER_BOUND in settings[s] else "—" for s in columns) + " |")
        lines.append("")
    lines += [f"**Bold**: the best classical imputer of the column ({', '.join(CLASSICAL_IMPUTERS)}; the oracles read the test "
              f"labels and are never the reference). {BETTER} better / {WORSE} worse than it: the 95 % interval of a "
              f"hierarchical paired bootstrap of the {metric} difference ({table['resamples']} resamples of the runs, "
              f"then of the clips within each run, the same clips for both imputers) excludes 0; unmarked: no "
              f"difference shown. `zero (raw 0)` writes raw zeros; the literature's zero-fill of standardised "
              f"features equals `mean`. The lower bound (each clip scored by the fuser trained on exactly its "
              f"available modalities, marked by the same test) comes from the main chain (eval.seeds).", ""]
    return "\n".join(lines)
