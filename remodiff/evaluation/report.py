"""The report stage: PNG figures and a Markdown summary of the evaluation matrix, the reconstructions and the
training curves.

Only ``metrics/downstream.json`` is required; every other input (reconstruction metrics, loss histories, the
feature and reconstructed stores, the benchmark file) is optional: its figure is skipped with a log line and
the summary says so.

Diffusion benchmark file (``report.benchmark``; written by a sampler benchmark, read here)::

    {"quality": "frechet",          # the key of each run's quality measure
     "data": "3f2a...",             # data_fingerprint() of the test clips it was measured on
     "higher_is_better": false,     # optional (default false: an error or a distance)
     "device": "1x H100",           # optional, shown in the title
     "runs": [{"label": "ddim", "steps": 10, "seconds": 0.84, "frechet": 12.3}, ...]}

A benchmark is drawn only when its ``data`` matches the test clips of the run being reported, so a report never
shows results measured on other data (e.g. the embedded sample's benchmark in a RAVDESS report).
``label`` groups runs into one curve (a sampler or a configuration), ``steps`` is the number of reverse-process
steps and ``seconds`` the wall-clock time of one imputation pass over the benchmarked clips.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from sklearn.decomposition import PCA

from remodiff.evaluation.metrics import metric_of_results
from remodiff.results import (FUSER_HISTORY, LOWER_BOUND, MAIN_RUN, Pattern, format_value, load_patterns,
                              markdown_table, protocols_of, read_reconstruction, reconstruction_patterns, value_ci)
from remodiff.standardise import Standardiser
from remodiff.store import FeatureSet, partial_path

log = logging.getLogger(__name__)

DPI = 150
FIXED_FIGURE = "fixed_patterns.png"
RATE_FIGURE = "missing_rate.png"
FEATURE_FIGURE = "feature_space.png"
RECONSTRUCTION_FIGURE = "reconstruction_error.png"
TRAINING_FIGURE = "training_loss.png"
BENCHMARK_FIGURE = "diffusion_frontier.png"
COMPARISON_FIGURE = "comparison_missing_rate.png"
FIGURES = (FIXED_FIGURE, RATE_FIGURE, FEATURE_FIGURE, RECONSTRUCTION_FIGURE, TRAINING_FIGURE, BENCHMARK_FIGURE,
           COMPARISON_FIGURE)
SUMMARY = "summary.md"

# one colour per series, the same in every figure
UPPER, IMPUTED, LOWER, FLOOR, REAL = "tab:green", "tab:blue", "tab:orange", "dimgray", "tab:blue"
RECONSTRUCTED = "tab:red"
METRIC_LABELS = {"mean_acc": "mean accuracy (1 − MAE), higher is better", "mae": "MAE (label units), lower is better",
                 "pearson_r": "mean Pearson r, higher is better", "accuracy": "accuracy, higher is better"}
SETTING_HEADERS = {"fixed": "missing modalities", "random": "missing rate", "independent": "drop probabilities",
                   "segments": "segment drop probability"}
RECONSTRUCTION_MEASURES = {"mse": "MSE (raw feature scale)", "frechet": "Fréchet distance"}


# --------------------------------------------------------------------------------------------
# Reading the inputs
# --------------------------------------------------------------------------------------------
def read_json(path: Path) -> object | None:
    """The parsed file, or None (logged) when it does not exist."""
    if not path.exists():
        log.info("report: %s is absent, skipping what needs it", path)
        return None
    return json.loads(path.read_text())


Patterns = dict[str, Pattern]  # pattern key -> its Pattern (from the masks store)


def pattern_of(patterns: Patterns, protocol: str, setting: str) -> Pattern:
    """The pattern of a results cell: from the masks store, or (absent) named by its setting alone."""
    return patterns.get(f"{protocol}/{setting}") or Pattern(protocol, setting, label=setting)


def missing_rates(settings: dict, patterns: Patterns, protocol: str = "random") -> dict[float, dict]:
    """``{missing rate: cell}`` of the random protocol's settings whose rate the masks store gives."""
    rates = {pattern_of(patterns, protocol, s).rate: cell for s, cell in settings.items()}
    rates.pop(None, None)
    return rates


