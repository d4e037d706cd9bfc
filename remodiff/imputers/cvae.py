"""Conditional VAE imputer (Sohn et al. 2015; the baseline of the ReMoDiff slides), generalised to any missing
subset by mask conditioning (see :mod:`remodiff.imputers.mask_conditioned`).

The encoder q(z | row, condition) sees the complete row, the decoder p(hidden | z, condition) rebuilds it.
Loss per batch = MSE on the hidden columns + ``kl_weight`` x KL(q || N(0, I)) per feature column (so the
weight means the same whatever the feature width). Imputation decodes z ~ N(0, I): one draw (``mode: sample``)
or the average of ``draws`` draws (``mode: mean``, the conditional mean; see :mod:`mask_conditioned`).
"""
from __future__ import annotations

import torch

from remodiff.imputers.base import IMPUTERS, check_positive_int
from remodiff.imputers.mask_conditioned import ConditionalGenerator, MaskConditionedImputer, hidden_mse, mlp
from remodiff.training import Batch, TrainConfig, fit


class ConditionalVAE(ConditionalGenerator):
    def __init__(self, width: int, cond_dim: int, hidden: int, latent: int, dropout: float):
        super().__init__()
        self.latent = latent
        self.encoder = mlp(width + cond_dim, hidden, 2 * latent, dropout=dropout)
        self.decoder = mlp(latent + cond_dim, hidden, width, dropout=dropout)

    def posterior(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(torch.cat([x, cond], dim=1)).chunk(2, dim=1)
        return mean, log_var.clamp(-10.0, 10.0)

    def generate(self, latent: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.decoder(torch.cat([latent, cond], dim=1))


@IMPUTERS.register("cvae")
class CVAEImputer(MaskConditionedImputer):
    name = "cvae"

    def __init__(self, hidden: int = 128, latent: int = 16, kl_weight: float = 1.0, dropout: float = 0.1,
                 train: dict | None = None, mode: str = "mean", draws: int = 16):
        check_positive_int("cvae", "latent", latent)
        if kl_weight < 0:
            raise ValueError(f"cvae: kl_weight must be non-negative, got {kl_weight}")
        super().__init__(hidden=hidden, dropout=dropout, train=train, mode=mode, draws=draws, latent=latent,
                         kl_weight=kl_weight)

    def build(self) -> ConditionalVAE:
        return ConditionalVAE(self.codec.width, self.codec.cond_dim, self.params["hidden"], self.params["latent"],
                              self.params["dropout"])

    def train_generator(self, generator: ConditionalVAE, train: Batch, val: Batch | None,
                        cfg: TrainConfig) -> list[dict]:
        def loss_fn(model: ConditionalVAE, batch: Batch) -> torch.Tensor:
            if not model.training:
                return self.validation_loss(model, batch)
            keep = self.training_keep(batch)
            cond = self.condition(batch, keep)
            mean, log_var = model.posterior(batch["x"], cond)
            z = mean + torch.randn_like(mean) * (0.5 * log_var).exp()
            reconstruction = hidden_mse(model.generate(z, cond), batch["x"], self.codec.hidden(keep))
            kl = 0.5 * (mean ** 2 + log_var.exp() - 1.0 - log_var).sum(dim=1).mean()
            return reconstruction + self.params["kl_weight"] * kl / self.codec.width

        return fit(generator, loss_fn, train, val, cfg, desc=self.name)
