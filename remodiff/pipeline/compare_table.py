"""Stage ``compare_table``: the all-imputer comparison collected into ``metrics/comparison.{json,md}``.

Rows: the upper bound (complete test data), every compared imputer, the lower bound (each clip scored by the fuser
of its available modalities) and ``auto``, a route chosen per availability on validation clips (:func:`route`).
Each row is tested against three references by a hierarchical paired bootstrap over runs and clips: the best
classical imputer of the column, ``mean`` and the lower bound. With ``eval.folds`` the table shows the pooled
out-of-fold numbers (every clip scored once per seed; mean ± CI over seeds).
"""
from __future__ import annotations

import json
import logging
from collections import defaultdict

import numpy as np

from remodiff.evaluation.matrix import aggregate, hierarchical_bootstrap
from remodiff.evaluation.metrics import metric_of_results, prediction_metrics
from remodiff.pipeline.common import compare_seeds
from remodiff.pipeline.runs import run_names
from remodiff.results import (COMPARISON_JSON, COMPARISON_MD, COMPARISON_REFERENCES, IMPUTED, LOWER_BOUND, MAIN_RUN,
                              METRICS, Pattern, Predictions, compare_run, concatenate_predictions, format_value,
                              load_predictions, protocol_cells, protocols_of)
from remodiff.store import write_json_atomic, write_text_atomic
from remodiff.tasks import higher_is_better

log = logging.getLogger(__name__)

RESAMPLES = 2000  # compare.resamples when absent
AUTO = "auto"
COMPLETE_CASE = "complete_case"  # with masks.train and own fusers: the shared (complete-case) fuser on the main fill
# the references every row is tested against, and how the Markdown marks a significant difference (better, worse)
REFERENCES = {"best_classical": ("*", "†"), "mean": ("+m", "−m"), LOWER_BOUND: ("+lb", "−lb"),
              "complete_case": ("+cc", "−cc")}


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("compare", "masks.train", "imputer.type", "eval.seeds", "eval.folds")


def run(params: dict) -> dict:
    """``metrics/comparison.json``: ``<protocol>.<setting>.<row>.<metric>`` (mean and CI over runs; rows: every
    imputer, ``lower_bound``, ``auto``), beside each row ``paired`` (its bootstrap tests against the references),
    ``upper_bound``, ``train_mean``, ``routes`` (what ``auto`` chose) and, with folds, ``pooled``; and a Markdown table
    of ``compare.metric``."""
    cfg = params["compare"]
    imputers = list(cfg["imputers"])
    ignored = sorted(d.name for d in (METRICS / "compare").glob("*") if d.is_dir() and d.name not in imputers)
    if ignored:
        log.info("compare_table: ignoring %s under %s: not in compare.imputers", ", ".join(ignored), METRICS / "compare")
    results = {i: json.loads(compare_run(i).downstream.read_text()) for i in imputers}
    labels, classical = how_named(results)
    metric = metric_of_results(results[imputers[0]], cfg["metric"], "compare.metric")
    names = run_names(params, compare_seeds(params))
    predictions = {i: [load_predictions(compare_run(i).prediction(name)) for name in names] for i in imputers}
    main = [load_predictions(MAIN_RUN.prediction(name)) for name in names]
    chosen: tuple = ()
    if any(LOWER_BOUND in kinds for kinds in main[0].cells.values()):  # eval.lower_bound: also the auto route
        predictions[LOWER_BOUND] = main
        routed, chosen = zip(*(route(i, predictions, metric) for i in range(len(names))))
        predictions[AUTO] = list(routed)
    table: dict = {"upper_bound": aggregate([prediction_metrics(p, p.complete) for p in main]),
                   "train_mean": results[imputers[0]]["train_mean"], "runs": len(names),
                   "resamples": cfg.get("resamples", RESAMPLES), "labels": labels, "classical": classical}
    if params["masks"].get("train") and cfg["fuser"] != "shared":
        # the reference of imputation-based training: the fuser trained on the complete training clips only
        predictions[COMPLETE_CASE] = main
        table["complete_case_fill"] = params["imputer"]["type"]
    kinds = {name: LOWER_BOUND if name == LOWER_BOUND else IMPUTED for name in predictions}
    for name, runs in predictions.items():
        for pattern in runs[0].cells:
            protocol, setting = Pattern.split_key(pattern)
            table.setdefault(protocol, {}).setdefault(setting, {})[name] = aggregate(
                [prediction_metrics(p, p.cells[pattern][kinds[name]]) for p in runs])
    if chosen:
        table["routes"] = route_counts(chosen, main[0].modalities)
    if params["eval"].get("folds"):
        table["pooled"] = pooled(params, predictions, kinds)
    mark(table, predictions, kinds, metric, table["resamples"])
    write_json_atomic(COMPARISON_JSON, table)
    write_text_atomic(COMPARISON_MD, comparison_markdown(table, imputers, metric))
    return table