def ordered(settings: dict, patterns: Patterns, protocol: str) -> list[str]:
    """Settings by the share of slots they hide, then name: single missing modalities first, then pairs, ..."""
    return sorted(settings, key=lambda s: (pattern_of(patterns, protocol, s).rate or 0.0, s))


def data_fingerprint(ids: list[str]) -> str:
    """Names the data a result was measured on: a hash of its test clip ids."""
    return hashlib.sha1("\n".join(sorted(ids)).encode()).hexdigest()[:16]


def read_benchmark(path: Path, test_ids: list[str] | None) -> dict | None:
    """The benchmark file, or None when it is absent or was measured on other data than ``test_ids``."""
    benchmark = read_json(path)
    if benchmark is None:
        return None
    if not isinstance(benchmark, dict) or test_ids is None or benchmark.get("data") != data_fingerprint(test_ids):
        log.info("report: %s was measured on other data than this run's test clips; its figure is skipped", path)
        return None
    quality = benchmark.get("quality") if isinstance(benchmark, dict) else None
    runs = benchmark.get("runs") if isinstance(benchmark, dict) else None
    if not isinstance(quality, str) or not isinstance(runs, list) or not runs:
        raise ValueError(f"{path}: a benchmark file needs 'quality' (a key name) and a non-empty 'runs' list")
    for i, run in enumerate(runs):
        bad = [k for k in ("steps", "seconds", quality) if not isinstance(run.get(k), (int, float))]
        if bad or not isinstance(run.get("label"), str):
            raise ValueError(f"{path}: run {i} needs a string 'label' and numbers 'steps', 'seconds', {quality!r}; "
                             f"got {run}")
    return benchmark


def pareto_front(runs: list[dict], quality: str, higher_is_better: bool) -> list[dict]:
    """The runs no other run beats in both time and quality, fastest first."""
    sign = -1.0 if higher_is_better else 1.0
    front, best = [], math.inf
    for run in sorted(runs, key=lambda r: (r["seconds"], sign * r[quality])):
        if sign * run[quality] < best:
            front.append(run)
            best = sign * run[quality]
    return front


# --------------------------------------------------------------------------------------------
# Figures: each returns its caption, or None (logged) when its inputs are absent
# --------------------------------------------------------------------------------------------
def new_figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, path: Path) -> None:
    tmp = partial_path(path)
    fig.savefig(tmp, dpi=DPI, format="png")
    os.replace(tmp, path)


def plot_not_drawn(path: Path) -> None:
    """A figure whose inputs this run lacks is still written, saying so: dvc.yaml declares every figure as an output
    (a directory output makes `dvc exp run <stage>` fail on a clone without the report in its cache)."""
    fig = new_figure(6.0, 1.6)
    fig.text(0.5, 0.5, f"{path.name}: not drawn in this run, its inputs are absent\n(reports/{SUMMARY} says which)",
             ha="center", va="center")
    save_figure(fig, path)


def error_bars(cis: list[float]) -> list[float] | None:
    return None if all(math.isnan(c) for c in cis) else [0.0 if math.isnan(c) else c for c in cis]


def fit_limits(ax: Axes, values: list[float], cis: list[float]) -> None:
    """Zoom the y axis onto the data (bars of close values are otherwise indistinguishable)."""
    lows = [v - (0 if math.isnan(c) else c) for v, c in zip(values, cis) if not math.isnan(v)]
    highs = [v + (0 if math.isnan(c) else c) for v, c in zip(values, cis) if not math.isnan(v)]
    if lows:
        low, high = min(lows), max(highs)
        pad = 0.12 * (high - low) or 0.05 * abs(high) or 0.05
        ax.set_ylim(low - pad, high + pad)


