"""The extractor protocol: one modality of one segmented clip -> ``[segments, dim]`` features."""
from __future__ import annotations

import abc
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Iterator

import h5py
import numpy as np

from remodiff.registry import Registry, Settings
from remodiff.store import read_clip_attrs

EXTRACTORS: Registry[type["Extractor"]] = Registry("extractor")
MODALITIES = ("audio", "video", "text")


@dataclass
class SegmentedClip:
    """One clip as the segment store holds it."""

    id: str
    frames: np.ndarray  # [S, F, H, W, 3] uint8
    audio: np.ndarray  # [S, L] float32
    has_audio: bool
    transcript: list[str] | None
    labels: list[float]
    fps: float
    sample_rate: int
    has_video: bool = True  # False: a clip without a video file (frames empty)
    given: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> the dataset's given [D] features


class Extractor(abc.ABC):
    """``modality`` says which part of a :class:`SegmentedClip` it reads (``""``: any, set per instance)."""

    modality: str = ""

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


def extractor_settings(backend: str) -> Settings:
    """The settings of a ``features.<modality>`` section besides ``backend`` and ``dtype``, from the backend's
    constructor (read without building it, so no model is loaded)."""
    return Settings.of(EXTRACTORS.get(backend))


def build_extractor(modality: str, params: dict) -> Extractor:
    params = dict(params)
    backend = params.pop("backend")
    cls = EXTRACTORS.get(backend)
    if cls.modality not in ("", modality):
        raise ValueError(f"extractor {backend!r} reads {cls.modality}, but is configured for {modality}")
    unknown = extractor_settings(backend).unknown(params)
    if unknown:
        raise ValueError(f"features.{modality}: backend {backend!r} takes no settings {unknown}; its settings are: "
                         f"{', '.join(extractor_settings(backend).names) or 'none'}")
    extractor = cls(**params)
    extractor.modality = modality
    return extractor


def iter_segment_store(path: str | Path, with_media: bool = True,
                       only: Collection[str] | None = None) -> Iterator[SegmentedClip]:
    """Stream clips from a segment store, one at a time (never the whole split in memory); with ``only``, just
    the clips of those ids (the others are not read)."""
    with h5py.File(path, "r") as f:
        config = json.loads(f.attrs["config"])
        for clip_id in sorted(f["clips"]):
            if only is not None and clip_id not in only:
                continue
            g = f["clips"][clip_id]
            attrs = read_clip_attrs(g)
            yield SegmentedClip(
                id=clip_id,
                frames=g["frames"][()] if with_media else np.empty(0, np.uint8),
                audio=g["audio"][()] if with_media else np.empty(0, np.float32),
                has_audio=attrs["has_audio"],
                transcript=attrs["transcript"],
                labels=attrs["labels"],
                fps=config["fps"],
                sample_rate=config["sample_rate"],
                has_video=attrs.get("has_video", True),
                given={m: row[()] for m, row in g["given"].items()} if "given" in g else {},
            )
