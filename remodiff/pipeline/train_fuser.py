"""Stage ``train_fuser``: the downstream fuser per run on complete data, and the lower bound's subset fusers."""
from __future__ import annotations

import logging
import time

from remodiff.evaluation.matrix import modality_subsets, subset_key
from remodiff.fusion import build_fuser, fuser_section
from remodiff.pipeline.runs import runs_of
from remodiff.progress import progress
from remodiff.results import FUSER_HISTORY, SHARED_FUSERS
from remodiff.launch import is_main_process

log = logging.getLogger(__name__)


def fuser_for_seed(params: dict, modalities: list[str], seed: int):
    """The unfitted ``fuser.type`` with its settings (:func:`remodiff.fusion.fuser_section`) and the run's seed."""
    section = fuser_section(params["fuser"], params["fuser"]["type"])
    section["train"] = {**(section.get("train") or {}), "seed": seed}
    return build_fuser(params["fuser"]["type"], modalities, section)


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("masks.train", "masks.seed", "fuser.type", "fuser.train", "fuser.${fuser.type}", "eval.seeds", "eval.folds",
          "eval.lower_bound")


def run(params: dict) -> None:
    """Per run (seed, and fold with ``eval.folds``): the fuser on complete data (upper bound, fed with
    reconstructions) and, for the lower bound, one fuser per proper subset of the modalities, trained and tested
    on that subset only. With ``masks.train`` (incomplete training clips) each is trained on the clips that have its
    modalities: the full fuser is then complete-case training, a subset's fuser uses every clip that has it."""
    runs = runs_of(params)
    modalities = runs[0].modalities
    subsets = modality_subsets(modalities) if params["eval"]["lower_bound"] else [tuple(modalities)]
    incomplete = bool(params["masks"].get("train"))
    for run in progress(runs, desc="train_fuser", unit="run"):
        for subset in subsets:
            start = time.perf_counter()
            fuser = fuser_for_seed(params, list(subset), run.seed)
            history = FUSER_HISTORY if run is runs[0] and len(subset) == len(modalities) else None
            train, val = (run.train.having(list(subset)), run.val.having(list(subset))) if incomplete else \
                (run.train, run.val)
            if not len(train):
                raise ValueError(f"masks.train {params['masks']['train']} leaves no training clip with every one of "
                                 f"{list(subset)} in {run.name}: lower the drop probability")
            fuser.fit(train.subset(list(subset)), val.subset(list(subset)), history_path=history)
            if is_main_process():  # under `accelerate launch` every process holds the same trained model
                fuser.save(SHARED_FUSERS / run.name / subset_key(subset))
            log.info("train_fuser %s on %s, %s: %.1fs", params["fuser"]["type"], subset_key(subset), run.name,
                     time.perf_counter() - start)
