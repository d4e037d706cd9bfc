"""Stage ``reconstruct``: masked and reconstructed test sets of every mask pattern, per run's imputer."""
from __future__ import annotations

import numpy as np

from remodiff.evaluation.masks import make_masks
from remodiff.evaluation.matrix import aggregate
from remodiff.evaluation.reconstruction import reconstruction_metrics
from remodiff.imputers import load_imputer
from remodiff.pipeline.common import with_sampling
from remodiff.pipeline.runs import Run, runs_of
from remodiff.progress import progress
from remodiff.results import MAIN_RUN, MASKS, ImputerRun, ReconstructionWriter, load_masks
from remodiff.store import write_json_atomic


def reconstruct_test(params: dict, runs: list[Run], paths: ImputerRun) -> None:
    """Masked and reconstructed test sets per run and pattern (K samples for stochastic imputers), plus
    reconstruction quality averaged over runs; and the run's validation clips under the fixed patterns (every
    proper subset of the modalities missing), on which a route between imputers is chosen."""
    samples = params["eval"]["samples"]
    quality_runs = []
    for run in progress(runs, desc="reconstruct", unit="run"):
        imputer = with_sampling(load_imputer(paths.models / run.name), params)
        k = samples if imputer.stochastic else 1
        quality: dict = {}
        with ReconstructionWriter(paths.reconstruction(run.name)) as out:
            patterns = load_masks(MASKS, run.test.ids)
            for i, (pattern, mask) in enumerate(progress(patterns.items(), desc=f"reconstruct {run.name}")):
                masked = run.test.with_mask(mask)
                restored = [imputer.impute(masked, np.random.default_rng([run.seed, i, j])) for j in range(k)]
                out.add(pattern, masked, restored)
                quality.setdefault(pattern.protocol, {})[pattern.setting] = reconstruction_metrics(run.test, masked,
                                                                                                   restored[0])
        with ReconstructionWriter(paths.reconstruction(run.name, validation=True)) as out:
            if len(run.val):
                for i, (pattern, mask) in enumerate(make_masks(run.val, {"fixed": None}, 0).items()):
                    masked = run.val.with_mask(mask)
                    out.add(pattern, masked, [imputer.impute(masked, np.random.default_rng([run.seed, i, j, 1]))
                                              for j in range(k)])
        quality_runs.append(quality)
    write_json_atomic(paths.quality, aggregate(quality_runs))


# The params this stage reads (dvc.yaml's `params:` are written from it: remodiff.pipeline.deps)
PARAMS = ("masks.train", "masks.seed", "sampling.${imputer.type}", "eval.seeds", "eval.folds", "eval.samples")


def run(params: dict) -> None:
    reconstruct_test(params, runs_of(params), MAIN_RUN)
