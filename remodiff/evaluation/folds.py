"""Grouped k-fold cross-validation over the pooled clips of a dataset (``eval.folds``).

Small real datasets (RAVDESS: 24 actors; First Impressions subsets) give noisy numbers on one fixed test split.
With ``eval.folds: {k, group, seed}`` the clips of train, val and test are pooled, each clip gets a group (the
actor, the YouTube video, ...: clips of one group never straddle two folds, so no speaker leaks into the test
fold), the groups are dealt to ``k`` folds balanced by clip count, and run ``f`` tests on fold ``f``, validates
on fold ``f + 1`` (mod k) and trains on the rest. The extracted features are re-split in memory; nothing
upstream is recomputed.

Group rules (:data:`GROUP_RULES`): each dataset adapter's own, named by its ``group_rule`` and given by its
``group_of`` (``ravdess_actor``, ``crema_d_actor``: the actor; ``youtube_id``: First Impressions' YouTube video;
``mmsa_video``: CMU-MOSI / MOSEI's source video); ``clip``: every clip its own group (plain k-fold);
``regex:<pattern>``: the pattern's group 1 of each clip id.
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np

from remodiff.data import DATASETS
from remodiff.store import FeatureSet, concatenate

# rule name -> clip id -> group: the dataset adapters' rules (by name), then the generic one
GROUP_RULES: dict[str, Callable[[str], str]] = {
    **dict(sorted((cls.group_rule, cls.group_of) for cls in DATASETS.registered() if cls.group_rule)), "clip": str}
REGEX = "regex:"


def group_rule(rule: str) -> Callable[[str], str]:
    """The function clip id -> group of ``rule`` (a name of :data:`GROUP_RULES` or ``regex:<pattern>``)."""
    if not isinstance(rule, str):
        raise ValueError(f"eval.folds.group must be a string, got {rule!r}")
    if rule.startswith(REGEX):
        try:
            pattern = re.compile(rule[len(REGEX):])
        except re.error as e:
            raise ValueError(f"eval.folds.group {rule!r}: not a regular expression ({e})") from None
        if pattern.groups < 1:
            raise ValueError(f"eval.folds.group {rule!r}: the pattern needs a group (...) holding the group key")

        def by_pattern(clip_id: str) -> str:
            found = pattern.search(clip_id)
            if found is None or not found.group(1):
                raise ValueError(f"eval.folds.group {rule!r} does not match clip id {clip_id!r}")
            return found.group(1)

        return by_pattern
    if rule not in GROUP_RULES:
        raise ValueError(f"eval.folds.group {rule!r} is not a group rule; valid: {', '.join(GROUP_RULES)}, "
                         f"{REGEX}<pattern>")
    group_of = GROUP_RULES[rule]

    def by_rule(clip_id: str) -> str:
        try:
            return group_of(clip_id)
        except ValueError as e:  # an id not of the dataset's form
            raise ValueError(f"eval.folds.group {rule}: {e}") from None

    return by_rule


def assign_folds(groups: list[str], k: int, seed: int) -> np.ndarray:
    """The fold (0..k-1) of each clip, given each clip's group: whole groups are dealt, largest first (ties in a
    seeded random order), each to the fold with the fewest clips so far, so folds are balanced by clip count."""
    names, counts = np.unique(np.asarray(groups, dtype=object).astype(str), return_counts=True)
    if len(names) < k:
        raise ValueError(f"eval.folds.k = {k} needs at least {k} groups, the clips have {len(names)}")
    order = np.random.default_rng(seed).permutation(len(names))
    order = order[np.argsort(-counts[order], kind="stable")]
    load = np.zeros(k, int)
    fold_of_group = {}
    for g in order:
        fold = int(np.argmin(load))  # the first of the lightest folds
        fold_of_group[names[g]] = fold
        load[fold] += counts[g]
    return np.array([fold_of_group[str(g)] for g in groups], int)


def fold_roles(folds: np.ndarray, k: int, fold: int) -> dict[str, np.ndarray]:
    """Clip indices of run ``fold``: test = that fold, val = the next one, train = the rest."""
    return {"train": np.nonzero((folds != fold) & (folds != (fold + 1) % k))[0],
            "val": np.nonzero(folds == (fold + 1) % k)[0], "test": np.nonzero(folds == fold)[0]}


def pool(parts: list[FeatureSet]) -> FeatureSet:
    """One feature set of the clips of ``parts`` (the splits of one feature store: same modalities and labels)."""
    ids = [i for p in parts for i in p.ids]
    if len(set(ids)) != len(ids):
        raise ValueError("a clip id occurs in two splits of the feature store; folds need unique ids")
    return concatenate(parts)


def cross_validation(pooled: FeatureSet, k: int, group: str, seed: int) -> list[dict[str, FeatureSet]]:
    """Per fold ``{train, val, test}`` feature sets of ``pooled`` (see the module docstring)."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 3:
        raise ValueError(f"eval.folds.k must be an integer >= 3 (test, val and train folds), got {k!r}")
    rule = group_rule(group)
    folds = assign_folds([rule(i) for i in pooled.ids], k, seed)
    return [{role: pooled.rows(rows) for role, rows in fold_roles(folds, k, f).items()} for f in range(k)]
