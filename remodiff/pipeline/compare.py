"""Stage ``compare@<imputer>``: one entry of the all-imputer comparison: reconstruct the shared masks with the
entry's fitted imputers and score them, with the shared fusers or, with ``compare.fuser: own``, a fuser per run
trained on this imputer's reconstructions of the training clips (:func:`fit_own_fusers`), or with ``joint`` the
fusers trained together with the imputers."""
from __future__ import annotations

import logging
import shutil

import numpy as np

from remodiff.evaluation.aware import fit_aware, training_imputer
from remodiff.evaluation.matrix import subset_key
from remodiff.imputers import IMPUTERS, build_imputer, imputer_label, load_imputer
from remodiff.pipeline.common import compare_seeds, compared, with_sampling
from remodiff.pipeline.compare_train import trains_jointly
from remodiff.pipeline.evaluate import score
from remodiff.pipeline.reconstruct import reconstruct_test
from remodiff.pipeline.runs import Run, runs_of
from remodiff.pipeline.train_fuser import fuser_for_seed
from remodiff.progress import progress
from remodiff.results import SHARED_FUSERS, ImputerRun, compare_run
from remodiff.store import write_json_atomic

log = logging.getLogger(__name__)


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("masks.train", "masks.seed", "sampling.${item.imputer}", "eval.samples", "eval.seeds", "eval.folds",
          "compare.seeds", "compare.fuser", "compare.own", "compare.joint", "fuser.type", "fuser.train",
          "fuser.${fuser.type}", "imputer.${item.imputer}")
UNTRACKED = ("compare.imputers",)  # only refuses an imputer not listed there (the matrix is made of them)


def run(params: dict, imputer: str) -> None:
    """Score the entry's imputer with the shared fusers, its own (``own``; and ``joint`` for an imputer that cannot
    be trained jointly) or those trained together with it (``joint``, by ``compare_train``)."""
    runs, entry = runs_of(params, compare_seeds(params)), compare_run(compared(params, imputer))
    mode = params["compare"]["fuser"]
    shutil.rmtree(entry.fusers, ignore_errors=True)
    fusers = SHARED_FUSERS
    if trains_jointly(params, imputer):
        fusers = entry.joint_fusers
    elif mode in ("own", "joint"):
        fit_own_fusers(params, runs, entry)
        fusers = entry.fusers
    # the stage's output also when it trains nothing, saying which fusers scored
    write_json_atomic(entry.fusers / "fuser.json", {"fuser": mode, "scored_by": str(fusers)})
    reconstruct_test(params, runs, entry)
    # what the comparison table and figure need of the imputer's class, so that they import no imputer code: whether
    # it is a classical reference, and its label where that is not its name
    about, label = {"classical": IMPUTERS.get(imputer).classical}, imputer_label(imputer)
    if label != imputer:
        about["imputer_label"] = label
    score(params, runs, entry, imputer, lower_bound=False, fusers=fusers, about=about)


def fit_own_fusers(params: dict, runs: list[Run], entry: ImputerRun) -> None:
    """Per run, a fuser (``fuser.type``, the run's seed) trained on what this imputer makes of the training clips,
    so it never meets a reconstruction it was not trained on. With ``masks.train`` the clips' own gaps are filled;
    with complete training data it trains on the complete clips plus ``compare.own.copies`` copies in which each
    clip loses each modality with probability ``compare.own.drop``, reconstructed by the run's imputer (or, with
    ``compare.own.folds`` k, by k imputers each fitted without the clip's fold). Validation clips get the same
    treatment, so early stopping follows what the fuser will be tested on."""
    cfg = params["compare"]["own"]
    for run in progress(runs, desc="compare: own fusers", unit="run"):
        imputer = with_sampling(load_imputer(entry.models / run.name), params)
        fuser = fuser_for_seed(params, run.modalities, run.seed)
        if params["masks"].get("train"):
            rng = np.random.default_rng([run.seed, 2])
            fuser.fit(imputer.impute(run.train, rng), imputer.impute(run.val, rng) if len(run.val) else None)
        else:
            def fitted(part, validation, seed=run.seed, name=imputer.name):
                refit = build_imputer(name, params["imputer"].get(name))
                refit.fit(part, validation, seed=seed)
                return with_sampling(refit, params)

            impute_train = training_imputer(imputer, fitted, run.train, run.val, cfg["folds"], run.seed)
            fit_aware(fuser, run.train, run.val, impute_train, imputer.impute, cfg["drop"], cfg["copies"], run.seed)
        fuser.save(entry.fusers / run.name / subset_key(run.modalities))
        log.info("compare %s, %s: own fuser trained on its reconstructions", imputer.name, run.name)
