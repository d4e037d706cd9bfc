"""Stage ``sample``: the embedded synthetic sample (First Impressions V2 layout) in ``data/sample``."""
from __future__ import annotations

import logging
from pathlib import Path

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
