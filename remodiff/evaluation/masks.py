"""Missing-modality protocols: which (clip, modality, segment) slots are hidden at test time.

A mask is ``{modality: [N, S] bool}`` with True = available. The ``masks`` stage saves every pattern of the
configured protocols once (``data/masks/test.h5``, :mod:`remodiff.results`), so every imputer and fuser sees exactly
the same ones. Each pattern is a :class:`remodiff.results.Pattern` made here: its protocol, setting name, the share
of slots it hides and a label, so no reader decodes setting names.
Natural missingness (no audio track, no transcript) is merged when a mask is applied
(``FeatureSet.with_mask`` keeps a slot only if both say available).

Randomness is per clip: each clip's draws come from a generator seeded by (seed, protocol, setting, clip id),
so a clip's mask does not depend on the order of the clips or on batching (IMDer's batch-order protocol
dropped modalities even at MR = 0; that cannot happen here).

Protocols and their pattern names (``<protocol>/<setting>``):

* ``fixed``: every non-empty proper subset of the modalities missing for every clip, e.g.
  ``fixed/video_missing``, ``fixed/audio+text_missing`` (MMIN's six patterns with three modalities).
* ``random``: missing rate MR = dropped (clip, modality) slots / all slots, each clip keeping at least one
  modality, e.g. ``random/mr_0.3``. Exactly ``round(MR x slots)`` slots are dropped (so the achieved rate is
  MR to the nearest slot): the slots with the smallest per-clip uniform draws go first, skipping any that would
  leave a clip empty. MR above (M-1)/M is impossible and refused.
* ``independent``: each modality dropped per clip with its own probability (``p_audio``, ``p_video``,
  ``p_text``: the "hallucination" study's test-time probabilities); a clip that would lose all keeps one,
  chosen at random, so p = 1 for every modality is refused (it would hide far less than its name says).
  Pattern ``independent/pa_0.5-pv_0.0-pt_0.0``.
* ``segments``: every modality loses each segment with probability p < 1 (at least one segment kept per clip and
  modality): what frame repetition is for. Pattern ``segments/p_0.4``.

Setting names hold each number exactly (Python's shortest round-trip ``repr``: 0.25 -> ``0.25``, 0.3 -> ``0.3``),
so two different settings never share a name; settings that repeat a name are refused (:func:`named_settings`,
which ``remodiff check`` runs before any stage), as their masks would overwrite each other.
"""
from __future__ import annotations

import hashlib
import itertools
from typing import Callable

import numpy as np

from remodiff.registry import Registry
from remodiff.results import Mask, Pattern
from remodiff.store import MODALITIES, FeatureSet

Masks = dict[str, Mask]  # setting name -> mask (what a protocol returns)
PROTOCOLS: Registry[Callable[..., Masks]] = Registry("missing-modality protocol")
# protocol -> (its settings or None for the defaults, the run's modalities) -> [(setting name, value)]
NAMERS: dict[str, Callable[[object, list[str]], list[tuple[str, object]]]] = {}
# protocol -> (a setting's value, the run's modalities) -> (share of slots hidden, label)
DESCRIBERS: dict[str, Callable[[object, list[str]], tuple[float, str]]] = {}


def names_settings(protocol: str, describe: Callable[[object, list[str]], tuple[float, str]]):
    """Register how ``protocol`` checks and names its settings, and how it describes one (its hidden share and a
    label for tables and figures)."""
    def decorator(namer):
        NAMERS[protocol] = namer
        DESCRIBERS[protocol] = describe
        return namer

    return decorator


def named_settings(protocol: str, settings, modalities: list[str]) -> dict[str, object]:
    """``{setting name: value}`` of ``protocol``'s ``settings`` (None: its defaults) for a run with ``modalities``;
    bad values and settings that repeat a name are refused."""
    PROTOCOLS.get(protocol)  # an unknown protocol fails listing the valid ones
    settings, _ = fit_to_modalities(protocol, settings, modalities)
    pairs = NAMERS[protocol](settings, modalities)
    names = [name for name, _ in pairs]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValueError(f"{protocol} protocol: settings {repeated} are listed more than once")
    return dict(pairs)


