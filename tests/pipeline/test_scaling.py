"""Scaling out: the training loop through 🤗 Accelerate, sharded extraction, a DVC remote round trip."""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import yaml

from remodiff import device, training
from remodiff.device import precision_supported
from remodiff.pipeline import stage
from remodiff.fusion import build_fuser
from remodiff.imputers import build_imputer
from remodiff.pipeline.extract import Shard
from remodiff.pipeline.sample import segmented_sample
from remodiff.training import TrainConfig
from tests.conftest import ROOT, toy_featureset

pytestmark = pytest.mark.slow  # whole-pipeline / scale-out runs: `pytest -m "not slow"` leaves them out

FAST_FEATURES = {"audio": {"backend": "logmel", "n_mels": 8}, "video": {"backend": "frame_stats", "thumb": 2},
                 "text": {"backend": "tfidf", "max_features": 16}}


def train_models() -> dict[str, dict]:
    """A fuser and the two imputers that train through the shared loop's own step, trained for a few epochs."""
    train, val = toy_featureset(30, seed=0), toy_featureset(10, seed=1)
    small = {"epochs": 3, "batch_size": 8}  # 30 clips: a partial last batch every epoch
    fuser = build_fuser("early", train.modalities, {"hidden": 8, "train": small})
    fuser.fit(train, val)
    cvae = build_imputer("cvae", {"hidden": 8, "latent": 2, "train": small})
    cvae.fit(train, val, seed=3)
    diffusion = build_imputer("diffusion", {"hidden": 8, "layers": 1, "train": small})
    diffusion.fit(train, val, seed=3)
    return {"fuser": fuser.model.state_dict(), "cvae": cvae.generator.state_dict(),
            "diffusion": diffusion.model.state_dict(), "histories": [cvae.history, diffusion.history]}


def test_one_process_accelerate_path_is_bit_identical_to_the_plain_loop(monkeypatch):
    pytest.importorskip("accelerate")
    through_accelerate = train_models()
    monkeypatch.setattr(training, "make_accelerator", lambda cfg, device: None)
    plain = train_models()
    assert through_accelerate["histories"] == plain["histories"]
    for name in ("fuser", "cvae", "diffusion"):
        assert through_accelerate[name].keys() == plain[name].keys()
        for key, value in plain[name].items():
            assert torch.equal(through_accelerate[name][key], value), (name, key)


def test_loop_works_without_accelerate_and_refuses_what_needs_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "accelerate", None)  # as if not installed: importing it raises ImportError
    model = torch.nn.Linear(3, 1)
    data = {"x": torch.randn(20, 3), "y": torch.randn(20, 1)}

    def loss_fn(m, batch):
        return ((m(batch["x"]) - batch["y"]) ** 2).mean()

    history = training.fit(model, loss_fn, data, data, TrainConfig(epochs=3, batch_size=8))
    assert len(history) == 3 and history[-1]["val_loss"] < history[0]["val_loss"]
    with pytest.raises(RuntimeError, match="scale"):
        training.fit(model, loss_fn, data, None, TrainConfig(epochs=1, precision="bf16"))
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(RuntimeError, match="scale"):
        training.fit(model, loss_fn, data, None, TrainConfig(epochs=1))


def fit_bf16_fuser(monkeypatch, caplog) -> str:
    """Fits a fuser with ``precision: bf16`` on the CPU; returns the mixed precision Accelerate trained with."""
    used = []

    def spy(cfg, device):
        accelerator = make_accelerator(cfg, device)
        used.append(accelerator.mixed_precision)
        return accelerator

    make_accelerator = training.make_accelerator
    monkeypatch.setattr(training, "make_accelerator", spy)
    train, val = toy_featureset(20, seed=0), toy_featureset(8, seed=1)
    fuser = build_fuser("early", train.modalities, {"hidden": 8, "train": {"epochs": 2, "precision": "bf16",
                                                                           "device": "cpu"}})
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="remodiff.device"):
        fuser.fit(train, val)
    # the weights stay float32 and the forward plain afterwards
    assert all(p.dtype == torch.float32 for p in fuser.model.parameters())
    assert np.all(np.isfinite(fuser.predict(val)))
    return used[0]


def test_mixed_precision_is_a_validated_training_param(monkeypatch, caplog):
    pytest.importorskip("accelerate")
    with pytest.raises(ValueError, match="precision"):
        TrainConfig.from_params({"precision": "fp8"})
    # bf16 autocast where this CPU runs it natively; elsewhere (e.g. no AVX512-BF16: oneDNN has no bf16 LSTM)
    # a logged fallback to fp32
    native = precision_supported("bf16", torch.device("cpu"))
    assert fit_bf16_fuser(monkeypatch, caplog) == ("bf16" if native else "no")
    assert ("falling back to fp32" in caplog.text) is not native
    monkeypatch.setattr(device, "cpu_has_native_bf16", lambda: False)  # the fallback, whatever this CPU is
    assert fit_bf16_fuser(monkeypatch, caplog) == "no"
    assert "training: precision bf16 is not supported on cpu (no native bf16 on this CPU)" in caplog.text


def test_only_the_main_process_writes_histories(tmp_path, monkeypatch):
    data = {"x": torch.randn(8, 2), "y": torch.randn(8, 1)}
    monkeypatch.setattr(training, "make_accelerator", lambda cfg, device: None)
    monkeypatch.setenv("RANK", "1")
    training.fit(torch.nn.Linear(2, 1), lambda m, b: ((m(b["x"]) - b["y"]) ** 2).mean(), data, None,
                 TrainConfig(epochs=1), history_path=tmp_path / "history.json")
    assert not (tmp_path / "history.json").exists()


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
