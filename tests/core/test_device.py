"""Device and precision resolution (remodiff.device), shared by the training loop, the extractors and the ASR."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from remodiff import device as devices
from remodiff.data import asr
from remodiff.device import cpu_bf16_trial_runs, cpu_has_native_bf16, resolve_device, usable_precision
from remodiff.features.deep import TorchExtractor
from remodiff.fusion import blocks
from remodiff.imputers import diffusion, mask_conditioned

CPU = torch.device("cpu")


class Probe(TorchExtractor):
    """The model backends' shared base, without a model."""

    modality = "audio"
    dim = 1

    def extract_batch(self, clips):
        return [np.zeros((len(clip.audio), 1), np.float32) for clip in clips]


def fake_gpus(monkeypatch, count: int, capability: tuple[int, int] = (9, 0)) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)


@pytest.mark.parametrize("rank", [0, 1, 2])
def test_each_launched_process_uses_its_own_gpu(monkeypatch, rank: int):
    """As under `accelerate launch` / torchrun with 3 processes on a machine of 3 GPUs."""
    fake_gpus(monkeypatch, 3)
    for name, value in (("RANK", rank), ("LOCAL_RANK", rank), ("WORLD_SIZE", 3)):
        monkeypatch.setenv(name, str(value))
    own = torch.device("cuda", rank)
    assert resolve_device("auto") == own and resolve_device("cuda") == own
    assert resolve_device("cuda:0") == torch.device("cuda", 0)  # an explicit GPU stays what it says
    assert Probe(device="auto").device == own and Probe(device="cuda").device == own  # every model extractor
    # the trainers (fusers, imputers) and the ASR resolve their `device` through the same function
    for module in (blocks, diffusion, mask_conditioned, asr):
        assert module.resolve_device("auto") == own, module.__name__


def test_device_without_cuda_and_bad_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert resolve_device("auto") == CPU and Probe(device="auto").device == CPU
    for module in (blocks, diffusion, mask_conditioned, asr):
        assert module.resolve_device("auto") == CPU
    with pytest.raises(ValueError, match="'cuda:1'.*CUDA is not available"):
        resolve_device("cuda:1")
    with pytest.raises(ValueError, match="'gpu' is not a torch device"):
        resolve_device("gpu")
    fake_gpus(monkeypatch, 1)
    with pytest.raises(ValueError, match="LOCAL_RANK=1 has no GPU of its own"):
        resolve_device("auto")
    with pytest.raises(ValueError, match="1 GPU"):
        resolve_device("cuda:3")


def test_precision_on_cuda_follows_the_compute_capability(monkeypatch, caplog):
    gpu = torch.device("cuda", 0)
    fake_gpus(monkeypatch, 1, capability=(7, 0))
    assert usable_precision("fp16", gpu) == "fp16" and usable_precision("fp32", gpu) == "fp32"
    with caplog.at_level(logging.WARNING, logger="remodiff.device"):
        assert usable_precision("bf16", gpu, "training") == "fp32"
    assert "training: precision bf16 is not supported" in caplog.text and "capability 8.0" in caplog.text
    fake_gpus(monkeypatch, 1, capability=(8, 0))
    assert usable_precision("bf16", gpu) == "bf16"


def test_precision_on_this_cpu_follows_its_native_bf16(monkeypatch, caplog):
    native = cpu_has_native_bf16() and cpu_bf16_trial_runs()
    with caplog.at_level(logging.WARNING, logger="remodiff.device"):
        assert usable_precision("bf16", CPU) == ("bf16" if native else "fp32")
        assert ("falling back to fp32" in caplog.text) is not native
        caplog.clear()
        assert usable_precision("fp16", CPU) == "fp32"  # never on a CPU
        assert "precision fp16 is not supported on cpu" in caplog.text
        caplog.clear()
        monkeypatch.setattr(devices, "cpu_has_native_bf16", lambda: False)  # as on a CPU without AVX512-BF16
        assert usable_precision("bf16", CPU) == "fp32" and "no native bf16 on this CPU" in caplog.text
    with pytest.raises(ValueError, match="precision 'fp8'"):
        usable_precision("fp8", CPU)


def test_bf16_trial_catches_missing_kernels_and_keeps_the_random_state(monkeypatch):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    cpu_bf16_trial_runs.__wrapped__()  # uncached
    assert torch.equal(torch.rand(3), expected)

    def no_bf16_lstm(*args, **kwargs):  # what oneDNN raises on a CPU without bf16 LSTM kernels
        raise RuntimeError("could not create a primitive descriptor for the LSTM forward propagation primitive")

    monkeypatch.setattr(torch.nn.LSTM, "forward", no_bf16_lstm)
    assert cpu_bf16_trial_runs.__wrapped__() is False


def test_extractor_precision_goes_through_the_same_check(monkeypatch, caplog):
    native = cpu_has_native_bf16() and cpu_bf16_trial_runs()
    assert Probe(device="cpu", precision="bf16").autocast_dtype == (torch.bfloat16 if native else None)
    with caplog.at_level(logging.WARNING, logger="remodiff.device"):
        assert Probe(device="cpu", precision="fp16").autocast_dtype is None
    assert "Probe: precision fp16 is not supported on cpu" in caplog.text
    fake_gpus(monkeypatch, 1, capability=(7, 5))
    assert Probe(device="cuda", precision="fp16").autocast_dtype == torch.float16
    assert Probe(device="cuda", precision="bf16").autocast_dtype is None
    with pytest.raises(ValueError, match="precision"):
        Probe(device="cpu", precision="fp8")
