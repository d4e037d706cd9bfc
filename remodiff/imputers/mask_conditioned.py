"""What the mask-conditioned neural imputers (``cvae``, ``gan``) share.

Representation: the S segments of a clip are treated as a batch of per-segment vectors, not flattened.
A row is one (clip, segment): the z-scored features of all modalities concatenated (width W = sum D), 0 where a
modality is missing. The network's condition for a row is ``[x * keep, keep, one-hot(segment)]``: the row with
every modality that is not kept zeroed (0 = the training mean after z-scoring), the per-modality mask ``keep [M]``,
and the segment position (a one-hot, which the first linear layer turns into a learned position embedding). One
network thus serves every missing-modality pattern, per segment.

Training learns from incomplete rows too (the pipeline may mask training clips, so that none is complete): every
row with at least one available modality, and every batch keeps a random proper subset of each row's *available*
modalities, uniform over the ``2^a - 1`` of them for a row with ``a`` available (keeping none is learning the
marginal). The condition is what is kept; the loss asks for the hidden modalities back, on the columns that are
really there (available and not kept). With complete rows this is the uniform draw over every pattern with at
least one modality hidden.

Validation is deterministic and is what imputation does: every validation row with two or more available
modalities, under every pattern that keeps a non-empty proper subset of them (a test clip always keeps one), is
reconstructed as in ``mode: mean`` (the average of :data:`VALIDATION_DRAWS` fixed latent draws) and scored by the
z-scored MSE of each hidden modality, averaged over modalities (:meth:`MaskConditionedImputer.validation_error`).
Early stopping and the restored weights follow it (the history's ``val_score`` is its negative;
:func:`remodiff.training.fit`), ``fit_summary`` says so; the history's ``val_loss`` is the same reconstruction's
MSE pooled over columns. Without such rows, early stopping follows the training loss.

Imputation (sampling settings, ``sampling.<name>`` in params.yaml): ``mode: sample`` decodes one latent draw
z ~ N(0, I) per slot; ``mode: mean`` averages the decodes of ``draws`` latent draws, a Monte-Carlo estimate of
the conditional mean, which minimises the expected squared error (one sample has twice the error of the mean
where the model is right) and is one reconstruction per clip (``stochastic`` False).
"""
from __future__ import annotations

import abc
import dataclasses
import logging

import numpy as np
import torch
from torch import nn

from remodiff.device import resolve_device
from remodiff.imputers.base import Imputer, check_mode, check_positive_int
from remodiff.standardise import Standardiser
from remodiff.store import FeatureSet
from remodiff.training import Batch, History, TrainConfig, batches, seed_everything, to_tensors

log = logging.getLogger(__name__)


def mlp(in_dim: int, hidden: int, out_dim: int, layer=nn.Linear, dropout: float = 0.0) -> nn.Sequential:
    """Two hidden SiLU layers, each followed by dropout; ``layer`` builds each linear map (e.g. spectrally
    normalised for a critic)."""
    return nn.Sequential(layer(in_dim, hidden), nn.SiLU(), nn.Dropout(dropout),
                         layer(hidden, hidden), nn.SiLU(), nn.Dropout(dropout), layer(hidden, out_dim))


