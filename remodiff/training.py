"""The one training loop and the one batching utility, shared by every neural imputer and fuser.

Seeded, device-agnostic (CUDA when present), early stopping with the best weights restored, a tqdm bar over
epochs and a per-epoch history written for ``dvc plots``. Early stopping watches a validation *score* where the
caller gives one (``val_score(model)``, higher is better: a fuser's accuracy or -MAE, since the validation loss
of a classifier bottoms out epochs before its accuracy does), else the validation loss (else the training loss);
it never stops before ``min_epochs``, and epochs before ``monitor_from`` are warm-up, never kept. ``schedule`` sets the learning rate per epoch: constant, cosine (annealed
to 0 over ``epochs``) or plateau (halved after ``patience // 2`` epochs without improvement).

Scaling out goes through 🤗 Accelerate (the optional ``scale`` extra), which the loop uses when it is installed:
under ``accelerate launch`` / ``torchrun`` (N processes) the loss is computed inside a DDP-wrapped module, each
process trains on its shard of every epoch's batches (Accelerate's ``BatchSamplerShard`` over the one seeded
permutation), losses are summed over processes and only the main process writes; ``precision`` picks mixed
precision, which falls back to fp32 with a logged warning where the device cannot run it natively (bf16 on a CPU
without native bf16, fp16 on any CPU; :mod:`remodiff.device`). With one process and fp32 the Accelerate path does
exactly what the plain loop does.
"""
from __future__ import annotations

import copy
import logging
import random
from contextlib import nullcontext
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler

from remodiff.device import check_precision_name, usable_precision
from remodiff.launch import is_main_process, launched_processes
from remodiff.progress import progress
from remodiff.store import write_json_atomic

