"""Denoising score matching for the conditional score network, and the training-time missing patterns.

Training teaches "complete the missing slots given the available ones" for random missing patterns: each step
hides a random subset of each clip's (modality, segment) slots; the hidden slots are the target (loss), the
rest are the condition. Slots that are missing in the data itself are neither.
"""
from __future__ import annotations

import torch
from torch import nn

from remodiff.diffusion.sde import SDE, append_dims


def expand_mask(mask: torch.Tensor, dims: list[int]) -> torch.Tensor:
    """``[..., M]`` per-modality mask -> ``[..., sum(dims)]`` per-feature mask."""
    return mask.repeat_interleave(torch.tensor(dims, device=mask.device), dim=-1)


def sample_condition_mask(real: torch.Tensor, segment_prob: float = 0.3, cond_dropout: float = 0.1,
                          generator: torch.Generator | None = None) -> torch.Tensor:
    """Which real slots ``[B, S, M]`` are given as condition in one training step.

    Per clip a missing rate ``r ~ U(0, 1)`` covers every pattern from "one modality missing" to "all missing";
    a clip hides whole modalities (the test protocol; at least one, so the clip has a target) or, with
    ``segment_prob``, single (modality, segment) slots, each with probability ``r``.
    With probability ``cond_dropout`` a clip gets no condition at all, which trains the unconditional score
    used by classifier-free guidance.
    """
    b, s, m = real.shape
    device = real.device

    def uniform(*shape: int) -> torch.Tensor:
        return torch.rand(shape, generator=generator, device=device)

    rate = uniform(b, 1, 1)
    hide_modality = (uniform(b, 1, m) < rate).expand(b, s, m)
    forced = torch.nn.functional.one_hot((uniform(b) * m).long().clamp_max(m - 1), m).bool()[:, None]
    hide_modality = hide_modality | (~hide_modality.any(dim=2, keepdim=True) & forced)
    hide_slot = uniform(b, s, m) < rate
    per_segment = uniform(b, 1, 1) < segment_prob
    hidden = torch.where(per_segment, hide_slot, hide_modality)
    dropped = uniform(b, 1, 1) < cond_dropout
    return real & ~hidden & ~dropped


def dsm_loss(score_model: nn.Module, sde: SDE, x0: torch.Tensor, real: torch.Tensor, cond_mask: torch.Tensor,
             dims: list[int], t: torch.Tensor | None = None, z: torch.Tensor | None = None, eps: float = 1e-5,
             likelihood_weighting: bool = False) -> torch.Tensor:
    """Denoising score matching on the target slots (``real & ~cond_mask``), mean per target feature.

    ``E_t E_z lambda(t) || s(x_t, t | c) + z / std ||^2`` with ``x_t = alpha x0 + std z``, ``t ~ U(eps, 1)``
    (Song et al. 2021, eq. 7). With the denoiser form of the score, ``s + z / std = alpha (D - x0) / std^2``,
    so it is computed as a weighted denoising error. ``lambda(t) = std^2 (1 + sigma^2)`` (``sigma = std /
    alpha``) makes it the plain MSE of the preconditioned network's output (Karras et al. 2022);
    ``likelihood_weighting`` uses ``lambda = g(t)^2``, for which the loss bounds the negative log-likelihood
    (Song et al. 2021b). ``t`` and ``z`` can be given for a fixed (e.g. validation) draw.
    """
    if t is None:
        t = torch.rand(len(x0), device=x0.device) * (1 - eps) + eps
    if z is None:
        z = torch.randn_like(x0)
    mean, std = sde.marginal_prob(x0, t)
    alpha = append_dims(sde.alpha(t), x0.ndim)
    cond_features = expand_mask(cond_mask, dims)
    denoised = score_model.denoise(mean + std * z, t, torch.where(cond_features, x0, 0.0), cond_mask)
    if likelihood_weighting:
        weight = append_dims(sde.diffusion(t), x0.ndim) ** 2 * alpha ** 2 / std ** 4
    else:
        weight = (alpha ** 2 + std ** 2) / std ** 2
    per_feature = weight * (denoised - x0) ** 2
    target = expand_mask(real & ~cond_mask, dims).float()
    return (per_feature * target).sum() / target.sum().clamp_min(1.0)
