"""Scaling out the shared training loop: through 🤗 Accelerate, without it, mixed precision, histories written by the
main process only (sharded extraction and DVC remotes: tests/pipeline/test_scale_out.py)."""
from __future__ import annotations

import logging
import sys

import numpy as np
import pytest
import torch

from remodiff import device, training
from remodiff.device import precision_supported
from remodiff.fusion import build_fuser
from remodiff.imputers import build_imputer
from remodiff.training import TrainConfig
from tests.conftest import toy_featureset

pytestmark = pytest.mark.slow  # scale-out runs: `pytest -m "not slow"` leaves them out


def train_models() -> dict[str, dict]:
    """A fuser and the two imputers that train through the shared loop's own step, trained for a few epochs."""
    train, val = toy_featureset(30, seed=0), toy_featureset(10, seed=1)
    small = {"epochs": 3, "batch_size": 8}  # 30 clips: a partial last batch every epoch
    fuser = build_fuser("early", train.modalities, {"hidden": 8, "train": small})
    fuser.fit(train, val)
    cvae = build_imputer("cvae", {"hidden": 8, "latent": 2, "train": small})
    cvae.fit(train, val, seed=3)
    diffusion = build_imputer("diffusion", {"hidden": 8, "layers": 1, "train": small})
    diffusion.fit(train, val, seed=3)
    return {"fuser": fuser.model.state_dict(), "cvae": cvae.generator.state_dict(),
            "diffusion": diffusion.model.state_dict(), "histories": [cvae.history, diffusion.history]}


def test_one_process_accelerate_path_is_bit_identical_to_the_plain_loop(monkeypatch):
    pytest.importorskip("accelerate")
    through_accelerate = train_models()
    monkeypatch.setattr(training, "make_accelerator", lambda cfg, device: None)
    plain = train_models()
    assert through_accelerate["histories"] == plain["histories"]
    for name in ("fuser", "cvae", "diffusion"):
        assert through_accelerate[name].keys() == plain[name].keys()
        for key, value in plain[name].items():
            assert torch.equal(through_accelerate[name][key], value), (name, key)


def test_loop_works_without_accelerate_and_refuses_what_needs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # as if not installed: importing it raises ImportError
    model = torch.nn.Linear(3, 1)
    data = {"x": torch.randn(20, 3), "y": torch.randn(20, 1)}

    def loss_fn(m, batch):
        return ((m(batch["x"]) - batch["y"]) ** 2).mean()

    history = training.fit(model, loss_fn, data, data, TrainConfig(epochs=3, batch_size=8))
    assert len(history) == 3 and history[-1]["val_loss"] < history[0]["val_loss"]
    with pytest.raises(RuntimeError, match="scale"):
        training.fit(model, loss_fn, data, None, TrainConfig(epochs=1, precision="bf16"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="scale"):
        training.fit(model, loss_fn, data, None, TrainConfig(epochs=1))


def fit_bf16_fuser(monkeypatch, caplog) -> str:
    """Fits a fuser with ``precision: bf16`` on the CPU; returns the mixed precision Accelerate trained with."""
    used = []

    def spy(cfg, device):
        accelerator = make_accelerator(cfg, device)
        used.append(accelerator.mixed_precision)
        return accelerator

    make_accelerator = training.make_accelerator
    monkeypatch.setattr(training, "make_accelerator", spy)
    train, val = toy_featureset(20, seed=0), toy_featureset(8, seed=1)
    fuser = build_fuser("early", train.modalities, {"hidden": 8, "train": {"epochs": 2, "precision": "bf16",
                                                                           "device": "cpu"}})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="remodiff.device"):
        fuser.fit(train, val)
    # the weights stay float32 and the forward plain afterwards
    assert all(p.dtype == torch.float32 for p in fuser.model.parameters())
    assert np.all(np.isfinite(fuser.predict(val)))
    return used[0]


def test_mixed_precision_is_a_validated_training_param(monkeypatch, caplog):
    pytest.importorskip("accelerate")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig.from_params({"precision": "fp8"})
    # bf16 autocast where this CPU runs it natively; elsewhere (e.g. no AVX512-BF16: oneDNN has no bf16 LSTM)
    # a logged fallback to fp32
    native = precision_supported("bf16", torch.device("cpu"))
    assert fit_bf16_fuser(monkeypatch, caplog) == ("bf16" if native else "no")
    assert ("falling back to fp32" in caplog.text) is not native
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)  # the fallback, whatever this CPU is
    assert fit_bf16_fuser(monkeypatch, caplog) == "no"
    assert "training: precision bf16 is not supported on cpu (no native bf16 on this CPU)" in caplog.text


def test_only_the_main_process_writes_histories(tmp_path, monkeypatch):
    data = {"x": torch.randn(8, 2), "y": torch.randn(8, 1)}
    monkeypatch.setattr(training, "make_accelerator", lambda cfg, device: None)
    monkeypatch.setenv("RANK", "1")
    training.fit(torch.nn.Linear(2, 1), lambda m, b: ((m(b["x"]) - b["y"]) ** 2).mean(), data, None,
                 TrainConfig(epochs=1), history_path=tmp_path / "history.json")
    assert not (tmp_path / "history.json").exists()
