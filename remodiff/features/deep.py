"""Pretrained-model backends of the ReMoDiff design: RoBERTa text, wav2vec2 audio, CLIP (or any timm) vision.

Every backend stores one vector per segment, so the feature store keeps its ``[N, S, D]`` layout:

* ``hf_text``: the segment's transcript through a Hugging Face encoder, pooled over tokens (``cls`` or ``mean``).
* ``hf_audio``: the hidden states of a speech encoder (wav2vec2, HuBERT, WavLM, data2vec-audio or Whisper's
  encoder) over the segment's audio, one ``layer`` or the mean of all, pooled over time (``mean`` or
  ``mean_std``). The design's 149 x 1024 per-segment sequence becomes its temporal pooling, which is what the
  downstream models read.
* ``clip`` / ``timm``: one embedding per sampled frame (optionally L2-normalised), averaged over the segment's
  frames.

Models load from a local directory / file or from the Hugging Face cache; ``HF_HUB_OFFLINE`` is honoured and a
model that is not there fails with :class:`ModelUnavailableError`, which says what was tried and how to get it
(``remodiff fetch-models`` on a machine with internet). ``transformers``, ``open_clip`` and ``timm`` (the
``deep`` extra) are imported only when such a backend is built. ``device`` and ``precision`` resolve as in
training (:mod:`remodiff.device`: each launched process its own GPU; a precision the device cannot run falls back
to fp32 with a warning).
"""
from __future__ import annotations

import abc
import logging
import math
from contextlib import nullcontext
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from remodiff.device import PRECISIONS, resolve_device, usable_precision
from remodiff.data.segments import SegmentedClip
from remodiff.features.base import EXTRACTORS, Extractor
from remodiff.hub import ModelUnavailableError, load_pretrained, snapshot, unavailable

log = logging.getLogger(__name__)

def check_choice(backend: str, name: str, value: str, valid) -> None:
    if value not in valid:
        raise ValueError(f"{backend}: {name} must be one of {sorted(valid)}, got {value!r}")


class TorchExtractor(Extractor):
    """Shared by the pretrained-model backends: device, autocast precision and batched inference.

    ``batch_size`` counts model inputs per forward pass (text segments, audio segments or video frames);
    :meth:`extract_batch` pools the inputs of several clips into those passes.
    """

    def __init__(self, device: str = "auto", precision: str = "fp32", batch_size: int = 32, **params):
        super().__init__(device=device, precision=precision, batch_size=batch_size, **params)
        check_choice(type(self).__name__, "precision", precision, PRECISIONS)
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.device = resolve_device(device)
        self.autocast_dtype = PRECISIONS[usable_precision(precision, self.device, type(self).__name__)]
        self.batch_size = batch_size

    def extract(self, clip: SegmentedClip) -> np.ndarray:
        return self.extract_batch([clip])[0]

    @abc.abstractmethod
    def extract_batch(self, clips: list[SegmentedClip]) -> list[np.ndarray]:
        """``[S, D]`` float32 features of each clip (all of which have the modality)."""

    def run_batches(self, n: int, forward: Callable[[slice], torch.Tensor]) -> np.ndarray:
        """``forward`` over ``n`` inputs, ``batch_size`` at a time, concatenated as ``[n, ...]`` float32."""
        autocast = (torch.autocast(self.device.type, dtype=self.autocast_dtype) if self.autocast_dtype
                    else nullcontext())
        outputs = []
        with torch.inference_mode(), autocast:
            for start in range(0, n, self.batch_size):
                outputs.append(forward(slice(start, min(n, start + self.batch_size))).float().cpu())
        return torch.cat(outputs).numpy() if outputs else np.zeros((0, self.dim), np.float32)


