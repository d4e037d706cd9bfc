"""Stage ``compare_train@<imputer>``: one entry of the all-imputer comparison, fitted once per comparison run.

Training is its own stage so that sampling settings (``sampling``, ``eval.samples``) re-run only ``compare``."""
from __future__ import annotations

from remodiff.pipeline.common import compare_seeds, compared
from remodiff.pipeline.runs import runs_of
from remodiff.pipeline.train_imputer import fit_imputers
from remodiff.results import compare_run


def run(params: dict, imputer: str) -> None:
    fit_imputers(params, compared(params, imputer), runs_of(params, compare_seeds(params)), compare_run(imputer))