class SegmentCodec:
    """FeatureSet <-> rows of z-scored per-segment vectors, plus the condition built from them."""

    def __init__(self, modalities: list[str], dims: dict[str, int], n_segments: int, scaler: Standardiser):
        self.modalities, self.dims, self.n_segments, self.scaler = list(modalities), dims, n_segments, scaler
        #: modality index of every column of a row
        self.block = np.concatenate([np.full(dims[m], i) for i, m in enumerate(self.modalities)])
        self._block = torch.as_tensor(self.block)  # the same, as an index tensor on the device last used
        self.width = len(self.block)
        self.cond_dim = self.width + len(self.modalities) + n_segments

    @classmethod
    def fit(cls, train: FeatureSet) -> "SegmentCodec":
        dims = {m: train.features[m].shape[-1] for m in train.modalities}
        return cls(train.modalities, dims, train.n_segments, Standardiser.fit(train))

    def encode(self, data: FeatureSet) -> dict[str, np.ndarray]:
        """``x [N*S, W]`` (0 where missing), ``available [N*S, M]`` float availability, ``pos [N*S]`` segment."""
        n, s = len(data), data.n_segments
        if s != self.n_segments:
            raise ValueError(f"data has {s} segments per clip, the imputer was fitted on {self.n_segments}")
        return {"x": self.scaler(data, self.modalities).reshape(n * s, self.width),
                "available": np.stack([data.available[m].reshape(-1) for m in self.modalities], 1).astype(np.float32),
                "pos": np.tile(np.arange(s), n)}

    def decode(self, rows: np.ndarray, n: int) -> dict[str, np.ndarray]:
        out, start = {}, 0
        for m in self.modalities:
            z = rows[:, start:start + self.dims[m]].reshape(n, self.n_segments, -1)
            out[m] = self.scaler.inverse(z, m)
            start += self.dims[m]
        return out

    def columns(self, per_modality: torch.Tensor) -> torch.Tensor:
        """``[B, M]`` per-modality values -> ``[B, W]``, each repeated over its modality's columns."""
        if self._block.device != per_modality.device:
            self._block = self._block.to(per_modality.device)
        return per_modality[:, self._block]

    def per_modality(self, columns: torch.Tensor) -> torch.Tensor:
        """``[B, W]`` -> ``[M]``: the sum over rows and over each modality's columns."""
        if self._block.device != columns.device:
            self._block = self._block.to(columns.device)
        return torch.zeros(len(self.modalities), device=columns.device).index_add_(0, self._block, columns.sum(0))

    def condition(self, x: torch.Tensor, keep: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        position = nn.functional.one_hot(pos, self.n_segments).to(x.dtype)
        return torch.cat([x * self.columns(keep), keep, position], dim=1)

    def state(self) -> dict:
        return {"modalities": self.modalities, "dims": self.dims, "n_segments": self.n_segments,
                "scaler": self.scaler.state()}

    @classmethod
    def from_state(cls, state: dict) -> "SegmentCodec":
        return cls(state["modalities"], state["dims"], state["n_segments"], Standardiser(**state["scaler"]))


#: latent draws averaged per validation row: the validation reconstruction is that of ``mode: mean`` (a fixed
#: number, since sampling settings may not change what is learnt)
VALIDATION_DRAWS = 8


def proper_subsets(available: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every non-empty proper subset of each row's available modalities: ``(row index [P], keep [P, M])``."""
    n_modalities = available.shape[1]
    codes = np.arange(1, 2 ** n_modalities - 1)
    patterns = ((codes[:, None] >> np.arange(n_modalities)) & 1).astype(available.dtype)   # [C, M]
    inside = (patterns[None] <= available[:, None]).all(axis=2)                               # [N, C] keep within
    rows, which = np.nonzero(inside & (patterns[None] < available[:, None]).any(axis=2))   # and hides one
    return rows, patterns[which]


def random_keep(available: torch.Tensor) -> torch.Tensor:
    """``[B, M]`` per row a uniformly drawn proper subset of its available modalities (at least one available
    modality hidden; every row must have one). Torch's global RNG, seeded by the loop."""
    keep = available * torch.randint(2, available.shape, device=available.device)
    redraw = (keep == available).all(dim=1)
    while redraw.any():  # rejection: each try hides something with probability >= 1/2
        keep[redraw] = available[redraw] * torch.randint(2, (int(redraw.sum()), available.shape[1]),
                                                         device=available.device)
        redraw = (keep == available).all(dim=1)
    return keep


def masked_mse(prediction: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the columns where ``weight`` is 1 (the hidden available ones)."""
    return ((prediction - target) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)


class ConditionalGenerator(nn.Module, abc.ABC):
    """The part used at imputation time: (latent [B, latent], condition [B, cond_dim]) -> rows [B, W]."""

    latent: int

    @abc.abstractmethod
    def generate(self, latent: torch.Tensor, cond: torch.Tensor) -> torch.Tensor: ...


class MaskConditionedImputer(Imputer):
    """Fit / impute / save scaffolding; subclasses build the generator and train it (:meth:`train_generator`)."""

    sampling_settings = ("mode", "draws")
    #: the training settings a ``train`` section does not give (params.yaml ``imputer.<name>.train`` repeats them)
    train_defaults: dict = {}
    #: what early stopping follows where there are validation rows (``fit_summary["criterion"]``)
    criterion = (f"validation MSE (z-scored, per hidden modality, averaged over modalities) of the mode-mean "
                 f"reconstruction ({VALIDATION_DRAWS} fixed latent draws)")

    def __init__(self, hidden: int = 128, dropout: float = 0.1, train: dict | None = None, mode: str = "mean",
                 draws: int = 16, **own):
        check_positive_int(self.name, "hidden", hidden)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must be in [0, 1), got {dropout}")
        super().__init__(hidden=hidden, dropout=dropout, train=train or {}, mode=mode, draws=draws, **own)
        self.apply_sampling()
        self.train_cfg = TrainConfig.from_params({**self.train_defaults, **(train or {})})
        self.history: list[dict] = []
        self.fit_summary: dict | None = None

    def apply_sampling(self) -> None:
        check_mode(self.name, self.params["mode"], self.params["draws"])
        self.stochastic = self.params["mode"] == "sample"

    @abc.abstractmethod
    def build(self) -> ConditionalGenerator:
        """A fresh generator for ``self.codec``."""

    @abc.abstractmethod
    def train_generator(self, generator: ConditionalGenerator, train: Batch, val: Batch | None,
                        cfg: TrainConfig) -> History:
        """Train ``generator`` (already on the device) through :func:`remodiff.training.fit`; return the history."""

    def condition(self, batch: Batch, keep: torch.Tensor) -> torch.Tensor:
        return self.codec.condition(batch["x"], keep, batch["pos"])

    def training_pattern(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """A fresh random pattern per training row (validation rows carry fixed ones): ``keep [B, M]`` and the
        loss's columns ``[B, W]`` (available and not kept)."""
        keep = random_keep(batch["available"])
        return keep, self.codec.columns(batch["available"] - keep)

    def mean_reconstruction(self, generator: ConditionalGenerator, batch: Batch) -> torch.Tensor:
        """``mode: mean`` on validation rows: the average decode of each row's fixed latent draws."""
        cond = self.condition(batch, batch["keep"])
        return torch.stack([generator.generate(z, cond) for z in batch["latent"].unbind(1)]).mean(dim=0)

    def validation_loss(self, generator: ConditionalGenerator, batch: Batch) -> torch.Tensor:
        """The history's ``val_loss``: the mean reconstruction's MSE pooled over the hidden available columns."""
        target = self.codec.columns(batch["available"] - batch["keep"])
        return masked_mse(self.mean_reconstruction(generator, batch), batch["x"], target)

    @torch.no_grad()
    def validation_error(self, generator: ConditionalGenerator, val: Batch) -> float:
        """The criterion: the mean reconstruction's MSE per hidden modality, averaged over the modalities (so a
        narrow modality counts as much as a wide one, as in per-modality reconstruction metrics)."""
        squared = cells = torch.zeros(len(self.codec.modalities), device=val["x"].device)
        for batch in batches(val, 4096):
            target = self.codec.columns(batch["available"] - batch["keep"])
            squared = squared + self.codec.per_modality((self.mean_reconstruction(generator, batch) - batch["x"]) ** 2
                                                        * target)
            cells = cells + self.codec.per_modality(target)
        return float((squared[cells > 0] / cells[cells > 0]).mean())

    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        self.modalities = train.modalities
        self.codec = SegmentCodec.fit(train)
        cfg = dataclasses.replace(self.train_cfg, seed=seed)  # the seed (one of eval.seeds) governs init, batches, masks, noise
        device = resolve_device(cfg.device)
        rows = self.codec.encode(train)
        usable = rows["available"].any(axis=1)
        if not usable.any():
            raise ValueError(f"{self.name}: no training segment has any of the modalities {self.modalities}")
        seed_everything(seed)
        generator = self.build().to(device)
        val_rows = self._validation_rows(val, generator.latent, seed) if val is not None else None
        if val is not None and val_rows is None:
            log.warning("%s: no validation segment has two modalities to hide one of; early stopping follows the "
                        "training loss", self.name)
        val_tensors = to_tensors(val_rows, device) if val_rows is not None else None
        history = self.train_generator(generator, to_tensors({k: v[usable] for k, v in rows.items()}, device),
                                       val_tensors, cfg)
        self.history = list(history)
        self.fit_summary = history.summary(self.criterion if val_tensors is not None else "training loss")
        self.generator = generator.cpu().eval()
        log.info("%s: %d training rows (%d complete), %d epochs, best epoch %d", self.name, int(usable.sum()),
                 int(rows["available"].all(axis=1).sum()), len(history), history.best_epoch)

    # Joint training (remodiff.joint): the generator trained together with a fuser, on whole clips [B, S, W].
    joint_draws = 4  # latent draws averaged per slot in a joint reconstruction (the mode-mean, cheaply)

    def joint_setup(self, train: FeatureSet, seed: int) -> nn.Module:
        self.modalities = train.modalities
        self.codec = SegmentCodec.fit(train)
        seed_everything(seed)
        return self.build()

    def joint_rows(self, x: torch.Tensor, mask: torch.Tensor) -> Batch:
        """Clips ``x [B, S, W]`` and a per-modality ``mask [B, S, M]`` as the rows the generator works on."""
        n, s = x.shape[:2]
        return {"x": x.reshape(n * s, -1), "available": mask.reshape(n * s, -1).float(),
                "pos": torch.arange(s, device=x.device).repeat(n)}

    def joint_fill(self, generator: ConditionalGenerator, x: torch.Tensor, keep: torch.Tensor,
                   noise: torch.Generator | None = None) -> torch.Tensor:
        """The completion of clips ``x`` given the kept modalities ``keep [B, S, M]``, differentiable: the average
        decode of :attr:`joint_draws` latent draws (from ``noise`` where given, for a fixed validation draw)."""
        rows = self.joint_rows(x, keep)
        cond = self.condition(rows, rows["available"])
        latent = torch.randn((self.joint_draws, len(cond), generator.latent), generator=noise).to(x.device)
        return torch.stack([generator.generate(z, cond) for z in latent]).mean(0).reshape(x.shape)

    def joint_done(self, generator: ConditionalGenerator, history: History, val: FeatureSet | None) -> None:
        self.history, self.fit_summary = list(history), history.summary("the joint validation task score")
        self.generator = generator.cpu().eval()

    def _validation_rows(self, val: FeatureSet, latent: int, seed: int) -> dict[str, np.ndarray] | None:
        """Every validation row with two or more available modalities under every pattern that keeps a non-empty
        proper subset of them, with fixed latent draws ``[rows, VALIDATION_DRAWS, latent]``; None if there is none."""
        rows = self.codec.encode(val)
        index, keep = proper_subsets(rows["available"])
        if not len(index):
            return None
        draws = np.random.default_rng(seed).standard_normal((len(index), VALIDATION_DRAWS, latent))
        return {**{k: v[index] for k, v in rows.items()}, "keep": keep, "latent": draws.astype(np.float32)}

    @torch.no_grad()
    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        rows = to_tensors(self.codec.encode(data))
        torch_rng = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
        self.generator.eval()
        draws = self.params["draws"] if self.params["mode"] == "mean" else 1
        out = []
        for batch in batches(rows, 4096):
            cond = self.condition(batch, batch["available"])
            latent = torch.randn((draws, len(cond), self.generator.latent), generator=torch_rng)
            out.append(torch.stack([self.generator.generate(z, cond) for z in latent]).mean(dim=0))
        rows_out = torch.cat(out) if out else torch.zeros(0, self.codec.width)
        return self.codec.decode(rows_out.numpy(), len(data))

    # Saving: the codec's arrays and the generator's weights as CPU tensors; rebuilt through ``build``.
    def _state(self) -> dict:
        return {"codec": self.codec.state(), "history": self.history, "fit_summary": self.fit_summary,
                "generator": {k: v.detach().cpu() for k, v in self.generator.state_dict().items()}}

    def _set_state(self, state: dict) -> None:
        self.codec = SegmentCodec.from_state(state["codec"])
        self.history, self.fit_summary = state["history"], state["fit_summary"]
        self.generator = self.build()
        self.generator.load_state_dict(state["generator"])
        self.generator.eval()
