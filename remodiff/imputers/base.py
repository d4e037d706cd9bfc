"""The imputer protocol: fit on training features, fill every missing (clip, modality, segment) slot.

Adding an imputer = one module that subclasses :class:`Imputer` and decorates it with
``@IMPUTERS.register("name")``, plus one import line in ``remodiff/imputers/__init__.py``.
"""
from __future__ import annotations

import abc
import json
from pathlib import Path

import numpy as np

from remodiff.registry import Registry, RegistryError
from remodiff.standardise import masked_mean
from remodiff.statefile import load_state, refuse_pickled, save_state
from remodiff.store import FeatureSet, write_json_atomic

IMPUTERS: Registry[type["Imputer"]] = Registry("imputer")
STATE = "state"  # a saved imputer's fitted state: state.json + state.safetensors (remodiff.statefile)


class Imputer(abc.ABC):
    """Base class. ``params`` are the constructor settings: the imputer's training section of params.yaml
    (``imputer.<name>``) plus its sampling settings (``sampling.<name>``, the names in :attr:`sampling_settings`).

    Sampling settings change how a fitted imputer draws reconstructions, never what it learns: the pipeline
    fits with ``imputer.<name>`` and applies ``sampling.<name>`` to the loaded imputer (:meth:`set_sampling`), so
    changing one re-runs reconstruction only. Both are saved with the imputer.
    """

    name: str = ""  # set by IMPUTERS.register
    #: how tables and figures name it where its name would mislead ("": its name; :func:`imputer_label`)
    label: str = ""
    #: a reference a learned imputer must beat in the comparison (the oracles read the test labels: never one)
    classical: bool = False
    #: stochastic imputers draw from the generator given to :meth:`impute` (a reason to draw K reconstructions)
    stochastic: bool = False
    #: the constructor settings that only affect drawing reconstructions (params.yaml ``sampling.<name>``)
    sampling_settings: tuple[str, ...] = ()
    #: after fitting an imputer trained by gradient: ``{"epochs": run, "best_epoch": restored, "epoch_cap": the
    #: budget, "criterion": what early stopping followed}`` (saved with it); None for the others
    fit_summary: dict | None = None

    def __init__(self, **params):
        self.params = params
        self.modalities: list[str] = []

    def set_sampling(self, **settings) -> None:
        """Change sampling settings of this (fitted or unfitted) imputer without refitting; the settings not
        given keep their value. A key that is not one of :attr:`sampling_settings` is refused by name."""
        unknown = sorted(set(settings) - set(self.sampling_settings))
        if unknown:
            raise RegistryError(f"unknown sampling settings {unknown} for imputer {self.name!r}",
                                self.sampling_settings)
        self.params = {**self.params, **settings}
        self.apply_sampling()

    def apply_sampling(self) -> None:
        """Check the sampling settings in ``self.params`` and derive what depends on them (e.g. ``stochastic``);
        called by the constructor of an imputer with sampling settings and by :meth:`set_sampling`."""

    @abc.abstractmethod
    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        """Learn from training clips (a modality present where ``train.available`` says so: training clips may
        miss any modality, and none may be complete)."""

    @abc.abstractmethod
    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Return full ``[N, S, D]`` arrays per modality; only the missing slots of them are used."""

    def impute(self, data: FeatureSet, rng: np.random.Generator | None = None) -> FeatureSet:
        """Fill the slots where ``data.available`` is False; available slots are returned unchanged.

        The result marks every slot available (a reconstruction is complete by construction).
        """
        if not self.modalities:
            raise RuntimeError(f"imputer {self.name!r} is not fitted")
        if set(data.modalities) != set(self.modalities):
            raise ValueError(f"imputer {self.name!r} was fitted on {self.modalities}, data has {data.modalities}")
        rng = rng if rng is not None else np.random.default_rng(0)
        filled = self._fill(data, rng)
        features, available = {}, {}
        for m in data.modalities:
            x, fill, mask = data.features[m], filled[m], data.available[m]
            if fill.shape != x.shape:
                raise ValueError(f"imputer {self.name!r} returned {m} of shape {fill.shape}, expected {x.shape}")
            out = np.where(mask[..., None], x, fill).astype(np.float32)
            if not np.all(np.isfinite(out)):
                raise ValueError(f"imputer {self.name!r} produced non-finite {m} features")
            features[m] = out
            available[m] = np.ones_like(mask, dtype=bool)
        return FeatureSet(list(data.ids), features, available, data.labels, list(data.label_names), dict(data.attrs))

    # Saving: ``_state`` is plain data for remodiff.statefile (containers, numbers, str, arrays, tensors; never an
    # object, which would need a pickle); subclasses holding objects (a scaler, torch modules) override
    # ``_state``/``_set_state`` to turn them into such data and back.
    def save(self, directory: str | Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        write_json_atomic(directory / "imputer.json", {"type": self.name, "params": self.params,
                                                       "modalities": self.modalities})
        save_state(directory / STATE, self._state())

    def _state(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("params", "modalities")}

    def _set_state(self, state: dict) -> None:
        self.__dict__.update(state)


def build_imputer(name: str, params: dict | None = None) -> Imputer:
    """An unfitted imputer from its section ``imputer.<name>`` (None: the defaults), by :meth:`Registry.build`."""
    return IMPUTERS.build(name, **(params or {}))


def imputer_label(name: str) -> str:
    """How tables and figures name the row of ``name``: an imputer by its :attr:`Imputer.label`, else by the name
    itself (also a row that is no imputer, e.g. ``lower_bound`` in a route count)."""
    return (IMPUTERS.get(name).label if name in IMPUTERS else "") or name


def load_imputer(directory: str | Path) -> Imputer:
    directory = Path(directory)
    refuse_pickled(directory / STATE, "state.pkl", "dvc repro -f the stage that wrote it (train_imputer or "
                                                   "compare_train)")
    meta = json.loads((directory / "imputer.json").read_text())
    imputer = build_imputer(meta["type"], meta["params"])
    imputer.modalities = meta["modalities"]
    imputer._set_state(load_state(directory / STATE))
    return imputer


def segment_means(train: FeatureSet) -> dict[str, np.ndarray]:
    """Per modality, the training mean at each segment position over available slots: ``{m: [S, D]}``."""
    return {m: masked_mean(train.features[m], train.available[m], axis=0).astype(np.float32) for m in train.modalities}


#: how a generative imputer fills a slot: the conditional mean (the average of ``draws`` samples; one
#: deterministic reconstruction given the rng) or one sample of the conditional distribution per call
MODES = ("mean", "sample")


def check_mode(owner: str, mode, draws) -> None:
    """Refuse an unknown ``mode`` or a ``draws`` that is not a positive integer, naming the imputer."""
    if mode not in MODES:
        raise ValueError(f"{owner}: mode {mode!r}; valid values: {', '.join(MODES)}")
    check_positive_int(owner, "draws", draws)


def check_positive_int(owner: str, key: str, value) -> None:
    """Refuse a setting that must be a positive integer (sizes, neighbour counts), naming the imputer and key."""
    if not isinstance(value, int) or value < 1:
        raise ValueError(f"{owner}: {key} must be a positive integer, got {value!r}")
