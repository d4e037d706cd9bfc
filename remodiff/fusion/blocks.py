"""Building blocks shared by the neural fusers, and :class:`NeuralFuser`, which fits any of them.

A fuser's network maps standardised per-modality inputs ``x = {m: [B, S, D_m]}`` (missing slots 0 = the training
mean) and their availability ``available = {m: [B, S] bool}`` to raw outputs ``[B, out]``. :class:`TaskOutput`
turns raw outputs into the task's loss and predictions; :func:`drop_modalities` is the optional training-time
masking; :class:`NeuralFuser` does the rest (scaling, the shared training loop, prediction, saving).
"""
from __future__ import annotations

import abc
import logging
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from remodiff.device import resolve_device
from remodiff.fusion.base import Fuser
from remodiff.standardise import Standardiser
from remodiff.store import FeatureSet
from remodiff.tasks import Task
from remodiff.training import TrainConfig, batches, fit, seed_everything, to_tensors

log = logging.getLogger(__name__)
LOSSES = ("l1", "mse")
PREDICT_BATCH = 512
# The masking generator's seed is the training seed plus this, so its stream is apart from the batch order's.
MASKING_SEED_OFFSET = 1_000_003
# The validation masks' seed offset: one fixed draw, apart from the training masks' stream.
VALIDATION_MASKING_SEED_OFFSET = 2_000_003
MONITORS = ("score", "loss")
# How a modality dropped by train_masking is shown to the network: "missing" = marked unavailable (a natural gap,
# what a lower-bound fuser sees); "mean" = the training mean marked available, what a `mean` imputer's
# reconstruction looks like at test time (reconstructions arrive marked available; exactly so with one segment,
# with several the imputer fills each segment position's own mean). It matters to late and transformer fusion,
# which leave unavailable modalities out; early fusion reads no availability, and the mlp pools a dropped modality
# to 0 either way.
MASKED_AS = ("missing", "mean")
# The training loop's settings for fusers, sized on the real dev sets (README, "Fusers"); a fuser's `train`
# section overrides them key by key. Kept equal to params.yaml's shared `fuser.train`.
FUSER_TRAIN_DEFAULTS = {"epochs": 60, "batch_size": 64, "lr": 5e-4, "weight_decay": 0.05, "patience": 10,
                        "min_epochs": 10, "schedule": "cosine"}


def standardised_inputs(scaler: Standardiser, data: FeatureSet, modalities: list[str]) -> dict[str, np.ndarray]:
    """Flat arrays for :func:`remodiff.training.batches`: ``x/<m>`` z-scores, ``a/<m>`` availability."""
    arrays = {}
    for m in modalities:
        arrays[f"x/{m}"] = scaler.transform(data, m)
        arrays[f"a/{m}"] = data.available[m]
    return arrays