def fit_to_modalities(protocol: str, settings, modalities: list[str]) -> tuple[object, list[str]]:
    """``settings`` of ``protocol`` fitted to a run with ``modalities``, and one line per change. params.yaml's
    defaults are written for audio + video + text: on a dataset with fewer, the probabilities of a modality it lacks
    are left out (a setting left dropping nothing, or repeating another, goes) and random missing rates it cannot
    reach are dropped. A name that is no modality at all, and a list with nothing left, are still refused."""
    notes = []
    if protocol == "independent" and isinstance(settings, list):
        absent = sorted({m for probs in settings if isinstance(probs, dict) for m in probs
                         if m in MODALITIES and m not in modalities})
        if absent:
            fitted = []
            for probs in settings:
                kept = {m: p for m, p in probs.items() if m not in absent} if isinstance(probs, dict) else probs
                if kept not in fitted and (not isinstance(kept, dict) or any(kept.values())):
                    fitted.append(kept)
            if fitted:
                notes.append(f"masks.independent: the probabilities of {', '.join(absent)} are left out (not a "
                             f"modality of this run): {len(fitted)} of {len(settings)} settings kept")
                settings = fitted
    if protocol == "random" and isinstance(settings, list) and modalities:
        most = (len(modalities) - 1) / len(modalities)
        impossible = [r for r in settings if isinstance(r, (int, float)) and not isinstance(r, bool)
                      and r > most + 1e-9]
        if impossible and len(impossible) < len(settings):
            settings = [r for r in settings if r not in impossible]
            notes.append(f"masks.random: rates {impossible} are left out: impossible with {len(modalities)} "
                         f"modalities when every clip keeps one (at most {most:.3f})")
    return settings, notes


def fitting_notes(cfg: dict, protocols: list[str], modalities: list[str]) -> list[str]:
    """What :func:`fit_to_modalities` changes in the ``masks`` section for these protocols (said once, by the masks
    stage and ``remodiff check``)."""
    return [note for protocol in protocols for note in fit_to_modalities(protocol, cfg.get(protocol), modalities)[1]]


def number_name(value: float) -> str:
    """A probability as it appears in setting names: exact (shortest round-trip repr), ``0.5`` for 0.5 and 1/2."""
    return repr(float(value))


def check_probability(protocol: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"{protocol} protocol: {value!r} is not a probability in [0, 1]")


