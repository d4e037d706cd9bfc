"""Stage ``masks``: the test-time missing-modality masks of every protocol, shared by all imputers and fusers."""
from __future__ import annotations

import logging

from remodiff.evaluation.masks import PROTOCOLS, make_masks, save_masks
from remodiff.pipeline.common import FEATURES, MASKS
from remodiff.store import load_featureset

log = logging.getLogger(__name__)


def run(params: dict) -> None:
    """Test-time missing-modality masks of every configured protocol, saved once for all imputers and fusers."""
    cfg = params["masks"]
    test = load_featureset(FEATURES / "test.h5")
    chosen = list(PROTOCOLS.names()) if cfg["protocol"] == "all" else [cfg["protocol"]]
    made = make_masks(test, {name: cfg.get(name) for name in chosen}, cfg["seed"])
    save_masks(MASKS, made, test.ids, cfg)
    log.info("masks: %d patterns (%s) for %d test clips", len(made), ", ".join(chosen), len(test))