def how_named(results: dict[str, dict]) -> tuple[dict[str, str], list[str]]:
    """How tables and figures name each compared imputer, and which are the classical references, as its
    ``compare`` stage recorded them from the imputer registry (downstream.json ``classical``, and ``imputer_label``
    where the label is not the name; comparison.json keeps only those labels): this stage and the report then need
    no imputer code (nor torch)."""
    stale = [name for name, result in results.items() if "classical" not in result]
    if stale:
        raise ValueError(f"{', '.join(str(compare_run(n).downstream) for n in stale)}: written before the comparison "
                         "recorded imputer_label and classical; re-run the compare stage (dvc repro)")
    return ({name: result["imputer_label"] for name, result in results.items() if "imputer_label" in result},
            [name for name, result in results.items() if result["classical"]])


def pooled(params: dict, predictions: dict[str, list[Predictions]], kinds: dict[str, str]) -> dict:
    """Per pattern and row, every clip's out-of-fold prediction scored together per seed; mean and CI over seeds."""
    seeds = compare_seeds(params)
    names = run_names(params, seeds)
    out: dict = {}
    for name, runs in predictions.items():
        per_seed = [concatenate_predictions([p for n, p in zip(names, runs) if n.endswith(f"seed_{s}")])
                    for s in seeds]
        for pattern in per_seed[0].cells:
            protocol, setting = Pattern.split_key(pattern)
            out.setdefault(protocol, {}).setdefault(setting, {})[name] = aggregate(
                [prediction_metrics(p, p.cells[pattern][kinds[name]]) for p in per_seed])
    return out


# --------------------------------------------------------------------------------------------
# auto: a route per availability, chosen on validation clips
# --------------------------------------------------------------------------------------------
def route(index: int, predictions: dict[str, list[Predictions]], metric: str) -> tuple[Predictions, dict]:
    """Run ``index``'s ``auto`` predictions and the route it took per availability.

    Candidates: the lower bound, then every compared imputer. Each availability (which modalities a clip has) gets the
    candidate scoring best on the run's validation clips that have exactly it (the fixed patterns); the lower bound
    (the model trained on exactly what the clip has) wins a tie, and takes an availability no validation clip has and
    complete clips. Each test clip then takes its availability's candidate's prediction. (The one-standard-error
    rule, which favours the first-listed candidate, was measured worse here: docs/decisions/0004-auto-routes.md.)"""
    main = predictions[LOWER_BOUND][index]
    candidates = [LOWER_BOUND] + [name for name in predictions if name != LOWER_BOUND]
    validation = {name: predictions[name][index].validation for name in candidates}
    if any(v is None for v in validation.values()):
        raise ValueError("auto needs every compared imputer's validation predictions: re-run the compare stages")
    sign = 1.0 if higher_is_better(metric) else -1.0
    metrics = main.metrics
    pooled_rows: dict[tuple, list] = defaultdict(list)  # availability -> [(pattern, row indices)]
    for pattern, available in main.validation.available.items():
        for availability in {tuple(a) for a in available}:
            rows = np.flatnonzero((available == availability).all(axis=1))
            pooled_rows[availability].append((pattern, rows))
    choice = {}
    for availability, parts in pooled_rows.items():
        if all(availability) or not any(availability):
            continue
        labels = np.concatenate([main.validation.labels[rows] for _, rows in parts])
        scored = {}  # candidate -> its validation score (higher is better)
        for name in candidates:
            kind = LOWER_BOUND if name == LOWER_BOUND else IMPUTED
            values = np.concatenate([validation[name].cells[pattern][kind][rows] for pattern, rows in parts])
            scores = metrics.per_clip(metric, labels, values)
            if scores is None:  # a metric that is not a mean over clips (F1, r): the whole set's value
                scores = np.array([metrics.compute(labels, values)[metric] or 0.0])
            scored[name] = float(np.mean(sign * scores))
        choice[availability] = max(scored, key=scored.get)  # the first of the best: the lower bound on a tie
    cells = {}
    for pattern, available in main.available.items():
        values = np.array(main.cells[pattern][LOWER_BOUND], copy=True)
        for i, availability in enumerate(map(tuple, available)):
            name = choice.get(availability, LOWER_BOUND)
            if name != LOWER_BOUND:
                values[i] = predictions[name][index].cells[pattern][IMPUTED][i]
        cells[pattern] = {IMPUTED: values}
    routed = Predictions(list(main.ids), main.labels, list(main.label_names), main.task, list(main.classes),
                         main.complete, cells, list(main.modalities), dict(main.available))
    return routed, choice


