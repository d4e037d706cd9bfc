"""The bounded data path: the segment store holds no decoded media, extract decodes a bounded number of clips ahead
of the models, and a clip that no longer decodes is skipped and reported, not lost silently."""
import json
import threading

import h5py
import numpy as np
import pytest

from remodiff.data import segments
from remodiff.data.decode import segment_clip
from remodiff.data.segments import decoded_clips
from remodiff.pipeline import stage
from remodiff.store import load_featureset
from tests.data.test_adapters import write_fi

SEGMENT = {"segments": 2, "fps": 4, "frame_size": 16, "sample_rate": 16000, "workers": 2}
FAST = {"audio": {"backend": "logmel", "n_mels": 8}, "video": {"backend": "frame_stats", "thumb": 2},
        "text": {"backend": "tfidf", "max_features": 8}}


@pytest.fixture
def segmented(tmp_path, monkeypatch):
    """Six clips of a First Impressions layout (one with an empty transcript), through the segment stage."""
    root = tmp_path / "fi"
    names = [f"c{i}.000.mp4" for i in range(6)]
    write_fi(root, {n: 0.1 * (i + 1) for i, n in enumerate(names)},
             {n: "" if i == 4 else f"word{i} and more words here" for i, n in enumerate(names)})
    params = {"dataset": {"name": "first_impressions", "root": str(root)}, "segment": SEGMENT}
    monkeypatch.chdir(tmp_path)
    stage("segment")(params)
    return params


def test_segment_store_holds_no_media_and_extract_decodes_the_same_clips(segmented):
    store = "data/segments/train.h5"
    with h5py.File(store, "r") as f:
        stored = []
        f["clips"].visititems(lambda name, obj: stored.append(name) if isinstance(obj, h5py.Dataset) else None)
    assert stored == []  # timing, transcript and labels only: no frames, no audio
    root = segmented["dataset"]["root"]
    clips = list(decoded_clips(store, {"frames", "audio"}))
    assert [c.id for c, _ in clips] == [f"c{i}.000.mp4" for i in range(6)]
    for clip, error in clips:
        assert error is None
        whole = segment_clip(f"{root}/train/{clip.id}", None, **{k: SEGMENT[k] for k in ("segments", "fps")},
                             size=SEGMENT["frame_size"], sample_rate=SEGMENT["sample_rate"])
        np.testing.assert_array_equal(clip.frames, whole.frames)
        np.testing.assert_array_equal(clip.audio, whole.audio)
    without_media = next(decoded_clips(store, set()))[0]
    assert without_media.frames.shape == (2, 0, 0, 0, 3) and without_media.audio.shape == (2, 0)


def test_decoding_stays_a_bounded_number_of_clips_ahead(segmented, monkeypatch):
    started, lock = [], threading.Lock()

    def counting_decode(path, *args, **kwargs):
        with lock:
            started.append(path)
        return np.zeros((2, 1, 1, 1, 3), np.uint8), np.zeros((2, 1), np.float32), False

    monkeypatch.setattr(segments, "decode_clip", counting_decode)
    consumed = 0
    for _ in decoded_clips("data/segments/train.h5", {"frames"}, workers=2, ahead=2):
        consumed += 1
        assert len(started) <= consumed + 2
    assert consumed == len(started) == 6


def test_a_clip_that_no_longer_decodes_is_skipped_and_reported(segmented):
    broken = f"{segmented['dataset']['root']}/train/c2.000.mp4"
    with open(broken, "r+b") as f:  # probed fine by segment, corrupted before extract
        f.seek(200)
        f.write(bytes(4000))
        f.truncate(4200)
    stage("extract")({**segmented, "features": FAST})
    train = load_featureset("data/features/train.h5")
    assert train.ids == [f"c{i}.000.mp4" for i in (0, 1, 3, 4, 5)]
    assert train.available["text"][:, 0].tolist() == [True, True, True, False, True]
    assert train.available["audio"].all() and train.available["video"].all()
    report = json.loads(open("data/features/report.json").read())
    assert [u["clip"] for u in report["train"]["undecodable"]] == ["c2.000.mp4"]
    assert report["train"]["clips"] == 5 and report["counts"]["undecodable"] == 1
