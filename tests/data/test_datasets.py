"""Dataset adapters (MMSA, precomputed, RAVDESS, CREMA-D, manifest), ASR, and the segment / extract stages on them.

Every fixture is written here, in the dataset's real format, into a temporary directory."""
import csv
import json
import pickle
import shutil
import subprocess

import h5py
import numpy as np
import pytest

from remodiff.pipeline import stage
from remodiff.data import build_dataset
from remodiff.data.decode import decode_audio, segment_clip
from remodiff.data.precomputed import pool_segments
from remodiff.hub import ModelUnavailableError
from remodiff.store import load_featureset
from tests.conftest import SHARED_MINI, make_video

SEGMENT = {"segments": 3, "fps": 5, "frame_size": 16, "sample_rate": 16000, "workers": 1}
FAST_FEATURES = {"audio": {"backend": "logmel", "n_mels": 8}, "video": {"backend": "frame_stats", "thumb": 2}}


def run_stages(dataset: dict, features: dict, segment: dict = SEGMENT) -> dict:
    """segment + extract in the current directory; returns the segment report."""
    params = {"dataset": dataset, "segment": segment, "features": features}
    report = stage("segment")(params)
    stage("extract")(params)
    return report


# ------------------------------------------------------------------------------------------ pooling
def test_pool_segments_means_valid_steps_repeats_short_clips_and_marks_empty_ones():
    x = np.arange(3 * 8 * 2, dtype=np.float32).reshape(3, 8, 2)
    valid = np.zeros((3, 8), bool)
    valid[0, :7] = True  # 7 steps -> runs of 3, 2, 2
    valid[1, [2, 5]] = True  # 2 steps for 3 segments -> steps 2, 2, 5
    pooled, available = pool_segments(x, valid, 3, ["a", "b", "c"])
    np.testing.assert_allclose(pooled[0], [x[0, 0:3].mean(0), x[0, 3:5].mean(0), x[0, 5:7].mean(0)])
    np.testing.assert_allclose(pooled[1], x[1, [2, 2, 5]])
    assert available[:2].all() and not available[2].any() and not pooled[2].any()
    x[0, 1, 0] = np.nan
    with pytest.raises(ValueError, match=r"\['a'\]"):
        pool_segments(x, valid, 3, ["a", "b", "c"])
    x[0, 1, 0] = 0.0
    x[2, 0, 0] = np.inf  # outside the valid steps: ignored
    assert pool_segments(x, valid, 3, ["a", "b", "c"])[1][:2].all()


# ------------------------------------------------------------------------------------------ MMSA
def mmsa_split(rng, n: int, aligned: bool, prefix: str) -> dict:
    t = 10
    part = {"id": np.array([f"{prefix}vid$_${i}" for i in range(n)], dtype=object),
            "raw_text": np.array(["some words"] * n, dtype=object),
            "regression_labels": rng.uniform(-3, 3, n).astype(np.float32),
            "text": rng.normal(size=(n, t, 6)).astype(np.float32),
            "text_bert": rng.integers(0, 50, (n, 3, t)).astype(np.float32),
            "audio": rng.normal(size=(n, t, 4)).astype(np.float32),
            "vision": rng.normal(size=(n, t, 5)).astype(np.float32),
            "annotations": np.array(["Positive"] * n, dtype=object)}
    if aligned:
        for key in ("text", "audio", "vision"):
            part[key][:, 8:] = 0.0  # padding: zero rows after the words
    else:
        part["audio_lengths"] = rng.integers(4, t + 1, n).tolist()
        part["vision_lengths"] = rng.integers(4, t + 1, n).tolist()
    part["audio"][0, 0, 0] = -np.inf  # COVAREP does this; MMSA's loader sets it to 0
    return part


def write_mmsa(root, aligned: bool = True, name: str = "aligned_50.pkl") -> dict:
    rng = np.random.default_rng(0)
    data = {s: mmsa_split(rng, n, aligned, s) for s, n in (("train", 6), ("valid", 3), ("test", 4))}
    data["test"]["regression_labels"][1] = np.nan
    with open(root / name, "wb") as f:
        pickle.dump(data, f)
    return data


