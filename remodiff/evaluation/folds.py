"""Grouped k-fold cross-validation over the pooled clips of a dataset (``eval.folds``).

Small real datasets (RAVDESS: 24 actors; First Impressions subsets) give noisy numbers on one fixed test split.
With ``eval.folds: {k, group, seed}`` the clips of train, val and test are pooled, each clip gets a group (the
actor, the YouTube video, ...: clips of one group never straddle two folds, so no speaker leaks into the test
fold), the groups are dealt to ``k`` folds balanced by clip count, and run ``f`` tests on fold ``f``, validates
on fold ``f + 1`` (mod k) and trains on the rest. The extracted features are re-split in memory; nothing
upstream is recomputed.

Group rules (:data:`GROUP_RULES`; ``regex:<pattern>`` takes the pattern's group 1 of each clip id):

* ``ravdess_actor``: ``01-01-06-01-02-01-12`` -> ``12`` (the last of the seven fields);
* ``crema_d_actor``: ``1001_DFA_ANG_XX`` -> ``1001``;
* ``youtube_id``: First Impressions ``J4GQm9j0JZ0.003.mp4`` -> ``J4GQm9j0JZ0`` (the id before the last two dots);
* ``mmsa_video``: CMU-MOSI / MOSEI ``03bSnISJMiM$_$1`` -> ``03bSnISJMiM``;
* ``clip``: every clip its own group (plain k-fold).
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np

from remodiff.store import FeatureSet, concatenate


def _fields(clip_id: str, sep: str, count: int, rule: str, example: str) -> list[str]:
    fields = clip_id.split(sep)
    if len(fields) != count or not all(fields):
        raise ValueError(f"eval.folds.group {rule}: clip id {clip_id!r} is not of the form {example}")
    return fields


def ravdess_actor(clip_id: str) -> str:
    fields = _fields(clip_id, "-", 7, "ravdess_actor", "MM-CC-EE-II-SS-RR-AA (e.g. 01-01-06-01-02-01-12)")
    return fields[6]


def crema_d_actor(clip_id: str) -> str:
    return _fields(clip_id, "_", 4, "crema_d_actor", "<actor>_<sentence>_<emotion>_<level> (e.g. 1001_DFA_ANG_XX)")[0]


def youtube_id(clip_id: str) -> str:
    parts = clip_id.rsplit(".", 2)
    if len(parts) != 3 or not parts[0]:
        raise ValueError(f"eval.folds.group youtube_id: clip id {clip_id!r} is not of the form "
                         f"<youtube id>.<nnn>.mp4 (e.g. J4GQm9j0JZ0.003.mp4)")
    return parts[0]


def mmsa_video(clip_id: str) -> str:
    video, sep, _ = clip_id.partition("$_$")
    if not sep or not video:
        raise ValueError(f"eval.folds.group mmsa_video: clip id {clip_id!r} is not of the form <video>$_$<clip> "
                         f"(e.g. 03bSnISJMiM$_$1)")
    return video


GROUP_RULES: dict[str, Callable[[str], str]] = {
    "ravdess_actor": ravdess_actor, "crema_d_actor": crema_d_actor, "youtube_id": youtube_id,
    "mmsa_video": mmsa_video, "clip": str}
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
    return GROUP_RULES[rule]


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
