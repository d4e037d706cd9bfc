"""The results layer: every file the evaluation stages pass to each other, its path and its layout, in one place.

* :class:`Pattern` -- a missing-modality pattern (protocol, setting, the share of slots it drops, a label), made by
  the protocols (:mod:`remodiff.evaluation.masks`) and carried by every store below, so no reader decodes names.
* the masks store (``data/masks/test.h5``): ``ids [N]`` and ``patterns/<protocol>/<setting>/<modality> [N, S]``
  bool (True = available), pattern attrs ``rate`` and ``label``; :func:`save_masks`, :func:`load_masks`.
* a reconstruction store (``data/reconstructed/<run>.h5``, ``data/compare/<imputer>/<run>.h5``): per pattern a
  group ``<protocol>/<setting>`` with feature sets ``masked`` and ``sample_<k>`` (K reconstructions);
  :class:`ReconstructionWriter`, :func:`reconstruction_patterns`, :func:`read_reconstruction`.
* a prediction store (``data/predictions/<chain>/<run>.h5``): ``ids``, ``labels``, ``complete`` and per pattern
  ``cells/<protocol>/<setting>/<kind> [N, P]`` (kinds ``imputed``, ``lower_bound``); optionally the same for the
  run's validation clips under ``validation/`` (what a route is chosen on); :class:`Predictions`.
* the JSON results: ``downstream.json`` (``complete``, ``train_mean``, ``pooled``, ``imputer`` and, for a comparison
  entry, ``classical`` and ``imputer_label`` where it is not the name, beside one entry per protocol) and
  ``comparison.json`` (``upper_bound``, ``train_mean``, ``runs``, ``resamples``, ``labels``, ``classical`` beside the
  protocols):
  :func:`protocol_cells` walks the protocols of either.
* :class:`ImputerRun`: where one imputer chain (the main chain or a comparison entry) keeps its models,
  reconstructions, predictions and metrics.

Everything here is written atomically (``store.atomic_h5`` / ``write_json_atomic``).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import h5py
import numpy as np

from remodiff.store import STRING, FeatureSet, atomic_h5, read_featureset, write_featureset
from remodiff.tasks import MetricFamily, Task

MODELS = Path("models")
METRICS = Path("metrics")
MASKS = Path("data") / "masks" / "test.h5"
RECONSTRUCTED = Path("data") / "reconstructed"
PREDICTIONS = Path("data") / "predictions"

LOWER_BOUND = "lower_bound"  # the lower bound's kind in prediction cells and its row in the JSON results
IMPUTED = "imputed"
# downstream.json / comparison.json keys that are not protocols
DOWNSTREAM_REFERENCES = ("complete", "train_mean", "pooled", "imputer", "imputer_label", "classical", "training")
COMPARISON_REFERENCES = ("upper_bound", "train_mean", "runs", "resamples", "pooled", "routes", "training",
                         "complete_case_fill", "labels", "classical")


# --------------------------------------------------------------------------------------------
# Patterns and the masks store
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Pattern:
    """One missing-modality pattern: ``protocol`` and ``setting`` name it (``key`` = ``<protocol>/<setting>``, the
    group of every store), ``rate`` is the share of (clip, modality) slots it aims to hide (the random protocol's
    missing rate; for the others their drop probability or hidden share) and ``label`` says it in words."""

    protocol: str
    setting: str
    rate: float | None = None
    label: str = ""

    @property
    def key(self) -> str:
        return f"{self.protocol}/{self.setting}"

    @staticmethod
    def split_key(key: str) -> tuple[str, str]:
        """``(protocol, setting)`` of a :attr:`key` (how predictions and results are keyed per pattern)."""
        protocol, setting = key.split("/", 1)
        return protocol, setting

    def attrs(self) -> dict:
        return {"rate": math.nan if self.rate is None else float(self.rate), "label": self.label}

    @classmethod
    def from_group(cls, protocol: str, setting: str, group: h5py.Group) -> "Pattern":
        rate = float(group.attrs.get("rate", math.nan))
        return cls(protocol, setting, None if math.isnan(rate) else rate, str(group.attrs.get("label", "")))


Mask = dict[str, np.ndarray]  # modality -> [N, S] available


def decoded(strings) -> list[str]:
    return [s.decode() if isinstance(s, bytes) else str(s) for s in strings]


def save_masks(path: str | Path, masks: dict[Pattern, Mask], ids: list[str], meta: dict) -> None:
    with atomic_h5(path) as f:
        f.create_dataset("ids", data=np.array(ids, dtype=object), dtype=STRING)
        f.attrs["meta"] = json.dumps(meta)
        for pattern, per_modality in masks.items():
            group = f.create_group(f"patterns/{pattern.key}")
            group.attrs.update(pattern.attrs())
            for m, mask in per_modality.items():
                group.create_dataset(m, data=mask.astype(bool))


def load_masks(path: str | Path, ids: list[str]) -> dict[Pattern, Mask]:
    """The masks of clips ``ids`` (in that order): all the file's clips, or some (a cross-validation fold's test
    clips; masks are drawn per clip, so a clip's mask does not depend on which others are in the file)."""
    with h5py.File(path, "r") as f:
        row = {clip: i for i, clip in enumerate(decoded(f["ids"][()]))}
        unknown = [clip for clip in ids if clip not in row]
        if unknown:
            raise ValueError(f"{path} was made for other clips than the feature store's (no masks for "
                             f"{unknown[:3]}); re-run the masks stage")
        rows = np.array([row[clip] for clip in ids], int)
        return {Pattern.from_group(protocol, setting, group): {m: group[m][()].astype(bool)[rows] for m in group}
                for protocol, settings in f["patterns"].items() for setting, group in settings.items()}