def route_counts(chosen: tuple[dict, ...], modalities: list[str]) -> dict:
    """``{availability label: {candidate: runs that chose it}}``, e.g. ``{"audio": {"knn": 4, "lower_bound": 1}}``."""
    out: dict = {}
    for choice in chosen:
        for availability, name in choice.items():
            label = "+".join(m for m, a in zip(modalities, availability) if a)
            out.setdefault(label, {}).setdefault(name, 0)
            out[label][name] += 1
    return out


# --------------------------------------------------------------------------------------------
# Paired tests
# --------------------------------------------------------------------------------------------
def best_classical(row: dict, names: list[str], metric: str, classical: list[str]) -> str | None:
    scored = [i for i in names if i in classical and row.get(i, {}).get(metric) is not None]
    if not scored:
        return None
    sign = 1 if higher_is_better(metric) else -1
    return max(scored, key=lambda i: sign * row[i][metric])


def column_references(row: dict, names: list[str], metric: str, classical: list[str]) -> dict[str, str]:
    """The column's reference per role (``best_classical``, ``mean``, ``lower_bound``, ``complete_case``), where it
    has one."""
    found = {"best_classical": best_classical(row, names, metric, classical), "mean": "mean" if "mean" in row else None,
             LOWER_BOUND: LOWER_BOUND if LOWER_BOUND in row else None,
             COMPLETE_CASE: COMPLETE_CASE if COMPLETE_CASE in row else None}
    return {role: name for role, name in found.items() if name is not None}


def mark(table: dict, predictions: dict[str, list[Predictions]], kinds: dict[str, str], metric: str,
         resamples: int) -> None:
    """Per setting, each row's ``paired``: per reference role, the mean difference to that reference (positive =
    better, whatever the metric's direction) and its 95 % bootstrap interval."""
    names = list(predictions)
    for protocol, setting, row in protocol_cells(table, COMPARISON_REFERENCES):
        pattern = f"{protocol}/{setting}"
        references = column_references(row, names, metric, table["classical"])
        for name in names:
            paired = {}
            for role, reference in references.items():
                if reference == name:
                    continue
                pairs = list(zip(predictions[name], predictions[reference]))
                diffs = hierarchical_bootstrap(
                    [paired_difference(a, b, pattern, metric, kinds[name], kinds[reference]) for a, b in pairs],
                    [len(a.ids) for a, _ in pairs], resamples, seed=0)
                low, high = np.percentile(diffs, [2.5, 97.5])
                paired[role] = {"reference": reference, "difference": float(np.mean(diffs)),
                                "ci95_low": float(low), "ci95_high": float(high)}
            row[name]["paired"] = paired


def paired_difference(a: Predictions, b: Predictions, pattern: str, metric: str, kind_a: str = IMPUTED,
                      kind_b: str = IMPUTED):
    """One run's ``a`` minus ``b`` (positive = ``a`` better): per clip where the metric is a mean over clips, else
    ``clips -> metric(a) - metric(b)`` on those clips; ``kind_*``: which predictions of each (``imputed`` or
    ``lower_bound``)."""
    if a.ids != b.ids:
        raise ValueError(f"the compared rows' predictions cover different clips ({pattern}); re-run compare")
    sign = 1.0 if higher_is_better(metric) else -1.0
    pa, pb = a.cells[pattern][kind_a], b.cells[pattern][kind_b]
    metrics = a.metrics
    per_clip = [metrics.per_clip(metric, a.labels, p) for p in (pa, pb)]
    if per_clip[0] is not None:
        return sign * (per_clip[0] - per_clip[1])

    def on_clips(clips: np.ndarray) -> float:  # metrics that are not a mean over clips (F1, r): recomputed
        scored = [metrics.compute(a.labels[clips], p[clips])[metric] for p in (pa, pb)]
        return sign * (float(scored[0] or 0.0) - float(scored[1] or 0.0))

    return on_clips


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
ROW_LABELS = {LOWER_BOUND: "lower bound (available modalities only)",
              AUTO: "auto (route per availability, chosen on validation)"}