@EXTRACTORS.register("hf_text")
class HfText(TorchExtractor):
    """A Hugging Face text encoder (the design: RoBERTa fine-tuned for emotion) over each segment's transcript;
    token states pooled by ``cls`` (the first token) or ``mean`` (over non-padding tokens)."""

    modality = "text"

    def __init__(self, model: str = "j-hartmann/emotion-english-distilroberta-base", revision: str | None = None,
                 pooling: str = "cls", max_length: int = 512, batch_size: int = 64, device: str = "auto",
                 precision: str = "fp32"):
        super().__init__(device, precision, batch_size, model=model, revision=revision, pooling=pooling,
                         max_length=max_length)
        check_choice("hf_text", "pooling", pooling, {"cls", "mean"})
        from transformers import AutoModel, AutoTokenizer

        self.pooling = pooling
        self.tokenizer = load_pretrained(self.modality, AutoTokenizer, model, revision)
        self.model = load_pretrained(self.modality, AutoModel, model, revision).to(self.device).eval()
        self.max_length = min(max_length, self.tokenizer.model_max_length)
        log.info("hf_text: %s on %s, %d-d, %s pooling", model, self.device, self.dim, pooling)

    @classmethod
    def fetch(cls, model: str = "j-hartmann/emotion-english-distilroberta-base", revision: str | None = None,
              **_) -> list[str]:
        return [snapshot(cls.modality, model, revision)]

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def embed(self, texts: list[str]) -> np.ndarray:
        def forward(batch: slice) -> torch.Tensor:
            tokens = self.tokenizer(texts[batch], padding=True, truncation=True, max_length=self.max_length,
                                    return_tensors="pt").to(self.device)
            states = self.model(**tokens).last_hidden_state
            if self.pooling == "cls":
                return states[:, 0]
            mask = tokens["attention_mask"].unsqueeze(-1).to(states.dtype)
            return (states * mask).sum(1) / mask.sum(1).clamp(min=1)

        return self.run_batches(len(texts), forward)

    def extract_batch(self, clips: list[SegmentedClip]) -> list[np.ndarray]:
        texts = [text for clip in clips for text in clip.transcript]
        return np.split(self.embed(texts), np.cumsum([len(c.transcript) for c in clips])[:-1])


SPEECH_ENCODERS = ("wav2vec2", "hubert", "wavlm", "data2vec-audio", "whisper")  # transformers model_type


