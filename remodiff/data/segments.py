"""The clips of a segment store (``data/segments/<split>.h5``, written by the segment stage): read one at a time,
and decoded from their video / audio files on demand (the extract stage; no decoded media is ever stored)."""
from __future__ import annotations

from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Collection, Iterator

import numpy as np

from remodiff.data.decode import DecodeError, decode_clip
from remodiff.store import iter_store_clips, store_config


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
