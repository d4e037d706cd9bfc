"""One validation pass over ``params.yaml`` before any work, so a bad setting fails in seconds with one line naming
its key (``remodiff check``; every stage's entry runs it too).

What is known without data is checked: unknown sections and keys, value types, registry names (dataset,
extractor backends, imputers, fusers, mask protocols), every imputer and fuser section by building it unfitted
(the constructors' own checks), the ranges of training and sampling numbers, extractor settings against the
backend's constructor signature (no model is loaded), metric names against the dataset's task, ``features`` keys
against the dataset's modalities, mask settings, seeds, precisions and that ``dataset.root`` exists; for a dataset
that ships features, the headers of its files (readable, with clips, the same modalities and dimensions in every
split).

The keys of the stage-level sections are listed once, in :data:`SECTIONS`; the keys of plug-in sections come from
the registries and constructors (:class:`remodiff.registry.Settings`).
"""
from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Callable, Iterator

import yaml

from remodiff.data import DATASETS, build_dataset
from remodiff.data.adapters import STAGE_KEYS
from remodiff.data.asr import ASR_BACKENDS
from remodiff.evaluation.folds import GROUP_RULES, REGEX, group_rule
from remodiff.evaluation.masks import PROTOCOLS, check_training_setting, fitting_notes, named_settings
from remodiff.evaluation.metrics import resolve_metric
from remodiff.features import EXTRACTORS
from remodiff.hub import ModelUnavailableError
from remodiff.fusion import FUSERS, fuser_section
from remodiff.imputers import IMPUTERS
from remodiff.params import REQUIRED
from remodiff.registry import Registry, SettingError, Settings, one_line
from remodiff.store import FEATURE_DTYPES, MODALITIES
from remodiff.tasks import Task
from remodiff.device import PRECISIONS, check_precision_name
from remodiff.training import TrainConfig


# ---- value checks: each takes (key, value) and raises SettingError ----

def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(key: str, value) -> None:
    if not is_int(value) or value < 1:
        raise SettingError(key, f"must be a positive integer, got {value!r}")


