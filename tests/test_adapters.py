import pickle

import pytest

from remodiff.data import build_dataset
from remodiff.data.decode import segment_clip
from remodiff.registry import UnknownNameError
from tests.conftest import SHARED_MINI, TRAITS, make_video


def write_fi(root, clips: dict[str, float], transcripts: dict[str, str] | None, split="train", tag="training"):
    (root / split).mkdir(parents=True)
    for name in clips:
        make_video(root / split / name, duration=1.0, size=16)
    with open(root / f"annotation_{tag}.pkl", "wb") as f:
        pickle.dump({t: dict(clips) for t in TRAITS}, f, protocol=2)
    if transcripts is not None:
        with open(root / f"transcription_{tag}.pkl", "wb") as f:
            pickle.dump(transcripts, f, protocol=2)


def test_first_impressions_reads_labels_and_transcripts(tmp_path):
    write_fi(tmp_path, {"aaa.000.mp4": 0.25, "bbb.001.mp4": 0.75},
             {"aaa.000.mp4": "hello there", "bbb.001.mp4": "   "})
    adapter = build_dataset({"name": "first_impressions", "root": str(tmp_path)})
    clips = adapter.clips("train")
    assert [c.id for c in clips] == ["aaa.000.mp4", "bbb.001.mp4"]
    assert clips[0].labels == [0.25] * 6 and clips[0].transcript == "hello there"
    assert clips[1].transcript is None  # an empty transcript is a missing text modality
    assert adapter.clips("test") == []


def test_missing_transcript_file_means_text_missing(tmp_path):
    write_fi(tmp_path, {"aaa.000.mp4": 0.5}, None)
    clips = build_dataset({"name": "first_impressions", "root": str(tmp_path)}).clips("train")
    assert clips[0].transcript is None


def test_clip_without_label_is_an_error_naming_it(tmp_path):
    write_fi(tmp_path, {"aaa.000.mp4": 0.5}, None)
    make_video(tmp_path / "train" / "zzz.002.mp4", duration=1.0, size=16)
    with pytest.raises(ValueError, match="zzz.002.mp4"):
        build_dataset({"name": "first_impressions", "root": str(tmp_path)}).clips("train")


def test_bad_dataset_settings_fail_clearly(tmp_path):
    with pytest.raises(UnknownNameError, match="first_impressions"):
        build_dataset({"name": "imagenet", "root": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="does not exist"):
        build_dataset({"name": "first_impressions", "root": str(tmp_path / "nowhere")})
    (tmp_path / "train").mkdir()
    make_video(tmp_path / "train" / "a.000.mp4", duration=1.0, size=16)
    with pytest.raises(FileNotFoundError, match="annotation_training.pkl"):
        build_dataset({"name": "first_impressions", "root": str(tmp_path)}).clips("train")


@pytest.mark.skipif(not SHARED_MINI.is_dir(), reason="../shared/data/fi-v2-mini is not present")
def test_real_first_impressions_clips_decode_into_five_segments():
    adapter = build_dataset({"name": "first_impressions", "root": str(SHARED_MINI)})
    train, val = adapter.clips("train"), adapter.clips("val")
    assert len(train) == 8 and len(val) == 4
    # the mini set has one training clip without a transcript entry and no validation transcripts at all
    assert sum(c.transcript is None for c in train) == 1 and all(c.transcript is None for c in val)
    for clip in train[:2] + val[:1]:
        seg = segment_clip(clip.path, clip.transcript, segments=5, fps=2, size=64, sample_rate=16000)
        assert seg.frames.shape[:2] == (5, int(seg.duration * 2) // 5) and seg.frames.shape[2:] == (64, 64, 3)
        assert seg.audio.shape == (5, round(seg.duration / 5 * 16000))
        assert seg.has_audio and 10 < seg.duration < 20
        if clip.transcript:
            assert " ".join(w for w in seg.transcript if w).split() == clip.transcript.split()