def test_mmsa_pickle_becomes_the_feature_store_through_segment_and_extract(tmp_path, monkeypatch):
    data_dir = tmp_path / "MOSI"
    data_dir.mkdir()
    data = write_mmsa(data_dir, aligned=False, name="unaligned_50.pkl")
    monkeypatch.chdir(tmp_path)
    features = {"audio": {"backend": "logmel"}, "video": {"backend": "frame_stats"}, "text": {"backend": "tfidf",
                                                                                               "dtype": "float16"}}
    report = run_stages({"name": "mmsa", "root": str(data_dir), "mmsa": {"file": "unaligned_50.pkl"},
                         "drop_bad_labels": True}, features)
    assert report["clips"] == {"train": 6, "val": 3, "test": 3}
    assert [s["clip"] for s in report["skipped"]] == ["testvid$_$1"]  # the NaN label
    assert report["counts"]["skipped"] == 1
    train, test = load_featureset("data/features/train.h5"), load_featureset("data/features/test.h5")
    assert train.attrs["task"] == "regression" and train.label_names == ["sentiment"]
    assert {m: x.shape for m, x in train.features.items()} == {"audio": (6, 3, 4), "video": (6, 3, 5),
                                                               "text": (6, 3, 6)}
    np.testing.assert_allclose(train.labels[:, 0], data["train"]["regression_labels"])
    part, i = data["train"], 2
    steps = np.array_split(np.arange(part["vision_lengths"][i]), 3)
    np.testing.assert_allclose(train.features["video"][i], [part["vision"][i, s].mean(0) for s in steps], rtol=1e-6)
    audio0 = np.where(np.isfinite(part["audio"][0]), part["audio"][0], 0.0)
    first = np.array_split(np.arange(part["audio_lengths"][0]), 3)[0]
    np.testing.assert_allclose(train.features["audio"][0, 0], audio0[first].mean(0), rtol=1e-6)
    assert test.ids == ["testvid$_$0", "testvid$_$2", "testvid$_$3"]
    with h5py.File("data/segments/train.h5") as f:
        assert len(f["clips"]) == 0  # nothing decoded


def test_mmsa_sentiment_runs_through_every_downstream_stage(tmp_path, monkeypatch):
    """MOSI-style features end to end: evaluate switches to MMSA's sentiment metrics."""
    data_dir = tmp_path / "MOSI"
    data_dir.mkdir()
    write_mmsa(data_dir)
    monkeypatch.chdir(tmp_path)
    dataset = {"name": "mmsa", "root": str(data_dir), "mmsa": {"file": "aligned_50.pkl"}, "drop_bad_labels": True}
    features = {"audio": {"backend": "logmel"}, "video": {"backend": "frame_stats"}, "text": {"backend": "tfidf"}}
    run_stages(dataset, features)
    params = {"dataset": dataset, "segment": SEGMENT, "features": features,
              "masks": {"protocol": "random", "seed": 0, "random": [0.0, 0.3]},
              "eval": {"seeds": [0], "samples": 1, "lower_bound": True},
              "imputer": {"type": "knn", "knn": {"k": 2}}, "sampling": {"knn": {}},
              "fuser": {"type": "transformer", "transformer": {"hidden": 8, "heads": 2, "layers": 1, "feedforward": 16,
                                                               "train": {"epochs": 3, "batch_size": 4}}}}
    for name in ("masks", "train_imputer", "reconstruct", "train_fuser"):
        stage(name)(params)
    results = stage("evaluate")(params)
    mmsa = {"Has0_acc_2", "Has0_F1_score", "Non0_acc_2", "Non0_F1_score", "Mult_acc_5", "Mult_acc_7", "MAE", "Corr"}
    for cell in [results["complete"], results["random"]["mr_0.3"]["imputed"],
                 results["random"]["mr_0.3"]["lower_bound"]]:
        assert mmsa <= set(cell) and "mean_acc" not in cell
        assert 0.0 <= cell["Has0_acc_2"] <= 1.0 and cell["MAE"] >= 0.0
    # nothing hidden at MR 0: the reconstruction is the complete test set itself
    assert results["random"]["mr_0.0"]["imputed"]["MAE"] == pytest.approx(results["complete"]["MAE"])


