"""Bad data fails at once, in one line naming the file: unreadable or empty files, splits of different feature
dimensions, shared clip ids, unusable labels, non-finite features.

Every dataset is written here, tiny, into a temporary directory."""
from __future__ import annotations

import copy
import logging
import pickle
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from remodiff.check import SettingError, check_params
from remodiff.cli import app
from remodiff.data import build_dataset
from remodiff.pipeline import stage
from remodiff.pipeline.runs import runs_of
from remodiff.store import load_splits, save_featureset
from tests.conftest import COMMITTED, toy_featureset

SPLITS = ("train", "val", "test")
SEGMENT = {"segments": 3, "fps": 5, "frame_size": 16, "sample_rate": 16000, "workers": 1}
CLASSES = [f"class_{c}" for c in range(8)]


def write_split(root: Path, split: str, n: int = 12, dims: dict | None = None, suffix: str = "npz",
                ids: list[str] | None = None, labels: np.ndarray | None = None) -> Path:
    """One split of a ``precomputed`` dataset: ``n`` clips, ids ``<split>0..``, class labels, [n, 4, D] arrays."""
    rng = np.random.default_rng(len(split))
    arrays = {"ids": np.array(ids if ids is not None else [f"{split}{i}" for i in range(n)]),
              "labels": labels if labels is not None else np.arange(n) % len(CLASSES),
              **{m: rng.normal(size=(n, 4, d)) for m, d in (dims or {"audio": 6, "video": 5}).items()}}
    path = root / f"{split}.{suffix}"
    if suffix == "npz":
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as f:
            for k, v in arrays.items():
                f[k] = v.astype("S") if k == "ids" else v
    return path


def write_dataset(root: Path, suffix: str = "npz") -> dict[str, Path]:
    return {split: write_split(root, split, suffix=suffix) for split in SPLITS}


def dataset_params(root: Path, suffix: str = "npz", **settings) -> dict:
    return {"name": "precomputed", "root": str(root), **settings,
            "precomputed": {"files": {s: f"{s}.{suffix}" for s in SPLITS}, "task": "classification",
                            "classes": CLASSES}}


def run_params(root: Path, suffix: str = "npz", **settings) -> dict:
    """The committed params.yaml on a precomputed dataset of audio and video."""
    params = copy.deepcopy(COMMITTED)
    params["dataset"] = dataset_params(root, suffix, **settings)
    params["features"] = {"audio": {}, "video": {}}
    params["masks"].update(random=[0.0, 0.5], independent=[{"audio": 0.5}])
    params["compare"]["metric"] = params["report"]["metric"] = "auto"
    return params


def check_failure(params: dict) -> str:
    with pytest.raises(SettingError) as caught:
        check_params(params)
    return one_line(caught.value)


def segment_failure(dataset: dict) -> str:
    with pytest.raises(ValueError) as caught:
        stage("segment")({"dataset": dataset, "segment": SEGMENT})
    return one_line(caught.value)


