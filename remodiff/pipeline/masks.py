"""Stage ``masks``: the test-time missing-modality masks of every protocol, shared by all imputers and fusers."""
from __future__ import annotations

import logging

from remodiff.evaluation.masks import PROTOCOLS, fitting_notes, make_masks
from remodiff.results import MASKS, save_masks
from remodiff.pipeline.runs import evaluated_clips

log = logging.getLogger(__name__)


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("masks", "eval.folds")


def run(params: dict) -> None:
    """Test-time missing-modality masks of every configured protocol, saved once for all imputers and fusers:
    over the test split, or with ``eval.folds`` over every clip (each fold's test clips read their own rows)."""
    cfg = params["masks"]
    test = evaluated_clips(params)
    chosen = list(PROTOCOLS.names()) if cfg["protocol"] == "all" else [cfg["protocol"]]
    if "segments" in chosen and test.n_segments == 1 and len(chosen) > 1:
        # with one segment per clip, dropping segments drops nothing (every clip keeps one): rows equal to complete
        chosen.remove("segments")
        log.info("masks: the segments protocol is skipped: the clips have one segment each")
    for note in fitting_notes(cfg, chosen, test.modalities):
        log.info("%s", note)
    made = make_masks(test, {name: cfg.get(name) for name in chosen}, cfg["seed"])
    save_masks(MASKS, made, test.ids, cfg)
    log.info("masks: %d patterns (%s) for %d test clips", len(made), ", ".join(chosen), len(test))
