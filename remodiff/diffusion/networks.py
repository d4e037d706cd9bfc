"""Score networks ``s(x_t, t | available modalities)`` over per-segment multimodal features.

Data layout: ``x`` is ``[B, S, D]`` with the modalities' standardised features concatenated on the last axis
(``dims`` gives each modality's width, in order); ``cond_mask`` is ``[B, S, M]`` (True = that modality is
available at that segment and its clean features in ``cond`` are a condition). One *joint* network covers every
target modality: each missing modality enters the condition as its own learned null embedding, so any subset
of missing modalities (down to all of them: unconditional generation) is one network call.

Two conditioning modules (``CONDITIONINGS``): ``mlp`` concatenates the condition embeddings of a segment;
``transformer`` lets the noisy (segment, modality) tokens attend to the condition tokens (IMDer's cross-modal
conditioning). Both are the inner network of the preconditioned denoiser :class:`ScoreModel`, which turns
them into a score with the SDE.
"""
from __future__ import annotations

import copy
import math

import torch
from torch import nn

from remodiff.diffusion.sde import SDE, append_dims
from remodiff.registry import Registry

# built with the data's shapes (``dims``, ``segments``) and the settings each takes (hidden, layers, heads, ...)
CONDITIONINGS: Registry[type[nn.Module]] = Registry("diffusion conditioning", passed=("dims", "segments"))


