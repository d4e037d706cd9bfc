"""Per-clip predictions of one run (``data/predictions/main/<run>.h5``, ``data/predictions/compare/<imputer>/<run>.h5``):
what the metrics are computed from, kept so results can be pooled out-of-fold and compared clip by clip.

Layout: ``ids [N]``, ``labels [N, L]`` (attr ``label_names``; file attrs ``task``, ``classes``), ``complete [N, P]`` (the fuser on complete test data)
and per mask pattern ``cells/<protocol>/<setting>/imputed [N, P]`` (the fuser on the imputer's reconstructions,
aggregated over its K samples) and, where computed, ``.../lower_bound [N, P]``. ``P`` is the number of labels
(regression) or classes (classification: class scores or vote shares).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from remodiff.store import STRING, atomic_h5


@dataclass
class Predictions:
    ids: list[str]
    labels: np.ndarray
    label_names: list[str]
    task: str  # regression | classification
    classes: list[str]  # classification: the class order of the scores; [] for regression
    complete: np.ndarray
    cells: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # "<protocol>/<setting>" -> kind -> [N, P]

    def __post_init__(self) -> None:
        n = len(self.ids)
        shapes = [("labels", self.labels), ("complete", self.complete)] + [
            (f"{pattern}/{kind}", p) for pattern, kinds in self.cells.items() for kind, p in kinds.items()]
        for name, array in shapes:
            if len(array) != n:
                raise ValueError(f"predictions: {name} has {len(array)} rows for {n} clips")


def save_predictions(path: str | Path, predictions: Predictions) -> None:
    with atomic_h5(path) as f:
        f.create_dataset("ids", data=np.array(predictions.ids, dtype=object), dtype=STRING)
        f.create_dataset("labels", data=np.asarray(predictions.labels, np.float32))
        f["labels"].attrs["label_names"] = json.dumps(predictions.label_names)
        f.attrs["task"], f.attrs["classes"] = predictions.task, json.dumps(predictions.classes)
        f.create_dataset("complete", data=np.asarray(predictions.complete, np.float32))
        for pattern, kinds in predictions.cells.items():
            for kind, values in kinds.items():
                f.create_dataset(f"cells/{pattern}/{kind}", data=np.asarray(values, np.float32))


def load_predictions(path: str | Path) -> Predictions:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"predictions {path} do not exist; run the stage that scores this run first")
    with h5py.File(path, "r") as f:
        cells: dict = {}
        for protocol in f.get("cells", {}):
            for setting in f["cells"][protocol]:
                group = f["cells"][protocol][setting]
                cells[f"{protocol}/{setting}"] = {kind: group[kind][()] for kind in group}
        return Predictions([s.decode() if isinstance(s, bytes) else s for s in f["ids"][()]], f["labels"][()],
                           json.loads(f["labels"].attrs["label_names"]), str(f.attrs["task"]),
                           json.loads(f.attrs["classes"]), f["complete"][()], cells)


def concatenate(parts: list[Predictions]) -> Predictions:
    """The predictions of several runs' test clips as one (e.g. every fold of one seed: out-of-fold)."""
    patterns = set(parts[0].cells)
    if any(set(p.cells) != patterns for p in parts):
        raise ValueError("the runs' predictions cover different mask patterns; re-run the masks stage and after")
    return Predictions([i for p in parts for i in p.ids], np.concatenate([p.labels for p in parts]),
                       list(parts[0].label_names), parts[0].task, list(parts[0].classes),
                       np.concatenate([p.complete for p in parts]),
                       {pattern: {kind: np.concatenate([p.cells[pattern][kind] for p in parts])
                                  for kind in parts[0].cells[pattern]} for pattern in parts[0].cells})
