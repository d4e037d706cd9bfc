"""Stage ``report``: figures and a Markdown summary of the metrics (``reports/``)."""
from __future__ import annotations

from pathlib import Path

from remodiff.evaluation.report import write_report
from remodiff.pipeline.common import FEATURES, REPORTS, seeds_of
from remodiff.pipeline.runs import run_name, runs_of
from remodiff.results import MASKS, METRICS, RECONSTRUCTED
from remodiff.store import load_featureset


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("report", "masks.train", "masks.seed", "eval.seeds", "eval.folds", "compare.imputers")


def run(params: dict) -> dict[str, str | None]:
    """Figures and a Markdown summary of the metrics, the first run's reconstructions, the loss histories and the
    comparison of the imputers listed in ``compare.imputers``; returns figure name -> caption (None = skipped:
    its inputs are absent)."""
    cfg = params["report"]
    benchmark = Path(cfg["benchmark"]) if cfg.get("benchmark") else None
    if params["eval"].get("folds"):
        first = runs_of(params, seeds_of(params)[:1])[0]
        test, name = first.test, first.name
    else:  # the test split: the other splits need not be read (nor exist)
        test_store = FEATURES / "test.h5"
        test = load_featureset(test_store) if test_store.exists() else None
        name = run_name(None, seeds_of(params)[0])
    compared = (params.get("compare") or {}).get("imputers", [])
    return write_report(REPORTS, METRICS, test, RECONSTRUCTED, name, cfg["metric"], benchmark, compared, MASKS)
