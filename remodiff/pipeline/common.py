"""What every pipeline stage shares: the fixed paths ``dvc.yaml`` declares, the seeds, and the entry point.

Each stage's logic is its own module of this package (``remodiff/pipeline/<stage>.py``, a function ``run``), so
``dvc.yaml`` can make a stage depend on exactly the code it runs: ``tests/pipeline/test_dvc_deps.py`` checks every
stage's deps against the import closure of its module.
"""
from __future__ import annotations

import logging
from pathlib import Path


log = logging.getLogger(__name__)

DATA = Path("data")
SAMPLE = DATA / "sample"
SEGMENTS = DATA / "segments"
FEATURES = DATA / "features"
REPORTS = Path("reports")


def seeds_of(params: dict) -> list[int]:
    seeds = params["eval"]["seeds"]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"eval.seeds must be a non-empty list of distinct integers, got {seeds}")
    return list(seeds)


PRECOMPUTED = "precomputed"  # the segment store's group holding a dataset's own feature set


def with_sampling(imputer, params: dict):
    """``imputer`` with the settings of its ``sampling.<name>`` section applied (how it draws; no refit)."""
    imputer.set_sampling(**(params["sampling"].get(imputer.name) or {}))
    return imputer


def compare_seeds(params: dict) -> list[int]:
    """The comparison's seeds: ``compare.seeds``, or ``eval.seeds`` when that is null."""
    return list(params["compare"].get("seeds") or seeds_of(params))


def compared(params: dict, imputer: str) -> str:
    if imputer not in params["compare"]["imputers"]:
        raise ValueError(f"{imputer!r} is not in compare.imputers {params['compare']['imputers']}")
    return imputer
