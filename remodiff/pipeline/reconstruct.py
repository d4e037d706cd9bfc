"""Stage ``reconstruct``: masked and reconstructed test sets of every mask pattern, per run's imputer."""
from __future__ import annotations

import numpy as np
from tqdm.auto import tqdm

from remodiff.evaluation.masks import load_masks
from remodiff.evaluation.matrix import aggregate
from remodiff.evaluation.reconstruction import reconstruction_metrics
from remodiff.imputers import load_imputer
from remodiff.pipeline.common import MAIN_RUN, MASKS, ImputerRun, with_sampling
from remodiff.pipeline.runs import Run, runs_of
from remodiff.store import atomic_h5, write_featureset, write_json_atomic


def reconstruct_test(params: dict, runs: list[Run], paths: ImputerRun) -> None:
    """Masked and reconstructed test sets per run and pattern (K samples for stochastic imputers), plus
    reconstruction quality averaged over runs."""
    samples = params["eval"]["samples"]
    quality_runs = []
    for run in runs:
        test = run.test
        patterns = load_masks(MASKS, test.ids)
        imputer = with_sampling(load_imputer(paths.models / run.name), params)
        k = samples if imputer.stochastic else 1
        quality: dict = {}
        with atomic_h5(paths.reconstructed / f"{run.name}.h5") as f:
            for i, (pattern, mask) in enumerate(tqdm(patterns.items(), desc=f"reconstruct {run.name}")):
                masked = test.with_mask(mask)
                write_featureset(f.create_group(f"{pattern}/masked"), masked)
                for j in range(k):
                    restored = imputer.impute(masked, np.random.default_rng([run.seed, i, j]))
                    write_featureset(f.create_group(f"{pattern}/sample_{j}"), restored)
                    if j == 0:
                        protocol, setting = pattern.split("/", 1)
                        quality.setdefault(protocol, {})[setting] = reconstruction_metrics(test, masked, restored)
        quality_runs.append(quality)
    write_json_atomic(paths.quality, aggregate(quality_runs))


def run(params: dict) -> None:
    reconstruct_test(params, runs_of(params), MAIN_RUN)