def test_mmsa_features_keys_choose_modalities_and_unknown_keys_fail(tmp_path, monkeypatch):
    write_mmsa(tmp_path)
    monkeypatch.chdir(tmp_path)
    run_stages({"name": "mmsa", "root": str(tmp_path), "drop_bad_labels": True},
               {"text": {"backend": "tfidf"}, "video": {"backend": "x"}})
    fs = load_featureset("data/features/val.h5")
    assert fs.modalities == ["text", "video"] and fs.features["text"].shape == (3, 3, 6)
    # the aligned pickle has no lengths: the zero rows of the padding are not averaged in
    assert fs.available["text"].all() and np.abs(fs.features["text"]).mean() > 0.2
    with pytest.raises(ValueError, match=r"\['vision'\].*has \['audio', 'text', 'video'\]"):
        stage("extract")({"features": {"vision": {}}, "segment": SEGMENT})


def test_mmsa_errors_name_the_missing_file_and_the_bert_only_text(tmp_path):
    adapter = build_dataset({"name": "mmsa", "root": str(tmp_path)})
    with pytest.raises(FileNotFoundError, match="aligned_50.pkl"):
        adapter.features("train", 3)
    data = write_mmsa(tmp_path)
    for part in data.values():
        del part["text"]
    with open(tmp_path / "aligned_50.pkl", "wb") as f:
        pickle.dump(data, f)
    with pytest.raises(ValueError, match="text_bert"):
        build_dataset({"name": "mmsa", "root": str(tmp_path)}).features("train", 3)


# ------------------------------------------------------------------------------------------ precomputed
@pytest.mark.parametrize("suffix", ["npz", "h5"])
def test_precomputed_files_with_masks_and_class_labels(tmp_path, suffix):
    rng = np.random.default_rng(1)
    for split, n in (("train", 5), ("val", 2), ("test", 3)):
        arrays = {"ids": np.array([f"{split}{i}" for i in range(n)]), "labels": np.arange(n) % 2,
                  "eeg": rng.normal(size=(n, 6, 3)), "gaze": rng.normal(size=(n, 3, 2)),
                  "available_eeg": np.ones((n, 6), bool)}
        arrays["available_eeg"][0] = False  # no EEG for the first clip
        if split == "test":
            arrays["labels"][2] = 7  # not a class index: skipped (drop_bad_labels)
        if suffix == "npz":
            np.savez(tmp_path / f"{split}.npz", **arrays)
        else:
            with h5py.File(tmp_path / f"{split}.h5", "w") as f:
                for k, v in arrays.items():
                    f[k] = v.astype("S") if k == "ids" else v
    params = {"name": "precomputed", "root": str(tmp_path),
              "precomputed": {"files": {s: f"{s}.{suffix}" for s in ("train", "val", "test")},
                              "task": "classification", "classes": ["low", "high"]}, "drop_bad_labels": True}
    adapter = build_dataset(params)
    train = adapter.features("train", 3)
    assert train.ids == [f"train{i}" for i in range(5)] and train.labels[:, 0].tolist() == [0, 1, 0, 1, 0]
    assert not train.available["eeg"][0].any() and train.available["eeg"][1:].all()
    assert train.features["gaze"].shape == (5, 3, 2)  # already 3 steps: passes through unchanged
    test = adapter.features("test", 3)
    assert test.ids == ["test0", "test1"] and adapter.skipped[0]["clip"] == "test2"
    assert adapter.label_names == ["label_0"]


def test_precomputed_missing_file_and_bad_task(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"train\.npz"):
        build_dataset({"name": "precomputed", "root": str(tmp_path)}).features("train", 3)
    with pytest.raises(ValueError, match="classes"):
        build_dataset({"name": "precomputed", "root": str(tmp_path), "precomputed": {"task": "classification"}})


# ------------------------------------------------------------------------------------------ RAVDESS
def write_ravdess(root) -> None:
    for actor, emotion in ((1, 6), (2, 1), (21, 3), (23, 8)):
        folder = root / f"Actor_{actor:02d}"
        folder.mkdir(exist_ok=True)
        make_video(folder / f"01-01-{emotion:02d}-01-02-01-{actor:02d}.mp4", duration=1.0, size=16)
    (root / "Actor_01" / "01-02-03-01-01-01-01.mp4").touch()  # song: left out
    (root / "Actor_01" / "02-01-03-01-01-01-01.mp4").touch()  # video-only: left out
    (root / "Actor_01" / "01-01-09-01-01-01-01.mp4").touch()  # no emotion 09: skipped
    (root / "Actor_01" / "notes.mp4").touch()  # not the naming scheme: skipped