def load_patterns(path: str | Path) -> list[Pattern]:
    """The patterns of a masks store, without their masks."""
    with h5py.File(path, "r") as f:
        return [Pattern.from_group(protocol, setting, group)
                for protocol, settings in f["patterns"].items() for setting, group in settings.items()]


# --------------------------------------------------------------------------------------------
# Reconstruction stores
# --------------------------------------------------------------------------------------------
SAMPLE_PREFIX = "sample_"


class ReconstructionWriter:
    """``with ReconstructionWriter(path) as out: out.add(pattern, masked, samples)``; the file appears on success."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def __enter__(self) -> "ReconstructionWriter":
        self._context = atomic_h5(self.path)
        self.file = self._context.__enter__()
        return self

    def __exit__(self, *exc) -> bool | None:
        return self._context.__exit__(*exc)

    def add(self, pattern: Pattern, masked: FeatureSet, samples: list[FeatureSet]) -> None:
        group = self.file.create_group(pattern.key)
        group.attrs.update(pattern.attrs())
        write_featureset(group.create_group("masked"), masked)
        for k, restored in enumerate(samples):
            write_featureset(group.create_group(f"{SAMPLE_PREFIX}{k}"), restored)


def reconstruction_patterns(path: str | Path) -> list[Pattern]:
    with h5py.File(path, "r") as f:
        return [Pattern.from_group(protocol, setting, group)
                for protocol, settings in f.items() for setting, group in settings.items()]


def read_reconstruction(path: str | Path, pattern: Pattern, modalities: list[str] | None = None
                        ) -> tuple[FeatureSet, list[FeatureSet]]:
    """The masked feature set of ``pattern`` and its K reconstructions (``modalities``: only these)."""
    with h5py.File(path, "r") as f:
        group = f[pattern.key]
        samples = sorted((k for k in group if k.startswith(SAMPLE_PREFIX)),
                         key=lambda k: int(k.removeprefix(SAMPLE_PREFIX)))
        return read_featureset(group["masked"], modalities), [read_featureset(group[k], modalities) for k in samples]


# --------------------------------------------------------------------------------------------
# Prediction stores
# --------------------------------------------------------------------------------------------
@dataclass
class Predictions:
    """Per-clip predictions of one run: what its metrics are computed from, kept so results can be pooled
    out-of-fold, compared clip by clip, and routes chosen on validation clips.

    ``complete``: the fuser on complete clips; ``cells[pattern key][kind]``: per pattern the fuser on the imputer's
    reconstructions (``imputed``, aggregated over its K samples) and, where computed, ``lower_bound``. ``P`` columns:
    the labels (regression) or the classes (class scores or vote shares). ``available[pattern key]`` ``[N, M]``: which
    of ``modalities`` each clip had under the pattern (its natural gaps included), what a route is chosen by.
    ``validation``: the same for the run's validation clips (fixed patterns), where computed."""

    ids: list[str]
    labels: np.ndarray
    label_names: list[str]
    task: str  # regression | classification
    classes: list[str]  # classification: the class order of the scores; [] for regression
    complete: np.ndarray
    cells: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    modalities: list[str] = field(default_factory=list)
    available: dict[str, np.ndarray] = field(default_factory=dict)  # pattern key -> [N, M] bool
    validation: "Predictions | None" = None

    def __post_init__(self) -> None:
        n = len(self.ids)
        shapes = [("labels", self.labels), ("complete", self.complete)] + [
            (f"{pattern}/{kind}", p) for pattern, kinds in self.cells.items() for kind, p in kinds.items()] + [
            (f"{pattern}/available", a) for pattern, a in self.available.items()]
        for name, array in shapes:
            if len(array) != n:
                raise ValueError(f"predictions: {name} has {len(array)} rows for {n} clips")

    @property
    def metrics(self) -> MetricFamily:
        """The metric family of their task and labels."""
        return Task.of(self.task, self.classes).metrics(self.label_names)


