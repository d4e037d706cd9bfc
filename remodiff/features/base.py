"""The extractor protocol: one modality of one segmented clip -> ``[segments, dim]`` features."""
from __future__ import annotations

import abc
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Collection, Iterator

import numpy as np

from remodiff.data.decode import DecodeError, decode_clip
from remodiff.registry import Registry, RegistryError
from remodiff.store import iter_store_clips, store_config

EXTRACTORS: Registry[type["Extractor"]] = Registry("extractor")


@dataclass
class SegmentedClip:
    """One clip of the segment store; ``frames`` and ``audio`` hold its media once decoded (else empty)."""

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
    video: str | None = None  # video file, relative to the dataset root (or absolute)
    audio_source: str | None = None  # file the audio is decoded from (the video or a separate audio file)
    duration: float = 0.0  # seconds
    padded: bool = False  # frames were repeated to give every segment one (set when frames are decoded)


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


def iter_segment_store(path: str | Path, only: Collection[str] | None = None) -> Iterator[SegmentedClip]:
    """Stream the clips of a segment store, one at a time, without media (frames and audio empty: ``F`` = 0,
    ``L`` = 0); :func:`decoded_clips` decodes them. With ``only``, just the clips of those ids."""
    config = store_config(path)
    segments = config["segments"]
    for clip_id, attrs, given in iter_store_clips(path, only):
        yield SegmentedClip(
            id=clip_id,
            frames=np.zeros((segments, 0, 0, 0, 3), np.uint8),
            audio=np.zeros((segments, 0), np.float32),
            has_audio=attrs["has_audio"],
            transcript=attrs["transcript"],
            labels=attrs["labels"],
            fps=config["fps"],
            sample_rate=config["sample_rate"],
            has_video=attrs.get("has_video", True),
            given=given,
            video=attrs.get("video"),
            audio_source=attrs.get("audio_source"),
            duration=attrs.get("duration", 0.0),
        )


def decoded_clips(path: str | Path, media: Collection[str], only: Collection[str] | None = None,
                  workers: int = 1, ahead: int = 16) -> Iterator[tuple[SegmentedClip, str | None]]:
    """``(clip, error)`` for the clips of a segment store (as :func:`iter_segment_store`), each with the ``media``
    asked for (``frames``, ``audio``) decoded from its video / audio file, in the store's order; ``error`` names
    why a clip could not be decoded (its media then stay empty).

    ``workers`` ffmpeg processes decode at most ``ahead`` clips ahead of the consumer, so memory holds a bounded
    number of decoded clips however long the split is."""
    config = store_config(path)
    root = Path(config["dataset"]["root"])

    def decode(clip: SegmentedClip) -> tuple[SegmentedClip, str | None]:
        frames = "frames" in media and clip.has_video
        audio = "audio" in media and clip.audio_source is not None
        if not (frames or audio):
            return clip, None
        video = root / clip.video if clip.video is not None else None
        try:
            if video is not None and not video.exists():
                raise DecodeError(f"{video} no longer exists (the segment store points at it; re-run segment)")
            clip.frames, clip.audio, clip.padded = decode_clip(
                video, clip.duration, root / clip.audio_source if audio else None, config["segments"],
                config["fps"], config["frame_size"], config["sample_rate"], frames=frames, audio=audio)
        except DecodeError as e:
            return clip, str(e)
        return clip, None

    clips = iter_segment_store(path, only)
    with ThreadPoolExecutor(max(1, workers)) as pool:  # threads: the decoding itself runs in ffmpeg processes
        pending = deque(pool.submit(decode, clip) for clip in islice(clips, ahead))
        while pending:
            done = pending.popleft().result()
            pending.extend(pool.submit(decode, clip) for clip in islice(clips, 1))
            yield done
