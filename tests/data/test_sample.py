"""Tests for the synthetic FI-V2-layout sample generator (remodiff.data.sample)."""
from __future__ import annotations

import csv
import re
import shutil
import wave
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

if shutil.which("ffmpeg") is None or shutil.which("ffprobe") is None:
    pytest.skip("ffmpeg/ffprobe binaries are not installed", allow_module_level=True)
ffmpeg = pytest.importorskip("ffmpeg")

from remodiff.data.adapters import load_pickle  # noqa: E402  (the dataset adapter's restricted unpickler)
from remodiff.data.sample import SPLIT_FILES, TRAITS, WORD_GROUPS, clip_id, generate_sample  # noqa: E402

TINY = dict(n_train=4, n_val=2, n_test=2, duration=2.0, size=32, fps=25, sample_rate=16000)
NAME_RE = re.compile(r"^[A-Za-z0-9_-]{11}\.\d{3}\.mp4$")


def _latents(root: Path) -> dict[str, np.ndarray]:
    with open(root / "latents.csv", newline="") as f:
        return {row["video"]: np.array([float(row[f"z{j}"]) for j in range(4)]) for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("tiny") / "sample"
    root.mkdir()
    (root / "stale.txt").write_text("from an older run")  # must be gone after regeneration
    summary = generate_sample(root, seed=0, workers=2, **TINY)
    assert summary["clips"] == {"train": 4, "val": 2, "test": 2}
    assert summary["total_clips"] == 8 and summary["seconds"] > 0
    return root


def test_layout_and_pickles(tiny: Path):
    assert not (tiny / "stale.txt").exists()
    assert not tiny.with_name(tiny.name + ".partial").exists()
    expected = {"train": 4, "val": 2, "test": 2}
    for split, suffix in SPLIT_FILES.items():
        videos = sorted(p.name for p in (tiny / split).iterdir())
        assert len(videos) == expected[split]
        assert all(NAME_RE.match(name) for name in videos), videos

        annotations = load_pickle(tiny / f"annotation_{suffix}.pkl")
        assert sorted(annotations) == sorted(TRAITS)
        for trait in TRAITS:
            assert sorted(annotations[trait]) == videos
            scores = np.array(list(annotations[trait].values()))
            assert np.all((scores >= 0) & (scores <= 1)), trait
            assert all(isinstance(s, float) for s in annotations[trait].values())

        transcripts = load_pickle(tiny / f"transcription_{suffix}.pkl")
        assert sorted(transcripts) == videos
        for text in transcripts.values():
            assert isinstance(text, str) and text.strip()
            assert re.fullmatch(r"[a-z]+( [a-z]+)*", text), text

    latents = _latents(tiny)
    assert len(latents) == 8
    with open(tiny / "latents.csv", newline="") as f:
        splits = [row["split"] for row in csv.DictReader(f)]
    assert sorted(set(splits)) == ["test", "train", "val"]


def test_clip_ids_look_like_first_impressions():
    names = [clip_id(0, "train", i) for i in range(12)]
    assert len(set(names)) == 12 and all(NAME_RE.match(n) for n in names)
    # Consecutive clips share a source id with increasing .nnn suffixes, like real FI clips.
    assert names[0].split(".")[0] == names[1].split(".")[0]
    assert names[0].endswith(".000.mp4") and names[1].endswith(".001.mp4")
    assert clip_id(0, "train", 0) != clip_id(1, "train", 0) != clip_id(0, "val", 0)


def test_deterministic_and_independent_of_workers(tiny: Path, tmp_path: Path):
    same = tmp_path / "same"
    other = tmp_path / "other"
    generate_sample(same, seed=0, workers=1, **TINY)  # different worker count, same seed
    generate_sample(other, seed=1, workers=2, **TINY)
    pickles = [f"{kind}_{suffix}.pkl" for kind in ("annotation", "transcription") for suffix in SPLIT_FILES.values()]
    for name in [*pickles, "latents.csv"]:
        assert (same / name).read_bytes() == (tiny / name).read_bytes(), name
        assert (other / name).read_bytes() != (tiny / name).read_bytes(), name
    for split in SPLIT_FILES:
        names = sorted(p.name for p in (tiny / split).iterdir())
        assert sorted(p.name for p in (same / split).iterdir()) == names
        # Encoding is single-threaded and bitexact, so even the mp4 bytes repeat across worker counts.
        for name in names:
            assert (same / split / name).read_bytes() == (tiny / split / name).read_bytes(), name


def test_videos_decode_with_expected_streams(tiny: Path):
    videos = sorted(tiny.glob("*/*.mp4"))
    assert len(videos) == 8
    for path in videos:
        info = ffmpeg.probe(str(path))
        streams = {s["codec_type"]: s for s in info["streams"]}
        assert sorted(s["codec_type"] for s in info["streams"]) == ["audio", "video"]
        video, audio = streams["video"], streams["audio"]
        assert video["codec_name"] == "h264" and video["pix_fmt"] == "yuv420p"
        assert (video["width"], video["height"]) == (32, 32)
        assert video["r_frame_rate"] == "25/1"
        assert audio["codec_name"] == "aac"
        assert int(audio["sample_rate"]) == 16000 and audio["channels"] == 1
        assert abs(float(info["format"]["duration"]) - 2.0) <= 0.1
        assert abs(float(video["duration"]) - 2.0) <= 0.1


def _decode(path: Path, size: int, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """First 5 RGB frames (colour is constant over time) and the whole mono waveform, in one ffmpeg call."""
    wav_path = path.with_suffix(".wav")
    source = ffmpeg.input(str(path))
    video = source.video.output("pipe:", format="rawvideo", pix_fmt="rgb24", vframes=5)
    audio = source.audio.output(str(wav_path), acodec="pcm_s16le", ac=1, ar=sample_rate)
    raw, _ = ffmpeg.merge_outputs(video, audio).run(capture_stdout=True, quiet=True)
    frames = np.frombuffer(raw, np.uint8).reshape(-1, size, size, 3).astype(np.float32) / 255.0
    with wave.open(str(wav_path), "rb") as f:
        samples = np.frombuffer(f.readframes(f.getnframes()), "<i2").astype(np.float32) / 32768.0
    wav_path.unlink()
    return frames, samples


def test_modalities_carry_latent_signal(tmp_path: Path):
    size, sample_rate = 32, 16000
    root = tmp_path / "signal"
    generate_sample(root, n_train=30, n_val=0, n_test=0, duration=2.0, size=size, sample_rate=sample_rate,
                    seed=3, workers=2)
    latents = _latents(root)
    transcripts = load_pickle(root / "transcription_training.pkl")
    names = sorted(latents)
    with ThreadPoolExecutor(4) as pool:  # ffmpeg runs in subprocesses, so threads decode in parallel
        decoded = list(pool.map(lambda name: _decode(root / "train" / name, size, sample_rate), names))
    z, colour, pitch, loudness, text_z0 = [], [], [], [], []
    for name, (frames, audio) in zip(names, decoded):
        # Mean colour of the disc: strongly saturated pixels (the background is a near-grey tint).
        disc = frames.max(axis=-1) - frames.min(axis=-1) > 0.5
        red, _, blue = frames[disc].mean(axis=0)
        colour.append(blue - red)
        spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio))))
        pitch.append(np.log(np.fft.rfftfreq(len(audio), 1.0 / sample_rate)[spectrum.argmax()]))
        loudness.append(np.log(np.sqrt(np.mean(audio ** 2))))
        positive, negative = WORD_GROUPS[0]
        words = transcripts[name].split()
        text_z0.append(sum(w in positive for w in words) - sum(w in negative for w in words))
        z.append(latents[name])
    z = np.array(z)

    def r(feature, j):
        return np.corrcoef(np.asarray(feature, float), z[:, j])[0, 1]

    assert r(colour, 1) > 0.6      # video hue  <- z1
    assert r(pitch, 1) > 0.6       # audio pitch <- z1
    assert r(loudness, 2) > 0.6    # audio level <- z2
    assert r(text_z0, 0) > 0.6     # word choice <- z0


def test_rejects_bad_settings(tmp_path: Path):
    with pytest.raises(ValueError):
        generate_sample(tmp_path / "x", n_latents=3)
    with pytest.raises(ValueError):
        generate_sample(tmp_path / "x", size=33)
