import os
import pickle
from collections import OrderedDict

import numpy as np
import pytest

from remodiff.data import build_dataset
from remodiff.data.adapters import load_pickle
from remodiff.data.decode import segment_clip
from remodiff.registry import UnknownNameError
from tests.conftest import SHARED_MINI, TRAITS, RunsCode, make_video


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


class Calls:
    """A crafted pickle's payload: unpickling it calls ``function(*args)``."""

    def __init__(self, function, *args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


@pytest.mark.parametrize("payload, refused", [
    (lambda marker: RunsCode(marker), f"{os.system.__module__}.system"),
    (lambda marker: Calls(eval, f"open({str(marker)!r}, 'w')"), "__builtin__.eval"),  # protocol 2's name
    (lambda marker: Calls(np.save, str(marker), np.zeros(1)), "numpy.save"),  # numpy is admitted for arrays only
])
def test_a_crafted_annotation_pickle_is_refused_without_running_it(tmp_path, payload, refused):
    marker = tmp_path / "ran"
    with open(tmp_path / "annotation_training.pkl", "wb") as f:
        pickle.dump({t: {"aaa.000.mp4": payload(marker)} for t in TRAITS}, f, protocol=2)
    adapter = build_dataset({"name": "first_impressions", "root": str(tmp_path)})
    with pytest.raises(pickle.UnpicklingError, match=f"annotation_training.pkl: refused to unpickle {refused}"):
        adapter.clips("train")
    assert not marker.exists() and not (tmp_path / "ran.npy").exists()


def test_dataset_pickles_in_every_form_the_official_files_use_still_load(tmp_path):
    """First Impressions annotations as Python 2 wrote them (numpy 1 names, __builtin__) and as Python 3 re-saves
    them in protocol 2 (bytes through _codecs), and MMSA-like feature dicts of arrays in protocols 4 and 5."""
    annotations = {t: OrderedDict([("aaa.000.mp4", np.float64(0.25)), ("bbb.001.mp4", 0.5)]) for t in TRAITS}
    annotations["seen"] = {"aaa.000.mp4"}  # a set: a __builtin__ global in protocol 2
    features = {"train": {"id": np.array(["v1$_$0", "v2$_$1"], dtype=object), "text": np.ones((2, 3, 4), np.float32),
                          "audio_lengths": [3, 2], "regression_labels": np.array([0.5, -1.0])}}
    python3_protocol_2 = pickle.dumps(annotations, protocol=2)
    forms = {"p3.pkl": (python3_protocol_2, annotations),
             "p2.pkl": (python3_protocol_2.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"), annotations),
             "p4.pkl": (pickle.dumps(features, protocol=4), features),
             "p5.pkl": (pickle.dumps(features, protocol=5), features)}
    assert b"numpy.core.multiarray" in forms["p2.pkl"][0] and b"c__builtin__" in forms["p2.pkl"][0]
    for name, (blob, written) in forms.items():
        (tmp_path / name).write_bytes(blob)
        assert pickle.dumps(load_pickle(tmp_path / name)) == pickle.dumps(written), name  # the same values and types


@pytest.mark.skipif(not SHARED_MINI.is_dir(), reason="../shared/data is not present")
def test_the_real_first_impressions_pickles_load_through_the_restricted_unpickler():
    files = sorted(SHARED_MINI.parent.glob("fi-v2-*/*.pkl"))
    assert files
    for path in files:
        content = load_pickle(path)
        if path.name.startswith("annotation_"):  # {trait: {video_file: score}}
            assert set(content) == set(TRAITS) and all(name.endswith(".mp4") for name in content[TRAITS[0]])
            assert all(0.0 <= float(score) <= 1.0 for scores in content.values() for score in scores.values())
        else:  # {video_file: text}
            assert content and all(name.endswith(".mp4") and isinstance(text, str) for name, text in content.items())
