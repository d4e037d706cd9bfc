"""Linear fusion, a classical sanity row: ridge regression / (multinomial) logistic regression from scikit-learn
on each modality's standardised features averaged over its available segments, concatenated (a modality a clip
lacks is 0 = the training mean). The penalty is picked from ``penalties`` by the validation score (accuracy /
-MAE), then, with ``refit_on_val``, the model is refitted on training + validation clips.

The solvers are deterministic, so the seed the pipeline passes (``train: {seed}``) changes nothing: every seed
gives the same model.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge

from remodiff.fusion.base import FUSERS, Fuser
from remodiff.standardise import Standardiser, masked_mean
from remodiff.store import FeatureSet
from remodiff.tasks import Task

log = logging.getLogger(__name__)
# ridge alpha (regression) / inverse regularisation strength C (classification): sklearn's meanings
DEFAULT_PENALTIES = {"regression": [0.1, 1.0, 10.0, 100.0, 1000.0, 10000.0],
                     "classification": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0]}


@FUSERS.register("linear")
class LinearFusion(Fuser):
    def __init__(self, modalities: list[str], penalties: list[float] | None = None, refit_on_val: bool = True,
                 train: dict | None = None):
        if not modalities:
            raise ValueError("a fuser needs at least one modality")
        if penalties is not None and (not penalties or any(not isinstance(p, (int, float)) or p <= 0
                                                           for p in penalties)):
            raise ValueError(f"linear fusion penalties must be a non-empty list of positive numbers, got {penalties}")
        unknown = sorted(set(train or {}) - {"seed"})
        if unknown:
            raise ValueError(f"linear fusion has no training loop: its train section takes only seed, got {unknown}")
        super().__init__(modalities, penalties=penalties, refit_on_val=refit_on_val, train=train or {})
        self.state: dict | None = None

    def pooled(self, data: FeatureSet, scaler: Standardiser) -> np.ndarray:
        """``[N, sum D]`` standardised per-modality means over the available segments."""
        return np.concatenate([masked_mean(scaler.transform(data, m), data.available[m], axis=1)
                               for m in self.modalities], axis=1).astype(np.float64)

    def estimator(self, task: Task, penalty: float):
        if task.is_classification:
            return LogisticRegression(C=penalty, max_iter=2000)
        return Ridge(alpha=penalty)

    def outputs(self, task: Task, model, x: np.ndarray) -> np.ndarray:
        """What :meth:`predict` gives for pooled features ``x``, from a fitted scikit-learn ``model``."""
        if not task.is_classification:
            return model.predict(x)
        probabilities = np.zeros((len(x), len(task.classes)))
        probabilities[:, model.classes_.astype(int)] = model.predict_proba(x)
        return probabilities

    def fit(self, train: FeatureSet, val: FeatureSet | None, history_path: str | Path | None = None) -> None:
        self.state, self.validation_scores = None, None
        self.check(train)
        task = Task.from_attrs(train.attrs)
        task.check_labels(train.labels)
        scaler = Standardiser.fit(train, self.modalities)
        x = self.pooled(train, scaler)
        y = task.targets(train.labels)
        penalties = self.params["penalties"] or DEFAULT_PENALTIES[task.name]
        penalty = penalties[len(penalties) // 2]
        if val is not None and len(val):
            self.check(val)
            task.check_labels(val.labels)
            x_val = self.pooled(val, scaler)
            per_clip = [task.clip_scores(self.outputs(task, self.estimator(task, p).fit(x, y), x_val), val.labels)
                        for p in penalties]
            scores = [float(s.mean()) for s in per_clip]  # the Task.score of each
            best = int(np.argmax(scores))  # ties to the first (strongest) penalty
            penalty, self.validation_scores = penalties[best], per_clip[best]
            log.info("linear fusion: validation scores %s over penalties %s, picked %g",
                     [round(s, 4) for s in scores], penalties, penalty)
            if self.params["refit_on_val"]:
                x = np.concatenate([x, x_val])
                y = np.concatenate([y, task.targets(val.labels)])
        model = self.estimator(task, penalty).fit(x, y)
        coef, intercept = np.atleast_2d(model.coef_), np.atleast_1d(model.intercept_)
        present = model.classes_.astype(int).tolist() if task.is_classification else None
        self.state = {"task": task.name, "classes": list(task.classes), "label_names": list(train.label_names),
                      "penalty": penalty, "coef": coef.astype(np.float64), "intercept": intercept.astype(np.float64),
                      "present_classes": present, "scaler": (scaler.mean, scaler.std)}

    def predict(self, data: FeatureSet) -> np.ndarray:
        if self.state is None:
            raise RuntimeError("fuser 'linear' is not fitted")
        self.check(data)
        dims = {m: len(self.state["scaler"][0][m]) for m in self.modalities}
        given = {m: data.features[m].shape[-1] for m in self.modalities}
        if given != dims:
            raise ValueError(f"fuser 'linear' was fitted on feature sizes {dims}; the data has {given}")
        x = self.pooled(data, Standardiser(*self.state["scaler"]))
        raw = x @ self.state["coef"].T + self.state["intercept"]
        if not Task.of(self.state["task"], self.state["classes"]).is_classification:
            return raw.astype(np.float32)
        present = self.state["present_classes"]
        if len(present) == 2:  # scikit-learn's binary logistic regression: one logit, for the second class
            raw = np.concatenate([np.zeros_like(raw), raw], axis=1)
        raw = raw - raw.max(axis=1, keepdims=True)
        probs = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
        out = np.zeros((len(x), len(self.state["classes"])), np.float32)
        out[:, present] = probs  # a class absent from training gets probability 0
        return out

    def state_dict(self) -> dict:
        if self.state is None:
            raise RuntimeError("fuser 'linear' is not fitted")
        return dict(self.state)

    def load_state_dict(self, state: dict) -> None:
        self.state = dict(state)
