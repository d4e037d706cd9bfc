"""The extractor protocol: one modality of one segmented clip -> ``[segments, dim]`` features."""
from __future__ import annotations

import abc

import numpy as np

from remodiff.data.segments import SegmentedClip
from remodiff.registry import Registry, RegistryError

EXTRACTORS: Registry[type["Extractor"]] = Registry("extractor")


class Extractor(abc.ABC):
    """``modality`` says which part of a :class:`SegmentedClip` it reads (``""``: any, set per instance)."""

    modality: str = ""

    @property
    def media(self) -> set[str]:
        """The decoded media :meth:`extract` reads (``frames``, ``audio``); only these are decoded for it."""
        return {"audio": {"audio"}, "video": {"frames"}}.get(self.modality, set())

    def __init__(self, **params):
        self.params = params

    def fit(self, clips: list[SegmentedClip]) -> None:
        """Learn what the backend needs from the training clips (e.g. a vocabulary); most need nothing."""

    def has_modality(self, clip: SegmentedClip) -> bool:
        if self.modality == "audio":
            return clip.has_audio
        if self.modality == "text":
            return clip.transcript is not None
        return clip.has_video

    @abc.abstractmethod
    def extract(self, clip: SegmentedClip) -> np.ndarray:
        """``[S, D]`` float32 features; only called when :meth:`has_modality` is True."""

    def extract_batch(self, clips: list[SegmentedClip]) -> list[np.ndarray]:
        """:meth:`extract` of several clips; model backends override it to share forward passes across clips."""
        return [self.extract(clip) for clip in clips]

    @classmethod
    def fetch(cls, **params) -> list[str]:
        """Download what the backend would load with these params (pretrained weights) and return where it
        lies; used by ``remodiff fetch-models``. Backends that load nothing return nothing."""
        return []

    @property
    @abc.abstractmethod
    def dim(self) -> int:
        """Feature size D (known after :meth:`fit`)."""


def build_extractor(modality: str, params: dict) -> Extractor:
    """The extractor of ``features.<modality>``: its ``backend`` built with the section's other settings (checked
    by :meth:`Registry.build`, the refusal naming the section) for that modality."""
    params = dict(params)
    backend = params.pop("backend")
    cls = EXTRACTORS.get(backend)
    if cls.modality not in ("", modality):
        raise ValueError(f"extractor {backend!r} reads {cls.modality}, but is configured for {modality}")
    try:
        extractor = EXTRACTORS.build(backend, **params)
    except RegistryError as e:
        raise RegistryError(f"features.{modality}: {e.problem}", e.valid) from None
    extractor.modality = modality
    return extractor