def plot_fixed(downstream: dict, metric: str, path: Path, patterns: Patterns) -> str | None:
    fixed = downstream.get("fixed")
    if not fixed:
        log.info("report: no fixed protocol in the downstream metrics, skipping %s", path.name)
        return None
    labels = {s: pattern_of(patterns, "fixed", s).label.removesuffix(" missing") for s in fixed}
    patterns = ordered(fixed, patterns, "fixed")
    upper = value_ci(downstream.get("complete"), metric)
    series = [("upper bound (complete data)", UPPER, [upper] * len(patterns)),
              (f"imputed ({downstream.get('imputer', '?')})", IMPUTED,
               [value_ci(fixed[p].get("imputed"), metric) for p in patterns])]
    if any("lower_bound" in fixed[p] for p in patterns):
        series.append(("lower bound (available modalities only)", LOWER,
                       [value_ci(fixed[p].get("lower_bound"), metric) for p in patterns]))
    fig = new_figure(max(6.5, 1.4 * len(patterns) + 2.5), 4.8)
    ax = fig.add_subplot()
    x, width = np.arange(len(patterns)), 0.8 / len(series)
    shown_values, shown_cis = [], []
    for i, (label, colour, cells) in enumerate(series):
        values, cis = [v for v, _ in cells], [c for _, c in cells]
        ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, yerr=error_bars(cis), capsize=3,
               color=colour, label=label)
        shown_values += values
        shown_cis += cis
    floor, _ = value_ci(downstream.get("train_mean"), metric)
    if not math.isnan(floor):
        ax.axhline(floor, color=FLOOR, linestyle="--", label="floor: predict the training mean")
        shown_values.append(floor)
        shown_cis.append(math.nan)
    fit_limits(ax, shown_values, shown_cis)
    ax.set_xticks(x, [labels[p] for p in patterns])
    ax.set_xlabel("missing modalities (hidden for every test clip)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{metric} per missing pattern (fixed protocol; mean ± 95 % CI over seeds)")
    ax.grid(axis="y", alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2)
    save_figure(fig, path)
    return f"{metric} per fixed missing pattern: upper bound, imputed, lower bound, training-mean floor"


def plot_missing_rate(downstream: dict, metric: str, path: Path, patterns: Patterns) -> str | None:
    rates = missing_rates(downstream.get("random", {}), patterns)
    if not rates:
        log.info("report: no random protocol in the downstream metrics, skipping %s", path.name)
        return None
    x = sorted(rates)
    fig = new_figure(7.0, 4.8)
    ax = fig.add_subplot()
    percent = [100 * r for r in x]
    for kind, label, colour in (("imputed", f"imputed ({downstream.get('imputer', '?')})", IMPUTED),
                                ("lower_bound", "lower bound (available modalities only)", LOWER)):
        if not any(kind in rates[r] for r in x):
            continue
        values, cis = zip(*(value_ci(rates[r].get(kind), metric) for r in x))
        values, cis = np.array(values), np.nan_to_num(np.array(cis))
        ax.plot(percent, values, marker="o", color=colour, label=label)
        ax.fill_between(percent, values - cis, values + cis, color=colour, alpha=0.2)
    upper, upper_ci = value_ci(downstream.get("complete"), metric)
    ax.axhline(upper, color=UPPER, label="upper bound (complete data)")
    if not math.isnan(upper_ci):
        ax.axhspan(upper - upper_ci, upper + upper_ci, color=UPPER, alpha=0.12)
    floor, _ = value_ci(downstream.get("train_mean"), metric)
    if not math.isnan(floor):
        ax.axhline(floor, color=FLOOR, linestyle="--", label="floor: predict the training mean")
    ax.set_xlabel("missing rate (% of modality × segment slots hidden)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{metric} vs missing rate (random protocol; bands: 95 % CI over seeds)")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=2)
    save_figure(fig, path)
    return f"{metric} vs missing rate (random protocol) for imputed and lower bound, with the bounds as lines"


