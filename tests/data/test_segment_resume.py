"""The segment stage resumes clip by clip after an interruption, also when DVC empties data/segments first."""
import shutil

import h5py
import pytest

from remodiff.pipeline import segment as segment_module
from remodiff.pipeline import stage
from remodiff.data import decode
from remodiff.store import read_clip_attrs
from tests.data.test_adapters import write_fi

SEGMENT = {"segments": 2, "fps": 4, "frame_size": 16, "sample_rate": 16000, "workers": 1}


def clips_of(path):
    with h5py.File(path, "r") as f:
        return {cid: read_clip_attrs(f["clips"][cid]) for cid in f["clips"]}


def test_interrupted_segmentation_resumes_and_matches_an_uninterrupted_run(tmp_path, monkeypatch):
    root = tmp_path / "fi"
    write_fi(root, {f"c{i}.000.mp4": 0.1 * i for i in range(4)}, None)
    params = {"dataset": {"name": "first_impressions", "root": str(root)}, "segment": SEGMENT}
    monkeypatch.chdir(tmp_path)
    stage("segment")(params)
    expected = clips_of("data/segments/train.h5")
    shutil.rmtree("data")

    real, calls = decode.probe, []

    def crash_on_third(*args, **kwargs):
        calls.append(args[0])
        if len(calls) == 3:
            raise KeyboardInterrupt  # Ctrl-C in the middle of a split
        return real(*args, **kwargs)

    monkeypatch.setattr(segment_module, "probe", crash_on_third)
    with pytest.raises(KeyboardInterrupt):
        stage("segment")(params)
    shutil.rmtree("data/segments", ignore_errors=True)  # what `dvc repro` does to a stage's outputs
    calls.clear()
    stage("segment")(params)
    assert len(calls) == 2  # only the clips not finished before the interruption
    again = clips_of("data/segments/train.h5")
    assert again == expected and len(expected) == 4
    assert all(attrs["video"] == f"train/{cid}" and attrs["audio_source"] == attrs["video"] for cid, attrs in again.items())
    assert not (tmp_path / "data" / "segment.partial").exists()
