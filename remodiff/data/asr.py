"""Speech recognition for datasets without transcripts (``params.dataset.asr``; null = text stays missing).

The ``segment`` stage hands a clip's decoded 16 kHz mono audio to the transcriber when the adapter gives no
transcript and the clip has audio; the text is then cut into segments like any transcript. Backend ``whisper``:
``WhisperForConditionalGeneration`` + ``WhisperProcessor`` from ``model`` (a hub id or a local directory),
greedy decoding of consecutive 30-second windows (Whisper's input length), joined with spaces. An empty result
leaves the text missing for that clip.
"""
from __future__ import annotations

import logging

import numpy as np
import torch

from remodiff.device import resolve_device
from remodiff.hub import hf_offline, snapshot, unavailable
from remodiff.registry import Registry

log = logging.getLogger(__name__)
ASR_BACKENDS: Registry[type["WhisperTranscriber"]] = Registry("ASR backend")
WHISPER_RATE = 16000  # Hz: what Whisper's feature extractor expects
WINDOW_SECONDS = 30
ASR_LOCAL = "set dataset.asr.model to its local directory"


@ASR_BACKENDS.register("whisper")
class WhisperTranscriber:
    def __init__(self, model: str, revision: str | None = None, language: str | None = None,
                 max_new_tokens: int = 224, device: str = "auto"):
        from transformers import WhisperForConditionalGeneration, WhisperProcessor

        self.device = resolve_device(device)
        try:
            self.processor = WhisperProcessor.from_pretrained(model, revision=revision, local_files_only=hf_offline())
            self.model = WhisperForConditionalGeneration.from_pretrained(
                model, revision=revision, local_files_only=hf_offline()).to(self.device).eval()
        except (OSError, ValueError) as e:  # transformers' "not found" errors; HFValidationError is a ValueError
            raise unavailable("text", "ASR model", model, revision, e, local=ASR_LOCAL) from e
        # language=None: the model's own default (English-only models have no language token)
        self.generate_kwargs = {"max_new_tokens": max_new_tokens, **({"language": language} if language else {})}
        log.info("asr: whisper %s on %s", model, self.device)

    @classmethod
    def fetch(cls, model: str, revision: str | None = None, **_) -> list[str]:
        """Download the model (``remodiff fetch-models``) and return where it lies."""
        return [snapshot("text", model, revision, "ASR model", ASR_LOCAL)]

    @torch.no_grad()
    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str | None:
        """The text spoken in ``audio`` (mono float32 at ``sample_rate``), or None when nothing was recognised."""
        if sample_rate != WHISPER_RATE:
            raise ValueError(f"asr: whisper needs {WHISPER_RATE} Hz audio, got {sample_rate} Hz "
                             f"(set segment.sample_rate: {WHISPER_RATE})")
        window = WINDOW_SECONDS * WHISPER_RATE
        texts = []
        for start in range(0, max(len(audio), 1), window):
            inputs = self.processor(audio[start:start + window], sampling_rate=WHISPER_RATE, return_tensors="pt")
            ids = self.model.generate(inputs.input_features.to(self.device), **self.generate_kwargs)
            texts.append(self.processor.batch_decode(ids, skip_special_tokens=True)[0].strip())
        text = " ".join(t for t in texts if t)
        return text or None


def asr_backend(cfg: dict) -> tuple[str, dict]:
    """The backend name of ``params.dataset.asr`` (not null) and its settings; an unknown backend or an empty
    ``model`` is refused."""
    cfg = dict(cfg)
    backend = cfg.pop("backend", None)
    ASR_BACKENDS.get(backend)
    if not cfg.get("model"):
        raise ValueError("dataset.asr.model must name a Whisper model (hub id or local directory)")
    return backend, cfg


def build_asr(cfg: dict | None) -> WhisperTranscriber | None:
    """The transcriber of ``params.dataset.asr`` (``{backend: whisper, model: ..., ...}``), or None for null."""
    if not cfg:
        return None
    backend, settings = asr_backend(cfg)
    return ASR_BACKENDS.build(backend, **settings)
