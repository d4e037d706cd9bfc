"""Conditional GAN imputer (the GAN hallucination of "Hallucination is all you need", generalised to any missing
subset by the mask conditioning of :mod:`remodiff.imputers.mask_conditioned`).

G(noise, condition) -> row; only its hidden columns are used: the completed row (kept columns real, hidden ones
generated, missing ones 0 as in the real row) goes to the critic D(row, availability, condition). Loss: the hinge
loss with a spectrally normalised critic (Miyato et al. 2018), one critic and one generator update per batch (two
Adam optimisers with beta1 = 0.5, the shared loop's ``step=`` hook; constant learning rate). On a few hundred
training rows the adversarial signal alone is weak and noisy, so the generator also minimises ``recon_weight`` x
the MSE on the hidden columns (pix2pix-style); ``recon_weight: 0`` is the pure adversarial game. Early stopping
watches the validation MSE of the ``mode: mean`` imputation (fixed noise draws), as for the CVAE.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from remodiff.imputers.base import IMPUTERS, check_positive_int
from remodiff.imputers.mask_conditioned import ConditionalGenerator, MaskConditionedImputer, masked_mse, mlp
from remodiff.training import Batch, History, TrainConfig, fit


class Generator(ConditionalGenerator):
    def __init__(self, width: int, cond_dim: int, hidden: int, noise: int, dropout: float):
        super().__init__()
        self.latent = noise
        self.net = mlp(noise + cond_dim, hidden, width, dropout=dropout)

    def generate(self, latent: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([latent, cond], dim=1))


class Critic(nn.Module):
    """D(row, availability, condition): the availability tells it which zeros of a row are missing values."""

    def __init__(self, width: int, modalities: int, cond_dim: int, hidden: int):
        super().__init__()
        self.net = mlp(width + modalities + cond_dim, hidden, 1, layer=lambda i, o: spectral_norm(nn.Linear(i, o)))

    def forward(self, row: torch.Tensor, available: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([row, available, cond], dim=1)).squeeze(1)


class AdversarialPair(nn.Module):
    """Both players in one module, so the loop's best-weights snapshot covers them together."""

    def __init__(self, generator: Generator, critic: Critic):
        super().__init__()
        self.generator, self.critic = generator, critic


@IMPUTERS.register("gan")
class GANImputer(MaskConditionedImputer):
    train_defaults = {"epochs": 300, "batch_size": 64, "lr": 1e-4, "weight_decay": 0.0, "patience": 30,
                      "monitor_from": 5}

    def __init__(self, hidden: int = 128, noise: int = 16, recon_weight: float = 10.0, dropout: float = 0.3,
                 train: dict | None = None, mode: str = "mean", draws: int = 16):
        check_positive_int("gan", "noise", noise)
        if recon_weight < 0:
            raise ValueError(f"gan: recon_weight must be non-negative, got {recon_weight}")
        super().__init__(hidden=hidden, dropout=dropout, train=train, mode=mode, draws=draws, noise=noise,
                         recon_weight=recon_weight)

    def build(self) -> Generator:
        return Generator(self.codec.width, self.codec.cond_dim, self.params["hidden"], self.params["noise"],
                         self.params["dropout"])

    def joint_loss(self, generator: Generator, x: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        """In joint training the generator keeps its reconstruction term; the critic is not trained there (the
        task loss takes the adversary's place as the signal beyond the squared error)."""
        batch = self.joint_rows(x, available)
        keep, hidden = self.training_pattern(batch)
        fake = generator.generate(torch.randn(len(batch["x"]), generator.latent, device=x.device),
                                  self.condition(batch, keep))
        return self.params["recon_weight"] * masked_mse(fake, batch["x"], hidden)

    def train_generator(self, generator: Generator, train: Batch, val: Batch | None, cfg: TrainConfig) -> History:
        device = next(generator.parameters()).device
        critic = Critic(self.codec.width, len(self.codec.modalities), self.codec.cond_dim, self.params["hidden"])
        pair = AdversarialPair(generator, critic)
        pair.to(device)
        adam = dict(lr=cfg.lr, betas=(0.5, 0.9), weight_decay=cfg.weight_decay)
        opt_g = torch.optim.Adam(pair.generator.parameters(), **adam)
        opt_d = torch.optim.Adam(pair.critic.parameters(), **adam)

        def step(batch: Batch, epoch: int) -> dict[str, float]:
            x, available = batch["x"], batch["available"]
            keep, hidden = self.training_pattern(batch)
            cond = self.condition(batch, keep)
            fake = pair.generator.generate(torch.randn(len(x), generator.latent, device=device), cond)
            completed = x * (1.0 - hidden) + fake * hidden  # missing columns stay 0 in both rows

            critic_loss = (nn.functional.relu(1.0 - pair.critic(x, available, cond)).mean()
                           + nn.functional.relu(1.0 + pair.critic(completed.detach(), available, cond)).mean())
            opt_d.zero_grad(set_to_none=True)
            critic_loss.backward()
            opt_d.step()

            adversarial = -pair.critic(completed, available, cond).mean()
            reconstruction = masked_mse(fake, x, hidden)
            loss = adversarial + self.params["recon_weight"] * reconstruction
            opt_g.zero_grad(set_to_none=True)
            loss.backward()
            opt_g.step()
            return {"loss": float(loss.detach()), "critic": float(critic_loss.detach()),
                    "adversarial": float(adversarial.detach()), "reconstruction": float(reconstruction.detach())}

        def validation(model: AdversarialPair, batch: Batch) -> torch.Tensor:
            return self.validation_loss(model.generator, batch)

        return fit(pair, validation, train, val, cfg, step=step, desc=self.name,
                   val_score=lambda model: -self.validation_error(model.generator, val))