def plot_feature_space(test: FeatureSet | None, reconstructed_store: Path, run: str, imputer: str,
                       path: Path) -> str | None:
    if test is None or not reconstructed_store.exists():
        log.info("report: the run's test clips or %s are absent, skipping %s", reconstructed_store, path.name)
        return None
    panels = []
    stored = {p.key: p for p in reconstruction_patterns(reconstructed_store)}
    for m in test.modalities:
        key = f"fixed/{m}_missing"
        if key not in stored:
            log.info("report: %s has no %s, no %s panel", reconstructed_store, key, m)
            continue
        masked, samples = read_reconstruction(reconstructed_store, stored[key], [m])
        hidden = test.available[m] & ~masked.available[m]
        real = test.features[m][test.available[m]]
        if hidden.sum() < 1 or len(real) < 3 or real.shape[1] < 2:
            log.info("report: too few %s slots or dimensions for a 2-D projection, no %s panel", m, m)
            continue
        panels.append((m, real, test.features[m][hidden], [s.features[m][hidden] for s in samples]))
    if not panels:
        log.info("report: no fixed single-modality pattern to project, skipping %s", path.name)
        return None
    fig = new_figure(4.4 * len(panels), 4.9)
    scaler = Standardiser.fit(test, [m for m, *_ in panels])
    for i, (m, real, truth, restored) in enumerate(panels):
        ax = fig.add_subplot(1, len(panels), i + 1)
        mean, std = scaler.mean[m], scaler.std[m]
        pca = PCA(2).fit((real - mean) / std)
        shown_truth = pca.transform((truth - mean) / std)
        shown_restored = pca.transform((np.concatenate(restored) - mean) / std)
        ax.scatter(*shown_truth.T, s=16, color=REAL, alpha=0.6, label="real (held back)")
        samples = f"{len(restored)} sample{'s' if len(restored) > 1 else ''} per slot"
        ax.scatter(*shown_restored.T, s=22, marker="x", color=RECONSTRUCTED, alpha=0.7,
                   label=f"reconstructed ({samples})")
        ax.set_title(f"{m}: {len(truth)} hidden slots")
        share = pca.explained_variance_ratio_
        ax.set_xlabel(f"PC 1 ({share[0]:.0%} of real variance)")
        ax.set_ylabel(f"PC 2 ({share[1]:.0%} of real variance)")
        ax.grid(alpha=0.3)
        ax.legend(loc="best", fontsize="small")
    fig.suptitle(f"Real vs {imputer} reconstructions, pattern '<modality> missing', run {run}\n"
                 "(PCA of the z-scored real test features of each modality)")
    save_figure(fig, path)
    return (f"hidden slots, real vs reconstructed by {imputer} (run {run}), in the 2-D PCA plane of the real "
            f"test features, per modality: {', '.join(m for m, *_ in panels)}")


def plot_reconstruction_error(reconstruction: dict | None, path: Path, patterns: Patterns) -> str | None:
    fixed = (reconstruction or {}).get("fixed")
    if not fixed:
        log.info("report: no fixed-protocol reconstruction metrics, skipping %s", path.name)
        return None
    labels = {s: pattern_of(patterns, "fixed", s).label.removesuffix(" missing") for s in fixed}
    patterns = ordered(fixed, patterns, "fixed")
    modalities = sorted({m for p in patterns for m in fixed[p]})
    measures = [k for k in RECONSTRUCTION_MEASURES
                if any(fixed[p][m].get(k) is not None for p in patterns for m in fixed[p])]
    # one panel per measure and modality: raw feature scales differ by orders of magnitude between modalities
    fig = new_figure(4.2 * len(modalities), 3.6 * len(measures))
    for j, measure in enumerate(measures):
        for i, m in enumerate(modalities):
            ax = fig.add_subplot(len(measures), len(modalities), j * len(modalities) + i + 1)
            hiding = [p for p in patterns if m in fixed[p]]
            cells = [value_ci(fixed[p][m], measure) for p in hiding]
            ax.bar(range(len(hiding)), [v for v, _ in cells], 0.6, yerr=error_bars([c for _, c in cells]), capsize=3,
                   color=[f"C{patterns.index(p)}" for p in hiding])
            ax.set_xticks(range(len(hiding)), [labels[p] for p in hiding], fontsize="small")
            ax.set_title(f"{m}: {RECONSTRUCTION_MEASURES[measure]}")
            ax.grid(axis="y", alpha=0.3)
            if i == 0:
                ax.set_ylabel(f"{RECONSTRUCTION_MEASURES[measure]}\n(lower is better)")
            if j == len(measures) - 1:
                ax.set_xlabel("missing modalities")
    fig.suptitle("Reconstruction error on the hidden slots per modality, fixed patterns (mean ± 95 % CI over seeds)")
    save_figure(fig, path)
    return f"reconstruction error per modality ({', '.join(measures)}) for each fixed pattern that hides it"