def clip_rng(seed: int, *keys: str) -> np.random.Generator:
    digest = hashlib.sha256("\0".join(keys).encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


def slot_mask(data: FeatureSet, keep: np.ndarray) -> Mask:
    """Broadcast a per-(clip, modality) ``keep [N, M]`` over segments."""
    return {m: np.repeat(keep[:, j, None], data.n_segments, axis=1) for j, m in enumerate(data.modalities)}


@names_settings("fixed", lambda gone, mods: (len(gone) / len(mods), " + ".join(gone) + " missing"))
def fixed_settings(settings, modalities: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    if settings is not None:
        raise ValueError("fixed protocol: takes no settings (it hides every non-empty proper subset); set it to null")
    return [("+".join(gone) + "_missing", gone)
            for k in range(1, len(modalities)) for gone in itertools.combinations(modalities, k)]


@PROTOCOLS.register("fixed")
def fixed(data: FeatureSet, seed: int, settings=None) -> Masks:
    mods = data.modalities
    out = {}
    for name, gone in named_settings("fixed", settings, mods).items():
        keep = np.array([[m not in gone for m in mods]] * len(data))
        out[name] = slot_mask(data, keep.reshape(len(data), len(mods)))
    return out


def random_keep(data: FeatureSet, seed: int, rate: float) -> np.ndarray:
    n, m = len(data), len(data.modalities)
    draws = np.stack([clip_rng(seed, "random", cid).random(m) for cid in data.ids])  # [N, M]
    keep = np.ones((n, m), bool)
    target = round(rate * n * m)
    dropped = 0
    for flat in np.argsort(draws, axis=None, kind="stable"):
        if dropped == target:
            break
        i, j = divmod(int(flat), m)
        if keep[i].sum() > 1:
            keep[i, j] = False
            dropped += 1
    return keep


DEFAULT_RATES = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6)  # masks.random: null (those a run's modalities can reach)


@names_settings("random", lambda rate, mods: (rate, f"missing rate {rate:g}"))
def random_settings(settings, modalities: list[str]) -> list[tuple[str, float]]:
    most = (len(modalities) - 1) / len(modalities)
    rates = tuple(r for r in DEFAULT_RATES if r <= most + 1e-9) if settings is None else settings
    for rate in rates:
        check_probability("random", rate)
        if rate > most + 1e-9:
            raise ValueError(f"random protocol: missing rate {rate} is impossible with {len(modalities)} modalities "
                             f"when every clip keeps one (valid: 0 to {most:.3f})")
    return [(f"mr_{number_name(rate)}", rate) for rate in rates]


@PROTOCOLS.register("random")
def random_rate(data: FeatureSet, seed: int, settings=None) -> Masks:
    return {name: slot_mask(data, random_keep(data, seed, rate))
            for name, rate in named_settings("random", settings, data.modalities).items()}


@names_settings("independent", lambda probs, mods: (
    float(np.mean([float(probs.get(m, 0.0)) for m in mods])),
    ", ".join(f"p({m}) {float(probs.get(m, 0.0)):g}" for m in mods)))
def independent_settings(settings, modalities: list[str]) -> list[tuple[str, dict]]:
    """Names ``pa_0.5-pv_0.0-pt_0.0``: each modality by its initial (its whole name where initials clash)."""
    initials = [m[0] for m in modalities]
    tags = {m: m[0] if initials.count(m[0]) == 1 else m for m in modalities}
    out = []
    for probs in settings or [{m: 0.5 for m in modalities}]:
        if not isinstance(probs, dict):
            raise ValueError(f"independent protocol: a setting maps modalities to drop probabilities, got {probs!r}")
        unknown = sorted(set(probs) - set(modalities))
        if unknown:
            raise ValueError(f"independent protocol: probabilities for unknown modalities {unknown} "
                             f"(have {modalities})")
        for p in probs.values():
            check_probability("independent", p)
        if all(probs.get(m, 0.0) == 1 for m in modalities):
            raise ValueError(f"independent protocol: {probs} drops every modality with p = 1, but every clip keeps "
                             f"one modality, so p = 1 for all of them is impossible; use p < 1 for at least one")
        out.append(("-".join(f"p{tags[m]}_{number_name(probs.get(m, 0.0))}" for m in modalities), probs))
    return out


@PROTOCOLS.register("independent")
def independent(data: FeatureSet, seed: int, settings=None) -> Masks:
    mods = data.modalities
    out = {}
    for name, probs in named_settings("independent", settings, mods).items():
        p = np.array([float(probs.get(m, 0.0)) for m in mods])
        keep = np.empty((len(data), len(mods)), bool)
        for i, cid in enumerate(data.ids):
            rng = clip_rng(seed, "independent", name, cid)
            keep[i] = rng.random(len(mods)) >= p
            if not keep[i].any():
                keep[i, rng.integers(len(mods))] = True
        out[name] = slot_mask(data, keep)
    return out


@names_settings("segments", lambda p, mods: (p, f"segments dropped with p {p:g}"))
def segments_settings(settings, modalities: list[str]) -> list[tuple[str, float]]:
    probs = (0.2, 0.4) if settings is None else settings
    for p in probs:
        check_probability("segments", p)
        if p == 1:
            raise ValueError("segments protocol: p = 1 is impossible, as every clip keeps one segment of each "
                             "modality; use p < 1")
    return [(f"p_{number_name(p)}", p) for p in probs]


@PROTOCOLS.register("segments")
def segments(data: FeatureSet, seed: int, settings=None) -> Masks:
    out = {}
    for name, p in named_settings("segments", settings, data.modalities).items():
        mask = {}
        for m in data.modalities:
            keep = np.empty((len(data), data.n_segments), bool)
            for i, cid in enumerate(data.ids):
                rng = clip_rng(seed, "segments", f"{p}", m, cid)
                keep[i] = rng.random(data.n_segments) >= p
                if not keep[i].any():
                    keep[i, rng.integers(data.n_segments)] = True
            mask[m] = keep
        out[name] = mask
    return out


def make_masks(data: FeatureSet, protocols: dict, seed: int) -> dict[Pattern, Mask]:
    """All patterns of ``protocols`` (``{name: settings or None}``)."""
    out = {}
    for name, settings in protocols.items():
        build = PROTOCOLS.get(name)
        made = build(data, seed) if settings is None else build(data, seed, settings)
        values = named_settings(name, settings, data.modalities)
        for setting, mask in made.items():
            rate, label = DESCRIBERS[name](values[setting], data.modalities)
            out[Pattern(name, setting, rate, label)] = mask
    return out


def missing_rate(mask: Mask) -> float:
    """Fraction of hidden (clip, modality) slots, a slot counting as hidden when all its segments are."""
    hidden = np.stack([~a.any(axis=1) for a in mask.values()], axis=1)
    return float(hidden.mean())


TRAINING_PROTOCOLS = ("random", "independent", "segments")  # one setting each: a mask per clip, not a set of them


def training_mask(data: FeatureSet, setting: dict, seed: int) -> Mask:
    """The mask of ``masks.train`` (``{protocol: one setting}``, e.g. ``{independent: {audio: 0.5, video: 0.5}}``) for
    training or validation clips: what real incomplete data looks like (no transcript, camera off). Drawn per clip
    like the test masks, from seed ``seed + 1`` so a clip's training gaps are not its test gaps."""
    check_training_setting(setting, data.modalities)
    (protocol, value), = setting.items()
    return next(iter(make_masks(data, {protocol: [value]}, seed + 1).values()))


def check_training_setting(setting, modalities: list[str]) -> None:
    if not isinstance(setting, dict) or len(setting) != 1 or next(iter(setting)) not in TRAINING_PROTOCOLS:
        raise ValueError(f"masks.train: null, or one protocol with one setting, e.g. {{independent: {{audio: 0.5}}}} "
                         f"or {{random: 0.5}} (protocols: {', '.join(TRAINING_PROTOCOLS)}); got {setting!r}")
    (protocol, value), = setting.items()
    named_settings(protocol, [value], modalities)
