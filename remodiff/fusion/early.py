"""Early fusion: per segment, concatenate the standardised modalities, run an LSTM over segments, MLP head."""
from __future__ import annotations

import torch
from torch import nn

from remodiff.fusion.base import FUSERS
from remodiff.fusion.blocks import NeuralFuser, SegmentLSTM, mlp_head


class EarlyFusionNet(nn.Module):
    def __init__(self, modalities: list[str], in_dim: int, hidden: int, out_dim: int, dropout: float):
        super().__init__()
        self.modalities = modalities
        self.encoder = SegmentLSTM(in_dim, hidden)
        self.head = mlp_head(hidden, hidden, out_dim, dropout)

    def forward(self, x: dict[str, torch.Tensor], available: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.encoder(torch.cat([x[m] for m in self.modalities], dim=-1)))


@FUSERS.register("early")
class EarlyFusion(NeuralFuser):
    name = "early"

    def __init__(self, modalities: list[str], hidden: int = 64, dropout: float = 0.1, loss: str = "l1",
                 train_masking: float = 0.0, train: dict | None = None):
        super().__init__(modalities, hidden=hidden, dropout=dropout, loss=loss, train_masking=train_masking,
                         train=train)

    def network(self, dims: dict[str, int], n_segments: int, out_dim: int) -> nn.Module:
        return EarlyFusionNet(self.modalities, sum(dims.values()), self.params["hidden"], out_dim,
                              self.params["dropout"])