def plot_training(histories: dict[str, list[dict]], path: Path) -> str | None:
    histories = {name: h for name, h in histories.items() if h}
    if not histories:
        log.info("report: no non-empty loss history, skipping %s", path.name)
        return None
    fig = new_figure(5.5 * len(histories), 4.5)
    for i, (name, history) in enumerate(histories.items()):
        ax = fig.add_subplot(1, len(histories), i + 1)
        epochs = [row["epoch"] for row in history]
        curves = [k for k in history[0] if k not in ("epoch", "val_score")]
        for key in curves:
            ax.plot(epochs, [row.get(key, math.nan) for row in history], label=key.replace("_", " "))
        losses = np.array([row[k] for row in history for k in curves if row.get(k) is not None], float)
        if len(losses) and losses.min() > 0 and losses.max() / losses.min() > 20:
            ax.set_yscale("log")  # diffusion and GAN losses span decades
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss (training objective)")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left")
        if "val_score" in history[0]:  # what early stopping follows (accuracy / -MAE): its own axis
            score = ax.twinx()
            score.plot(epochs, [row.get("val_score", math.nan) for row in history], color="black", ls="--",
                       label="val score (early stopping)")
            score.set_ylabel("validation score (higher is better)")
            score.legend(loc="upper right")
    fig.suptitle("Training loss curves (first seed)")
    save_figure(fig, path)
    return f"training loss per epoch: {', '.join(histories)}"


def plot_benchmark(benchmark: dict | None, path: Path) -> str | None:
    if benchmark is None:
        return None
    quality, higher = benchmark["quality"], bool(benchmark.get("higher_is_better", False))
    runs = benchmark["runs"]
    labels = sorted({r["label"] for r in runs})
    fig = new_figure(11.0, 4.6)
    by_steps, by_time = fig.add_subplot(1, 2, 1), fig.add_subplot(1, 2, 2)
    for i, label in enumerate(labels):
        mine = sorted((r for r in runs if r["label"] == label), key=lambda r: r["steps"])
        by_steps.plot([r["steps"] for r in mine], [r[quality] for r in mine], marker="o", color=f"C{i}", label=label)
        by_time.scatter([r["seconds"] for r in mine], [r[quality] for r in mine], color=f"C{i}", label=label)
        for r in mine:
            by_time.annotate(str(r["steps"]), (r["seconds"], r[quality]), textcoords="offset points", xytext=(4, 3),
                             fontsize="x-small")
    front = pareto_front(runs, quality, higher)
    by_time.step([r["seconds"] for r in front], [r[quality] for r in front], where="post", color="black",
                 linestyle="--", label="frontier")
    direction = "higher" if higher else "lower"
    for ax, xlabel in ((by_steps, "reverse-process steps"), (by_time, "wall-clock time (s; points labelled by steps)")):
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{quality} ({direction} is better)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize="small")
    by_steps.set_title(f"{quality} vs steps")
    by_time.set_title(f"{quality} vs time")
    device = f" on {benchmark['device']}" if benchmark.get("device") else ""
    fig.suptitle(f"Diffusion sampling: steps / quality / time{device}")
    save_figure(fig, path)
    return f"diffusion sampling frontier: {quality} vs steps and vs wall-clock time, {len(runs)} runs"


