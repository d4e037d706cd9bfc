"""The one training loop and the one batching utility, shared by every neural imputer and fuser.

Seeded, device-agnostic (CUDA when present), early stopping on the validation loss with the best
weights restored, a tqdm bar over epochs and a per-epoch loss history written for ``dvc plots``.
"""
from __future__ import annotations

import copy
import logging
import random
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from remodiff.store import write_json_atomic

log = logging.getLogger(__name__)
Batch = dict[str, torch.Tensor]


@dataclass
class TrainConfig:
    epochs: int = 100
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.0
    patience: int = 10
    device: str = "auto"
    seed: int = 0
    # Intra-op CPU threads. The models here are small: one thread avoids thread-sync overhead that made
    # training 5x slower with two (measured on 2 cores); 0 keeps torch's default.
    cpu_threads: int = 1

    @classmethod
    def from_params(cls, params: Mapping) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown training params {unknown}; valid: {sorted(known)}")
        return cls(**params)


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for but CUDA is not available")
    return torch.device(name)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def to_tensors(arrays: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> Batch:
    return {k: torch.as_tensor(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}


def batches(data: Batch, batch_size: int, shuffle: bool = False,
            generator: torch.Generator | None = None) -> Iterator[Batch]:
    """Yield dicts of aligned row slices of ``data`` (all tensors share their first dimension)."""
    n = len(next(iter(data.values())))
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    for start in range(0, n, batch_size):
        idx = order[start:start + batch_size].to(next(iter(data.values())).device)
        yield {k: v[idx] for k, v in data.items()}


def fit(model: nn.Module, loss_fn: Callable[[nn.Module, Batch], torch.Tensor], train: Batch,
        val: Batch | None, cfg: TrainConfig, history_path: str | Path | None = None,
        step: Callable[[Batch, int], dict[str, float]] | None = None, desc: str = "train",
        after_step: Callable[[], None] | None = None) -> list[dict]:
    """Train ``model`` on tensors ``train`` (already on the model's device) and return the loss history.

    ``loss_fn(model, batch)`` gives the loss to minimise (and the validation loss). Models that need more
    than one optimiser (GANs) pass ``step(batch, epoch) -> {name: value}`` instead, which does its own
    updates; the loop still batches, validates, stops early and logs. ``after_step()`` runs after every
    training step (e.g. to update an exponential moving average of the weights).
    """
    generator = seed_everything(cfg.seed)
    if cfg.cpu_threads > 0 and next(iter(train.values())).device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads)
    optimizer = None
    if step is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

        def step(batch: Batch, epoch: int) -> dict[str, float]:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model, batch)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            return {"loss": float(loss.detach())}

    history: list[dict] = []
    best, best_state, waited = float("inf"), None, 0
    bar = tqdm(range(cfg.epochs), desc=desc, leave=False)
    for epoch in bar:
        model.train()
        totals: dict[str, float] = {}
        count = 0
        for batch in batches(train, cfg.batch_size, shuffle=True, generator=generator):
            n = len(next(iter(batch.values())))
            for k, v in step(batch, epoch).items():
                totals[k] = totals.get(k, 0.0) + v * n
            if after_step is not None:
                after_step()
            count += n
        row = {"epoch": epoch, **{f"train_{k}": v / count for k, v in totals.items()}}
        if val is not None:
            row["val_loss"] = evaluate_loss(model, loss_fn, val, cfg.batch_size)
        history.append(row)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "epoch"})
        monitored = row.get("val_loss", row.get("train_loss", 0.0))
        if monitored < best - 1e-6:
            best, best_state, waited = monitored, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= cfg.patience:
                log.info("%s: early stop at epoch %d (best %.5g)", desc, epoch, best)
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    model.eval()
    if history_path is not None:
        write_json_atomic(history_path, history)
    log.info("%s: %d epochs, best monitored loss %.5g", desc, len(history), best)
    return history


@torch.no_grad()
def evaluate_loss(model: nn.Module, loss_fn: Callable[[nn.Module, Batch], torch.Tensor], data: Batch,
                  batch_size: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for batch in batches(data, batch_size):
        n = len(next(iter(batch.values())))
        total += float(loss_fn(model, batch)) * n
        count += n
    return total / max(count, 1)


