"""Stage ``sample``: the embedded synthetic sample (First Impressions V2 layout) in ``data/sample``.

:func:`segmented_sample` runs the sample's generator and then the segment stage in another directory, at any size:
the benchmarks and the tests start from it."""
from __future__ import annotations

import logging
from pathlib import Path

from remodiff.pipeline import stage
from remodiff.pipeline.common import SAMPLE
from remodiff.store import write_text_atomic

log = logging.getLogger(__name__)


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("sample", "dataset.root")


def run(params: dict) -> None:
    """Generate the sample when the pipeline reads it (``dataset.root`` is ``data/sample``); otherwise leave only a
    note, so a run on a real dataset spends no time encoding synthetic clips.

    Always written there, never at ``dataset.root``: DVC empties a stage's outputs before running it, so an output
    at ``dataset.root`` would delete a real dataset that the root points at."""
    if Path(params["dataset"]["root"]).resolve() != SAMPLE.resolve():
        write_text_atomic(SAMPLE / "NOT_GENERATED.txt", f"dataset.root is {params['dataset']['root']}: the pipeline "
                                                        "does not read the sample, so it was not generated.\n")
        log.info("sample: not generated (dataset.root is %s)", params["dataset"]["root"])
        return
    from remodiff.data.sample import generate_sample

    generate_sample(SAMPLE, **params["sample"])


def segmented_sample(directory: Path, clips: int, segments: int, seconds: float, fps: int, size: int,
                     video_size: int = 96, workers: int = 1, videos: Path | None = None) -> dict:
    """``clips`` videos of ``segments`` x ``seconds`` from the embedded sample's generator (First Impressions layout,
    dealt to train / val / test) in ``directory/videos``, probed by the segment stage into ``directory/data/segments``
    (frames decoded at ``fps`` and ``size`` px later, by extract); returns the params it ran with. ``videos``: a
    First Impressions root with train/ and val/ clips (e.g. the 12 real ones) instead, its val clips also as test."""
    from contextlib import chdir

    from remodiff.data.sample import generate_sample

    generated = videos is None
    if generated:
        videos = directory / "videos"
        n_val = n_test = clips // 3
        generate_sample(videos, n_train=clips - n_val - n_test, n_val=n_val, n_test=n_test,
                        duration=segments * seconds, size=video_size, workers=workers)
    else:
        videos = videos.resolve()  # the segment stage runs inside ``directory``
    params = {"dataset": {"name": "first_impressions", "root": str(videos),
                          "first_impressions": {"split_dirs": {"train": "train", "val": "val",
                                                               "test": "test" if generated else "val"}},
                          "allow_shared_ids": not generated},
              "segment": {"segments": segments, "fps": fps, "frame_size": size, "sample_rate": 16000,
                          "workers": workers}}
    with chdir(directory):
        stage("segment")(params)
    return params