def plot_comparison(comparison: dict | None, imputers: list[str], metric: str, path: Path,
                    patterns: Patterns) -> str | None:
    """Every compared imputer's ``metric`` against the random protocol's missing rate (bands: 95 % CI over runs),
    with the upper bound (complete data) and, where measured, the lower bound."""
    rates = missing_rates((comparison or {}).get("random", {}), patterns)
    shown = [i for i in imputers if any(i in row for row in rates.values())]
    if not rates or not shown:
        log.info("report: no random-protocol comparison (metrics/comparison.json), skipping %s", path.name)
        return None
    x = sorted(rates)
    percent = [100 * r for r in x]
    fig = new_figure(8.0, 5.2)
    ax = fig.add_subplot()
    colours = matplotlib_colours(len(shown))
    for imputer, colour in zip(shown, colours):
        values, cis = zip(*(value_ci(rates[r].get(imputer), metric) for r in x))
        values, cis = np.array(values), np.nan_to_num(np.array(cis))
        ax.plot(percent, values, marker="o", color=colour, label=comparison["labels"].get(imputer, imputer))
        ax.fill_between(percent, values - cis, values + cis, color=colour, alpha=0.12)
    if any(LOWER_BOUND in rates[r] for r in x):
        values = np.array([value_ci(rates[r].get(LOWER_BOUND), metric)[0] for r in x])
        ax.plot(percent, values, color="black", linestyle=":", linewidth=2, label="lower bound (available modalities only)")
    upper, upper_ci = value_ci(comparison.get("upper_bound"), metric)
    if not math.isnan(upper):
        ax.axhline(upper, color="black", linewidth=2, label="upper bound (complete data)")
        if not math.isnan(upper_ci):
            ax.axhspan(upper - upper_ci, upper + upper_ci, color="black", alpha=0.06)
    ax.set_xlabel("missing rate (% of modality × segment slots hidden)")
    ax.set_ylabel(METRIC_LABELS.get(metric, metric))
    ax.set_title(f"{metric} vs missing rate, every compared imputer\n(random protocol; bands: 95 % CI over runs)")
    ax.grid(alpha=0.3)
    fig.legend(loc="outside lower center", ncols=4, fontsize="small")
    save_figure(fig, path)
    return (f"{metric} vs missing rate (random protocol) of every compared imputer ({', '.join(shown)}), with the "
            f"upper and lower bounds")


def matplotlib_colours(n: int) -> list:
    from matplotlib import colormaps  # only the comparison figure needs more colours than the fixed series
    cmap = colormaps["tab20" if n > 10 else "tab10"]
    return [cmap(i) for i in range(n)]


# --------------------------------------------------------------------------------------------
# The Markdown summary
# --------------------------------------------------------------------------------------------
def fmt(value: float | None, ci: float | None = None) -> str:
    return format_value(value, ci, 4, significant=True)


def summary_markdown(downstream: dict, reconstruction: dict | None, benchmark: dict | None, metric: str,
                     figures: dict[str, str | None], patterns: Patterns | None = None) -> str:
    patterns = patterns or {}
    lines = ["# ReMoDiff report", "",
             f"Imputer: `{downstream.get('imputer', '?')}`. Downstream metric: `{metric}`, the mean over runs (seeds, and folds) "
             "± the 95 % confidence half-width (none with one seed).", ""]
    lines += markdown_table(["reference", metric],
                   [["upper bound: complete test data", fmt(*value_ci(downstream.get("complete"), metric))],
                    ["floor: predict the training mean", fmt(*value_ci(downstream.get("train_mean"), metric))]]
                   + ([["upper bound, pooled out-of-fold (CI over seeds)",
                        fmt(*value_ci(downstream["pooled"].get("complete"), metric))]] if "pooled" in downstream else []))
    for protocol, settings in protocols_of(downstream).items():
        kinds = [k for k in ("imputed", "lower_bound") if any(k in cell for cell in settings.values())]
        order = ordered(settings, patterns, protocol) if protocol == "fixed" else list(settings)
        rows = [[s] + [fmt(*value_ci(settings[s].get(k), metric)) for k in kinds] for s in order]
        lines += ["", f"## `{protocol}` protocol", ""]
        lines += markdown_table([SETTING_HEADERS.get(protocol, "setting")] + [k.replace("_", " ") for k in kinds], rows)
    lines += ["", "## Reconstruction quality (hidden slots)", ""]
    if reconstruction:
        rows = [[protocol, setting, m, fmt(*value_ci(cell, "mse")), fmt(*value_ci(cell, "cosine")),
                 fmt(*value_ci(cell, "frechet")), fmt(value_ci(cell, "slots")[0])]
                for protocol, settings in reconstruction.items()
                for setting in (ordered(settings, patterns, protocol) if protocol == "fixed" else settings)
                for m, cell in settings[setting].items()]
        lines += markdown_table(["protocol", "setting", "modality", "MSE", "cosine", "Fréchet", "hidden slots"], rows)
    else:
        lines.append("No reconstruction metrics (`metrics/reconstruction.json` is absent).")
    if benchmark is not None:
        quality = benchmark["quality"]
        front = pareto_front(benchmark["runs"], quality, bool(benchmark.get("higher_is_better", False)))
        rows = [[r["label"], str(r["steps"]), f"{r['seconds']:.4g}", fmt(r[quality]), "yes" if r in front else ""]
                for r in sorted(benchmark["runs"], key=lambda r: (r["label"], r["steps"]))]
        lines += ["", "## Diffusion sampling benchmark", ""]
        lines += markdown_table(["label", "steps", "seconds", quality, "on the frontier"], rows)
    lines += ["", "## Figures", ""]
    for name, caption in figures.items():
        lines.append(f"- `{name}`: {caption}" if caption else f"- `{name}`: skipped (its inputs are absent)")
    for name, caption in figures.items():
        if caption:
            lines += ["", f"![{caption}]({name})"]
    return "\n".join(lines) + "\n"


