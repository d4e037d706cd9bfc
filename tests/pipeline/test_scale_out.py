"""Scaling out: sharded extraction and a DVC remote round trip (the training loop's side:
tests/core/test_training_accelerate.py)."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from remodiff.pipeline import stage
from remodiff.pipeline.extract import Shard
from remodiff.pipeline.sample import segmented_sample
from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # whole-pipeline / scale-out runs: `pytest -m "not slow"` leaves them out

FAST_FEATURES = {"audio": {"backend": "logmel", "n_mels": 8}, "video": {"backend": "frame_stats", "thumb": 2},
                 "text": {"backend": "tfidf", "max_features": 16}}


def test_shard_parsing_and_launcher_default(monkeypatch):
    assert Shard.parse("1/4") == Shard(1, 4)
    for bad in ("4/4", "1", "a/2", "-1/2"):
        with pytest.raises(ValueError):
            Shard.parse(bad)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "3")
    assert Shard.launched() == Shard(1, 3)
    monkeypatch.setenv("WORLD_SIZE", "1")
    assert Shard.launched() is None


def make_project(directory: Path, n_clips: int = 9) -> dict:
    """Segment stores of generated videos (3 per split) and a params.yaml of fast extractors in ``directory``."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params.update(segmented_sample(directory, n_clips, segments=2, seconds=0.25, fps=4, size=16, video_size=16))
    params["features"] = FAST_FEATURES
    (directory / "params.yaml").write_text(yaml.safe_dump(params))
    return params


def train_ids(directory: Path) -> list[str]:
    with h5py.File(directory / "data" / "segments" / "train.h5", "r") as f:
        return sorted(f["clips"])


def feature_store_contents(path: Path) -> dict:
    contents = {}
    with h5py.File(path, "r") as f:
        f.visititems(lambda name, obj: contents.__setitem__(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        contents.update({f"attr:{k}": v for k, v in f.attrs.items()})
    return contents


def test_two_shard_processes_then_merge_equal_one_unsharded_run(tmp_path, monkeypatch):
    unsharded, sharded = tmp_path / "unsharded", tmp_path / "sharded"
    for directory in (unsharded, sharded):
        directory.mkdir()
        params = make_project(directory)
    monkeypatch.chdir(unsharded)
    stage("extract")(params)

    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    workers = [subprocess.Popen([sys.executable, "-m", "remodiff.cli", "run", "extract", "--shard", f"{i}/2"],
                                cwd=sharded, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
               for i in range(2)]
    for worker in workers:
        output, _ = worker.communicate(timeout=120)
        assert worker.returncode == 0, output
    scratch = sharded / "data" / "extract.partial"
    assert sorted(p.name for p in scratch.iterdir()) == sorted(f"{split}.shard-{i}-of-2.h5"
                                                               for split in ("train", "val", "test") for i in range(2))
    with h5py.File(scratch / "train.shard-1-of-2.h5", "r") as f:
        assert sorted(f["clips"]) == train_ids(sharded)[1::2]  # shard 1 of 2: every second clip from the second
    assert not (sharded / "data" / "features").exists()

    monkeypatch.chdir(sharded)
    stage("extract")(params, merge_only=True)
    assert not scratch.exists()  # merged shards are removed with the scratch
    for split in ("train", "val", "test"):
        expected = feature_store_contents(unsharded / "data" / "features" / f"{split}.h5")
        got = feature_store_contents(sharded / "data" / "features" / f"{split}.h5")
        assert got.keys() == expected.keys()
        for key, value in expected.items():
            assert np.array_equal(got[key], value), (split, key)


def test_merge_names_the_clips_no_shard_extracted(tmp_path, monkeypatch):
    params = make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    stage("extract")(params, shard=Shard(0, 2))
    with pytest.raises(ValueError, match=re.escape(train_ids(tmp_path)[1])):  # shard 0 did clips 0 and 2
        stage("extract")(params, merge_only=True)
    stage("extract")(params)  # a plain run merges shard 0 and extracts what is missing
    assert len(h5py.File(tmp_path / "data" / "features" / "train.h5", "r")["ids"]) == 3


def dvc(repo: Path, *args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, capture_output=True, text=True,
                            env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    assert result.returncode == 0, f"dvc {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


def test_dvc_local_remote_push_pull_round_trip(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    repo, remote = tmp_path / "repo", tmp_path / "remote"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    dvc(repo, "init", "-q")
    dvc(repo, "stage", "add", "-q", "-n", "make", "-o", "out",
        f"{sys.executable} -c \"import pathlib; p = pathlib.Path('out'); p.mkdir(); "
        f"(p / 'a.bin').write_bytes(bytes(range(256)) * 64)\"")
    dvc(repo, "repro", "-q")
    expected = (repo / "out" / "a.bin").read_bytes()
    dvc(repo, "remote", "add", "-d", "storage", str(remote))
    dvc(repo, "push", "-q")
    assert any(p.is_file() for p in remote.rglob("*"))

    shutil.rmtree(repo / ".dvc" / "cache")
    shutil.rmtree(repo / "out")
    dvc(repo, "pull", "-q")
    assert (repo / "out" / "a.bin").read_bytes() == expected
    assert "up to date" in dvc(repo, "status").lower() or "nothing" in dvc(repo, "status").lower()
