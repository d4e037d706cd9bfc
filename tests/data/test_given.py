"""Given features (dataset.given_features + the `given` backend) and First Impressions without videos: clips from
the annotations, the grouped val split (val_every), skips counted, bad rows named, segment + extract end to end."""
import csv
import pickle
import zlib

import numpy as np
import pytest

from remodiff.data import build_dataset
from remodiff.data.given import read_given
from remodiff.features import build_extractor
from remodiff.pipeline import stage
from remodiff.store import load_featureset
from tests.conftest import COMMITTED, ROOT, TRAITS

GIVEN = {"audio": {"file": "audio_features.csv", "id_column": "video_file", "exclude": ["split"]}}
# five YouTube videos with two clips each; which ones land in val follows crc32(video id) % 3
VIDEOS = ["vid_a", "vid_b", "vid_c", "vid_d", "vid_e"]
TRAIN = [f"{v}.00{i}.mp4" for v in VIDEOS for i in (1, 2)]
TEST = ["tst_x.001.mp4", "tst_y.001.mp4"]


def write_fi_without_videos(root, csv_rows: dict[str, list] | None = None) -> None:
    """Annotations + transcripts of both official splits and an audio_features.csv (2 features + split column)."""
    rng = np.random.default_rng(0)
    for tag, clips in (("training", TRAIN), ("validation", TEST)):
        with open(root / f"annotation_{tag}.pkl", "wb") as f:
            pickle.dump({t: {c: float(rng.uniform()) for c in clips} for t in TRAITS}, f, protocol=2)
        with open(root / f"transcription_{tag}.pkl", "wb") as f:
            # the first training clip has no transcript: its text is missing, never invented
            pickle.dump({c: f"words of {c.split('.')[0]} clip" for c in clips if c != TRAIN[0]}, f, protocol=2)
    rows = csv_rows if csv_rows is not None else {
        c: [f"{rng.normal():.4f}", f"{rng.normal():.4f}", "training" if c in TRAIN else "validation"]
        for c in TRAIN + TEST}
    with open(root / "audio_features.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["video_file", "rms", "zcr", "split"])
        for clip, values in rows.items():
            writer.writerow([clip, *values])


def fi_dataset(root, **first_impressions) -> dict:
    return {"name": "first_impressions", "root": str(root), "given_features": GIVEN,
            "first_impressions": {"split_dirs": {"test": "val"}, **first_impressions}}


def test_clips_come_from_the_annotations_and_val_every_groups_by_youtube_id(tmp_path):
    write_fi_without_videos(tmp_path)
    adapter = build_dataset(fi_dataset(tmp_path, val_every=3))
    train, val, test = (adapter.clips_with_given(s) for s in ("train", "val", "test"))
    in_val = {v for v in VIDEOS if zlib.crc32(v.encode()) % 3 == 0}
    assert in_val and in_val != set(VIDEOS)  # the fixture exercises both sides
    assert {c.id.split(".")[0] for c in val} == in_val
    assert {c.id.split(".")[0] for c in train} == set(VIDEOS) - in_val
    assert sorted(c.id for c in train + val) == sorted(TRAIN) and [c.id for c in test] == TEST
    assert all(c.path is None and c.split == s for s, cs in (("train", train), ("val", val)) for c in cs)
    assert next(c for c in train + val if c.id == TRAIN[0]).transcript is None
    assert test[0].given["audio"].shape == (2,) and test[0].labels[0] is not None


def test_rows_and_labels_that_do_not_match_are_skipped_and_counted(tmp_path):
    rows = {c: ["0.1", "0.2", "training"] for c in TRAIN[1:] + TEST}  # TRAIN[0] has no row
    rows["orphan.000.mp4"] = ["0.3", "0.4", "training"]  # a row without labels
    write_fi_without_videos(tmp_path, rows)
    adapter = build_dataset(fi_dataset(tmp_path))
    listed = {c.id for s in ("train", "val", "test") for c in adapter.clips_with_given(s)}
    adapter.skip_unlabelled_given(listed)
    assert TRAIN[0] not in listed and len(listed) == len(TRAIN) - 1 + len(TEST)
    assert sorted(s["clip"] for s in adapter.skipped) == sorted([TRAIN[0], "orphan.000.mp4"])


@pytest.mark.parametrize("row, message", [
    (["nan", "0.2", "training"], r"audio_features.csv row 2 \(clip .*\): missing or non-finite value in \['rms'\]"),
    (["", "0.2", "training"], r"audio_features.csv row 2 \(clip .*\): a feature is not a number"),
    (["0.1", "training"], r"audio_features.csv row 2: 3 fields, the header has 4"),
])
def test_bad_rows_are_errors_naming_file_and_row(tmp_path, row, message):
    write_fi_without_videos(tmp_path, {TRAIN[0]: row})
    with pytest.raises(ValueError, match=message):
        build_dataset(fi_dataset(tmp_path))


def test_bad_given_settings_name_the_key(tmp_path):
    write_fi_without_videos(tmp_path)
    with pytest.raises(ValueError, match="'smell'.* not modalities"):
        build_dataset({**fi_dataset(tmp_path), "given_features": {"smell": GIVEN["audio"]}})
    with pytest.raises(FileNotFoundError, match="given_features.audio: no file"):
        read_given(tmp_path, "audio", {"file": "nope.csv"})
    with pytest.raises(ValueError, match=r"no column \['clip'\]"):
        read_given(tmp_path, "audio", {"file": "audio_features.csv", "id_column": "clip"})
    with pytest.raises(ValueError, match="val_every"):
        build_dataset(fi_dataset(tmp_path, val_every=1))


def test_given_backend_fits_any_modality_and_needs_the_dataset_setting():
    extractor = build_extractor("audio", {"backend": "given"})
    assert extractor.modality == "audio"
    with pytest.raises(ValueError, match="dataset.given_features.audio"):
        extractor.fit([])


def test_given_audio_and_extracted_text_through_segment_and_extract(tmp_path, monkeypatch):
    root = tmp_path / "fi"
    root.mkdir()
    write_fi_without_videos(root)
    monkeypatch.chdir(tmp_path)
    params = {"dataset": fi_dataset(root, val_every=3),
              "segment": {"segments": 2, "fps": 5, "frame_size": 16, "sample_rate": 16000, "workers": 1},
              "features": {"audio": {"backend": "given"}, "text": {"backend": "tfidf", "max_features": 16}}}
    report = stage("segment")(params)
    stage("extract")(params)
    assert report["clips"]["test"] == 2 and report["counts"]["no_audio"] == 0
    first_split = "val" if zlib.crc32(b"vid_a") % 3 == 0 else "train"
    assert report["no_transcript"] == [{"clip": TRAIN[0], "split": first_split}]
    with open(root / "audio_features.csv") as f:
        given = {r["video_file"]: [float(r["rms"]), float(r["zcr"])] for r in csv.DictReader(f)}
    test = load_featureset("data/features/test.h5")
    assert test.ids == TEST and test.features["audio"].shape == (2, 2, 2)
    np.testing.assert_allclose(test.features["audio"][:, 0], [given[c] for c in TEST], rtol=1e-6)
    np.testing.assert_array_equal(test.features["audio"][:, 0], test.features["audio"][:, 1])  # repeated
    assert test.available["audio"].all() and test.available["text"].all()
    assert test.features["text"].any(axis=2).all()  # words in every segment of these transcripts
    first = load_featureset(f"data/features/{first_split}.h5")
    assert first.available["audio"].all() and not first.available["text"][first.ids.index(TRAIN[0])].any()


def test_remodiff_check_accepts_the_fi_switches_and_refuses_bad_given_settings_in_one_line(tmp_path, monkeypatch):
    """The committed metrics/real/fi/switches.yaml on a fake dev set pass `remodiff check`; bad values fail."""
    import copy

    from remodiff.check import SettingError, check_params
    from remodiff.realdata import apply_setting, read_switches

    write_fi_without_videos(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = copy.deepcopy(COMMITTED)
    for setting in read_switches(ROOT / "metrics" / "real" / "fi" / "switches.yaml").settings:
        apply_setting(params, setting.replace("{data}", str(tmp_path)))
    check_params(params)
    for given, message in [({"audio": {"file": "nope.csv"}}, "given_features.audio: no file"),
                           ({"audio": {"file": "audio_features.csv", "idcol": "x"}}, r"unknown settings \['idcol'\]")]:
        with pytest.raises(SettingError, match=message) as caught:
            check_params({**params, "dataset": {**params["dataset"], "given_features": given}})
        assert "\n" not in str(caught.value)
    with pytest.raises(SettingError, match="val_every"):
        check_params({**params, "dataset": {**params["dataset"], "first_impressions": {"val_every": 0}}})
