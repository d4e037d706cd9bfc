"""Stage ``compare@<imputer>``: one entry of the all-imputer comparison: reconstruct the shared masks with the
entry's fitted imputers and score them with the shared fusers."""
from __future__ import annotations

from remodiff.pipeline.common import compare_seeds, compared
from remodiff.pipeline.evaluate import score
from remodiff.pipeline.reconstruct import reconstruct_test
from remodiff.pipeline.runs import runs_of
from remodiff.results import compare_run


def run(params: dict, imputer: str) -> None:
    runs, entry = runs_of(params, compare_seeds(params)), compare_run(compared(params, imputer))
    reconstruct_test(params, runs, entry)
    score(params, runs, entry, imputer, lower_bound=False)