def one_line(error: Exception) -> str:
    message = str(error)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """An empty dataset root; the stages write under tmp_path."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "features"
    root.mkdir()
    return root


# ------------------------------------------------------------------------------------------ feature dimensions
@pytest.mark.parametrize("suffix", ["npz", "h5"])
def test_a_split_of_another_feature_dimension_fails_check_and_segment_naming_both(data, suffix):
    write_dataset(data, suffix)
    write_split(data, "test", dims={"audio": 4, "video": 5}, suffix=suffix)
    expected = (f"audio: shape [12, 4, 6] in {data}/train.{suffix} (train) but [12, 4, 4] in {data}/test.{suffix} "
                f"(test); every split needs the same feature dimensions")
    assert check_failure(run_params(data, suffix)) == f"params.yaml: dataset.precomputed: precomputed: {expected}"
    # pooled into 3 segments by the time the segment stage compares the feature sets
    assert segment_failure(dataset_params(data, suffix)) == expected.replace("[12, 4,", "[12, 3,")


def test_a_split_lacking_a_modality_fails_check(data):
    write_dataset(data)
    write_split(data, "val", dims={"audio": 6})
    assert check_failure(run_params(data)) == (
        f"params.yaml: dataset.precomputed: precomputed: video: {data}/train.npz (train) has it, {data}/val.npz "
        f"(val) does not; every split needs the same modalities")


def test_feature_stores_that_disagree_are_refused_where_the_splits_meet(data):
    stores = {s: Path(f"data/features/{s}.h5") for s in SPLITS}
    for split, path in stores.items():
        save_featureset(path, toy_featureset(4, seed=len(split)))
    save_featureset(stores["test"], toy_featureset(4, dims=(("audio", 7), ("video", 6), ("text", 4))))
    with pytest.raises(ValueError) as caught:
        load_splits(stores)
    assert one_line(caught.value) == ("audio: shape [4, 5, 8] in data/features/train.h5 (train) but [4, 5, 7] in "
                                      "data/features/test.h5 (test); every split needs the same feature dimensions")
    with pytest.raises(ValueError, match=r"^audio: shape \[4, 5, 8\] in data/features/train.h5"):
        runs_of({"eval": {"seeds": [0]}, "masks": {}})


# ------------------------------------------------------------------------------------------ unreadable files
def empty(path: Path) -> None:
    path.write_bytes(b"")


def truncated(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


@pytest.mark.parametrize("suffix, split, damage, reason", [
    ("npz", "val", empty, "the file is empty (0 bytes)"),
    ("npz", "test", truncated, "File is not a zip file"),
    ("npz", "train", truncated, "File is not a zip file"),
    ("h5", "test", truncated, "truncated file"),
    ("h5", "val", empty, "the file is empty (0 bytes)"),
    ("h5", "train", lambda path: path.write_bytes(b"not hdf5" * 100), "file signature not found"),
])
def test_an_unreadable_file_is_one_line_naming_it(data, suffix, split, damage, reason):
    damage(write_dataset(data, suffix)[split])
    path = data / f"{split}.{suffix}"
    message = check_failure(run_params(data, suffix))
    assert message.startswith(f"params.yaml: dataset.precomputed: precomputed: cannot read {path}: ")
    assert reason in message
    with pytest.raises(ValueError) as caught:
        build_dataset(dataset_params(data, suffix)).features(split, 3)
    assert one_line(caught.value).startswith(f"precomputed: cannot read {path}: ") and reason in str(caught.value)


def test_remodiff_check_on_a_truncated_training_file_prints_one_line(data):
    truncated(write_dataset(data)["train"])
    (data.parent / "params.yaml").write_text(yaml.safe_dump(run_params(data)))
    result = CliRunner().invoke(app, ["check", "--params", str(data.parent / "params.yaml")])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: params.yaml: dataset.precomputed: precomputed: cannot read "
                                          f"{data}/train.npz: File is not a zip file"]


def test_a_file_without_clips_is_named(data):
    write_dataset(data)
    write_split(data, "val", n=0)
    expected = f"precomputed: {data}/val.npz has no clips"
    assert check_failure(run_params(data)) == f"params.yaml: dataset.precomputed: {expected}"
    assert segment_failure(dataset_params(data)) == expected


# ------------------------------------------------------------------------------------------ shared clip ids
def test_clip_ids_in_two_splits_fail_unless_allowed(data, caplog):
    write_dataset(data)
    write_split(data, "test", ids=[f"train{i}" for i in range(10)] + ["test10", "test11"])
    assert segment_failure(dataset_params(data)) == (
        "Precomputed: train and test share 10 clip ids, e.g. ['train0', 'train1', 'train2', 'train3', 'train4']: a "
        "clip in two splits scores a model on clips it was trained or selected on; remove them from one split, or "
        "set dataset.allow_shared_ids: true if that is intended")
    with caplog.at_level(logging.WARNING):
        report = stage("segment")({"dataset": dataset_params(data, allow_shared_ids=True), "segment": SEGMENT})
    assert report["clips"] == {"train": 12, "val": 12, "test": 12}
    assert "train and test share 10 clip ids" in caplog.text


def test_clip_ids_in_two_splits_fail_for_datasets_of_clips_too(data):
    """First Impressions reading val's folder as test (split_dirs) before any clip is probed."""
    traits = build_dataset({"name": "first_impressions", "root": str(data)}).label_names
    for folder, tag in (("train", "training"), ("val", "validation")):
        (data / folder).mkdir()
        names = [f"{folder}_video.{i:03d}.mp4" for i in range(3)]
        for name in names:
            (data / folder / name).touch()  # never probed: the check comes first
        with open(data / f"annotation_{tag}.pkl", "wb") as f:
            pickle.dump({t: {name: 0.5 for name in names} for t in traits}, f)
    fi = {"name": "first_impressions", "root": str(data), "first_impressions": {"split_dirs": {"test": "val"}}}
    assert segment_failure(fi).startswith("FirstImpressions: val and test share 3 clip ids, e.g. "
                                          "['val_video.000.mp4', 'val_video.001.mp4', 'val_video.002.mp4']: ")


# ------------------------------------------------------------------------------------------ labels
def test_a_label_outside_the_classes_fails_unless_such_clips_are_dropped(data):
    write_dataset(data)
    labels = np.arange(12) % len(CLASSES)
    labels[3] = 9  # 8 classes
    write_split(data, "test", labels=labels)
    assert segment_failure(dataset_params(data)) == (
        f"Precomputed: clip test3 (test): label [9.0] in {data}/test.npz: expected a class index below 8; fix the "
        f"label, or set dataset.drop_bad_labels: true to skip such clips")
    report = stage("segment")({"dataset": dataset_params(data, drop_bad_labels=True), "segment": SEGMENT})
    assert report["clips"]["test"] == 11 and report["counts"]["skipped"] == 1
    assert report["skipped"][0]["clip"] == "test3" and "label [9.0]" in report["skipped"][0]["reason"]


def test_dataset_checks_are_booleans(data):
    write_dataset(data)
    params = run_params(data, drop_bad_labels="yes")
    assert check_failure(params) == "params.yaml: dataset.drop_bad_labels: must be true or false, got 'yes'"
    params["dataset"].update(drop_bad_labels=True, allow_shared_ids=True)
    check_params(params)


# ------------------------------------------------------------------------------------------ non-finite features
def test_non_finite_features_name_the_file_modality_and_clip(data):
    paths = write_dataset(data)
    with np.load(paths["val"]) as f:
        arrays = dict(f)
    arrays["video"][2, 1, 0] = np.nan
    np.savez(paths["val"], **arrays)
    assert segment_failure(dataset_params(data)) == (
        f"precomputed: {data}/val.npz: video: non-finite values in the valid time steps of clips ['val2']")