def comparison_markdown(table: dict, imputers: list[str], metric: str) -> str:
    """The comparison of ``metric`` as Markdown: one table per protocol; with folds the pooled numbers."""
    shown = table.get("pooled") or protocols_of(table, COMPARISON_REFERENCES)
    classical, names = table["classical"], table["labels"]

    def cell(values: dict | None) -> str:
        if values is None:
            return "—"
        if metric not in values:
            raise ValueError(f"compare.metric {metric!r} is not among the metrics {sorted(values)}")
        return format_value(values[metric], values.get(f"{metric}_ci95"))

    def marked(protocol: str, setting: str, name: str) -> str:
        values = shown[protocol][setting].get(name)
        text = cell(values)
        paired = table[protocol][setting].get(name, {}).get("paired", {})
        references = column_references(table[protocol][setting], list(table[protocol][setting]), metric, classical)
        if references.get("best_classical") == name:
            text = f"**{text}**"
        for role, (better, worse) in REFERENCES.items():
            test = paired.get(role)
            if test and test["ci95_low"] > 0:
                text += f" {better}"
            elif test and test["ci95_high"] < 0:
                text += f" {worse}"
        return text

    scope = ("pooled out-of-fold (every clip scored once per seed), mean ± 95 % CI over seeds" if "pooled" in table
             else f"mean ± 95 % CI over {table['runs']} runs (folds × seeds)")
    lines = [f"# {metric} per imputer: {scope}", "",
             f"Upper bound (complete data) {cell(table['upper_bound'])}; train-mean floor {cell(table['train_mean'])}"
             " (both mean ± CI over runs).", ""]
    for protocol, settings in protocols_of(table, COMPARISON_REFERENCES).items():
        columns = list(settings)
        rows = [name for name in [*imputers, LOWER_BOUND, COMPLETE_CASE, AUTO]
                if any(name in settings[s] for s in columns)]
        labels = {**ROW_LABELS, COMPLETE_CASE: f"complete-case training ({table.get('complete_case_fill')} fill)"}
        lines += [f"## {protocol}", "", "| row | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns),
                  "| upper bound (complete data) | " + " | ".join(cell(table["upper_bound"]) for _ in columns) + " |"]
        lines += [f"| {labels.get(name, names.get(name, name))} | "
                  + " | ".join(marked(protocol, s, name) if name in settings[s] else "—" for s in columns) + " |"
                  for name in rows]
        lines.append("")
    if table.get("routes"):
        lines += ["`auto` chose, per availability (runs): " + "; ".join(
            f"{label}: " + ", ".join(f"{names.get(n, n)} {c}" for n, c in sorted(counts.items(), key=lambda x: -x[1]))
            for label, counts in table["routes"].items()) + ".", ""]
    lines += [f"**Bold**: the best classical imputer of the column ({', '.join(classical)}; the oracles read "
              f"the test labels and are never a reference). Marks: a hierarchical paired bootstrap of the {metric} "
              f"difference ({table['resamples']} resamples of the runs, then of the clips within each run, the same "
              f"clips for both rows) whose 95 % interval excludes 0: {REFERENCES['best_classical'][0]} better / "
              f"{REFERENCES['best_classical'][1]} worse than the best classical imputer, {REFERENCES['mean'][0]} / "
              f"{REFERENCES['mean'][1]} than `mean`, {REFERENCES[LOWER_BOUND][0]} / {REFERENCES[LOWER_BOUND][1]} than "
              f"the lower bound (and +cc / −cc than complete-case training, where shown); unmarked: no difference shown. `zero (raw 0)` writes raw zeros; the literature's "
              f"zero-fill of standardised features equals `mean`. The lower bound (each clip scored by the fuser "
              f"trained on exactly its available modalities) comes from the main chain. `auto` takes, per "
              f"availability, the row (imputer or lower bound) that scored best on the run's validation clips.", ""]
    return "\n".join(lines)
