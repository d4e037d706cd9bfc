"""Stage ``report``: figures and a Markdown summary of the metrics (``reports/``)."""
from __future__ import annotations

from pathlib import Path

from remodiff.evaluation.report import write_report
from remodiff.pipeline.common import FEATURES, METRICS, RECONSTRUCTED, REPORTS, seeds_of


def run(params: dict) -> dict[str, str | None]:
    """Figures and a Markdown summary of the metrics, the first seed's reconstructions and the loss histories;
    returns figure name -> caption (None = skipped: its inputs are absent)."""
    cfg = params["report"]
    benchmark = Path(cfg["benchmark"]) if cfg.get("benchmark") else None
    return write_report(REPORTS, METRICS, FEATURES / "test.h5", RECONSTRUCTED, seeds_of(params)[0], cfg["metric"],
                        benchmark)
