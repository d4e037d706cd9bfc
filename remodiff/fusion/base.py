"""The fuser protocol: a downstream model from per-segment multimodal features to the task labels."""
from __future__ import annotations

import abc
import json
from pathlib import Path

import numpy as np

from remodiff.registry import Registry
from remodiff.statefile import load_state, refuse_pickled, save_state
from remodiff.store import FeatureSet, write_json_atomic

FUSERS: Registry[type["Fuser"]] = Registry("fuser", passed=("modalities",))
STATE = "state"  # a saved fuser's state_dict: state.json + state.safetensors (remodiff.statefile)


class Fuser(abc.ABC):
    name: str = ""  # set by FUSERS.register
    # takes params.yaml's shared `fuser.train` (the settings of the training loop) under its own `train` section
    shared_train: bool = False

    def __init__(self, modalities: list[str], **params):
        self.modalities = list(modalities)
        self.params = params
        # set by fit where validation clips are given: the fitted model's Task.clip_scores on them as given
        # (before any refit on them), what the auto fuser compares candidates by
        self.validation_scores: np.ndarray | None = None

    @abc.abstractmethod
    def fit(self, train: FeatureSet, val: FeatureSet | None, history_path: str | Path | None = None) -> None: ...

    @abc.abstractmethod
    def predict(self, data: FeatureSet) -> np.ndarray:
        """Predictions for the clips of ``data``: ``[N, L]`` values for regression, ``[N, C]`` class
        probabilities for classification (:func:`remodiff.tasks.class_indices` gives the class)."""

    @abc.abstractmethod
    def state_dict(self) -> dict:
        """The fitted state as plain data for :mod:`remodiff.statefile` (containers, numbers, str, numpy arrays,
        torch tensors; no objects)."""

    @abc.abstractmethod
    def load_state_dict(self, state: dict) -> None: ...

    @property
    def validation_score(self) -> float | None:
        """The fitted model's :meth:`remodiff.tasks.Task.score` on the validation clips it was given (None without)."""
        return None if self.validation_scores is None else float(self.validation_scores.mean())

    def check(self, data: FeatureSet) -> None:
        lacking = [m for m in self.modalities if m not in data.features]
        if lacking:
            raise ValueError(f"fuser {self.name!r} needs modalities {lacking}, the feature set has {data.modalities}")

    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(directory / "fuser.json", {"type": self.name, "modalities": self.modalities,
                                                     "params": self.params})
        save_state(directory / STATE, self.state_dict())


def build_fuser(name: str, modalities: list[str], params: dict | None = None) -> Fuser:
    """An unfitted fuser of the run's ``modalities`` from its section ``fuser.<name>`` (None: the defaults), by
    :meth:`Registry.build`."""
    return FUSERS.build(name, modalities, **(params or {}))


def fuser_section(fuser_params: dict, name: str) -> dict:
    """The settings ``name`` is built with from params.yaml's ``fuser`` section: ``fuser.<name>``, whose ``train``
    overrides the shared ``fuser.train`` key by key (for a fuser that takes it: :attr:`Fuser.shared_train`)."""
    own = dict(fuser_params.get(name) or {})
    if FUSERS.get(name).shared_train and fuser_params.get("train"):
        own["train"] = {**fuser_params["train"], **(own.get("train") or {})}
    return own


def load_fuser(directory: str | Path) -> Fuser:
    directory = Path(directory)
    refuse_pickled(directory / STATE, "state.pt", "dvc repro -f the stage that wrote it (train_fuser, compare_train "
                                                  "or compare)")
    meta = json.loads((directory / "fuser.json").read_text())
    fuser = build_fuser(meta["type"], meta["modalities"], meta["params"])
    fuser.load_state_dict(load_state(directory / STATE))
    return fuser