def write_report(out_dir: Path, metrics_dir: Path, test: FeatureSet | None, reconstructed_dir: Path, run: str,
                 metric: str, benchmark_path: Path | None, compared: list[str] = (),
                 masks: Path | None = None) -> dict[str, str | None]:
    """Every figure whose inputs exist (the others say they are not drawn), and ``summary.md``, into ``out_dir``;
    returns figure name -> caption (None = not drawn). ``test`` / ``run``: the first run's test clips and name (its
    reconstructions are drawn); ``compared``: the imputers of ``compare.imputers`` (the comparison figure shows only
    these); ``masks``: the masks store, whose patterns give the missing rates and labels. A figure of an earlier run
    that is not drawn now is replaced, never left stale."""
    downstream_path = metrics_dir / "downstream.json"
    if not downstream_path.exists():
        raise FileNotFoundError(f"{downstream_path} does not exist; run the evaluate stage first")
    downstream = json.loads(downstream_path.read_text())
    metric = metric_of_results(downstream, metric, "report.metric")
    reconstruction = read_json(metrics_dir / "reconstruction.json")
    histories = {"fuser (all modalities)": read_json(metrics_dir / FUSER_HISTORY.name),
                 f"imputer ({downstream.get('imputer', '?')})": read_json(metrics_dir / MAIN_RUN.history.name)}
    test_ids = None if test is None else list(test.ids)
    comparison = read_json(metrics_dir / "comparison.json")
    benchmark = read_benchmark(benchmark_path, test_ids) if benchmark_path is not None else None
    patterns = {p.key: p for p in load_patterns(masks)} if masks is not None and masks.exists() else {}
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in FIGURES:
        (out_dir / name).unlink(missing_ok=True)
    figures = {
        FIXED_FIGURE: plot_fixed(downstream, metric, out_dir / FIXED_FIGURE, patterns),
        RATE_FIGURE: plot_missing_rate(downstream, metric, out_dir / RATE_FIGURE, patterns),
        FEATURE_FIGURE: plot_feature_space(test, reconstructed_dir / f"{run}.h5", run,
                                           downstream.get("imputer", "?"), out_dir / FEATURE_FIGURE),
        RECONSTRUCTION_FIGURE: plot_reconstruction_error(reconstruction, out_dir / RECONSTRUCTION_FIGURE, patterns),
        TRAINING_FIGURE: plot_training(histories, out_dir / TRAINING_FIGURE),
        BENCHMARK_FIGURE: plot_benchmark(benchmark, out_dir / BENCHMARK_FIGURE),
        COMPARISON_FIGURE: plot_comparison(comparison, list(compared), metric, out_dir / COMPARISON_FIGURE, patterns),
    }
    for name, caption in figures.items():
        if caption is None:
            plot_not_drawn(out_dir / name)
    summary = out_dir / SUMMARY
    partial_path(summary).write_text(summary_markdown(downstream, reconstruction, benchmark, metric, figures,
                                                             patterns))
    os.replace(partial_path(summary), summary)
    log.info("report: %d of %d figures and %s in %s", sum(c is not None for c in figures.values()), len(figures),
             SUMMARY, out_dir)
    return figures
