"""Late fusion: one LSTM over segments and one MLP head per modality, their outputs combined per clip.

``combine: mean`` weighs the modalities equally, ``combine: learned`` by softmax weights learned with the rest.
Either way only the modalities a clip has (available in some segment) are combined, the weights renormalised
over them, so a clip missing a modality is predicted from the others.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

from remodiff.fusion.base import FUSERS
from remodiff.fusion.blocks import NeuralFuser, SegmentLSTM, mlp_head

COMBINE = ("mean", "learned")


class LateFusionNet(nn.Module):
    def __init__(self, dims: dict[str, int], hidden: int, out_dim: int, dropout: float, learned: bool):
        super().__init__()
        self.modalities = list(dims)
        self.encoders = nn.ModuleDict({m: SegmentLSTM(d, hidden) for m, d in dims.items()})
        self.heads = nn.ModuleDict({m: mlp_head(hidden, hidden, out_dim, dropout) for m in dims})
        logits = torch.zeros(len(dims))
        if learned:
            self.weight_logits = nn.Parameter(logits)
        else:
            self.register_buffer("weight_logits", logits)

    def forward(self, x: dict[str, torch.Tensor], available: dict[str, torch.Tensor]) -> torch.Tensor:
        outputs = torch.stack([self.heads[m](self.encoders[m](x[m])) for m in self.modalities], dim=1)  # [B, M, O]
        present = torch.stack([available[m].any(dim=1) for m in self.modalities], dim=1)  # [B, M]
        present = present | ~present.any(dim=1, keepdim=True)  # a clip with nothing present: combine them all
        logits = self.weight_logits.expand(present.shape).masked_fill(~present, float("-inf"))
        weights = torch.softmax(logits, dim=1)
        return (weights[..., None] * outputs).sum(dim=1)


@FUSERS.register("late")
class LateFusion(NeuralFuser):
    def __init__(self, modalities: list[str], hidden: int = 64, dropout: float = 0.3, input_dropout: float = 0.3,
                 loss: str = "l1", combine: str = "mean", train_masking: float = 0.0, masked_as: str = "mean",
                 mask_validation: bool = False, monitor: str = "score",
                 train: dict | None = None):
        if combine not in COMBINE:
            raise ValueError(f"late fusion combine {combine!r}; valid values: {', '.join(COMBINE)}")
        super().__init__(modalities, hidden=hidden, dropout=dropout, input_dropout=input_dropout, loss=loss,
                         train_masking=train_masking, masked_as=masked_as,
                         mask_validation=mask_validation, monitor=monitor, train=train, combine=combine)

    def network(self, dims: dict[str, int], n_segments: int, out_dim: int) -> nn.Module:
        return LateFusionNet(dims, self.params["hidden"], out_dim, self.params["dropout"],
                             learned=self.params["combine"] == "learned")

    def combination_weights(self) -> dict[str, float]:
        """Each modality's weight for a clip that has all of them (sums to 1)."""
        if self.model is None:
            raise RuntimeError("late fusion is not fitted")
        weights = torch.softmax(self.model.weight_logits.detach(), dim=0).numpy().astype(np.float64)
        return dict(zip(self.modalities, weights.tolist()))