def test_ravdess_classification_with_actor_splits_through_segment_and_extract(tmp_path, monkeypatch):
    root = tmp_path / "ravdess"
    root.mkdir()
    write_ravdess(root)
    monkeypatch.chdir(tmp_path)
    report = run_stages({"name": "ravdess", "root": str(root), "ravdess": {"val_actors": [21], "test_actors": [23]},
                         "first_impressions": {"split_dirs": {"test": "val"}}, "drop_bad_labels": True},
                        FAST_FEATURES)
    assert report["clips"] == {"train": 2, "val": 1, "test": 1}
    assert sorted(s["clip"] for s in report["skipped"]) == ["01-01-09-01-01-01-01.mp4", "notes.mp4"]
    # RAVDESS has no transcripts: each split named once, no clip listed
    assert report["no_transcript"] == [] and report["none_has"]["no_transcript"] == ["train", "val", "test"]
    train = load_featureset("data/features/train.h5")
    assert train.ids == ["01-01-01-01-02-01-02", "01-01-06-01-02-01-01"]
    assert train.labels[:, 0].tolist() == [0.0, 5.0]  # neutral, fearful
    assert train.attrs["task"] == "classification" and train.attrs["classes"][5] == "fearful"
    assert load_featureset("data/features/test.h5").labels[:, 0].tolist() == [7.0]  # surprised


def test_classification_runs_through_every_downstream_stage(tmp_path, monkeypatch):
    """RAVDESS end to end: masks, imputer, lower-bound fusers and evaluate switch to classification metrics."""
    root = tmp_path / "ravdess"
    root.mkdir()
    write_ravdess(root)
    monkeypatch.chdir(tmp_path)
    dataset = {"name": "ravdess", "root": str(root), "ravdess": {"val_actors": [21], "test_actors": [23]},
               "drop_bad_labels": True}
    run_stages(dataset, FAST_FEATURES)
    train = {"epochs": 3, "batch_size": 4, "patience": 3}
    params = {"dataset": dataset, "segment": SEGMENT, "features": FAST_FEATURES,
              "masks": {"protocol": "fixed", "seed": 0, "fixed": None},
              "eval": {"seeds": [0, 1], "samples": 2, "lower_bound": True},
              "imputer": {"type": "random", "random": {}}, "sampling": {"random": {}},
              "fuser": {"type": "late", "late": {"hidden": 8, "train": train}}}
    for name in ("masks", "train_imputer", "reconstruct", "train_fuser"):
        stage(name)(params)
    results = stage("evaluate")(params)
    for cell in [results["complete"], results["train_mean"], results["fixed"]["video_missing"]["imputed"],
                 results["fixed"]["audio_missing"]["lower_bound"]]:
        assert {"accuracy", "macro_f1", "weighted_f1", "uar"} <= set(cell) and "mean_acc" not in cell
        assert 0.0 <= cell["accuracy"] <= 1.0
    # one test clip of class "surprised"; the floor predicts the training majority class, which is not it
    assert results["train_mean"]["accuracy"] == 0.0


