"""Early fusion: per segment, each standardised modality through its own linear projection to ``hidden`` values,
the projections concatenated, an LSTM over segments, an MLP head.

The projection gives every modality the same width in the fused vector, so a 259-d audio block does not drown a
35-d video block (RAVDESS) before the network has learned which values matter.
"""
from __future__ import annotations

import torch
from torch import nn

from remodiff.fusion.base import FUSERS
from remodiff.fusion.blocks import NeuralFuser, SegmentLSTM, mlp_head


class EarlyFusionNet(nn.Module):
    def __init__(self, dims: dict[str, int], hidden: int, out_dim: int, dropout: float):
        super().__init__()
        self.modalities = list(dims)
        self.projections = nn.ModuleDict({m: nn.Linear(d, hidden) for m, d in dims.items()})
        self.encoder = SegmentLSTM(hidden * len(dims), hidden)
        self.head = mlp_head(hidden, hidden, out_dim, dropout)

    def forward(self, x: dict[str, torch.Tensor], available: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.head(self.encoder(torch.cat([self.projections[m](x[m]) for m in self.modalities], dim=-1)))


@FUSERS.register("early")
class EarlyFusion(NeuralFuser):
    def __init__(self, modalities: list[str], hidden: int = 64, dropout: float = 0.3, input_dropout: float = 0.3,
                 loss: str = "l1", train_masking: float = 0.0, masked_as: str = "mean",
                 mask_validation: bool = False, monitor: str = "score", train: dict | None = None):
        super().__init__(modalities, hidden=hidden, dropout=dropout, input_dropout=input_dropout, loss=loss,
                         train_masking=train_masking, masked_as=masked_as,
                         mask_validation=mask_validation, monitor=monitor, train=train)

    def network(self, dims: dict[str, int], n_segments: int, out_dim: int) -> nn.Module:
        return EarlyFusionNet(dims, self.params["hidden"], out_dim, self.params["dropout"])