def positive_number(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise SettingError(key, f"must be a positive number, got {value!r}")


def boolean(key: str, value) -> None:
    if not isinstance(value, bool):
        raise SettingError(key, f"must be true or false, got {value!r}")


def integer(key: str, value) -> None:
    if not is_int(value):
        raise SettingError(key, f"must be an integer, got {value!r}")


def text_or_null(key: str, value) -> None:
    if value is not None and not isinstance(value, str):
        raise SettingError(key, f"must be a string or null, got {value!r}")


def seed_list(key: str, value) -> None:
    if not isinstance(value, list) or not value or not all(is_int(s) for s in value):
        raise SettingError(key, f"must be a non-empty list of integer seeds, got {value!r}")
    repeated = sorted({s for s in value if value.count(s) > 1})
    if repeated:
        raise SettingError(key, f"seeds {repeated} are listed more than once (each seed is one training run)")


def seed_list_or_null(key: str, value) -> None:
    if value is not None:
        seed_list(key, value)


def folds_setting(key: str, value) -> None:
    """``eval.folds``: null (the dataset's own splits) or ``{k: >= 3, group: <rule>, seed: int}``."""
    if value is None:
        return
    if not isinstance(value, dict):
        raise SettingError(key, f"must be null or {{k, group, seed}}, got {value!r}")
    unknown = sorted(set(value) - {"k", "group", "seed"})
    if unknown:
        raise SettingError(f"{key}.{unknown[0]}", "unknown key", ["k", "group", "seed"])
    for name in ("k", "group"):
        if name not in value:
            raise SettingError(f"{key}.{name}", "is required")
    if not is_int(value["k"]) or value["k"] < 3:
        raise SettingError(f"{key}.k", f"must be an integer >= 3 (test, val and train folds), got {value['k']!r}")
    integer(f"{key}.seed", value.get("seed", 0))
    try:
        group_rule(value["group"])
    except ValueError as e:
        raise SettingError(f"{key}.group", str(e).removeprefix("eval.folds.group "),
                           [*GROUP_RULES, f"{REGEX}<pattern>"]) from None


def metric_name(key: str, value) -> None:
    if not isinstance(value, str):
        raise SettingError(key, f"must be a metric name or auto, got {value!r}")


def imputer_list(key: str, value) -> None:
    if not isinstance(value, list) or not value:
        raise SettingError(key, f"must be a non-empty list of imputer names, got {value!r}")
    for name in value:
        if name not in IMPUTERS:
            raise SettingError(key, f"unknown imputer {name!r}", IMPUTERS.names())
    repeated = sorted({n for n in value if value.count(n) > 1})
    if repeated:
        raise SettingError(key, f"imputers {repeated} are listed more than once")


def drop_probability(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
        raise SettingError(key, f"must be a probability in (0, 1), got {value!r}")


def fold_count(key: str, value) -> None:
    if not is_int(value) or value < 0 or value == 1:
        raise SettingError(key, f"must be 0 (the main imputer) or a number of folds >= 2, got {value!r}")


COMPARE_FUSERS = ("shared", "own", "joint")


def compare_fuser(key: str, value) -> None:
    check_name(key, value, list(COMPARE_FUSERS), "fuser mode")


def own_settings(key: str, value) -> None:
    """``compare.own``: how an imputer's own fuser sees missing inputs in training (complete training data)."""
    check_keys(key, value, {"drop": Key(drop_probability), "copies": Key(positive_int), "folds": Key(fold_count)})


def joint_settings(key: str, value) -> None:
    """``compare.joint``: the drop probability simulated in every batch and the imputer loss's weight."""
    check_keys(key, value, {"drop": Key(drop_probability), "weight": Key(non_negative_number)})


def non_negative_number(key: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise SettingError(key, f"must be a number >= 0, got {value!r}")


def shared_fuser_train(key: str, value) -> None:
    """``fuser.train``: the training loop's settings the neural fusers share (checked before any fuser is built
    with them, so a bad value is named here, not under the first fuser)."""
    check_train(key.removesuffix(".train"), {"train": value})
    built(key, lambda: TrainConfig.from_params(value or {}))


@dataclass(frozen=True)
class Key:
    check: Callable[[str, object], None] | None = None  # None: checked with the section's plug-ins
    required: bool = True


# The stage-level sections: key -> its check. Plug-in sections (dataset adapters, features, imputers, fusers,
# mask protocols) add the keys of their registries and constructors.
SECTIONS: dict[str, dict[str, Key]] = {
    "sample": {},  # generate_sample's keyword arguments
    "dataset": {**{k: Key(required=k in ("name", "root")) for k in STAGE_KEYS},  # name, root, asr,
                # given_features; + one per adapter
                "drop_bad_labels": Key(boolean, False), "allow_shared_ids": Key(boolean, False)},
    "segment": {"segments": Key(positive_int), "fps": Key(positive_number), "frame_size": Key(positive_int),
                "sample_rate": Key(positive_int), "workers": Key(positive_int, False)},
    "features": {},  # one per modality
    "masks": {"protocol": Key(), "seed": Key(integer), "train": Key(None, False)},  # + one per protocol
    "eval": {"seeds": Key(seed_list), "samples": Key(positive_int), "lower_bound": Key(boolean),
             "folds": Key(folds_setting, False)},
    "imputer": {"type": Key()},  # + one per imputer
    "sampling": {},  # one per imputer: how it draws reconstructions
    "fuser": {"type": Key(), "train": Key(shared_fuser_train, False)},  # + one per fuser
    "compare": {"imputers": Key(imputer_list), "seeds": Key(seed_list_or_null, False),
                "metric": Key(metric_name), "resamples": Key(positive_int, False), "fuser": Key(compare_fuser),
                "own": Key(own_settings), "joint": Key(joint_settings)},
    "report": {"metric": Key(metric_name), "benchmark": Key(text_or_null, False)},
}


def check_keys(key: str, section, known: dict[str, Key], extra: list[str] = ()) -> dict:
    """``section`` as a dict whose keys are ``known`` (their checks run) or ``extra`` (checked by the caller)."""
    if not isinstance(section, dict):
        raise SettingError(key, f"must be a mapping of settings, got {section!r}", [*known, *extra])
    for name in section:
        if name not in known and name not in extra:
            raise SettingError(f"{key}.{name}", "unknown setting", [*known, *extra])
    for name, spec in known.items():
        if name not in section:
            if spec.required:
                raise SettingError(f"{key}.{name}", "missing")
        elif spec.check is not None:
            spec.check(f"{key}.{name}", section[name])
    return section


def check_name(key: str, value, names: list[str], what: str = "name") -> None:
    if value not in names:
        raise SettingError(key, f"unknown {what} {value!r}", names)


SCALAR_TYPES = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def check_type(key: str, value, annotation: str) -> None:
    """``value`` against a constructor annotation made of ``int | float | bool | str | None``; other annotations
    (lists, dicts) are left to the constructor."""
    parts = [p.strip() for p in annotation.split("|")]
    if not all(p in SCALAR_TYPES or p == "None" for p in parts):
        return
    if value is None:
        if "None" not in parts:
            raise SettingError(key, f"must be {' or '.join(parts)}, got null")
        return
    allowed = tuple(t for p in parts if p in SCALAR_TYPES for t in SCALAR_TYPES[p])
    if not isinstance(value, allowed) or (isinstance(value, bool) and "bool" not in parts):
        expected = " or ".join(parts).replace("None", "null")
        if isinstance(value, str) and {"int", "float"} & set(parts) and is_number_text(value):
            raise SettingError(key, f"must be {expected}, got the string {value!r}: YAML reads a number in exponent "
                                    f"form without a dot as text; write {float(value)!r} (or 1.0e-3 style)")
        raise SettingError(key, f"must be {expected}, got {value!r}")


def is_number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_settings(key: str, section, settings: Settings, ignore: tuple[str, ...] = ()) -> dict:
    """A plug-in's section against its constructor's ``settings``: unknown and lacking keys, scalar types."""
    section = {} if section is None else section
    if not isinstance(section, dict):
        raise SettingError(key, f"must be a mapping of settings, got {section!r}", [*settings.names, *ignore])
    for name in settings.unknown({k: v for k, v in section.items() if k not in ignore}):
        raise SettingError(f"{key}.{name}", "unknown setting", [*settings.names, *ignore])
    for name in settings.lacking(section):
        raise SettingError(f"{key}.{name}", "missing (it has no default)")
    for name, value in section.items():
        if name in settings.types:
            check_type(f"{key}.{name}", value, settings.types[name])
    return section


def check_precision_key(key: str, section: dict) -> None:
    if "precision" in section:
        try:
            check_precision_name(section["precision"])
        except ValueError:
            raise SettingError(f"{key}.precision", f"unknown precision {section['precision']!r}",
                               list(PRECISIONS)) from None


TRAIN_SETTINGS = Settings(tuple(f.name for f in fields(TrainConfig) if f.name != "seed"), (),
                          types={f.name: f.type for f in fields(TrainConfig)})


def check_train(key: str, section: dict) -> None:
    """A model's ``train`` section: the training loop's settings, without ``seed`` (the one route for seeds is
    eval.seeds, and compare.seeds for the comparison; the pipeline sets the loop's seed from them)."""
    train = section.get("train")
    if train is None:
        return
    if isinstance(train, dict) and "seed" in train:
        raise SettingError(f"{key}.train.seed", "seeds come from eval.seeds (and compare.seeds for the comparison), "
                                                "one model per seed; remove this key")
    check_settings(f"{key}.train", train, TRAIN_SETTINGS)
    check_precision_key(f"{key}.train", train)
    for name, allowed in TRAIN_RANGES.items():
        allowed.check(f"{key}.train.{name}", train.get(name))


@dataclass(frozen=True)
class Range:
    """The values a numeric setting may take: from ``low`` (itself allowed when ``inclusive``), below ``below``
    when given, integers only when ``integer``; null passes (a default applies)."""

    low: float
    inclusive: bool = True
    below: float | None = None
    integer: bool = False

    def check(self, key: str, value) -> None:
        check_type(key, value, f"{'int' if self.integer else 'float'} | None")
        if value is None:
            return
        if value < self.low or (value == self.low and not self.inclusive) or \
                (self.below is not None and value >= self.below):
            upper = f" and < {self.below}" if self.below is not None else ""
            raise SettingError(key, f"must be {'>=' if self.inclusive else '>'} {self.low}{upper}, got {value!r}")


# the training loop's numeric settings (lr > 0, epochs >= 1, ...)
TRAIN_RANGES = {"epochs": Range(1, integer=True), "batch_size": Range(1, integer=True), "lr": Range(0, False),
                "weight_decay": Range(0), "patience": Range(0, integer=True), "min_epochs": Range(0, integer=True),
                "monitor_from": Range(0, integer=True),
                "cpu_threads": Range(0, integer=True)}
# the imputers' numeric sampling settings, whichever imputer takes them (the reverse process runs from t = 1 to eps)
SAMPLING_RANGES = {"steps": Range(1, integer=True), "draws": Range(1, integer=True),
                   "sample_batch": Range(1, integer=True), "corrector_steps": Range(0, integer=True),
                   "snr": Range(0, False), "guidance": Range(0), "eps": Range(0, False, below=1)}


def built(key: str, build: Callable[[], object]) -> None:
    """Run a plug-in's constructor for its own value checks; its refusal becomes a SettingError on ``key``."""
    try:
        build()
    except (ValueError, TypeError) as e:
        raise SettingError(key, str(e)) from None


@dataclass
class DatasetFacts:
    """What the checks need to know about the dataset, found without reading its data."""

    name: str
    task: Task
    label_names: list[str]
    modalities: list[str]  # those params.features may name
    precomputed: bool  # it ships features: extractor settings do not apply
    transcripts: bool
    pending: bool  # the root is the synthetic sample, written by the `sample` stage


def check_dataset(cfg) -> DatasetFacts:
    from remodiff.pipeline.common import SAMPLE  # the sample stage's output

    check_keys("dataset", cfg, SECTIONS["dataset"], DATASETS.names())
    check_name("dataset.name", cfg["name"], DATASETS.names(), "dataset")
    if not isinstance(cfg["root"], (str, Path)):
        raise SettingError("dataset.root", f"must be a directory path, got {cfg['root']!r}")
    for name in DATASETS.names():
        if name in cfg:
            check_settings(f"dataset.{name}", cfg[name], DATASETS.settings(name))
    check_asr(cfg.get("asr"))
    cls, root = DATASETS.get(cfg["name"]), Path(cfg["root"])
    if not root.is_dir() and root == SAMPLE and hasattr(cls, "label_names"):
        return DatasetFacts(cfg["name"], Task.of(cls.task, cls.classes), list(cls.label_names), list(MODALITIES),
                            cls.precomputed, cls.transcripts, True)
    if not root.is_dir():
        raise SettingError("dataset.root", f"{root} does not exist or is not a directory")
    try:  # adapters check their settings and expected files when built; precomputed ones read their arrays' names
        adapter = build_dataset(cfg)
        modalities = adapter.modalities()
        task = Task.of(adapter.task, adapter.classes)  # e.g. a manifest's classification with one class
    except (ValueError, FileNotFoundError) as e:
        raise SettingError(f"dataset.{cfg['name']}", str(e)) from None
    return DatasetFacts(cfg["name"], task, list(adapter.label_names),
                        list(MODALITIES) if modalities is None else modalities, adapter.precomputed,
                        adapter.transcripts, False)


def check_asr(cfg) -> None:
    if cfg is None:
        return
    if not isinstance(cfg, dict):
        raise SettingError("dataset.asr", f"must be null or a mapping with backend and model, got {cfg!r}")
    check_name("dataset.asr.backend", cfg.get("backend"), ASR_BACKENDS.names(), "ASR backend")
    check_settings("dataset.asr", cfg, ASR_BACKENDS.settings(cfg["backend"]), ignore=("backend",))
    check_local_model("dataset.asr", cfg)


#: how a model setting names a local copy rather than a hub id or a library's model name
LOCAL_PREFIXES = ("/", "./", "../", "~", "local-dir:")


def check_local_model(key: str, section: dict) -> None:
    """A ``model`` written as a local path (or open_clip's ``local-dir:``) and a ``checkpoint`` file must exist: found
    now, not after the stages before extract have run."""
    model, checkpoint = section.get("model"), section.get("checkpoint")
    if isinstance(model, str) and model.startswith(LOCAL_PREFIXES):
        local = Path(model.removeprefix("local-dir:")).expanduser()
        if not local.exists():
            raise SettingError(f"{key}.model", f"{model!r} is a local path, and {local} does not exist")
    if isinstance(checkpoint, str) and not Path(checkpoint).expanduser().is_file():
        raise SettingError(f"{key}.checkpoint", f"{checkpoint} is not a file")


def check_features(cfg, dataset: DatasetFacts, asr) -> list[str]:
    if not isinstance(cfg, dict) or not cfg:
        raise SettingError("features", "must map each modality of the run to its extractor settings",
                           dataset.modalities)
    for m, section in cfg.items():
        key = f"features.{m}"
        if m not in dataset.modalities:
            raise SettingError(key, f"not a modality of dataset {dataset.name}", dataset.modalities)
        if not isinstance(section, dict):
            raise SettingError(key, f"must be a mapping with backend (and its settings), got {section!r}")
        if section.get("dtype", "float32") not in FEATURE_DTYPES:
            raise SettingError(f"{key}.dtype", f"unknown dtype {section['dtype']!r}", FEATURE_DTYPES)
        if dataset.precomputed and set(section) <= {"dtype"}:
            continue  # a dataset that ships features needs no extractor; only dtype applies
        backends = [b for b in EXTRACTORS.names() if EXTRACTORS.get(b).modality in ("", m)]  # "": any (given)
        check_name(f"{key}.backend", section.get("backend"), backends, f"{m} extractor")
        check_settings(key, section, EXTRACTORS.settings(section["backend"]), ignore=("backend", "dtype"))
        check_local_model(key, section)
        check_precision_key(key, section)
    if "text" in cfg and not dataset.transcripts and not asr:
        raise SettingError("features.text", f"dataset {dataset.name} has no transcripts: set dataset.asr to "
                                            f"transcribe the clips, or remove features.text")
    return list(cfg)


def check_masks(cfg, modalities: list[str]) -> list[str]:
    check_keys("masks", cfg, SECTIONS["masks"], PROTOCOLS.names())
    if cfg.get("train") is not None:
        try:
            check_training_setting(cfg["train"], modalities)
        except ValueError as e:
            raise SettingError("masks.train", str(e).removeprefix("masks.train: ")) from None
    check_name("masks.protocol", cfg["protocol"], ["all", *PROTOCOLS.names()], "protocol")
    chosen = PROTOCOLS.names() if cfg["protocol"] == "all" else [cfg["protocol"]]
    for protocol in PROTOCOLS.names():
        if protocol in cfg or protocol in chosen:
            try:
                named_settings(protocol, cfg.get(protocol), modalities)
            except ValueError as e:
                raise SettingError(f"masks.{protocol}", str(e)) from None
    return chosen


def check_models(kind: str, cfg, registry: Registry, *passed,
                 section_of: Callable[[str], dict | None] | None = None) -> str:
    """``imputer`` / ``fuser``: the type, and every model section present, checked and built unfitted (with the
    arguments the code ``passed``); ``section_of(name)`` gives the settings a model is built with once its section as
    written passed (default: that section)."""
    check_keys(kind, cfg, SECTIONS[kind], registry.names())
    check_name(f"{kind}.type", cfg["type"], registry.names(), kind)
    for name in registry.names():
        if name in cfg or name == cfg["type"]:  # the chosen type without a section runs on its defaults
            key = f"{kind}.{name}"
            section = check_settings(key, cfg.get(name), registry.settings(name))
            check_train(key, section)
            settings = section_of(name) if section_of else section
            built(key, lambda: registry.build(name, *passed, **settings))
    return cfg["type"]


def check_sampling(cfg, imputer_cfg: dict) -> None:
    """``sampling.<imputer>``: only the imputer's sampling settings, numbers range-checked (:data:`SAMPLING_RANGES`)
    and values checked by building it unfitted with them; and none of them under ``imputer.<name>`` (training would
    then depend on a sampling choice)."""
    for name, section in imputer_cfg.items():
        if name in IMPUTERS and isinstance(section, dict):
            for key in section:
                if key in IMPUTERS.get(name).sampling_settings:
                    raise SettingError(f"imputer.{name}.{key}", f"a sampling setting: set it under sampling.{name}")
    check_keys("sampling", cfg, SECTIONS["sampling"], IMPUTERS.names())
    for name, section in cfg.items():
        key = f"sampling.{name}"
        section = check_keys(key, section if section is not None else {},
                             {k: Key(required=False) for k in IMPUTERS.get(name).sampling_settings})
        settings = IMPUTERS.settings(name)
        for setting, value in section.items():
            if setting in settings.types:
                check_type(f"{key}.{setting}", value, settings.types[setting])
            if setting in SAMPLING_RANGES:
                SAMPLING_RANGES[setting].check(f"{key}.{setting}", value)
        built(key, lambda: IMPUTERS.build(name, **section))


def check_params(params: dict, source: str = "params.yaml") -> list[str]:
    """Every setting of ``params`` (parsed params.yaml); returns a short summary of the run (one item per part),
    or raises :class:`SettingError` naming the first bad key."""
    try:
        return _check(params)
    except SettingError as e:
        e.source = source
        raise


def _check(params) -> list[str]:
    if not isinstance(params, dict):
        raise SettingError("(top level)", "must be a mapping of sections", SECTIONS)
    for section in params:
        if section not in SECTIONS:
            raise SettingError(section, "unknown section", SECTIONS)
    for section in SECTIONS:
        if section not in params and section in REQUIRED:  # the others only their own stages need
            raise SettingError(section, "missing section")
    if "sample" in params:
        from remodiff.data.sample import generate_sample

        check_settings("sample", params["sample"], Settings.of(generate_sample, skip=("root",)))
    dataset = check_dataset(params["dataset"])
    check_keys("segment", params["segment"], SECTIONS["segment"])
    modalities = check_features(params["features"], dataset, params["dataset"].get("asr"))
    protocols = check_masks(params["masks"], modalities)
    check_keys("eval", params["eval"], SECTIONS["eval"])
    imputer = check_models("imputer", params["imputer"], IMPUTERS)
    fuser = check_models("fuser", params["fuser"], FUSERS, modalities,  # built with the shared fuser.train
                         section_of=lambda name: fuser_section(params["fuser"], name))
    pending = ", written by the sample stage" if dataset.pending else ""
    summary = [f"dataset {dataset.name} ({dataset.task.name}{pending})",
               f"modalities {'+'.join(modalities)}", f"masks {', '.join(protocols)}",
               *fitting_notes(params["masks"], protocols, modalities),
               f"imputer {imputer}", f"fuser {fuser}", f"seeds {params['eval']['seeds']}"]
    check_sampling(params.get("sampling", {}), params["imputer"])
    if "compare" in params:
        check_keys("compare", params["compare"], SECTIONS["compare"])
        foreign = sorted(set(params["compare"].get("seeds") or []) - set(params["eval"]["seeds"]))
        if foreign:  # the comparison scores with the fusers trained per eval seed
            raise SettingError("compare.seeds", f"seeds {foreign} are not in eval.seeds", params["eval"]["seeds"])
        metric = resolve_metric(dataset.task, dataset.label_names, params["compare"]["metric"], "compare.metric")
        summary.append(f"compare {len(params['compare']['imputers'])} imputers by {metric}")
    if "report" in params:
        check_keys("report", params["report"], SECTIONS["report"])
        metric = resolve_metric(dataset.task, dataset.label_names, params["report"]["metric"], "report.metric")
        summary.append(f"report {metric}")
    compared = params["compare"]["imputers"] if isinstance(params.get("compare"), dict) else []
    for name in dict.fromkeys([imputer, *compared]):
        for section in ("imputer", "sampling"):  # the stages' DVC params name these sections
            if not isinstance(params.get(section), dict) or name not in params[section]:
                raise SettingError(f"{section}.{name}", f"missing: the {name} imputer is used, so its section must "
                                                        "exist ({} for no settings)")
    if fuser not in params["fuser"]:
        raise SettingError(f"fuser.{fuser}", "missing: the selected fuser's section must exist ({} for no settings)")
    return summary


def read_params(path: str | Path = "params.yaml") -> dict:
    """The parsed params file (unchecked); a missing file or bad YAML is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: run from the project root or pass --params")
    try:
        return yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ValueError(f"{path} is not valid YAML: {one_line(e)}") from None


def load_checked(path: str | Path = "params.yaml") -> dict:
    """The parsed params file, after :func:`check_params` (what a stage entry reads its settings with)."""
    params = read_params(path)
    check_params(params, source=Path(path).name)
    return params


# Errors that mean a bad setting or input, not a bug: one line without a traceback (unless debugging).
# SettingError and UnknownNameError (a registry name) are ValueErrors.
USER_ERRORS = (ValueError, FileNotFoundError, ModelUnavailableError)


def debugging() -> bool:
    return os.environ.get("REMODIFF_DEBUG", "").strip().lower() in {"1", "true", "yes", "on"}


@contextmanager
def reported_errors(debug: bool | None = None) -> Iterator[None]:
    """Around a command or stage: a user error prints ``error: <one line>`` to stderr and exits with status 2;
    with ``debug`` (default: the environment variable ``REMODIFF_DEBUG=1``) it propagates with its traceback."""
    try:
        yield
    except USER_ERRORS as e:
        if debugging() if debug is None else debug:
            raise
        print(f"error: {one_line(e) or type(e).__name__}", file=sys.stderr)
        raise SystemExit(2) from None


def run_checked(fn: Callable, *args, debug: bool | None = None, **kwargs):
    """``fn(*args, **kwargs)`` inside :func:`reported_errors`."""
    with reported_errors(debug):
        return fn(*args, **kwargs)
