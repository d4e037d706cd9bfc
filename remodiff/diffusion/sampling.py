"""Reverse-time samplers as plain functions (k-diffusion style) with one signature:

``sample_*(score_fn, sde, x, ts, extra_args=None, generator=None) -> x_0``

* ``score_fn(x, t, **extra_args)`` is the (conditional) score ``grad_x log p_t(x | condition)`` with ``t`` a
  ``[B]`` tensor; conditions travel untouched in ``extra_args``.
* ``x`` is the start of the reverse process (a draw from ``sde.prior_sampling``), ``ts`` a decreasing time grid
  from :func:`time_grid` (``steps + 1`` points from 1 to ``eps``).
* All randomness comes from ``generator``, so a sampler is deterministic under a seeded generator.
* Keyword arguments after these are the sampler's own settings (e.g. ``pc``'s ``snr``), read from its signature
  (``SAMPLERS.settings(name)``). The time grids (:data:`GRIDS`) work the same way.
"""
from __future__ import annotations

from typing import Callable

import torch

from remodiff.diffusion.sde import SDE, VPSDE, append_dims
from remodiff.registry import Registry

ScoreFn = Callable[..., torch.Tensor]
Sampler = Callable[..., torch.Tensor]
SAMPLERS: Registry[Sampler] = Registry("sampler", passed=("score_fn", "sde", "x", "ts", "extra_args", "generator"))
TimeGrid = Callable[..., torch.Tensor]
GRIDS: Registry[TimeGrid] = Registry("time grid", passed=("sde", "steps", "eps", "device"))


def time_grid(sde: SDE, steps: int, eps: float = 1e-3, kind: str = "uniform", device: torch.device | str | None = None,
              **settings) -> torch.Tensor:
    """``steps + 1`` decreasing times from 1 to ``eps``, spaced by the grid ``kind`` (:data:`GRIDS`) with its
    ``settings``."""
    if steps < 1:
        raise ValueError(f"a sampler needs steps >= 1, got {steps}")
    return GRIDS.build(kind, sde, steps, eps, device, **settings)


@GRIDS.register("uniform")
def uniform_grid(sde: SDE, steps: int, eps: float, device: torch.device | str | None) -> torch.Tensor:
    """Evenly spaced in ``t``."""
    return torch.linspace(1.0, eps, steps + 1, device=device)


@GRIDS.register("karras")
def karras_grid(sde: SDE, steps: int, eps: float, device: torch.device | str | None, rho: float = 7.0
                ) -> torch.Tensor:
    """Evenly spaced in ``sigma^(1/rho)`` of the noise level ``sigma = std / alpha`` (Karras et al. 2022, eq. 5),
    which spends the few steps of a fast sampler near the data."""
    ends = sde.noise_level(torch.tensor([1.0, eps], dtype=torch.float64))
    ramp = torch.linspace(0, 1, steps + 1, dtype=torch.float64)
    lo, hi = ends[1] ** (1 / rho), ends[0] ** (1 / rho)
    sigmas = (hi + ramp * (lo - hi)) ** rho
    ts = sde.t_from_noise_level(sigmas).float()
    ts[0], ts[-1] = 1.0, eps  # exact ends despite round-off
    return ts.to(device)