def split_inputs(batch: dict[str, torch.Tensor], modalities: list[str]
                 ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The network's ``(x, available)`` dicts from a flat batch of :func:`standardised_inputs`."""
    return {m: batch[f"x/{m}"] for m in modalities}, {m: batch[f"a/{m}"] for m in modalities}


class SegmentLSTM(nn.Module):
    """An LSTM over the segments of a clip, its outputs averaged over segments: ``[B, S, D] -> [B, hidden]``."""

    def __init__(self, in_dim: int, hidden: int):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return out.mean(dim=1)


def mlp_head(in_dim: int, hidden: int, out_dim: int, dropout: float) -> nn.Sequential:
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class TaskOutput:
    """The task-dependent end of a fuser.

    Regression: one raw output per label, read as the offset from the training label mean (an untrained network
    predicts the mean), L1 or MSE loss. Classification: one logit per class, cross-entropy, predictions are
    softmax probabilities ``[N, C]``.
    """

    def __init__(self, task: Task, loss: str, label_mean: np.ndarray | None = None):
        self.task, self.loss_name = task, loss
        self.label_mean = None if label_mean is None else np.asarray(label_mean, np.float32)
        if not task.is_classification and self.label_mean is None:
            raise ValueError("a regression output needs the training label mean")

    @classmethod
    def for_labels(cls, task: Task, labels: np.ndarray, loss: str) -> "TaskOutput":
        return cls(task, loss, None if task.is_classification else labels.mean(axis=0))

    @property
    def out_dim(self) -> int:
        return len(self.task.classes) if self.task.is_classification else len(self.label_mean)

    def loss(self, raw: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        if self.task.is_classification:
            return F.cross_entropy(raw, labels[:, 0].long())
        prediction = raw + torch.as_tensor(self.label_mean, device=raw.device)
        return F.l1_loss(prediction, labels) if self.loss_name == "l1" else F.mse_loss(prediction, labels)

    def predictions(self, raw: np.ndarray) -> np.ndarray:
        if self.task.is_classification:
            return torch.softmax(torch.as_tensor(raw), dim=1).numpy().astype(np.float32)
        return (raw + self.label_mean).astype(np.float32)

    def score(self, raw: torch.Tensor, labels: torch.Tensor) -> float:
        """The validation score early stopping follows (:meth:`remodiff.tasks.Task.score`)."""
        return self.task.score(self.predictions(raw.detach().float().cpu().numpy()), labels.cpu().numpy())

    def state(self) -> dict:
        return {"task": self.task.name, "classes": list(self.task.classes), "loss": self.loss_name,
                "label_mean": self.label_mean}

    @classmethod
    def from_state(cls, state: dict) -> "TaskOutput":
        return cls(Task.of(state["task"], state["classes"]), state["loss"], state["label_mean"])


def drop_modalities(x: dict[str, torch.Tensor], available: dict[str, torch.Tensor], p: float,
                    generator: torch.Generator, masked_as: str
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """Drop each (clip, modality) with probability ``p``: features zeroed (= the training mean after z-scoring);
    ``masked_as="missing"`` marks every segment of it unavailable, ``"mean"`` leaves the availability as it was, so
    the dropped modality looks like a `mean` imputer's reconstruction (:data:`MASKED_AS`).

    Only modalities the clip has (in some segment) are dropped, and a clip never loses all of them: where every
    one was drawn, one of them, chosen uniformly, stays. Draws come from ``generator`` (CPU), so a seeded
    generator gives the same masks on any device.
    """
    if masked_as not in MASKED_AS:
        raise ValueError(f"masked_as {masked_as!r}; valid values: {', '.join(MASKED_AS)}")
    names = list(x)
    present = torch.stack([available[m].any(dim=1) for m in names], dim=1)  # [B, M]
    device = present.device
    drop = (torch.rand(present.shape, generator=generator).to(device) < p) & present
    emptied = present.any(dim=1) & ~(present & ~drop).any(dim=1)
    # drawn for every clip so the generator advances the same way whatever the first draw gave
    keep_score = torch.rand(present.shape, generator=generator).to(device).masked_fill(~present, -1.0)
    keep = F.one_hot(keep_score.argmax(dim=1), len(names)).bool() & emptied[:, None]
    drop &= ~keep
    dropped_x = {m: x[m].masked_fill(drop[:, j, None, None], 0.0) for j, m in enumerate(names)}
    if masked_as == "mean":
        return dropped_x, available
    dropped_available = {m: available[m] & ~drop[:, j, None] for j, m in enumerate(names)}
    return dropped_x, dropped_available


class NeuralFuser(Fuser):
    """A fuser made of a network over standardised inputs and a :class:`TaskOutput`, fitted by the shared loop.

    Subclasses implement :meth:`network` and pass their own params on to ``__init__``. The task comes from
    ``train.attrs["task"]`` (default regression); ``loss`` (l1 | mse) applies to regression, classification
    always uses cross-entropy. ``train_masking`` = p drops each (clip, modality) of a training batch with
    probability p (:func:`drop_modalities`), shown to the network as ``masked_as`` says (:data:`MASKED_AS`); 0 trains
    on the data as given. ``mask_validation`` masks the validation clips the same way, once (a fixed, seeded draw),
    so the epoch kept is the best one on inputs with gaps, not on complete ones. ``input_dropout`` zeroes single
    standardised input values (sets them to the training mean) while training. ``monitor: score`` stops early on
    the validation accuracy / -MAE (``loss``: on the validation loss). ``train`` overrides
    :data:`FUSER_TRAIN_DEFAULTS` key by key.
    """

    shared_train = True

    def __init__(self, modalities: list[str], *, hidden: int, dropout: float, loss: str, train_masking: float,
                 train: dict | None, input_dropout: float = 0.0, monitor: str = "score", masked_as: str = "mean",
                 mask_validation: bool = False, **own):
        if not modalities:
            raise ValueError("a fuser needs at least one modality")
        if loss not in LOSSES:
            raise ValueError(f"fuser loss {loss!r}; valid values: {', '.join(LOSSES)}")
        if not 0.0 <= train_masking < 1.0:
            raise ValueError(f"train_masking must be a probability in [0, 1), got {train_masking}")
        if masked_as not in MASKED_AS:
            raise ValueError(f"fuser masked_as {masked_as!r}; valid values: {', '.join(MASKED_AS)}")
        if hidden < 1 or not 0.0 <= dropout < 1.0:
            raise ValueError(f"fuser needs hidden >= 1 and dropout in [0, 1), got hidden={hidden}, dropout={dropout}")
        if not 0.0 <= input_dropout < 1.0:
            raise ValueError(f"input_dropout must be a probability in [0, 1), got {input_dropout}")
        if monitor not in MONITORS:
            raise ValueError(f"fuser monitor {monitor!r}; valid values: {', '.join(MONITORS)}")
        super().__init__(modalities, hidden=hidden, dropout=dropout, loss=loss, train_masking=train_masking,
                         masked_as=masked_as, mask_validation=mask_validation, train=train or {},
                         input_dropout=input_dropout, monitor=monitor, **own)
        self.train_cfg = TrainConfig.from_params({**FUSER_TRAIN_DEFAULTS, **(train or {})})
        self.model: nn.Module | None = None

    @abc.abstractmethod
    def network(self, dims: dict[str, int], n_segments: int, out_dim: int) -> nn.Module:
        """A module with ``forward(x, available) -> [B, out_dim]`` for inputs of feature sizes ``dims``."""

    def _build(self, dims: dict[str, int], n_segments: int, out_dim: int) -> None:
        seed_everything(self.train_cfg.seed)
        self.dims, self.n_segments = dims, n_segments
        self.model = self.network(dims, n_segments, out_dim)

    def check(self, data: FeatureSet) -> None:
        super().check(data)
        if self.model is None:
            return
        dims = {m: data.features[m].shape[-1] for m in self.modalities}
        if dims != self.dims or data.n_segments != self.n_segments:
            raise ValueError(f"fuser {self.name!r} was fitted on feature sizes {self.dims} with {self.n_segments} "
                             f"segments; the data has {dims} with {data.n_segments}")

    def prepare(self, train: FeatureSet) -> Task:
        """A fresh network, output and standardiser for ``train`` (what :meth:`fit` trains; joint training,
        :mod:`remodiff.joint`, trains the same network together with an imputer)."""
        self.model, self.validation_scores = None, None  # refitting starts afresh
        self.check(train)
        task = Task.from_attrs(train.attrs)
        task.check_labels(train.labels)
        self.output = TaskOutput.for_labels(task, train.labels, self.params["loss"])
        self.scaler = Standardiser.fit(train, self.modalities)
        self._build({m: train.features[m].shape[-1] for m in self.modalities}, train.n_segments,
                    self.output.out_dim)
        return task

    def fit(self, train: FeatureSet, val: FeatureSet | None, history_path: str | Path | None = None) -> None:
        task = self.prepare(train)
        if val is not None:
            self.check(val)
            task.check_labels(val.labels)
        device = resolve_device(self.train_cfg.device)
        self.model.to(device)
        p, p_input, masked_as = self.params["train_masking"], self.params["input_dropout"], self.params["masked_as"]
        masking = torch.Generator().manual_seed(self.train_cfg.seed + MASKING_SEED_OFFSET)

        def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            x, available = split_inputs(batch, self.modalities)
            if model.training:  # validation is masked once, up front (mask_validation), or not at all
                if p > 0:
                    x, available = drop_modalities(x, available, p, masking, masked_as)
                if p_input > 0:
                    x = {m: F.dropout(v, p_input) for m, v in x.items()}
            return self.output.loss(model(x, available), batch["y"])

        def tensors(data: FeatureSet) -> dict[str, torch.Tensor]:
            return to_tensors({**standardised_inputs(self.scaler, data, self.modalities), "y": data.labels}, device)

        monitored = tensors(val) if val is not None else None  # what early stopping follows
        if monitored is not None and self.params["mask_validation"] and p > 0:
            fixed = torch.Generator().manual_seed(self.train_cfg.seed + VALIDATION_MASKING_SEED_OFFSET)
            x, available = drop_modalities(*split_inputs(monitored, self.modalities), p, fixed, masked_as)
            monitored = {**monitored, **{f"x/{m}": x[m] for m in x}, **{f"a/{m}": available[m] for m in available}}

        def val_score(model: nn.Module) -> float:
            raw = torch.cat([model(*split_inputs(b, self.modalities)) for b in batches(monitored, PREDICT_BATCH)])
            return self.output.score(raw, monitored["y"])

        log.info("fuser %s: %s task, %d training clips, modalities %s", self.name, task.name, len(train),
                 self.modalities)
        fit(self.model, loss_fn, tensors(train), monitored, self.train_cfg, history_path=history_path,
            desc=f"fuser {self.name}", val_score=val_score if self.params["monitor"] == "score" else None)
        self.model.cpu()
        if val is not None:  # the clips as given, even where early stopping followed them masked
            self.validation_scores = task.clip_scores(self.predict(val), val.labels)

    @torch.no_grad()
    def predict(self, data: FeatureSet) -> np.ndarray:
        if self.model is None:
            raise RuntimeError(f"fuser {self.name!r} is not fitted")
        self.check(data)
        self.model.eval()
        inputs = to_tensors(standardised_inputs(self.scaler, data, self.modalities))
        raw = [self.model(*split_inputs(b, self.modalities)) for b in batches(inputs, PREDICT_BATCH)]
        raw = torch.cat(raw).numpy() if raw else np.zeros((0, self.output.out_dim), np.float32)
        return self.output.predictions(raw)

    def state_dict(self) -> dict:
        return {"dims": self.dims, "n_segments": self.n_segments, "model": self.model.state_dict(),
                "scaler": (self.scaler.mean, self.scaler.std), "output": self.output.state()}

    def load_state_dict(self, state: dict) -> None:
        self.output = TaskOutput.from_state(state["output"])
        self._build(state["dims"], state["n_segments"], self.output.out_dim)
        self.model.load_state_dict(state["model"])
        self.model.eval()
        self.scaler = Standardiser(*state["scaler"])