def test_ravdess_without_videos_and_overlapping_splits_fail_clearly(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .mp4 files"):
        build_dataset({"name": "ravdess", "root": str(tmp_path)}).clips("train")
    with pytest.raises(ValueError, match=r"\[22\]"):
        build_dataset({"name": "ravdess", "root": str(tmp_path),
                       "ravdess": {"val_actors": [21, 22], "test_actors": [22]}})


# ------------------------------------------------------------------------------------------ CREMA-D
def ffmpeg(*args: str) -> None:
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    subprocess.run(["ffmpeg", "-v", "error", "-y", *args], check=True)


def test_crema_d_takes_the_wav_when_the_flv_has_no_audio(tmp_path):
    (tmp_path / "VideoFlash").mkdir()
    (tmp_path / "AudioWAV").mkdir()
    for name in ("1001_DFA_ANG_XX", "1083_IEO_SAD_HI", "1002_TIE_XYZ_LO"):
        ffmpeg("-f", "lavfi", "-i", "testsrc=size=16x16:rate=25:duration=1", "-c:v", "flv",
               str(tmp_path / "VideoFlash" / f"{name}.flv"))
    ffmpeg("-f", "lavfi", "-i", "sine=frequency=300:sample_rate=16000:duration=1",
           str(tmp_path / "AudioWAV" / "1001_DFA_ANG_XX.wav"))
    with pytest.raises(ValueError, match=r"clip 1002_TIE_XYZ_LO.flv \(train\): emotion 'XYZ' is not one of"):
        build_dataset({"name": "crema_d", "root": str(tmp_path)}).clips("train")
    adapter = build_dataset({"name": "crema_d", "root": str(tmp_path), "drop_bad_labels": True})
    train, test = adapter.clips("train"), adapter.clips("test")
    assert [c.id for c in train] == ["1001_DFA_ANG_XX"] and train[0].labels == [0.0]
    assert [c.id for c in test] == ["1083_IEO_SAD_HI"] and test[0].labels == [5.0] and test[0].audio_path is None
    assert [s["clip"] for s in adapter.skipped] == ["1002_TIE_XYZ_LO.flv"]
    with_wav = segment_clip(train[0].path, None, 3, 5, 16, 16000, train[0].audio_path)
    assert with_wav.has_audio and with_wav.audio.shape == (3, round(with_wav.duration / 3 * 16000))
    assert np.abs(with_wav.audio[1]).max() > 0.1  # the sine, not silence
    without = segment_clip(test[0].path, None, 3, 5, 16, 16000, test[0].audio_path)
    assert not without.has_audio and not without.audio.any()
    with pytest.raises(FileNotFoundError, match="VideoFlash"):
        build_dataset({"name": "crema_d", "root": str(tmp_path / "AudioWAV")}).clips("train")


# ------------------------------------------------------------------------------------------ manifest
def write_manifest(root, rows: list[dict]) -> None:
    with open(root / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def test_manifest_resolves_paths_maps_classes_and_skips_bad_rows(tmp_path):
    (tmp_path / "videos").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "videos" / f"{name}.mp4").touch()
    rows = [{"path": "videos/a.mp4", "split": "train", "mood": "sad", "transcript": "I feel low"},
            {"path": "videos/b.mp4", "split": "train", "mood": "happy", "transcript": ""},
            {"path": "videos/c.mp4", "split": "test", "mood": "bored", "transcript": ""},
            {"path": "videos/missing.mp4", "split": "test", "mood": "happy", "transcript": ""}]
    write_manifest(tmp_path, rows)
    adapter = build_dataset({"name": "manifest", "root": str(tmp_path), "drop_bad_labels": True, "manifest": {
        "labels": ["mood"], "task": "classification", "classes": ["happy", "sad"]}})
    train = adapter.clips("train")
    assert [(c.id, c.labels, c.transcript) for c in train] == [("a", [1.0], "I feel low"), ("b", [0.0], None)]
    assert train[0].path == tmp_path / "videos" / "a.mp4"
    assert adapter.clips("test") == [] and sorted(s["clip"] for s in adapter.skipped) == ["c", "missing"]
    rows[1]["mood"] = "0.5x"
    write_manifest(tmp_path, rows)
    regression = build_dataset({"name": "manifest", "root": str(tmp_path), "manifest": {"labels": ["mood"]}})
    with pytest.raises(ValueError, match=r"clip a \(train\): .*manifest.csv line 2: labels \['sad'\] are not all "
                                         r"numbers; fix the label, or set dataset.drop_bad_labels: true"):
        regression.clips("train")
    with pytest.raises(ValueError, match=r"lacks the columns \['valence'\]"):
        build_dataset({"name": "manifest", "root": str(tmp_path), "manifest": {"labels": ["valence"]}})
    rows[0]["split"] = "dev"
    write_manifest(tmp_path, rows)
    with pytest.raises(ValueError, match="dev"):
        build_dataset({"name": "manifest", "root": str(tmp_path), "manifest": {"labels": ["mood"]}})


def test_settings_outside_the_adapter_section_are_refused(tmp_path):
    with pytest.raises(ValueError, match="dataset.first_impressions"):
        build_dataset({"name": "first_impressions", "root": str(tmp_path), "split_dirs": {"test": "val"}})


# ------------------------------------------------------------------------------------------ ASR
@pytest.fixture(scope="module")
def tiny_whisper(tmp_path_factory) -> str:
    """A random 1-layer Whisper with a hand-made BPE vocabulary, saved like a hub model (no network)."""
    import torch
    from transformers import (WhisperConfig, WhisperFeatureExtractor, WhisperForConditionalGeneration,
                              WhisperProcessor, WhisperTokenizer)

    folder = tmp_path_factory.mktemp("whisper")
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|notimestamps|>"]
    tokens = list("abcdefghijklmnopqrstuvwxyz") + ["Ġ" + w for w in ("hello", "world", "kids", "door")] + specials
    vocab = {t: i for i, t in enumerate(tokens)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = WhisperTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), unk_token=specials[0],
                                 bos_token=specials[0], eos_token=specials[0], pad_token=specials[0])
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    torch.manual_seed(0)
    config = WhisperConfig(vocab_size=len(vocab), d_model=16, encoder_layers=1, decoder_layers=1,
                           encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
                           decoder_ffn_dim=32, num_mel_bins=80, max_target_positions=64,
                           pad_token_id=vocab[specials[0]], bos_token_id=vocab[specials[0]],
                           eos_token_id=vocab[specials[0]], decoder_start_token_id=vocab[specials[1]])
    model_dir = folder / "model"
    model = WhisperForConditionalGeneration(config)
    # as in real Whisper checkpoints: control tokens are never generated, and the text never starts with the end
    model.generation_config.suppress_tokens = [vocab[t] for t in specials[1:]]
    model.generation_config.begin_suppress_tokens = [vocab[specials[0]]]
    model.save_pretrained(model_dir)
    WhisperProcessor(feature_extractor=WhisperFeatureExtractor(feature_size=80), tokenizer=tokenizer
                     ).save_pretrained(model_dir)
    return str(model_dir)