@EXTRACTORS.register("hf_audio")
class HfAudio(TorchExtractor):
    """A Hugging Face speech encoder over each segment's audio (the design: wav2vec2-large fine-tuned for speech
    emotion recognition): wav2vec2, HuBERT, WavLM, data2vec-audio, or the encoder of Whisper. ``layer`` picks the
    hidden states: an index into (embeddings, layer 1, ..., layer L), -1 = last, or ``mean`` = the mean of all
    of them; they are pooled over time by ``mean`` or ``mean_std`` (mean and standard deviation concatenated).

    Whisper's feature extractor pads (or cuts) audio to a fixed window (30 s), and its encoder always reads the
    whole window. A segment is therefore cut into windows, each encoded padded with silence as Whisper was
    trained, and only the encoder frames that cover the segment's own samples (one per
    ``window / max_source_positions`` samples, 20 ms) are pooled, over all of the segment's windows; the frames of
    the padding never are (its silence still reaches the own frames through self-attention, as in Whisper's own use).
    """

    modality = "audio"

    def __init__(self, model: str = "ehcalabres/wav2vec2-lg-xlsr-en-speech-emotion-recognition",
                 revision: str | None = None, layer: int | str = -1, pool: str = "mean", batch_size: int = 8,
                 device: str = "auto", precision: str = "fp32"):
        super().__init__(device, precision, batch_size, model=model, revision=revision, layer=layer, pool=pool)
        check_choice("hf_audio", "pool", pool, {"mean", "mean_std"})
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel

        config = load_pretrained(self.modality, AutoConfig, model, revision)
        if config.model_type not in SPEECH_ENCODERS:
            raise ValueError(f"hf_audio: {model} is a {config.model_type!r} model; the speech encoders read are "
                             f"{', '.join(SPEECH_ENCODERS)}")
        n_states = config.num_hidden_layers + 1
        if layer != "mean" and not (isinstance(layer, int) and not isinstance(layer, bool)
                                    and -n_states <= layer < n_states):
            raise ValueError(f"hf_audio: layer {layer!r} out of range for {model}: an index in "
                             f"[{-n_states}, {n_states - 1}] ({n_states} hidden states) or 'mean'")
        self.layer, self.pool, self.whisper = layer, pool, config.model_type == "whisper"
        self.feature_extractor = load_pretrained(self.modality, AutoFeatureExtractor, model, revision)
        network = load_pretrained(self.modality, AutoModel, model, revision)
        self.encoder = (network.get_encoder() if self.whisper else network).to(self.device).eval()
        self.hidden_size = config.hidden_size
        if self.whisper:
            self.window = self.feature_extractor.n_samples
            self.samples_per_frame = self.window / config.max_source_positions
        log.info("hf_audio: %s (%s) on %s, layer %s, %d-d", model, config.model_type, self.device, layer, self.dim)

    @classmethod
    def fetch(cls, model: str = "ehcalabres/wav2vec2-lg-xlsr-en-speech-emotion-recognition",
              revision: str | None = None, **_) -> list[str]:
        return [snapshot(cls.modality, model, revision)]

    @property
    def dim(self) -> int:
        return self.hidden_size * (2 if self.pool == "mean_std" else 1)

    def chunks(self, audio: np.ndarray) -> list[tuple[np.ndarray, int | None]]:
        """A segment's model inputs and how many leading encoder frames of each are its own (None: all)."""
        if not self.whisper:
            return [(audio, None)]
        frames_per_window = round(self.window / self.samples_per_frame)
        pieces = [audio[start:start + self.window] for start in range(0, max(len(audio), 1), self.window)]
        return [(piece, min(frames_per_window, max(1, math.ceil(len(piece) / self.samples_per_frame))))
                for piece in pieces]

    def moments(self, waves: list[np.ndarray], frames: list[int | None], sample_rate: int) -> np.ndarray:
        """``[n, 2 * hidden]``: the mean and variance over time of each input's own frames (fp32 statistics
        also under autocast). Inputs without a frame count are equally long, so no padding can change them."""

        def forward(batch: slice) -> torch.Tensor:
            inputs = self.feature_extractor(waves[batch], sampling_rate=sample_rate, return_tensors="pt")
            inputs = {"input_features": inputs.input_features} if self.whisper else inputs
            states = self.encoder(**{k: v.to(self.device) for k, v in inputs.items()},
                                  output_hidden_states=True).hidden_states
            states = (sum(state.float() for state in states) / len(states) if self.layer == "mean"
                      else states[self.layer].float())
            rows = [states[i, :n] for i, n in enumerate(frames[batch])]
            return torch.stack([torch.cat([row.mean(0), row.var(0, correction=0)]) for row in rows])

        return self.run_batches(len(waves), forward)

    def extract_batch(self, clips: list[SegmentedClip]) -> list[np.ndarray]:
        expected = self.feature_extractor.sampling_rate
        for clip in clips:
            if clip.sample_rate != expected:
                raise ValueError(f"hf_audio: clip {clip.id} has {clip.sample_rate} Hz audio, the model expects "
                                 f"{expected} Hz; set segment.sample_rate: {expected}")
        # (clip, segment, model input, own frames). Whisper pads every input to its window, so any inputs share
        # a forward pass; the others batch equally long inputs (segments of one clip are; clips may differ).
        items = [(c, s, wave, n) for c, clip in enumerate(clips) for s, audio in enumerate(clip.audio)
                 for wave, n in self.chunks(audio)]
        groups = [items] if self.whisper else [[item for item in items if len(item[2]) == length]
                                                for length in sorted({len(item[2]) for item in items})]
        per_segment: dict[tuple[int, int], list[tuple[np.ndarray, int]]] = {}
        for group in groups:
            stats = self.moments([wave for _, _, wave, _ in group], [n for *_, n in group], expected)
            for (c, s, _, n), row in zip(group, stats):
                per_segment.setdefault((c, s), []).append((row, n or 1))  # n is None: the one chunk
        return [np.stack([self.pooled(per_segment[c, s]) for s in range(len(clip.audio))])
                for c, clip in enumerate(clips)]

    def pooled(self, parts: list[tuple[np.ndarray, int]]) -> np.ndarray:
        """Mean (and standard deviation) over all frames of a segment from its chunks' moments and frame counts."""
        weights = np.array([n for _, n in parts], np.float64)[:, None] / sum(n for _, n in parts)
        means = np.stack([row[:self.hidden_size] for row, _ in parts]).astype(np.float64)
        variances = np.stack([row[self.hidden_size:] for row, _ in parts]).astype(np.float64)
        mean = (weights * means).sum(0)
        if self.pool == "mean":
            return mean.astype(np.float32)
        variance = (weights * (variances + (means - mean) ** 2)).sum(0)  # within- plus between-chunk spread
        return np.concatenate([mean, np.sqrt(variance)]).astype(np.float32)


