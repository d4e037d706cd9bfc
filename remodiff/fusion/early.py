"""Early fusion: per segment, concatenate the standardised modalities, run an LSTM over segments, MLP head."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from remodiff.fusion.base import FUSERS, Fuser
from remodiff.scaling import Standardiser
from remodiff.store import FeatureSet
from remodiff.training import TrainConfig, fit, resolve_device, seed_everything, to_tensors


class LSTMRegressor(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, hidden: int, dropout: float):
        super().__init__()
        self.lstm = nn.LSTM(in_dim, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(x)
        return self.head(out.mean(dim=1))


@FUSERS.register("early")
class EarlyFusion(Fuser):
    name = "early"

    def __init__(self, modalities: list[str], hidden: int = 64, dropout: float = 0.1, loss: str = "l1",
                 train: dict | None = None):
        if loss not in ("l1", "mse"):
            raise ValueError(f"fuser loss {loss!r}; valid values: l1, mse")
        super().__init__(modalities, hidden=hidden, dropout=dropout, loss=loss, train=train or {})
        self.train_cfg = TrainConfig.from_params(train or {})
        self.model: LSTMRegressor | None = None

    def _build(self, in_dim: int, out_dim: int) -> None:
        seed_everything(self.train_cfg.seed)
        self.in_dim, self.out_dim = in_dim, out_dim
        self.model = LSTMRegressor(in_dim, out_dim, self.params["hidden"], self.params["dropout"])

    def fit(self, train: FeatureSet, val: FeatureSet | None, history_path: str | Path | None = None) -> None:
        self.check(train)
        self.scaler = Standardiser.fit(train, self.modalities)
        x = self.scaler(train, self.modalities)
        self.label_mean = train.labels.mean(axis=0)
        self._build(x.shape[-1], train.labels.shape[1])
        device = resolve_device(self.train_cfg.device)
        self.model.to(device)
        criterion = nn.L1Loss() if self.params["loss"] == "l1" else nn.MSELoss()

        def loss_fn(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
            return criterion(model(batch["x"]) + batch["offset"], batch["y"])

        def tensors(data: FeatureSet) -> dict[str, torch.Tensor]:
            offset = np.broadcast_to(self.label_mean, data.labels.shape).astype(np.float32)
            return to_tensors({"x": self.scaler(data, self.modalities), "y": data.labels, "offset": offset}, device)

        fit(self.model, loss_fn, tensors(train), tensors(val) if val is not None else None, self.train_cfg,
            history_path=history_path, desc="fuser")
        self.model.cpu()

    @torch.no_grad()
    def predict(self, data: FeatureSet) -> np.ndarray:
        self.check(data)
        self.model.eval()
        x = torch.as_tensor(self.scaler(data, self.modalities))
        return (self.model(x).numpy() + self.label_mean).astype(np.float32)

    def state_dict(self) -> dict:
        return {"in_dim": self.in_dim, "out_dim": self.out_dim, "model": self.model.state_dict(),
                "scaler": (self.scaler.mean, self.scaler.std), "label_mean": self.label_mean}

    def load_state_dict(self, state: dict) -> None:
        self._build(state["in_dim"], state["out_dim"])
        self.model.load_state_dict(state["model"])
        self.model.eval()
        self.scaler = Standardiser(*state["scaler"])
        self.label_mean = state["label_mean"]
