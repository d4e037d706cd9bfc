"""Automatic fusion, a route for small data: fit every candidate fuser on the training clips and keep one by its
validation score (:meth:`remodiff.tasks.Task.score`: accuracy / -MAE, what the neural fusers early-stop on; each
candidate's ``validation_scores``, taken before a refit on the validation clips).

On a few dozen clips a neural fuser can score below ridge on the same features; which one wins depends on the data,
so the choice is measured, not assumed. But a dozen validation clips measure it coarsely (one clip is 8 points of
accuracy), and a neural candidate's score is the best of its epochs on those very clips, so picking the plain best
often keeps a neural fuser that is worse on new clips (RAVDESS, 36 training clips: 3.4 points below ridge on
average). ``selection: one_se`` (the default) applies the one-standard-error rule (Breiman et al., CART; Hastie et
al., ESL 7.10): the first listed candidate whose score is within one standard error (over the validation clips) of
the best one's; list the candidates simplest first. ``selection: best`` keeps the best (ties: the first listed).

``candidates`` lists fuser names (each with its code defaults, which equal its params.yaml section) or maps names to
their settings: the auto section carries its candidates' settings itself, so DVC's ``fuser.auto`` params dependency
covers them. The auto fuser's own ``train`` (params.yaml's shared ``fuser.train`` and the seed) goes to every
candidate with a training loop, under its own ``candidates.<name>.train``; one without (linear) takes only the seed.
The fitted auto fuser predicts with, and saves, the chosen candidate, recording which one and every candidate's
score.
"""
from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import fields
from pathlib import Path

import numpy as np

from remodiff.fusion.base import FUSERS, Fuser, build_fuser
from remodiff.registry import UnknownNameError
from remodiff.store import FeatureSet, write_json_atomic
from remodiff.training import TrainConfig
from remodiff.tasks import one_standard_error

log = logging.getLogger(__name__)
DEFAULT_CANDIDATES = ("linear", "early", "mlp")  # simplest first: what the one-standard-error rule prefers
SELECTIONS = ("one_se", "best")
TRAIN_KEYS = {f.name for f in fields(TrainConfig)}


@FUSERS.register("auto")
class AutoFusion(Fuser):
    shared_train = True  # handed on to its candidates that have a training loop

    def __init__(self, modalities: list[str], candidates: list[str] | dict[str, dict | None] = DEFAULT_CANDIDATES,
                 selection: str = "one_se", train: dict | None = None):
        if not modalities:
            raise ValueError("a fuser needs at least one modality")
        if selection not in SELECTIONS:
            raise ValueError(f"auto fusion selection {selection!r}; valid values: {', '.join(SELECTIONS)}")
        if isinstance(candidates, (list, tuple)):
            candidates = list(candidates)
            repeated = sorted({c for c in candidates if candidates.count(c) > 1})
            if repeated:
                raise ValueError(f"auto fusion candidates {repeated} are listed more than once")
            candidates = {name: {} for name in candidates}
        if not isinstance(candidates, dict) or not candidates:
            raise ValueError(f"auto fusion candidates must be a non-empty list of fuser names or a mapping of fuser "
                             f"names to their settings, got {candidates!r}")
        for name, section in candidates.items():
            if section is not None and not isinstance(section, dict):
                raise ValueError(f"auto fusion candidates.{name}: must be a mapping of the fuser's settings (or null "
                                 f"for its defaults), got {section!r}")
        unknown = sorted(set(train or {}) - TRAIN_KEYS)
        if unknown:
            raise ValueError(f"auto fusion train: unknown training settings {unknown}; valid: {sorted(TRAIN_KEYS)}")
        super().__init__(modalities, candidates={name: dict(section or {}) for name, section in candidates.items()},
                         selection=selection, train=train or {})
        for name in self.params["candidates"]:
            self.candidate(name)  # refuses an unknown candidate or a bad setting before any training
        self.chosen: str | None = None
        self.scores: dict[str, float] = {}  # each candidate's validation score
        self.standard_errors: dict[str, float] = {}  # ... and its standard error over the validation clips
        self.fuser: Fuser | None = None

    def candidate(self, name: str) -> Fuser:
        """The unfitted candidate ``name``, trained with the auto fuser's seed (and training settings, when it has a
        training loop)."""
        if name == self.name or name not in FUSERS:
            raise UnknownNameError(f"unknown auto fusion candidate {name!r}",
                                   [n for n in FUSERS.names() if n != self.name])
        section = dict(self.params["candidates"][name])
        own = dict(section.get("train") or {})
        if "seed" in own:
            raise ValueError(f"auto fusion candidates.{name}.train.seed: candidates train with the auto fuser's "
                             "seed (the pipeline's eval seed); remove this key")
        seed = {k: v for k, v in self.params["train"].items() if k == "seed"}
        train = {**(self.params["train"] if FUSERS.get(name).shared_train else seed), **own}
        try:
            return build_fuser(name, self.modalities, {**section, "train": train})
        except ValueError as e:
            raise ValueError(f"auto fusion candidate {name!r}: {e}") from None

    def fit(self, train: FeatureSet, val: FeatureSet | None, history_path: str | Path | None = None) -> None:
        self.chosen, self.scores, self.standard_errors, self.fuser = None, {}, {}, None
        self.check(train)
        if val is None or not len(val):
            raise ValueError("fuser 'auto' picks its candidate by the validation score: it needs validation clips")
        fitted = {}
        with tempfile.TemporaryDirectory(prefix="remodiff-auto-") as histories:
            for name in self.params["candidates"]:
                fitted[name] = self.candidate(name)
                fitted[name].fit(train, val, history_path=Path(histories) / f"{name}.json")
                clip_scores = fitted[name].validation_scores
                self.scores[name] = float(clip_scores.mean())
                self.standard_errors[name] = (float(clip_scores.std(ddof=1) / np.sqrt(len(clip_scores)))
                                              if len(clip_scores) > 1 else 0.0)
            self.chosen = self.select({name: fuser.validation_scores for name, fuser in fitted.items()})
            chosen_history = Path(histories) / f"{self.chosen}.json"
            if history_path is not None and chosen_history.exists():  # a fuser with a training loop wrote one
                write_json_atomic(history_path, json.loads(chosen_history.read_text()))
        self.fuser, self.validation_scores = fitted[self.chosen], fitted[self.chosen].validation_scores
        log.info("auto fusion: validation scores %s, picked %s (selection %s)", json.dumps(
            {k: f"{v:.4f} ± {self.standard_errors[k]:.4f}" for k, v in self.scores.items()}), self.chosen,
            self.params["selection"])

    def select(self, clip_scores: dict[str, np.ndarray]) -> str:
        """The candidate kept, from each one's per-clip validation scores (in the order listed)."""
        if self.params["selection"] == "best":
            return max(self.scores, key=self.scores.get)  # the first of the best
        return one_standard_error(clip_scores)

    def predict(self, data: FeatureSet) -> np.ndarray:
        if self.fuser is None:
            raise RuntimeError("fuser 'auto' is not fitted")
        self.check(data)
        return self.fuser.predict(data)

    def state_dict(self) -> dict:
        if self.fuser is None:
            raise RuntimeError("fuser 'auto' is not fitted")
        return {"chosen": self.chosen, "scores": dict(self.scores), "standard_errors": dict(self.standard_errors),
                "fuser": self.fuser.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.chosen, self.scores = state["chosen"], dict(state["scores"])
        self.standard_errors = dict(state["standard_errors"])
        self.fuser = self.candidate(self.chosen)
        self.fuser.load_state_dict(state["fuser"])