def sample_frames(n_frames: int, per_segment: int | None) -> np.ndarray:
    """Indices of ``per_segment`` evenly spaced frames (all frames when None or when there are fewer)."""
    if per_segment is None or per_segment >= n_frames:
        return np.arange(n_frames)
    return np.linspace(0, n_frames - 1, per_segment).round().astype(int)


class FrameEmbedder(TorchExtractor):
    """An image model over sampled frames: resize (short side) + centre crop + normalise on the device, embed
    each frame, optionally L2-normalise, and average the frames of each segment."""

    modality = "video"

    def __init__(self, frames_per_segment: int | None, normalize: bool, batch_size: int, device: str,
                 precision: str, **params):
        super().__init__(device, precision, batch_size, frames_per_segment=frames_per_segment,
                         normalize=normalize, **params)
        self.frames_per_segment, self.normalize = frames_per_segment, normalize

    # Set by the subclass once its model is built.
    crop: tuple[int, int]
    resize: int
    interpolation: str
    mean: torch.Tensor
    std: torch.Tensor

    def set_preprocessing(self, crop: tuple[int, int], resize: int, interpolation: str, mean, std) -> None:
        check_choice(type(self).__name__, "interpolation", interpolation, {"bicubic", "bilinear", "nearest"})
        self.crop, self.resize, self.interpolation = crop, resize, interpolation
        self.mean = torch.tensor(mean, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, frames: np.ndarray) -> torch.Tensor:
        """``[B, H, W, 3]`` uint8 -> ``[B, 3, h, w]`` normalised float, the model's input."""
        x = torch.from_numpy(frames).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        h, w = x.shape[-2:]
        scale = self.resize / min(h, w)
        size = (max(self.crop[0], round(h * scale)), max(self.crop[1], round(w * scale)))
        x = F.interpolate(x, size=size, mode=self.interpolation,
                          antialias=self.interpolation != "nearest").clamp(0, 1)
        top, left = (size[0] - self.crop[0]) // 2, (size[1] - self.crop[1]) // 2
        x = x[..., top:top + self.crop[0], left:left + self.crop[1]]
        return (x - self.mean) / self.std

    @abc.abstractmethod
    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, 3, h, w]`` model inputs -> ``[B, D]`` embeddings."""

    def extract_batch(self, clips: list[SegmentedClip]) -> list[np.ndarray]:
        frames, counts = [], []
        for clip in clips:
            for segment in clip.frames:
                chosen = segment[sample_frames(len(segment), self.frames_per_segment)]
                frames.append(chosen)
                counts.append(len(chosen))
        frames = np.concatenate(frames)

        def forward(batch: slice) -> torch.Tensor:
            embedding = self.embed_images(self.preprocess(frames[batch])).float()
            return F.normalize(embedding, dim=-1) if self.normalize else embedding

        per_frame = self.run_batches(len(frames), forward)
        per_segment = np.stack([seg.mean(axis=0) for seg in np.split(per_frame, np.cumsum(counts)[:-1])])
        return np.split(per_segment, np.cumsum([len(c.frames) for c in clips])[:-1])


CLIP_LOCAL = "set features.video.pretrained to the checkpoint file (or features.video.model to local-dir:<dir>)"


@EXTRACTORS.register("clip")
class ClipVision(FrameEmbedder):
    """The image tower of an open_clip model (the design: CLIP ViT-B/32). ``pretrained`` is an open_clip tag
    (e.g. ``openai``) or a checkpoint file; ``model`` may also be ``local-dir:<dir>`` / ``hf-hub:<id>``
    (config and weights from there). Frame embeddings are L2-normalised (``normalize``) before the mean."""

    def __init__(self, model: str = "ViT-B-32", pretrained: str | None = "openai", cache_dir: str | None = None,
                 frames_per_segment: int | None = None, normalize: bool = True, batch_size: int = 128,
                 device: str = "auto", precision: str = "fp32"):
        super().__init__(frames_per_segment, normalize, batch_size, device, precision, model=model,
                         pretrained=pretrained, cache_dir=cache_dir)
        import open_clip

        kwargs = self.open_clip_arguments(model, pretrained)
        if model.startswith(("local-dir:", "hf-hub:")):
            pretrained = None  # config and weights come from there
        try:
            clip_model = open_clip.create_model(model, pretrained=pretrained, cache_dir=cache_dir, **kwargs)
        except (RuntimeError, OSError, ValueError) as e:  # open_clip's "not found" / download errors
            raise unavailable(self.modality, "CLIP model", f"{model} / {pretrained}", None, e, CLIP_LOCAL) from e
        self.visual = clip_model.visual.to(self.device).eval()  # the text tower is not needed
        cfg = open_clip.get_model_preprocess_cfg(clip_model)
        if cfg.get("resize_mode", "shortest") != "shortest":
            raise ValueError(f"clip: resize_mode {cfg['resize_mode']!r} of {model} is not supported (only shortest)")
        size = cfg["size"] if isinstance(cfg["size"], (tuple, list)) else (cfg["size"], cfg["size"])
        self.set_preprocessing(tuple(size), min(size), cfg.get("interpolation", "bicubic"), cfg["mean"], cfg["std"])
        self._dim = self.visual.output_dim
        log.info("clip: %s (%s) on %s, %d-d", model, pretrained, self.device, self._dim)

    @classmethod
    def open_clip_arguments(cls, model: str, pretrained: str | None) -> dict:
        """Checks the weights source; an OpenAI tag also needs QuickGELU, which open_clip only warns about."""
        import open_clip

        if model.startswith(("local-dir:", "hf-hub:")):
            return {}
        if not pretrained:
            raise ValueError("clip: `pretrained` is empty; random CLIP weights give meaningless features "
                             "(use a tag such as openai, a checkpoint file, or model: local-dir:<dir>)")
        if Path(pretrained).expanduser().is_file():
            return {}
        tag = open_clip.get_pretrained_cfg(model, pretrained)
        if not tag:
            raise unavailable(cls.modality, "CLIP weights", f"{model} / {pretrained}", None, FileNotFoundError(
                f"neither a checkpoint file nor a known tag (tags of {model}: "
                f"{open_clip.list_pretrained_tags_by_model(model)})"), CLIP_LOCAL)
        return {"force_quick_gelu": bool(tag.get("quick_gelu", False))}

    @classmethod
    def fetch(cls, model: str = "ViT-B-32", pretrained: str | None = "openai", cache_dir: str | None = None,
              **_) -> list[str]:
        import open_clip

        if model.startswith("local-dir:"):
            return [model.removeprefix("local-dir:")]
        if model.startswith("hf-hub:"):
            return [snapshot(cls.modality, model.removeprefix("hf-hub:"), None)]
        cls.open_clip_arguments(model, pretrained)
        if Path(pretrained).expanduser().is_file():
            return [pretrained]
        try:
            return [open_clip.download_pretrained(open_clip.get_pretrained_cfg(model, pretrained), cache_dir=cache_dir)]
        except Exception as e:  # any failure (network, offline) means the weights are not available
            raise unavailable(cls.modality, "CLIP weights", f"{model} / {pretrained}", None, e, CLIP_LOCAL) from e

    @property
    def dim(self) -> int:
        return self._dim

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.visual(images)


TIMM_LOCAL = "set features.video.checkpoint to a local weights file of the model"


@EXTRACTORS.register("timm")
class TimmVision(FrameEmbedder):
    """Any timm image model (classifier removed, its pooled features per frame); the frame features are averaged
    over the segment. Weights: a local ``checkpoint`` file (.safetensors / .pth / .bin) of the timm architecture
    ``model``; or ``model: hf-hub:<id>`` (config and weights from that Hugging Face repository); or a timm name
    (optionally with its tag, e.g. ``vit_base_patch16_224.augreg2_in21k_ft_in1k``) with ``pretrained: true``.
    Hub weights are downloaded once into the Hugging Face cache (``remodiff fetch-models``) and read from there
    offline; random weights are refused (meaningless features)."""

    def __init__(self, model: str, checkpoint: str | None = None, pretrained: bool = False,
                 frames_per_segment: int | None = None, normalize: bool = False, batch_size: int = 64,
                 device: str = "auto", precision: str = "fp32"):
        super().__init__(frames_per_segment, normalize, batch_size, device, precision, model=model,
                         checkpoint=checkpoint, pretrained=pretrained)
        from timm.data import resolve_model_data_config

        net, source = self.create(model, checkpoint, pretrained)
        self.net = net.to(self.device).eval()
        data = resolve_model_data_config(net)
        crop = tuple(data["input_size"][1:])
        self.set_preprocessing(crop, math.floor(min(crop) / data.get("crop_pct", 1.0)),
                               data.get("interpolation", "bicubic"), data["mean"], data["std"])
        log.info("timm: %s from %s on %s, %d-d", model, source, self.device, self.dim)

    @classmethod
    def create(cls, model: str, checkpoint: str | None, pretrained: bool):
        """The feature network (no classifier) with its weights, and where they came from."""
        import timm
        from huggingface_hub.errors import HFValidationError
        from timm.models import load_state_dict

        hub = model.startswith("hf-hub:")
        if checkpoint and (hub or pretrained):
            raise ValueError("timm: give either a checkpoint file or hub weights (model: hf-hub:<id> / "
                             "pretrained: true), not both")
        if not hub and not timm.is_model(model):
            raise ValueError(f"timm: unknown model {model!r} (see timm.list_models(); or use hf-hub:<id>)")
        if checkpoint:
            path = cls.checkpoint_file(model, checkpoint)
            net = timm.create_model(model, pretrained=False, num_classes=0)
            missing, unexpected = net.load_state_dict(load_state_dict(path), strict=False)
            if missing:
                raise ValueError(f"timm: checkpoint {path} does not fit {model}: missing {missing[:5]}"
                                 f"{' ...' if len(missing) > 5 else ''}")
            if unexpected:
                log.info("timm: ignoring %d checkpoint tensors the feature model lacks (the classifier): %s",
                         len(unexpected), unexpected[:3])
            return net, path
        if not (hub or pretrained):
            raise ValueError(f"timm: {model!r} has no weights: set features.video.checkpoint to a weights file, "
                             "pretrained: true (timm's hub weights), or model: hf-hub:<id>")
        if not hub and not timm.is_model_pretrained(model):
            raise ValueError(f"timm: {model!r} has no pretrained weights in timm; set features.video.checkpoint")
        try:
            net = timm.create_model(model, pretrained=True, num_classes=0)
        except (OSError, HFValidationError) as e:  # not in the cache offline, no network, unknown repository
            raise unavailable(cls.modality, "timm model", model, None, e, TIMM_LOCAL) from e
        cfg = net.pretrained_cfg
        return net, (f"hf-hub:{cfg['hf_hub_id']}" if cfg.get("hf_hub_id") else cfg.get("url") or model)

    @staticmethod
    def checkpoint_file(model: str, checkpoint: str) -> str:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise ModelUnavailableError(
                f"video timm checkpoint {checkpoint!r} (for model {model!r}) is not a file: download the weights "
                f"(e.g. the model's model.safetensors from the Hugging Face hub) and set features.video.checkpoint "
                f"to its path, or use model: hf-hub:<id> / pretrained: true")
        return str(path)

    @classmethod
    def fetch(cls, model: str = "", checkpoint: str | None = None, pretrained: bool = False, **_) -> list[str]:
        if checkpoint:
            return [cls.checkpoint_file(model, checkpoint)]
        return [cls.create(model, checkpoint, pretrained)[1]]  # building it downloads the weights into the cache

    @property
    def dim(self) -> int:
        return self.net.num_features

    def embed_images(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)
