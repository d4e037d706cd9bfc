"""MLP fusion, a classical sanity row: each modality's standardised features averaged over the segments it is
available in, concatenated, one hidden layer. Trained by the shared loop like the other neural fusers."""
from __future__ import annotations

import torch
from torch import nn

from remodiff.fusion.base import FUSERS
from remodiff.fusion.blocks import NeuralFuser


def pooled(x: dict[str, torch.Tensor], available: dict[str, torch.Tensor], modalities: list[str]) -> torch.Tensor:
    """``[B, sum D]``: per modality the mean over its available segments (0 = the training mean where none is)."""
    means = []
    for m in modalities:
        weights = available[m].to(x[m].dtype)[..., None]  # [B, S, 1]
        means.append((x[m] * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0))
    return torch.cat(means, dim=-1)


class PooledMLP(nn.Module):
    def __init__(self, dims: dict[str, int], hidden: int, out_dim: int, dropout: float):
        super().__init__()
        self.modalities = list(dims)
        self.net = nn.Sequential(nn.Linear(sum(dims.values()), hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, out_dim))

    def forward(self, x: dict[str, torch.Tensor], available: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.net(pooled(x, available, self.modalities))


@FUSERS.register("mlp")
class MLPFusion(NeuralFuser):
    def __init__(self, modalities: list[str], hidden: int = 256, dropout: float = 0.3, input_dropout: float = 0.3,
                 loss: str = "l1", train_masking: float = 0.0, masked_as: str = "mean",
                 mask_validation: bool = False, monitor: str = "score", train: dict | None = None):
        super().__init__(modalities, hidden=hidden, dropout=dropout, input_dropout=input_dropout, loss=loss,
                         train_masking=train_masking, masked_as=masked_as,
                         mask_validation=mask_validation, monitor=monitor, train=train)

    def network(self, dims: dict[str, int], n_segments: int, out_dim: int) -> nn.Module:
        return PooledMLP(dims, self.params["hidden"], out_dim, self.params["dropout"])
