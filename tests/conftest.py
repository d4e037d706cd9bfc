"""Shared fixtures: small generated clips and feature sets. Never a network call: hubs are offline."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")

from remodiff.store import FeatureSet  # noqa: E402

TRAITS = ["extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness", "interview"]
ROOT = Path(__file__).resolve().parents[1]  # the repository (tests/ sits at its top; the tests in its sub-folders)
COMMITTED = yaml.safe_load((ROOT / "params.yaml").read_text())  # the committed params.yaml: deep-copy before changing
SHARED_MINI = ROOT.parent / "shared" / "data" / "fi-v2-mini"


def make_video(path: Path, duration: float = 2.0, size: int = 32, fps: int = 25, audio: bool = True) -> Path:
    """An H.264 (+ AAC) clip from ffmpeg's test sources."""
    if shutil.which("ffmpeg") is None:
        pytest.skip("ffmpeg is not installed")
    cmd = ["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc=size={size}x{size}:rate={fps}:duration={duration}"]
    if audio:
        cmd += ["-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=16000:duration={duration}", "-c:a", "aac"]
    cmd += ["-c:v", "libx264", "-pix_fmt", "yuv420p", "-shortest", str(path)]
    subprocess.run(cmd, check=True)
    return path


def toy_featureset(n: int, seed: int = 0, segments: int = 5, dims=(("audio", 8), ("video", 6), ("text", 4)),
                   projection_seed: int = 123) -> FeatureSet:
    """Features that share latent factors (so modalities predict each other and the labels)."""
    proj = np.random.default_rng(projection_seed)
    weights = {m: proj.normal(size=(3, d)) for m, d in dims}
    label_weights = proj.normal(size=(3, len(TRAITS)))
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3))
    features = {m: ((z @ w)[:, None, :] + 0.3 * rng.normal(size=(n, segments, w.shape[1]))).astype(np.float32)
                for m, w in weights.items()}
    labels = (0.5 + 0.2 * np.tanh(z @ label_weights)).astype(np.float32)
    return FeatureSet([f"clip{seed}_{i}" for i in range(n)], features,
                      {m: np.ones((n, segments), bool) for m in features}, labels, list(TRAITS))


class RunsCode:
    """A crafted pickle's payload: unpickling it runs a shell command that creates ``marker`` (harmless here, any
    code in a real attack), so a test can tell whether a loader executed it."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch '{self.marker}'",)