def test_asr_transcribes_clips_without_transcript_in_the_segment_stage(tmp_path, monkeypatch, tiny_whisper):
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    root = tmp_path / "ravdess"
    (root / "Actor_01").mkdir(parents=True)
    make_video(root / "Actor_01" / "01-01-05-02-01-01-01.mp4", duration=1.0, size=16)
    make_video(root / "Actor_01" / "01-01-04-02-01-01-01.mp4", duration=1.0, size=16, audio=False)
    monkeypatch.chdir(tmp_path)
    asr = {"backend": "whisper", "model": tiny_whisper, "max_new_tokens": 8, "device": "cpu"}
    report = stage("segment")({"dataset": {"name": "ravdess", "root": str(root), "asr": asr}, "segment": SEGMENT})
    assert [e["clip"] for e in report["transcribed"]] == ["01-01-05-02-01-01-01"]
    assert [e["clip"] for e in report["no_transcript"]] == ["01-01-04-02-01-01-01"]  # no audio: nothing to hear
    with h5py.File("data/segments/train.h5") as f:
        clip = f["clips/01-01-05-02-01-01-01"]
        stored = json.loads(clip.attrs["transcript"])
    audio = decode_audio(root / "Actor_01" / "01-01-05-02-01-01-01.mp4", 16000)
    # the same model and audio, run directly: the stage stored exactly that text, cut into the segments
    processor, model = WhisperProcessor.from_pretrained(tiny_whisper), WhisperForConditionalGeneration.from_pretrained(
        tiny_whisper)
    with torch.no_grad():
        ids = model.generate(processor(audio, sampling_rate=16000, return_tensors="pt").input_features,
                             max_new_tokens=8)
    expected = processor.batch_decode(ids, skip_special_tokens=True)[0].split()
    assert len(stored) == 3 and expected and " ".join(stored).split() == expected


def test_asr_model_missing_is_one_clear_error(tmp_path):
    from remodiff.data.asr import build_asr

    with pytest.raises(ModelUnavailableError, match="nowhere/whisper"):
        build_asr({"backend": "whisper", "model": str(tmp_path / "nowhere" / "whisper")})
    with pytest.raises(ValueError, match="whisper"):
        build_asr({"backend": "vosk", "model": "x"})


# ------------------------------------------------------------------------------------------ First Impressions
@pytest.mark.skipif(not SHARED_MINI.is_dir(), reason="../shared/data/fi-v2-mini is not present")
def test_real_first_impressions_split_dirs_evaluate_on_val():
    adapter = build_dataset({"name": "first_impressions", "root": str(SHARED_MINI),
                             "first_impressions": {"split_dirs": {"test": "val"}}})
    test, val = adapter.clips("test"), adapter.clips("val")
    assert len(adapter.clips("train")) == 8 and len(test) == 4
    assert [c.id for c in test] == [c.id for c in val] and all(c.split == "test" for c in test)
