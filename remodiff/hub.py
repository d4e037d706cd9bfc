"""Loading pretrained models from a local path or the Hugging Face cache, with one message when one is missing.

Shared by the feature extractors (:mod:`remodiff.features.deep`) and speech recognition (:mod:`remodiff.data.asr`),
so neither package imports the other for it. ``HF_HUB_OFFLINE`` is honoured: offline, nothing is downloaded and a
model that is not cached fails with :class:`ModelUnavailableError`, saying what was tried and how to get it.
"""
from __future__ import annotations

import os
from pathlib import Path

# Weights of other frameworks that Hugging Face repositories often carry next to the PyTorch ones.
FOREIGN_WEIGHTS = ["*.h5", "*.msgpack", "*.onnx", "onnx/*", "*.tflite", "*.ot", "tf_model*", "flax_model*",
                   "rust_model*", "coreml/*", "openvino/*"]


class ModelUnavailableError(RuntimeError):
    """A pretrained model is neither a local path nor in the local cache (and could not be downloaded)."""


def hf_offline() -> bool:
    """``HF_HUB_OFFLINE`` as set now (huggingface_hub reads it once, at import)."""
    from huggingface_hub import constants

    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in {"1", "ON", "YES", "TRUE"} or constants.HF_HUB_OFFLINE


def unavailable(modality: str, what: str, source: str, revision: str | None, cause: BaseException,
                local: str = "") -> ModelUnavailableError:
    """The one message for a model that cannot be loaded; ``local`` says how to point at a local copy."""
    from huggingface_hub import constants

    reason = str(cause).strip().splitlines()[0] if str(cause).strip() else type(cause).__name__
    return ModelUnavailableError(
        f"{modality} {what} {source!r}{f' (revision {revision})' if revision else ''} is not available: it is not a "
        f"local path and not in the Hugging Face cache {constants.HF_HUB_CACHE}"
        f"{' (HF_HUB_OFFLINE is set, so nothing was downloaded)' if hf_offline() else ''}. "
        f"To make it available, run `remodiff fetch-models` on a machine with internet access and copy its cache "
        f"(HF_HOME) here, or download it and {local or f'set features.{modality}.model to its local directory'}. "
        f"[{type(cause).__name__}: {reason}]")


def load_pretrained(modality: str, loader, source: str, revision: str | None):
    """``loader.from_pretrained`` from a local directory or the hub cache, failing with one clear message."""
    local = Path(source).expanduser()
    try:
        return loader.from_pretrained(str(local) if local.is_dir() else source, revision=revision,
                                      local_files_only=hf_offline())
    except (OSError, ValueError) as e:  # transformers' "not found" errors; HFValidationError is a ValueError
        raise unavailable(modality, "model", source, revision, e) from e


def snapshot(modality: str, source: str, revision: str | None, what: str = "model", local: str = "") -> str:
    """Download (or, offline, find in the cache) a Hugging Face repository; a local directory is used as is."""
    if Path(source).expanduser().is_dir():
        return str(Path(source).expanduser())
    from huggingface_hub import snapshot_download

    try:
        return snapshot_download(source, revision=revision, local_files_only=hf_offline(),
                                 ignore_patterns=FOREIGN_WEIGHTS)
    except Exception as e:  # any failure (network, offline, unknown repo) means the model is not available
        raise unavailable(modality, what, source, revision, e, local) from e