def _write_predictions(group: h5py.Group, predictions: Predictions) -> None:
    group.create_dataset("ids", data=np.array(predictions.ids, dtype=object), dtype=STRING)
    group.create_dataset("labels", data=np.asarray(predictions.labels, np.float32))
    group["labels"].attrs["label_names"] = json.dumps(predictions.label_names)
    group.attrs["task"], group.attrs["classes"] = predictions.task, json.dumps(predictions.classes)
    group.create_dataset("complete", data=np.asarray(predictions.complete, np.float32))
    for pattern, kinds in predictions.cells.items():
        for kind, values in kinds.items():
            group.create_dataset(f"cells/{pattern}/{kind}", data=np.asarray(values, np.float32))
    group.attrs["modalities"] = json.dumps(predictions.modalities)
    for pattern, available in predictions.available.items():
        group.create_dataset(f"available/{pattern}", data=np.asarray(available, bool))
    if predictions.validation is not None:
        _write_predictions(group.create_group("validation"), predictions.validation)


def _read_predictions(group: h5py.Group) -> Predictions:
    cells = {f"{protocol}/{setting}": {kind: values[()] for kind, values in kinds.items()}
             for protocol, settings in group.get("cells", {}).items() for setting, kinds in settings.items()}
    available = {f"{protocol}/{setting}": values[()] for protocol, settings in group.get("available", {}).items()
                 for setting, values in settings.items()}
    return Predictions(decoded(group["ids"][()]), group["labels"][()], json.loads(group["labels"].attrs["label_names"]),
                       str(group.attrs["task"]), json.loads(group.attrs["classes"]), group["complete"][()], cells,
                       json.loads(group.attrs.get("modalities", "[]")), available,
                       _read_predictions(group["validation"]) if "validation" in group else None)


def save_predictions(path: str | Path, predictions: Predictions) -> None:
    with atomic_h5(path) as f:
        _write_predictions(f, predictions)


def load_predictions(path: str | Path) -> Predictions:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"predictions {path} do not exist; run the stage that scores this run first")
    with h5py.File(path, "r") as f:
        return _read_predictions(f)


def concatenate_predictions(parts: list[Predictions]) -> Predictions:
    """The predictions of several runs' test clips as one (e.g. every fold of one seed: out-of-fold)."""
    patterns = set(parts[0].cells)
    if any(set(p.cells) != patterns for p in parts):
        raise ValueError("the runs' predictions cover different mask patterns; re-run the masks stage and after")
    return Predictions([i for p in parts for i in p.ids], np.concatenate([p.labels for p in parts]),
                       list(parts[0].label_names), parts[0].task, list(parts[0].classes),
                       np.concatenate([p.complete for p in parts]),
                       {pattern: {kind: np.concatenate([p.cells[pattern][kind] for p in parts])
                                  for kind in parts[0].cells[pattern]} for pattern in parts[0].cells},
                       list(parts[0].modalities),
                       {pattern: np.concatenate([p.available[pattern] for p in parts]) for pattern in parts[0].available})


