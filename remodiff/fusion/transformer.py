"""Transformer fusion: one token per (modality, segment), self-attention across all of them, pooled, MLP head.

A token is the segment's standardised features through a per-modality linear projection, plus a learned
modality embedding and a learned segment embedding. Unavailable tokens are left out of attention
(``src_key_padding_mask``) and of the pooling, so the fuser runs natively on incomplete data.
"""
from __future__ import annotations

import torch
from torch import nn

from remodiff.fusion.base import FUSERS
from remodiff.fusion.blocks import NeuralFuser, mlp_head


class TransformerFusionNet(nn.Module):
    def __init__(self, dims: dict[str, int], n_segments: int, width: int, heads: int, layers: int,
                 feedforward: int, out_dim: int, dropout: float):
        super().__init__()
        self.modalities = list(dims)
        self.projections = nn.ModuleDict({m: nn.Linear(d, width) for m, d in dims.items()})
        self.modality_embedding = nn.Parameter(0.02 * torch.randn(len(dims), width))
        self.segment_embedding = nn.Parameter(0.02 * torch.randn(n_segments, width))
        layer = nn.TransformerEncoderLayer(width, heads, feedforward, dropout, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, layers, norm=nn.LayerNorm(width), enable_nested_tensor=False)
        self.head = mlp_head(width, width, out_dim, dropout)

    def forward(self, x: dict[str, torch.Tensor], available: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = torch.cat([self.projections[m](x[m]) + self.modality_embedding[j] + self.segment_embedding
                            for j, m in enumerate(self.modalities)], dim=1)  # [B, M * S, width]
        valid = torch.cat([available[m] for m in self.modalities], dim=1)  # [B, M * S]
        # a clip without any available token attends to all of them (zeros = the training mean) instead of none
        valid = valid | ~valid.any(dim=1, keepdim=True)
        encoded = self.encoder(tokens, src_key_padding_mask=~valid)
        weights = valid.to(encoded.dtype)[..., None]
        return self.head((encoded * weights).sum(dim=1) / weights.sum(dim=1))


@FUSERS.register("transformer")
class TransformerFusion(NeuralFuser):
    def __init__(self, modalities: list[str], hidden: int = 64, heads: int = 4, layers: int = 2,
                 feedforward: int = 128, dropout: float = 0.3, input_dropout: float = 0.3, loss: str = "l1",
                 train_masking: float = 0.0, masked_as: str = "mean",
                 mask_validation: bool = False, monitor: str = "score", train: dict | None = None):
        if heads < 1 or hidden % heads:
            raise ValueError(f"transformer fusion needs hidden ({hidden}) divisible by heads ({heads})")
        if layers < 1 or feedforward < 1:
            raise ValueError(f"transformer fusion needs layers >= 1 and feedforward >= 1, got {layers}, {feedforward}")
        super().__init__(modalities, hidden=hidden, dropout=dropout, input_dropout=input_dropout, loss=loss,
                         train_masking=train_masking, masked_as=masked_as,
                         mask_validation=mask_validation, monitor=monitor, train=train, heads=heads, layers=layers,
                         feedforward=feedforward)

    def network(self, dims: dict[str, int], n_segments: int, out_dim: int) -> nn.Module:
        p = self.params
        return TransformerFusionNet(dims, n_segments, p["hidden"], p["heads"], p["layers"], p["feedforward"],
                                    out_dim, p["dropout"])