class GaussianFourierEmbedding(nn.Module):
    """Random Fourier features of the time (Tancik et al. 2020; score_sde), then a small MLP."""

    def __init__(self, dim: int, scale: float = 16.0):
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)
        self.mlp = nn.Sequential(nn.Linear(2 * (dim // 2), dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = 2 * math.pi * t[:, None] * self.freqs[None]
        return self.mlp(torch.cat([angles.sin(), angles.cos()], dim=-1))


class ConditionEmbedding(nn.Module):
    """Per modality: a linear embedding of its clean features where available, its null embedding where not."""

    def __init__(self, dims: list[int], hidden: int):
        super().__init__()
        self.dims = list(dims)
        self.project = nn.ModuleList(nn.Linear(d, hidden) for d in dims)
        self.null = nn.Parameter(torch.randn(len(dims), hidden) * 0.02)

    def forward(self, cond: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        """``[B, S, D]``, ``[B, S, M]`` -> ``[B, S, M, hidden]``."""
        parts = [proj(c) for proj, c in zip(self.project, cond.split(self.dims, dim=-1))]
        embedded = torch.stack(parts, dim=2)
        return torch.where(cond_mask[..., None], embedded, self.null)


class TimeGatedSkip(nn.Module):
    """``x * gate(t)`` per feature, added to a network's output.

    The best denoiser mixes the noisy input with the condition-based estimate in a noise-dependent ratio per
    feature; the preconditioning's fixed ``c_skip`` assumes no condition. Passing the correction through the
    narrow hidden layer would cost the network its capacity (feature dims exceed the width), so it gets a
    direct, time-gated path.
    """

    def __init__(self, hidden: int, dim: int):
        super().__init__()
        self.gate = nn.Linear(hidden, dim)
        nn.init.zeros_(self.gate.weight)
        nn.init.zeros_(self.gate.bias)

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        return x * self.gate(temb)


class ModulatedBlock(nn.Module):
    """Residual MLP block whose normalised input is scaled and shifted by the time (adaptive layer norm, as in
    DiT): the mix of noisy input and condition a denoiser needs changes with the noise level."""

    def __init__(self, hidden: int):
        super().__init__()
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.modulation = nn.Linear(hidden, 2 * hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 2 * hidden), nn.SiLU(), nn.Linear(2 * hidden, hidden))

    def forward(self, h: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        scale, shift = self.modulation(temb).chunk(2, dim=-1)
        return h + self.mlp(self.norm(h) * (1 + scale) + shift)


@CONDITIONINGS.register("mlp")
class MLPScoreNet(nn.Module):
    """Per segment: noisy features + concatenated condition embeddings + time + position -> residual MLP with
    time-modulated blocks."""

    def __init__(self, dims: list[int], segments: int, hidden: int = 128, layers: int = 3, fourier_scale: float = 16.0):
        super().__init__()
        self.condition = ConditionEmbedding(dims, hidden)
        self.time = GaussianFourierEmbedding(hidden, fourier_scale)
        self.position = nn.Parameter(torch.randn(segments, hidden) * 0.02)
        self.inp = nn.Linear(sum(dims), hidden)
        self.cond_inp = nn.Linear(len(dims) * hidden, hidden)
        self.blocks = nn.ModuleList(ModulatedBlock(hidden) for _ in range(layers))
        self.out = nn.Sequential(nn.LayerNorm(hidden), nn.Linear(hidden, sum(dims)))
        self.skip = TimeGatedSkip(hidden, sum(dims))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        c = self.condition(cond, cond_mask).flatten(2)
        temb = self.time(t)[:, None]
        h = self.inp(x) + self.cond_inp(c) + temb + self.position
        for block in self.blocks:
            h = block(h, temb)
        return self.out(h) + self.skip(x, temb)


@CONDITIONINGS.register("transformer")
class TransformerScoreNet(nn.Module):
    """Tokens = (segment, modality) pairs. Each block: self-attention among the noisy tokens, cross-attention
    from them to the condition tokens (available modalities' clean segments, null tokens for missing ones),
    feed-forward. Time enters additively, as a scale/shift of the final norm and through the gated skip."""

    def __init__(self, dims: list[int], segments: int, hidden: int = 64, layers: int = 2, heads: int = 4,
                 fourier_scale: float = 16.0):
        super().__init__()
        self.dims = list(dims)
        self.condition = ConditionEmbedding(dims, hidden)
        self.time = GaussianFourierEmbedding(hidden, fourier_scale)
        self.noisy = nn.ModuleList(nn.Linear(d, hidden) for d in dims)
        self.modality = nn.Parameter(torch.randn(len(dims), hidden) * 0.02)
        self.position = nn.Parameter(torch.randn(segments, 1, hidden) * 0.02)
        self.blocks = nn.ModuleList(
            nn.TransformerDecoderLayer(hidden, heads, 2 * hidden, dropout=0.0, activation="gelu", batch_first=True,
                                       norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(hidden, elementwise_affine=False)
        self.modulation = nn.Linear(hidden, 2 * hidden)
        self.out = nn.ModuleList(nn.Linear(hidden, d) for d in dims)
        self.skip = TimeGatedSkip(hidden, sum(dims))

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        b, s, m = cond_mask.shape
        temb = self.time(t)
        noisy = torch.stack([proj(part) for proj, part in zip(self.noisy, x.split(self.dims, dim=-1))], dim=2)
        tokens = (noisy + self.modality + self.position + temb[:, None, None]).reshape(b, s * m, -1)
        memory = (self.condition(cond, cond_mask) + self.modality + self.position).reshape(b, s * m, -1)
        for block in self.blocks:
            tokens = block(tokens, memory)
        scale, shift = self.modulation(temb)[:, None].chunk(2, dim=-1)
        h = (self.norm(tokens) * (1 + scale) + shift).reshape(b, s, m, -1)
        out = torch.cat([out(h[:, :, i]) for i, out in enumerate(self.out)], dim=-1)
        return out + self.skip(x, temb[:, None])


class ScoreModel(nn.Module):
    """The score ``s(x, t | c) = (alpha D - x) / std^2`` of a preconditioned denoiser ``D`` (Karras et al. 2022).

    In the noise-level view ``x~ = x / alpha = x0 + sigma z`` with ``sigma = std / alpha``, the network ``F``
    predicts a unit-variance target: ``D = c_skip x~ + c_out F(c_in x~, t, c)`` with ``c_skip = 1 / (sigma^2 + 1)``,
    ``c_out = sigma / sqrt(sigma^2 + 1)``, ``c_in = 1 / sqrt(sigma^2 + 1)`` for standardised data. Unlike a plain
    noise prediction, ``D`` stays bounded at high noise, so few-step samplers do not amplify the network's error
    by ``1 / alpha``.
    """

    def __init__(self, net: nn.Module, sde: SDE):
        super().__init__()
        self.net = net
        self.sde = sde

    def denoise(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        """``D(x, t | c)``, the estimate of ``E[x0 | x_t = x, c]``."""
        alpha = append_dims(self.sde.alpha(t), x.ndim)
        sigma = append_dims(self.sde.noise_level(t), x.ndim)
        scaled = x / alpha
        norm = (sigma ** 2 + 1).sqrt()
        return scaled / norm ** 2 + sigma / norm * self.net(scaled / norm, t, cond, cond_mask)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
        alpha, std = append_dims(self.sde.alpha(t), x.ndim), append_dims(self.sde.std(t), x.ndim)
        return (alpha * self.denoise(x, t, cond, cond_mask) - x) / std ** 2


class AveragedModel(nn.Module):
    """A model plus an exponential moving average (EMA) of its weights.

    Training (``.train()``) runs the online weights, evaluation (``.eval()``) the averaged ones, so validation,
    early stopping's best state and sampling all use the EMA. ``decay = 0`` turns averaging off.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.online = model
        self.averaged = copy.deepcopy(model).requires_grad_(False)
        self.decay = decay
        self.register_buffer("updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self) -> None:
        self.updates += 1
        n = float(self.updates)
        # warm-up: early on the average follows the fast-changing weights more closely
        decay = min(self.decay, (1 + n) / (10 + n))
        for avg, new in zip(self.averaged.parameters(), self.online.parameters()):
            avg.lerp_(new, 1 - decay)
        for avg, new in zip(self.averaged.buffers(), self.online.buffers()):
            avg.copy_(new)

    @property
    def current(self) -> nn.Module:
        return self.online if self.training else self.averaged

    def forward(self, *args: torch.Tensor) -> torch.Tensor:
        return self.current(*args)

    def denoise(self, *args: torch.Tensor) -> torch.Tensor:
        return self.current.denoise(*args)
