"""Decode a video with ffmpeg-python and cut it into equal segments of frames, audio and words.

Policies (documented in the README):
* frames: the ``fps`` filter samples the video; frames are cut into ``segments`` equal runs of
  ``n_frames // segments`` frames (the < ``segments`` leftover frames at the end are dropped). A clip with
  fewer frames than segments repeats frames so that every segment gets one (counted as ``padded``).
* audio: 16 kHz mono float32; each segment holds exactly ``round(duration / segments * sample_rate)``
  samples, trimmed or zero-padded (AAC adds encoder padding, so the decoded track is rarely exact).
  A clip whose video file has no audio stream takes its audio from ``audio_path`` when one is given (e.g.
  CREMA-D's separate WAV files), cut to the video's duration.
* transcript: word ``i`` of ``W`` is placed at time ``(i + 0.5) / W`` of the clip and goes to that segment.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import ffmpeg
import numpy as np

log = logging.getLogger(__name__)


class DecodeError(RuntimeError):
    """ffmpeg could not read the clip (corrupt, truncated, not a video)."""


@dataclass
class Segments:
    frames: np.ndarray  # [S, F, H, W, 3] uint8
    audio: np.ndarray  # [S, L] float32 (zeros when the clip has no audio stream)
    has_audio: bool
    transcript: list[str] | None  # S strings, or None when the clip has no transcript
    duration: float
    padded: bool  # frames were repeated because the clip was too short


def probe(path) -> dict:
    try:
        info = ffmpeg.probe(str(path))
    except ffmpeg.Error as e:
        raise DecodeError(f"{path}: ffprobe failed: {e.stderr.decode(errors='replace').strip()[-300:]}") from None
    video = [s for s in info["streams"] if s["codec_type"] == "video"]
    if not video:
        raise DecodeError(f"{path}: no video stream")
    duration = float(video[0].get("duration") or info["format"].get("duration") or 0.0)
    if duration <= 0:
        raise DecodeError(f"{path}: unknown or zero duration")
    return {"duration": duration, "has_audio": any(s["codec_type"] == "audio" for s in info["streams"])}


def _run(stream, path) -> bytes:
    try:
        out, _ = stream.run(capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as e:
        raise DecodeError(f"{path}: ffmpeg failed: {e.stderr.decode(errors='replace').strip()[-300:]}") from None
    return out


def decode_frames(path, fps: float, size: int) -> np.ndarray:
    """All frames at ``fps``, shortest side scaled to ``size`` and centre-cropped to ``size`` x ``size``."""
    stream = (ffmpeg.input(str(path)).video
              .filter("fps", fps=fps)
              .filter("scale", size, size, force_original_aspect_ratio="increase")
              .filter("crop", size, size)
              .output("pipe:", format="rawvideo", pix_fmt="rgb24"))
    raw = _run(stream, path)
    frames = np.frombuffer(raw, np.uint8)
    if frames.size == 0 or frames.size % (size * size * 3):
        raise DecodeError(f"{path}: decoded {frames.size} bytes of video, not whole {size}x{size} frames")
    return frames.reshape(-1, size, size, 3)


def decode_audio(path, sample_rate: int) -> np.ndarray:
    stream = ffmpeg.input(str(path)).audio.output("pipe:", format="f32le", ac=1, ar=sample_rate)
    return np.frombuffer(_run(stream, path), np.float32)


def split_frames(frames: np.ndarray, segments: int) -> tuple[np.ndarray, bool]:
    n = len(frames)
    padded = n < segments
    if padded:
        frames = frames[np.floor(np.arange(segments) * n / segments).astype(int)]
        n = segments
    per = n // segments
    return frames[: per * segments].reshape(segments, per, *frames.shape[1:]), padded


def split_audio(audio: np.ndarray, segments: int, segment_samples: int) -> np.ndarray:
    total = segments * segment_samples
    fitted = np.zeros(total, np.float32)
    fitted[: min(total, len(audio))] = audio[:total]
    return fitted.reshape(segments, segment_samples)


def split_transcript(text: str, segments: int) -> list[str]:
    words = text.split()
    parts: list[list[str]] = [[] for _ in range(segments)]
    for i, word in enumerate(words):
        parts[int((i + 0.5) * segments / len(words))].append(word)
    return [" ".join(p) for p in parts]


def decode_clip(path, duration: float, audio_source, segments: int, fps: float, size: int, sample_rate: int,
                frames: bool = True, audio: bool = True) -> tuple[np.ndarray, np.ndarray, bool]:
    """``(frames [S, F, H, W, 3], audio [S, L], padded)`` of a probed clip; media not asked for (``frames`` /
    ``audio`` False) or absent (``audio_source`` None) come back empty (``F`` = 0, ``L`` = 0)."""
    if frames:
        video, padded = split_frames(decode_frames(path, fps, size), segments)
    else:
        video, padded = np.zeros((segments, 0, 0, 0, 3), np.uint8), False
    if audio and audio_source is not None:
        sound = split_audio(decode_audio(audio_source, sample_rate), segments, round(duration / segments * sample_rate))
    else:
        sound = np.zeros((segments, 0), np.float32)
    return video, sound, padded


def segment_clip(path, transcript: str | None, segments: int, fps: float, size: int,
                 sample_rate: int, audio_path=None) -> Segments:
    """Probe and decode one clip whole (the extract stage decodes from what the segment stage probed)."""
    info = probe(path)
    audio_source = path if info["has_audio"] else audio_path
    frames, audio, padded = decode_clip(path, info["duration"], audio_source, segments, fps, size, sample_rate)
    if audio_source is None:  # silence of the clip's length: the audio is missing, its segments still sized
        audio = np.zeros((segments, round(info["duration"] / segments * sample_rate)), np.float32)
    text = split_transcript(transcript, segments) if transcript else None
    return Segments(frames, audio, audio_source is not None, text, info["duration"], padded)
