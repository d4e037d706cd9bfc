"""Where torch work runs, and in which precision: one resolution shared by the training loop, every model-based
imputer and fuser, the pretrained-model extractors and the ASR.

``device``: ``auto`` (a GPU when there is one, else the CPU), ``cpu``, ``cuda`` or ``cuda:<i>``. Under a
launcher (``accelerate launch`` / ``torchrun``, which set ``LOCAL_RANK``) ``auto`` and a bare ``cuda`` mean this
process's own GPU, ``cuda:<LOCAL_RANK>``, as Accelerate places it.

``precision``: ``fp32``, or autocast in ``bf16`` / ``fp16``. A precision the device cannot run falls back to fp32
with a logged warning (rather than an error), so one params.yaml runs on GPU machines and on CPUs alike:

* CUDA: fp16 always; bf16 on compute capability 8.0 (Ampere) or newer, where it is native.
* CPU: bf16 only where the CPU has native bf16 (AVX512-BF16 or AMX) *and* a trial forward / backward of a tiny
  LSTM, transformer and convolution layer under bf16 autocast succeeds (oneDNN has no bf16 LSTM otherwise, e.g. on
  many AMD EPYC); fp16 never (no native fp16 CPU kernels for these models).
"""
from __future__ import annotations

import functools
import logging

import torch

from remodiff.launch import local_rank

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": None, "fp16": torch.float16, "bf16": torch.bfloat16}  # name -> autocast dtype


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device that ``name`` (a params ``device`` value) means for this process."""
    if name == "auto":
        return process_gpu(name) if torch.cuda.is_available() else torch.device("cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} was asked for but CUDA is not available (use auto or cpu)")
        if name == "cuda":
            return process_gpu(name)
    try:
        device = torch.device(name)
    except RuntimeError as e:
        raise ValueError(f"device {name!r} is not a torch device (use auto, cpu, cuda or cuda:<i>)") from e
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def process_gpu(name: str) -> torch.device:
    """Every launched process on a machine gets its own GPU: ``cuda:<LOCAL_RANK>``."""
    rank, count = local_rank(), torch.cuda.device_count()
    if rank >= count:
        raise ValueError(f"device {name!r}: process LOCAL_RANK={rank} has no GPU of its own ({count} on this "
                         "machine); launch at most one process per GPU")
    return torch.device("cuda", rank)


def check_precision_name(precision: str, key: str = "precision") -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"{key} {precision!r}; valid values: {', '.join(PRECISIONS)}")


def precision_supported(precision: str, device: torch.device) -> bool:
    """Whether autocast in ``precision`` runs natively on ``device`` (fp32 always does)."""
    check_precision_name(precision)
    if precision == "fp32":
        return True
    if device.type == "cuda":
        return precision == "fp16" or torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        return precision == "bf16" and cpu_has_native_bf16() and cpu_bf16_trial_runs()
    return False


def usable_precision(precision: str, device: torch.device, what: str = "") -> str:
    """``precision`` where ``device`` runs it natively, else ``fp32`` with a warning that says why."""
    if precision_supported(precision, device):
        return precision
    log.warning("%sprecision %s is not supported on %s (%s); falling back to fp32", f"{what}: " if what else "",
                precision, device, "no native bf16 on this CPU" if precision == "bf16" and device.type == "cpu"
                else "bf16 needs a GPU of compute capability 8.0+" if device.type == "cuda"
                else f"no {precision} autocast on {device.type}")
    return "fp32"


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX, as torch detects them (private helpers: absent ones count as no)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, check, lambda: False)() for check in checks)


@functools.lru_cache(maxsize=None)
def cpu_bf16_trial_runs() -> bool:
    """A tiny LSTM + transformer layer + convolution forward and backward under CPU bf16 autocast (cached per
    process): the kinds of layers of this project's models, whose bf16 kernels some CPUs lack."""
    try:
        with torch.random.fork_rng(devices=[]):  # leaves the seeded global random state as it was
            return bf16_trial()
    except RuntimeError as e:  # e.g. "could not create a primitive descriptor for the LSTM forward ..."
        log.info("bf16 autocast trial failed on this CPU: %s", str(e).splitlines()[0] if str(e) else e)
        return False


def bf16_trial() -> bool:
    lstm, conv = torch.nn.LSTM(4, 4, batch_first=True), torch.nn.Conv1d(4, 4, 3)
    attention = torch.nn.TransformerEncoderLayer(4, 1, 8, dropout=0.0, batch_first=True)  # linear, norm, softmax
    with torch.autocast("cpu", dtype=torch.bfloat16):
        states, _ = lstm(torch.randn(2, 5, 4))
        loss = attention(states).float().sum() + conv(states.transpose(1, 2)).float().sum()
    loss.backward()
    return bool(torch.isfinite(loss))
