"""What the mask-conditioned neural imputers (``cvae``, ``gan``) share.

Representation: the S segments of a clip are treated as a batch of per-segment vectors, not flattened.
A row is one (clip, segment): the z-scored features of all modalities concatenated (width W = sum D).
The network's condition for a row is ``[x * keep, keep, one-hot(segment)]``: the row with its missing
modalities zeroed (0 = the training mean after z-scoring), the per-modality availability mask ``keep [M]``,
and the segment position (a one-hot, which the first linear layer turns into a learned position
embedding). One network thus serves every missing-modality pattern, per segment.

Training: rows of training segments where every modality is available; every batch hides a random pattern
per row, uniform over the 2^M - 1 patterns with at least one modality hidden (all hidden included), and the
loss asks for the hidden modalities back. Validation is deterministic: every complete validation row under
every such pattern, with a fixed latent draw, scored by the z-scored MSE on the hidden dimensions, i.e.
what imputation does. Early stopping and best weights come from :func:`remodiff.training.fit`.

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
from remodiff.scaling import Standardiser
from remodiff.store import FeatureSet
from remodiff.training import Batch, TrainConfig, batches, seed_everything, to_tensors

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
        """``x [N*S, W]`` (0 where missing), ``keep [N*S, M]`` float availability, ``pos [N*S]`` segment."""
        n, s = len(data), data.n_segments
        if s != self.n_segments:
            raise ValueError(f"data has {s} segments per clip, the imputer was fitted on {self.n_segments}")
        return {"x": self.scaler(data, self.modalities).reshape(n * s, self.width),
                "keep": np.stack([data.available[m].reshape(-1) for m in self.modalities], 1).astype(np.float32),
                "pos": np.tile(np.arange(s), n)}

    def decode(self, rows: np.ndarray, n: int) -> dict[str, np.ndarray]:
        out, start = {}, 0
        for m in self.modalities:
            z = rows[:, start:start + self.dims[m]].reshape(n, self.n_segments, -1)
            out[m] = self.scaler.inverse(z, m)
            start += self.dims[m]
        return out

    def hidden(self, keep: torch.Tensor) -> torch.Tensor:
        """``[B, W]`` 1 on the columns of hidden modalities."""
        if self._block.device != keep.device:
            self._block = self._block.to(keep.device)
        return 1.0 - keep[:, self._block]

    def condition(self, x: torch.Tensor, keep: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        position = nn.functional.one_hot(pos, self.n_segments).to(x.dtype)
        return torch.cat([x * (1.0 - self.hidden(keep)), keep, position], dim=1)

    def state(self) -> dict:
        return {"modalities": self.modalities, "dims": self.dims, "n_segments": self.n_segments,
                "scaler": self.scaler.state()}

    @classmethod
    def from_state(cls, state: dict) -> "SegmentCodec":
        return cls(state["modalities"], state["dims"], state["n_segments"], Standardiser(**state["scaler"]))


def hiding_patterns(n_modalities: int) -> torch.Tensor:
    """``[2^M - 1, M]`` every availability pattern with at least one modality hidden (1 = kept)."""
    codes = torch.arange(2 ** n_modalities - 1)  # the all-kept code 2^M - 1 is left out
    return ((codes[:, None] >> torch.arange(n_modalities)) & 1).float()


def random_keep(n: int, n_modalities: int, device: torch.device) -> torch.Tensor:
    """``[n, M]`` a uniformly drawn hiding pattern per row (torch's global RNG, seeded by the loop)."""
    patterns = hiding_patterns(n_modalities)
    return patterns[torch.randint(len(patterns), (n,))].to(device)


def hidden_mse(prediction: torch.Tensor, target: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the hidden columns only."""
    return ((prediction - target) ** 2 * hidden).sum() / hidden.sum().clamp_min(1.0)


class ConditionalGenerator(nn.Module, abc.ABC):
    """The part used at imputation time: (latent [B, latent], condition [B, cond_dim]) -> rows [B, W]."""

    latent: int

    @abc.abstractmethod
    def generate(self, latent: torch.Tensor, cond: torch.Tensor) -> torch.Tensor: ...


class MaskConditionedImputer(Imputer):
    """Fit / impute / save scaffolding; subclasses build the generator and train it (:meth:`train_generator`)."""

    sampling_settings = ("mode", "draws")

    def __init__(self, hidden: int = 128, dropout: float = 0.1, train: dict | None = None, mode: str = "mean",
                 draws: int = 16, **own):
        check_positive_int(self.name, "hidden", hidden)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"{self.name}: dropout must be in [0, 1), got {dropout}")
        super().__init__(hidden=hidden, dropout=dropout, train=train or {}, mode=mode, draws=draws, **own)
        self.apply_sampling()
        self.train_cfg = TrainConfig.from_params(train or {})
        self.history: list[dict] = []

    def apply_sampling(self) -> None:
        check_mode(self.name, self.params["mode"], self.params["draws"])
        self.stochastic = self.params["mode"] == "sample"

    @abc.abstractmethod
    def build(self) -> ConditionalGenerator:
        """A fresh generator for ``self.codec``."""

    @abc.abstractmethod
    def train_generator(self, generator: ConditionalGenerator, train: Batch, val: Batch | None,
                        cfg: TrainConfig) -> list[dict]:
        """Train ``generator`` (already on the device) through :func:`remodiff.training.fit`; return the history."""

    def condition(self, batch: Batch, keep: torch.Tensor) -> torch.Tensor:
        return self.codec.condition(batch["x"], keep, batch["pos"])

    def training_keep(self, batch: Batch) -> torch.Tensor:
        """A fresh random hiding pattern per training row (validation rows carry fixed ones)."""
        return random_keep(len(batch["x"]), len(self.codec.modalities), batch["x"].device)

    def validation_loss(self, generator: ConditionalGenerator, batch: Batch) -> torch.Tensor:
        keep = batch["keep"]
        prediction = generator.generate(batch["latent"], self.condition(batch, keep))
        return hidden_mse(prediction, batch["x"], self.codec.hidden(keep))

    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        self.modalities = train.modalities
        self.codec = SegmentCodec.fit(train)
        cfg = dataclasses.replace(self.train_cfg, seed=seed)  # the seed (one of eval.seeds) governs init, batches, masks, noise
        device = resolve_device(cfg.device)
        rows = self.codec.encode(train)
        complete = rows["keep"].all(axis=1)
        if not complete.any():
            raise ValueError(f"{self.name}: no training segment has every modality {self.modalities}; "
                             "the mask-conditioned imputers learn from complete segments")
        train_rows = {"x": rows["x"][complete], "pos": rows["pos"][complete]}
        seed_everything(seed)
        generator = self.build().to(device)
        val_rows = self._validation_rows(val, generator.latent, seed) if val is not None else None
        val_tensors = to_tensors(val_rows, device) if val_rows is not None else None
        self.history = self.train_generator(generator, to_tensors(train_rows, device), val_tensors, cfg)
        self.generator = generator.cpu().eval()
        log.info("%s: %d training rows, %d epochs", self.name, int(complete.sum()), len(self.history))

    def _validation_rows(self, val: FeatureSet, latent: int, seed: int) -> dict[str, np.ndarray] | None:
        """Every complete validation row under every hiding pattern, with a fixed latent draw."""
        rows = self.codec.encode(val)
        complete = rows["keep"].all(axis=1)
        if not complete.any():
            return None
        patterns = hiding_patterns(len(self.modalities)).numpy()
        n = int(complete.sum())
        draw = np.random.default_rng(seed).standard_normal((n * len(patterns), latent)).astype(np.float32)
        return {"x": np.tile(rows["x"][complete], (len(patterns), 1)),
                "pos": np.tile(rows["pos"][complete], len(patterns)),
                "keep": np.repeat(patterns, n, axis=0),
                "latent": draw}

    @torch.no_grad()
    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        rows = to_tensors(self.codec.encode(data))
        torch_rng = torch.Generator().manual_seed(int(rng.integers(2 ** 31)))
        self.generator.eval()
        draws = self.params["draws"] if self.params["mode"] == "mean" else 1
        out = []
        for batch in batches(rows, 4096):
            cond = self.condition(batch, batch["keep"])
            latent = torch.randn((draws, len(cond), self.generator.latent), generator=torch_rng)
            out.append(torch.stack([self.generator.generate(z, cond) for z in latent]).mean(dim=0))
        rows_out = torch.cat(out) if out else torch.zeros(0, self.codec.width)
        return self.codec.decode(rows_out.numpy(), len(data))

    # Saving: the codec's arrays and the generator's weights as CPU tensors; rebuilt through ``build``.
    def _state(self) -> dict:
        return {"codec": self.codec.state(), "history": self.history,
                "generator": {k: v.detach().cpu() for k, v in self.generator.state_dict().items()}}

    def _set_state(self, state: dict) -> None:
        self.codec = SegmentCodec.from_state(state["codec"])
        self.history = state["history"]
        self.generator = self.build()
        self.generator.load_state_dict(state["generator"])
        self.generator.eval()
