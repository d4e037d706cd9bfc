"""Joint, task-aware training (IMDer's objective): an imputer and a fuser trained together.

Loss per batch = the fuser's task loss on the clips with missing modalities simulated (each (clip, modality) the
clip has dropped with probability ``drop``, every clip keeping one; :func:`remodiff.fusion.blocks.drop_modalities`)
and filled by the imputer's differentiable completion (``joint_fill``), + ``weight`` x the imputer's own training
loss on the batch (``joint_loss``). So the reconstructions are shaped by what the fuser needs, not only by their
squared error. Clips with natural gaps (``masks.train``) have them filled too, as at test time.

The imputer and the fuser share one standardisation (both fit the same statistics on the training clips), and the
fuser sees a completed clip as a reconstruction arrives at test time: every slot available. Early stopping follows
the fuser's validation score (accuracy / -MAE) on the validation clips plus a copy with modalities dropped at the
same rate (a fixed, seeded draw), completed by the imputer in eval mode with fixed noise. Afterwards each is an
ordinary fitted imputer and fuser: the imputer reconstructs the test clips with its sampling settings and the
fuser scores them.

An imputer takes part through four methods (``cvae``, ``gan`` and ``diffusion`` have them): ``joint_setup(train,
seed) -> module`` (its networks, built for ``train``), ``joint_loss(module, x, available)`` (its own objective on
standardised clips ``x [B, S, W]`` with ``available [B, S, M]``), ``joint_fill(module, x, keep, noise)`` (the
completion, differentiable) and ``joint_done(module, history, val)`` (keep the trained state).
"""
from __future__ import annotations

import dataclasses
import logging

import numpy as np
import torch
from torch.nn import functional as F

from remodiff.device import resolve_device
from remodiff.evaluation.aware import drop_mask
from remodiff.fusion.blocks import MASKING_SEED_OFFSET, NeuralFuser, batches, drop_modalities
from remodiff.standardise import Standardiser
from remodiff.store import FeatureSet, concatenate
from remodiff.training import History, fit, to_tensors

log = logging.getLogger(__name__)
JOINT_METHODS = ("joint_setup", "joint_loss", "joint_fill", "joint_done")


def joint_trainable(imputer) -> bool:
    return all(callable(getattr(imputer, name, None)) for name in JOINT_METHODS)


def clip_tensors(data: FeatureSet, scaler: Standardiser, modalities: list[str]) -> dict[str, np.ndarray]:
    """``x [N, S, W]`` standardised (0 where missing), ``available [N, S, M]``, ``y`` labels."""
    return {"x": scaler(data, modalities),
            "available": np.stack([data.available[m] for m in modalities], axis=-1).astype(np.float32),
            "y": data.labels}


def fit_joint(imputer, fuser: NeuralFuser, train: FeatureSet, val: FeatureSet | None, drop: float, weight: float,
              seed: int) -> History:
    """Train ``imputer`` (unfitted, :func:`joint_trainable`) and ``fuser`` (unfitted, neural) together; both are
    fitted afterwards. The loop's settings are the fuser's (its ``train`` section, ``seed``), its warm-up the longer of
    the two models' ``monitor_from``."""
    if not joint_trainable(imputer):
        raise ValueError(f"imputer {imputer.name!r} cannot be trained jointly (it has no {', '.join(JOINT_METHODS)})")
    if not isinstance(fuser, NeuralFuser):
        raise ValueError(f"fuser {fuser.name!r} has no network to train jointly: use early, late, transformer or mlp")
    modalities = list(fuser.modalities)
    dims = [train.features[m].shape[-1] for m in modalities]
    # the fuser's loop; the pair warms up as long as its imputer does (early epochs are never kept)
    cfg = dataclasses.replace(fuser.train_cfg, seed=seed,
                              monitor_from=max(fuser.train_cfg.monitor_from, imputer.train_cfg.monitor_from))
    device = resolve_device(cfg.device)
    module = imputer.joint_setup(train, seed)
    task = fuser.prepare(train)
    scaler = Standardiser.fit(train, modalities)  # the statistics the imputer's and the fuser's own scalers hold
    pair = torch.nn.ModuleDict({"imputer": module, "fuser": fuser.model}).to(device)
    masking = torch.Generator().manual_seed(seed + MASKING_SEED_OFFSET)
    p_input = fuser.params["input_dropout"]

    def completed(model: torch.nn.ModuleDict, batch: dict, keep: torch.Tensor, noise=None) -> dict:
        columns = torch.repeat_interleave(keep, torch.tensor(dims, device=keep.device), dim=-1)
        filled = imputer.joint_fill(model["imputer"], batch["x"] * columns, keep, noise)
        x = columns * batch["x"] + (1.0 - columns) * filled
        return dict(zip(modalities, torch.split(x, dims, dim=-1)))

    def predict(model: torch.nn.ModuleDict, batch: dict, keep: torch.Tensor, noise=None) -> torch.Tensor:
        x = completed(model, batch, keep, noise)
        if model.training and p_input > 0:
            x = {m: F.dropout(v, p_input) for m, v in x.items()}
        every = {m: torch.ones(v.shape[:2], dtype=torch.bool, device=v.device) for m, v in x.items()}
        return model["fuser"](x, every)

    def loss_fn(model: torch.nn.ModuleDict, batch: dict) -> torch.Tensor:
        if not model.training:
            return fuser.output.loss(predict(model, batch, batch["keep"], torch.Generator().manual_seed(seed)),
                                     batch["y"])
        available = {m: batch["available"][..., j].bool() for j, m in enumerate(modalities)}
        _, kept = drop_modalities({m: batch["x"][..., :1] for m in modalities}, available, drop, masking, "missing")
        keep = torch.stack([kept[m] for m in modalities], dim=-1).float()
        task_loss = fuser.output.loss(predict(model, batch, keep), batch["y"])
        return task_loss + weight * imputer.joint_loss(model["imputer"], batch["x"], batch["available"])

    monitored = None
    if val is not None and len(val):
        # the validation clips as given plus a copy that lost modalities at the training rate (fixed draw)
        arrays = clip_tensors(concatenate([val, val]), scaler, modalities)
        kept = concatenate([val, val.with_mask(drop_mask(val, drop, seed))])
        arrays["keep"] = np.stack([kept.available[m] for m in modalities], axis=-1).astype(np.float32)
        monitored = to_tensors(arrays, device)

    def val_score(model: torch.nn.ModuleDict) -> float:
        raw = torch.cat([predict(model, b, b["keep"], torch.Generator().manual_seed(seed))
                         for b in batches(monitored, 512)])
        return fuser.output.score(raw, monitored["y"])

    log.info("joint training of %s and fuser %s: %d clips, drop %g, weight %g", imputer.name, fuser.name, len(train),
             drop, weight)
    history = fit(pair, loss_fn, to_tensors(clip_tensors(train, scaler, modalities), device), monitored, cfg,
                  desc=f"joint {imputer.name}+{fuser.name}", after_step=getattr(module, "update", None),
                  val_score=val_score if monitored is not None else None)
    pair.cpu().eval()
    imputer.joint_done(pair["imputer"], history, val)
    fuser.model = pair["fuser"]
    if val is not None and len(val):
        fuser.validation_scores = task.clip_scores(fuser.predict(imputer.impute(val)), val.labels)
    return history