# --------------------------------------------------------------------------------------------
# The JSON results
# --------------------------------------------------------------------------------------------
def protocol_cells(results: dict, references: tuple[str, ...] = DOWNSTREAM_REFERENCES
                   ) -> Iterator[tuple[str, str, dict]]:
    """``(protocol, setting, cell)`` of every pattern of a downstream.json (or, with ``COMPARISON_REFERENCES``, a
    comparison.json), in file order."""
    for protocol, settings in results.items():
        if protocol in references or not isinstance(settings, dict):
            continue
        for setting, cell in settings.items():
            yield protocol, setting, cell


def protocols_of(results: dict, references: tuple[str, ...] = DOWNSTREAM_REFERENCES) -> dict[str, dict]:
    return {k: v for k, v in results.items() if k not in references and isinstance(v, dict)}


def format_value(value: float | None, ci: float | None = None, digits: int = 4, significant: bool = False) -> str:
    """``0.5533 ± 0.0157``: the value with ``digits`` decimals (``significant``: significant digits, the CI with two)
    and its 95 % CI half-width where there is one (two runs or more); ``± 0`` for runs identical up to round-off; a
    dash for a missing value."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    shown = f"{value:.{digits}g}" if significant else f"{value:.{digits}f}"
    if ci is None or (isinstance(ci, float) and math.isnan(ci)):
        return shown
    if ci < 5e-5 * abs(value):
        return f"{shown} ± 0"
    return f"{shown} ± {ci:.2g}" if significant else f"{shown} ± {ci:.{digits}f}"


def value_ci(cell: dict | None, metric: str) -> tuple[float, float]:
    """``metric`` and its 95 % CI half-width in one metrics dict; NaN where absent or null."""
    cell = cell or {}
    value, ci = cell.get(metric), cell.get(f"{metric}_ci95")
    return (math.nan if value is None else float(value), math.nan if ci is None else float(ci))


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]


# --------------------------------------------------------------------------------------------
# Where an imputer chain keeps its outputs
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ImputerRun:
    """Where one imputer chain's models, reconstructions, predictions and metrics go: the main chain or a
    comparison entry. ``fusers``: the chain's own downstream fusers (a comparison entry trained with
    ``compare.fuser`` own / joint); None = the shared fusers of ``train_fuser``."""

    models: Path
    reconstructed: Path
    quality: Path
    downstream: Path
    predictions: Path  # one prediction store per run
    history: Path | None = None  # training curves (the main chain: the first run's; an entry: every run's)
    training: Path | None = None  # per run: epochs, best epoch and cap of the imputer's training
    fusers: Path | None = None

    def reconstruction(self, run: str, validation: bool = False) -> Path:
        """The run's reconstruction store of its test clips, or of its validation clips (fixed patterns)."""
        return self.reconstructed / f"{run}{'.val' if validation else ''}.h5"

    def prediction(self, run: str) -> Path:
        return self.predictions / f"{run}.h5"

    @property
    def joint_fusers(self) -> Path:
        """The fusers trained together with the entry's imputers (``compare.fuser: joint``), beside them."""
        return self.models / "joint_fuser"


SHARED_FUSERS = MODELS / "fuser"
FUSER_HISTORY = METRICS / "fuser_history.json"  # the first run's fuser on every modality: its training curve
MAIN_RUN = ImputerRun(MODELS / "imputer", RECONSTRUCTED, METRICS / "reconstruction.json",
                      METRICS / "downstream.json", PREDICTIONS / "main", METRICS / "imputer_history.json")
COMPARISON_JSON = METRICS / "comparison.json"
COMPARISON_MD = METRICS / "comparison.md"


def is_training_curve(path: Path) -> bool:
    """Whether ``path`` is a training curve (:data:`FUSER_HISTORY`, an :class:`ImputerRun`'s ``history``): a
    ``dvc plots`` file, not a result to compare; all their names end in ``history.json``."""
    return path.name.endswith("history.json")


def compare_run(imputer: str) -> ImputerRun:
    metrics = METRICS / "compare" / imputer
    return ImputerRun(MODELS / "compare" / imputer, Path("data") / "compare" / imputer, metrics / "reconstruction.json",
                      metrics / "downstream.json", PREDICTIONS / "compare" / imputer,
                      history=METRICS / "training" / f"{imputer}.history.json",
                      training=METRICS / "training" / f"{imputer}.json", fusers=MODELS / "compare_fuser" / imputer)