def _noise(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _reverse_euler_maruyama_step(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, t: torch.Tensor, dt: torch.Tensor,
                                 extra_args: dict, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the reverse SDE ``dx = [f - g^2 score] dt + g dw`` backwards by ``dt > 0``: (sample, mean)."""
    t_vec = t.expand(len(x))
    g = append_dims(sde.diffusion(t_vec), x.ndim)
    mean = x - (sde.drift(x, t_vec) - g ** 2 * score_fn(x, t_vec, **extra_args)) * dt
    return mean + g * dt.sqrt() * _noise(x, generator), mean


@SAMPLERS.register("euler_maruyama")
@torch.no_grad()
def sample_euler_maruyama(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, ts: torch.Tensor,
                          extra_args: dict | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Euler-Maruyama on the reverse-time SDE (Song et al. 2021, eq. 6); the last step returns the mean
    (no noise), as IMDer does."""
    extra_args = extra_args or {}
    mean = x
    for t, t_next in zip(ts[:-1], ts[1:]):
        x, mean = _reverse_euler_maruyama_step(score_fn, sde, x, t, t - t_next, extra_args, generator)
    return mean


@SAMPLERS.register("pc")
@torch.no_grad()
def sample_pc(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, ts: torch.Tensor, extra_args: dict | None = None,
              generator: torch.Generator | None = None, snr: float = 0.16, corrector_steps: int = 1) -> torch.Tensor:
    """Predictor-corrector (Song et al. 2021, Algorithms 2-3): at each time ``corrector_steps`` Langevin MCMC
    steps with step size set by the signal-to-noise ratio ``snr``, then a reverse Euler-Maruyama predictor."""
    extra_args = extra_args or {}
    mean = x
    for t, t_next in zip(ts[:-1], ts[1:]):
        t_vec = t.expand(len(x))
        # alpha_i of Algorithm 3 (1 - beta_i for VP, 1 for VE) from the kernel: (alpha(t) / alpha(t_next))^2
        ratio = (sde.alpha(t) / sde.alpha(t_next)) ** 2
        for _ in range(corrector_steps):
            grad = score_fn(x, t_vec, **extra_args)
            z = _noise(x, generator)
            # batch-mean norms as in score_sde: a per-sample ratio explodes where one score is near zero
            grad_norm = grad.flatten(1).norm(dim=1).mean().clamp_min(1e-12)
            noise_norm = z.flatten(1).norm(dim=1).mean()
            step = 2 * ratio * (snr * noise_norm / grad_norm) ** 2
            x = x + step * grad + (2 * step).sqrt() * z
        x, mean = _reverse_euler_maruyama_step(score_fn, sde, x, t, t - t_next, extra_args, generator)
    return mean


@SAMPLERS.register("ode")
@torch.no_grad()
def sample_ode(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, ts: torch.Tensor, extra_args: dict | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Heun's method (2nd order, Karras et al. 2022, Algorithm 1) on the probability-flow ODE
    ``dx/dt = f(x, t) - g(t)^2 score / 2``. Deterministic: ``generator`` is unused (only the start is random)."""
    extra_args = extra_args or {}

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        t_vec = t.expand(len(x))
        g = append_dims(sde.diffusion(t_vec), x.ndim)
        return sde.drift(x, t_vec) - 0.5 * g ** 2 * score_fn(x, t_vec, **extra_args)

    for t, t_next in zip(ts[:-1], ts[1:]):
        h = t_next - t
        d = velocity(x, t)
        x_euler = x + h * d
        x = x + h * 0.5 * (d + velocity(x_euler, t_next))
    return x


@SAMPLERS.register("ddim")
@torch.no_grad()
def sample_ddim(score_fn: ScoreFn, sde: SDE, x: torch.Tensor, ts: torch.Tensor, extra_args: dict | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """Deterministic DDIM (Song, Meng & Ermon 2021, eta = 0) for any SDE with kernel ``N(alpha x0, std^2)``:
    predict ``x0`` and the noise from the score, then re-noise to the next time. For VE this is Euler on the
    probability-flow ODE in ``sigma``; one score evaluation per step."""
    extra_args = extra_args or {}
    for t, t_next in zip(ts[:-1], ts[1:]):
        t_vec = t.expand(len(x))
        std = sde.std(t)
        score = score_fn(x, t_vec, **extra_args)
        x0 = (x + std ** 2 * score) / sde.alpha(t)
        noise = -std * score
        x = sde.alpha(t_next) * x0 + sde.std(t_next) * noise
    return x


def evaluations_per_step(sampler: str, **settings) -> int:
    """Score evaluations per step of ``sampler`` with its ``settings`` (its cost relative to the step count), counted
    on one step of a one-number problem, so the count cannot drift from what the sampler does."""
    calls = []

    def score(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls.append(t)
        return -x

    sde = VPSDE()
    SAMPLERS.build(sampler, score, sde, torch.zeros(1, 1), time_grid(sde, 1), None, None, **settings)
    return len(calls)
