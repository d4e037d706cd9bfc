"""Forward SDEs ``dx = f(x, t) dt + g(t) dw`` on ``t in [0, 1]`` (Song et al. 2021, "Score-Based Generative
Modeling through Stochastic Differential Equations").

Both SDEs here are affine, so the perturbation kernel is Gaussian with a closed form:
``x_t | x_0 ~ N(alpha(t) x_0, std(t)^2 I)``. Samplers and the loss only use this interface, so a new SDE is a
subclass with its drift, diffusion and kernel coefficients, registered in :data:`SDES`; its constructor's arguments
are its settings (``SDES.build(name, **settings)``).
"""
from __future__ import annotations

import abc
import math

import torch

from remodiff.registry import Registry

SDES: Registry[type["SDE"]] = Registry("SDE")


def append_dims(v: torch.Tensor, ndim: int) -> torch.Tensor:
    """Reshape a per-sample ``[B]`` tensor to ``[B, 1, ..., 1]`` so it broadcasts against ``ndim``-dim data."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


class SDE(abc.ABC):
    """An affine forward SDE; ``t`` is a ``[B]`` tensor (one time per sample) unless noted."""

    @abc.abstractmethod
    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``f(x, t)``, same shape as ``x``."""

    @abc.abstractmethod
    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        """``g(t)``, shape ``[B]``."""

    @abc.abstractmethod
    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        """Mean coefficient of the perturbation kernel: ``E[x_t | x_0] = alpha(t) x_0``."""

    @abc.abstractmethod
    def std(self, t: torch.Tensor) -> torch.Tensor:
        """Standard deviation of the perturbation kernel."""

    @abc.abstractmethod
    def t_from_noise_level(self, sigma: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`noise_level`: the time at which ``std(t) / alpha(t) == sigma``."""

    def noise_level(self, t: torch.Tensor) -> torch.Tensor:
        """Noise-to-signal ratio ``std / alpha``: the ``sigma`` of the equivalent VE process (Karras et al. 2022)."""
        return self.std(t) / self.alpha(t)

    def marginal_prob(self, x0: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std of ``x_t | x_0`` (std broadcast to ``x0``'s rank)."""
        return append_dims(self.alpha(t), x0.ndim) * x0, append_dims(self.std(t), x0.ndim)

    @property
    @abc.abstractmethod
    def prior_std(self) -> float:
        """Std of the Gaussian the reverse process starts from (the marginal at ``t = 1``, data ignored)."""

    def prior_sampling(self, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
        device = generator.device if generator is not None else None
        return torch.randn(shape, generator=generator, device=device) * self.prior_std


@SDES.register("vp")
class VPSDE(SDE):
    """Variance preserving: ``dx = -beta(t) x / 2 dt + sqrt(beta(t)) dw`` with ``beta`` linear in ``t``
    (the continuous limit of DDPM)."""

    def __init__(self, beta_min: float = 0.1, beta_max: float = 20.0):
        if not 0 < beta_min < beta_max:
            raise ValueError(f"VP SDE needs 0 < beta_min < beta_max, got {beta_min}, {beta_max}")
        self.beta_min, self.beta_max = beta_min, beta_max

    def beta(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta_min + t * (self.beta_max - self.beta_min)

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return -0.5 * append_dims(self.beta(t), x.ndim) * x

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return self.beta(t).sqrt()

    def log_alpha(self, t: torch.Tensor) -> torch.Tensor:
        # log alpha(t) = -1/2 * integral_0^t beta(s) ds
        return -0.25 * t ** 2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return self.log_alpha(t).exp()

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return (-torch.expm1(2 * self.log_alpha(t))).sqrt()  # expm1: accurate for small t

    def t_from_noise_level(self, sigma: torch.Tensor) -> torch.Tensor:
        # alpha^2 = 1 / (1 + sigma^2)  <=>  (b1 - b0) t^2 / 2 + b0 t = log(1 + sigma^2): the positive root
        spread = self.beta_max - self.beta_min
        return (torch.sqrt(self.beta_min ** 2 + 2 * spread * torch.log1p(sigma ** 2)) - self.beta_min) / spread

    @property
    def prior_std(self) -> float:
        return 1.0


@SDES.register("ve")
class VESDE(SDE):
    """Variance exploding: ``dx = sigma(t) sqrt(2 log(sigma_max / sigma_min)) dw`` with
    ``sigma(t) = sigma_min (sigma_max / sigma_min)^t`` (SMLD; IMDer uses ``sigma_max = 25``).

    The kernel std is exact for a start at ``t = 0``: ``sqrt(sigma(t)^2 - sigma_min^2)``.
    """

    def __init__(self, sigma_min: float = 0.01, sigma_max: float = 25.0):
        if not 0 < sigma_min < sigma_max:
            raise ValueError(f"VE SDE needs 0 < sigma_min < sigma_max, got {sigma_min}, {sigma_max}")
        self.sigma_min, self.sigma_max = sigma_min, sigma_max
        self.log_ratio = math.log(sigma_max / sigma_min)

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * torch.exp(t * self.log_ratio)

    def drift(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(x)

    def diffusion(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma(t) * math.sqrt(2 * self.log_ratio)

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(t)

    def std(self, t: torch.Tensor) -> torch.Tensor:
        return self.sigma_min * torch.expm1(2 * t * self.log_ratio).sqrt()

    def t_from_noise_level(self, sigma: torch.Tensor) -> torch.Tensor:
        return 0.5 * torch.log1p((sigma / self.sigma_min) ** 2) / self.log_ratio

    @property
    def prior_std(self) -> float:
        return self.sigma_min * math.sqrt(math.expm1(2 * self.log_ratio))