log = logging.getLogger(__name__)
Batch = dict[str, torch.Tensor]
ACCELERATE_PRECISION = {"fp32": "no", "fp16": "fp16", "bf16": "bf16"}  # TrainConfig.precision -> Accelerate's name
SCHEDULES = ("constant", "cosine", "plateau")


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
    # fp32, or Accelerate's mixed precision (autocast; fp16 adds loss scaling): fp16 | bf16; where the device
    # cannot run it natively, training falls back to fp32 with a warning (remodiff.device.usable_precision)
    precision: str = "fp32"
    # no early stop before this many epochs (the best epoch is still picked from all of them)
    min_epochs: int = 0
    # epochs before this one are warm-up: never kept as the best model, not counted for patience (Keras's
    # start_from_epoch): a validation criterion on a few dozen clips can favour an epoch-1 model by chance
    monitor_from: int = 0
    # the learning rate per epoch: constant | cosine | plateau (SCHEDULES)
    schedule: str = "constant"

    def __post_init__(self) -> None:
        check_precision_name(self.precision, "training precision")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"training schedule {self.schedule!r}; valid values: {', '.join(SCHEDULES)}")
        for name in ("min_epochs", "monitor_from"):
            if getattr(self, name) < 0:
                raise ValueError(f"training {name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def from_params(cls, params: Mapping) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(params) - known)
        if unknown:
            raise ValueError(f"unknown training params {unknown}; valid: {sorted(known)}")
        return cls(**params)


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def to_tensors(arrays: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> Batch:
    return {k: torch.as_tensor(np.ascontiguousarray(v)).to(device) for k, v in arrays.items()}


class History(list):
    """The per-epoch rows of one :func:`fit` (a plain list to JSON), plus what the run amounted to:
    ``best_epoch`` (the epoch whose weights were restored; -1 if none was) and ``epoch_cap`` (``cfg.epochs``)."""

    def __init__(self, rows=(), best_epoch: int = -1, epoch_cap: int = 0):
        super().__init__(rows)
        self.best_epoch, self.epoch_cap = best_epoch, epoch_cap

    def summary(self, criterion: str) -> dict:
        """``{epochs, best_epoch, epoch_cap, criterion}``: what an imputer reports as its ``fit_summary``."""
        return {"epochs": len(self), "best_epoch": self.best_epoch, "epoch_cap": self.epoch_cap,
                "criterion": criterion}


def batches(data: Batch, batch_size: int) -> Iterator[Batch]:
    """Yield dicts of aligned row slices of ``data`` (all tensors share their first dimension), in order."""
    n = len(next(iter(data.values())))
    for start in range(0, n, batch_size):
        yield {k: v[start:start + batch_size] for k, v in data.items()}


class TrainingLoss(nn.Module):
    """``loss_fn(model, batch)`` as a module, so that DDP wraps the whole loss computation: gradients are
    synchronised even when the loss calls model methods other than ``forward`` (``denoise``, ``posterior``)."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[nn.Module, Batch], torch.Tensor]):
        super().__init__()
        self.model, self.loss_fn = model, loss_fn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self.loss_fn(self.model, batch)


def make_accelerator(cfg: TrainConfig, device: torch.device):
    """An ``accelerate.Accelerator`` for ``device`` and ``cfg.precision`` (fp32 where ``device`` cannot run it), or
    None where Accelerate is not installed (then the loop runs on one process in fp32, and refuses anything else)."""
    try:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState
    except ImportError:
        if cfg.precision != "fp32" or launched_processes()[1] > 1:
            raise RuntimeError(f"precision {cfg.precision} / {launched_processes()[1]} processes need 🤗 Accelerate: "
                               "pip install 'remodiff[scale]'") from None
        return None
    mixed, cpu = ACCELERATE_PRECISION[usable_precision(cfg.precision, device, "training")], device.type == "cpu"
    state = AcceleratorState._shared_state
    if state and launched_processes()[1] == 1 and (state["_mixed_precision"] != mixed or state["_cpu"] != cpu):
        # Accelerate keeps one process-wide state; a single process may train models with other settings in turn
        AcceleratorState._reset_state(reset_partial_state=True)
    return Accelerator(cpu=cpu, mixed_precision=mixed)


def fit(model: nn.Module, loss_fn: Callable[[nn.Module, Batch], torch.Tensor], train: Batch,
        val: Batch | None, cfg: TrainConfig, history_path: str | Path | None = None,
        step: Callable[[Batch, int], dict[str, float]] | None = None, desc: str = "train",
        after_step: Callable[[], None] | None = None,
        val_score: Callable[[nn.Module], float] | None = None) -> History:
    """Train ``model`` on tensors ``train`` (already on the model's device) and return the :class:`History`.

    ``loss_fn(model, batch)`` gives the loss to minimise (and the validation loss). Models that need more
    than one optimiser (GANs) pass ``step(batch, epoch) -> {name: value}`` instead, which does its own
    updates; the loop still batches, validates, stops early and logs. Such a step is not data-parallel: under
    N processes each one trains on all the data. ``after_step()`` runs after every training step (e.g. to
    update an exponential moving average of the weights). ``val_score(model) -> float`` (higher is better), run
    in eval mode after every epoch, is what early stopping and the restored weights follow where ``val`` is given.
    History rows: ``epoch``, ``train_<loss>``, ``val_loss`` and ``val_score`` where there is a ``val``.
    """
    generator = seed_everything(cfg.seed)
    device = next(iter(train.values())).device
    if cfg.cpu_threads > 0 and device.type == "cpu":
        torch.set_num_threads(cfg.cpu_threads)
    accelerator = make_accelerator(cfg, device)
    data_parallel = accelerator is not None and step is None
    if accelerator is not None and step is not None and accelerator.num_processes > 1:
        log.warning("%s: a custom training step is not data-parallel; each of the %d processes trains on all data",
                    desc, accelerator.num_processes)
    processes = accelerator.num_processes if data_parallel else 1
    rank = accelerator.process_index if data_parallel else 0
    if processes > 1:
        # the batch order stays shared (``generator``); the noise drawn inside losses differs between processes
        torch.manual_seed(cfg.seed + rank)
    autocast = accelerator.autocast if accelerator is not None else nullcontext
    scheduler = None
    if step is None:
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        scheduler = make_scheduler(optimizer, cfg)
        training_loss = TrainingLoss(model, loss_fn)
        if accelerator is not None:
            training_loss, optimizer = accelerator.prepare(training_loss, optimizer)

        def step(batch: Batch, epoch: int) -> dict[str, float]:
            optimizer.zero_grad(set_to_none=True)
            loss = training_loss(batch)
            if accelerator is None:
                loss.backward()
                nn.utils.clip_grad_norm_(model.parameters(), 5.0)
            else:
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(model.parameters(), 5.0)
            optimizer.step()
            return {"loss": float(loss.detach())}
    elif cfg.schedule != "constant":
        raise ValueError(f"{desc}: a custom training step owns its optimisers; schedule {cfg.schedule!r} needs the "
                         "loop's own (use schedule: constant)")

    history = History(epoch_cap=cfg.epochs)
    scored = val is not None and val_score is not None
    best, best_epoch, best_state, waited = -float("inf"), -1, None, 0
    n_train = len(next(iter(train.values())))
    bar = progress(range(cfg.epochs), desc=desc, leave=False, disable=rank > 0)
    for epoch in bar:
        model.train()
        totals: dict[str, float] = {}
        count = 0
        order = BatchSampler(torch.randperm(n_train, generator=generator).tolist(), cfg.batch_size, drop_last=False)
        if data_parallel:
            from accelerate.data_loader import BatchSamplerShard

            # every process sees its own batches of the one seeded permutation, as many on each (DDP steps together)
            order = BatchSamplerShard(order, processes, rank, even_batches=processes > 1)
        for indices in order:
            batch = {k: v[torch.as_tensor(indices, device=device)] for k, v in train.items()}
            n = len(indices)
            with autocast():
                losses = step(batch, epoch)
            for k, v in losses.items():
                totals[k] = totals.get(k, 0.0) + v * n
            if after_step is not None:
                after_step()
            count += n
        if processes > 1:
            totals, count = sum_over_processes(accelerator, totals, count)
        row = {"epoch": epoch, **{f"train_{k}": v / count for k, v in totals.items()}}
        if val is not None:
            with autocast():
                row["val_loss"] = evaluate_loss(model, loss_fn, val, cfg.batch_size,
                                                accelerator if processes > 1 else None)
                if scored:
                    model.eval()
                    with torch.no_grad():
                        row["val_score"] = float(val_score(model))
        history.append(row)
        bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "epoch"})
        # higher is better: the score, or the negated loss
        monitored = row["val_score"] if scored else -row.get("val_loss", row.get("train_loss", 0.0))
        if cfg.schedule == "plateau":
            scheduler.step(monitored)
        elif scheduler is not None:
            scheduler.step()
        if epoch < cfg.monitor_from:
            continue  # warm-up: not a candidate for the kept model, not counted for patience
        if monitored > best + 1e-6:
            best, best_epoch, best_state, waited = monitored, epoch, copy.deepcopy(model.state_dict()), 0
        else:
            waited += 1
            if waited >= cfg.patience and epoch + 1 >= cfg.min_epochs:
                log.info("%s: early stop at epoch %d", desc, epoch)
                break
    if data_parallel:
        accelerator.unwrap_model(training_loss, keep_fp32_wrapper=False)  # restores the plain forward
    if best_state is not None:
        model.load_state_dict(best_state)
    else:  # every epoch was warm-up: the last model is kept
        best_epoch = len(history) - 1
    history.best_epoch = best_epoch
    model.eval()
    if history_path is not None and is_main_process():
        write_json_atomic(history_path, history)
    log.info("%s: %d epochs, best epoch %d (%s %.5g)", desc, len(history), best_epoch,
             "val score" if scored else "loss", best if scored else -best)
    return history


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig):
    """The per-epoch learning-rate schedule of ``cfg.schedule`` (None for constant)."""
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(cfg.epochs, 1))
    if cfg.schedule == "plateau":
        # stepped with the monitored value, which is always higher-is-better here
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                          patience=max(cfg.patience // 2, 1))
    return None


def sum_over_processes(accelerator, totals: dict[str, float], count: int) -> tuple[dict[str, float], int]:
    """Per-sample loss sums and sample counts added up over the processes (every process gets the result)."""
    summed = accelerator.reduce(torch.tensor([*totals.values(), count], dtype=torch.float64,
                                             device=accelerator.device), reduction="sum").tolist()
    return dict(zip(totals, summed[:-1])), int(summed[-1])


@torch.no_grad()
def evaluate_loss(model: nn.Module, loss_fn: Callable[[nn.Module, Batch], torch.Tensor], data: Batch,
                  batch_size: int, accelerator=None) -> float:
    """Mean loss over ``data``; with a multi-process ``accelerator`` each process takes every N-th batch and the
    sums are added up, so every process gets the same value (and stops early at the same epoch)."""
    model.eval()
    rank, processes = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
    totals, count = {"loss": 0.0}, 0
    for i, batch in enumerate(batches(data, batch_size)):
        if i % processes != rank:
            continue
        n = len(next(iter(batch.values())))
        totals["loss"] += float(loss_fn(model, batch)) * n
        count += n
    if processes > 1:
        totals, count = sum_over_processes(accelerator, totals, count)
    return totals["loss"] / max(count, 1)


