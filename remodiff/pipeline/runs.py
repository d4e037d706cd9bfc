"""The runs of the evaluation: what every stage that trains or scores models loops over.

A run is one (fold, seed) pair with its train / val / test feature sets: with ``eval.folds: null`` the dataset's
own splits and one run per seed (``seed_<s>``); with ``eval.folds: {k, group, seed}`` grouped k-fold
cross-validation over the pooled clips (:mod:`remodiff.evaluation.folds`) and one run per fold and seed
(``fold_<f>/seed_<s>``). The run's name is the path of its models, reconstructions and predictions.

Its own module (not ``common``), so the stages that never loop over runs (sample, segment, extract) do not
depend on the fold code.
"""
from __future__ import annotations

from dataclasses import dataclass

from remodiff.data import SPLITS
from remodiff.evaluation.folds import cross_validation, pool
from remodiff.evaluation.masks import training_mask
from remodiff.pipeline.common import FEATURES, seeds_of
from remodiff.store import FeatureSet, load_featureset, load_splits


@dataclass(frozen=True)
class Run:
    name: str  # seed_0 | fold_2/seed_0
    seed: int
    fold: int | None
    train: FeatureSet
    val: FeatureSet
    test: FeatureSet

    @property
    def modalities(self) -> list[str]:
        """The run's modalities in the order of params.yaml's ``features`` (recorded by extract; the stored arrays
        come back sorted by name): the order that names the fusers of modality subsets."""
        return list(self.train.attrs.get("modalities") or self.train.modalities)


def runs_of(params: dict, seeds: list[int] | None = None) -> list[Run]:
    """Every run of ``seeds`` (default ``eval.seeds``), fold by fold; the extracted features are read once and,
    with ``eval.folds``, re-split in memory. With ``masks.train`` the training and validation clips lose modalities
    too (:func:`remodiff.evaluation.masks.training_mask`); the test clips stay whole (the masks stage hides theirs)."""
    seeds = seeds_of(params) if seeds is None else list(seeds)
    splits = load_splits({s: FEATURES / f"{s}.h5" for s in SPLITS})
    folds = params["eval"].get("folds")
    if not folds:
        parts = [splits]
    else:
        parts = cross_validation(pool([splits[s] for s in SPLITS]), folds["k"], folds["group"], folds.get("seed", 0))
    train_mask = params["masks"].get("train")
    if train_mask:
        seed = params["masks"]["seed"]
        parts = [{**part, **{s: part[s].with_mask(training_mask(part[s], train_mask, seed)) for s in ("train", "val")}}
                 for part in parts]
    return [Run(run_name(f if folds else None, seed), seed, f if folds else None, **part)
            for f, part in enumerate(parts) for seed in seeds]


def run_name(fold: int | None, seed: int) -> str:
    return f"seed_{seed}" if fold is None else f"fold_{fold}/seed_{seed}"


def run_names(params: dict, seeds: list[int] | None = None) -> list[str]:
    """The names :func:`runs_of` gives, in its order, without reading any features."""
    seeds = seeds_of(params) if seeds is None else list(seeds)
    folds = params["eval"].get("folds")
    return [run_name(f, seed) for f in (range(folds["k"]) if folds else [None]) for seed in seeds]


def evaluated_clips(params: dict) -> FeatureSet:
    """The clips some run tests: the test split, or with ``eval.folds`` every clip (each is test in one fold)."""
    if not params["eval"].get("folds"):
        return load_featureset(FEATURES / "test.h5")
    return pool(list(load_splits({s: FEATURES / f"{s}.h5" for s in SPLITS}).values()))
