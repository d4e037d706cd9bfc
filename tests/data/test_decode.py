import numpy as np
import pytest

from remodiff.data.decode import DecodeError, segment_clip, split_transcript
from tests.conftest import make_video


def test_segments_have_equal_frames_and_exact_audio(tmp_path):
    clip = make_video(tmp_path / "a.mp4", duration=2.0, size=40, fps=25)
    seg = segment_clip(clip, "one two three four five six seven", segments=5, fps=10, size=32, sample_rate=16000)
    assert seg.frames.shape == (5, 4, 32, 32, 3)  # 20 frames at 10 fps over 2 s, 4 per segment
    assert seg.frames.dtype == np.uint8
    assert seg.audio.shape == (5, round(2.0 / 5 * 16000))
    assert seg.has_audio and np.abs(seg.audio).max() > 0.1
    assert seg.transcript == ["one", "two three", "four", "five six", "seven"]  # word i at (i + .5)/7 of the clip
    assert not seg.padded


def test_transcript_split_keeps_every_word_in_order():
    text = " ".join(f"w{i}" for i in range(23))
    parts = split_transcript(text, 5)
    assert len(parts) == 5
    assert " ".join(p for p in parts if p).split() == text.split()
    assert split_transcript("solo", 3) == ["", "solo", ""]


def test_clip_without_audio_stream_is_marked(tmp_path):
    clip = make_video(tmp_path / "mute.mp4", audio=False)
    seg = segment_clip(clip, None, segments=5, fps=5, size=16, sample_rate=16000)
    assert not seg.has_audio
    assert seg.audio.shape == (5, 6400) and not seg.audio.any()
    assert seg.transcript is None


def test_too_short_clip_repeats_frames(tmp_path):
    clip = make_video(tmp_path / "short.mp4", duration=0.2, fps=25)
    seg = segment_clip(clip, "hi", segments=5, fps=5, size=16, sample_rate=16000)
    assert seg.padded
    assert seg.frames.shape[:2] == (5, 1)


def test_corrupt_file_raises_decode_error(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(DecodeError, match="bad.mp4"):
        segment_clip(bad, None, segments=5, fps=5, size=16, sample_rate=16000)
