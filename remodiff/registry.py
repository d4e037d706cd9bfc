"""A tiny name -> entry registry, one per plug-in point (datasets, extractors, imputers, fusers, SDEs, samplers, ...):
``register`` names an entry, ``get`` finds it, ``settings`` reads what its constructor takes and ``build`` makes one,
refusing an unknown name or setting in one format (:class:`RegistryError`)."""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable, Generic, TypeVar

T = TypeVar("T")


class RegistryError(ValueError):
    """A name or settings a registry refuses; the message is ``<what is wrong>; valid values: <the valid ones>``."""

    def __init__(self, problem: str, valid):
        self.problem, self.valid = problem, [str(v) for v in valid]
        super().__init__(f"{problem}; valid values: {', '.join(self.valid) or 'none'}")


class UnknownNameError(RegistryError):
    """Raised for a registry key that is not registered; the message lists the valid names."""


class Registry(Generic[T]):
    """``passed``: the constructor arguments the code gives (a fuser's modalities, an adapter's root), never settings."""

    def __init__(self, kind: str, passed: tuple[str, ...] = ()):
        self.kind = kind
        self.passed = passed
        self._entries: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Register the decorated entry under ``name`` and set its ``name`` attribute to it."""
        def decorator(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            obj.name = name
            self._entries[name] = obj
            return obj

        return decorator

    def get(self, name: str) -> T:
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownNameError(f"unknown {self.kind} {name!r}", self.names()) from None

    def names(self) -> list[str]:
        return sorted(self._entries)

    def registered(self) -> list[T]:
        """The entries in the order they were registered (their modules' import order)."""
        return list(self._entries.values())

    def __contains__(self, name: str) -> bool:
        return name in self._entries

    def settings(self, name: str) -> "Settings":
        """The settings ``name``'s constructor takes besides :attr:`passed`. A class whose constructor is that of its
        abstract base (the plug-in protocol's ``**params``, there for subclasses to record theirs) takes none."""
        entry = self.get(name)
        if isinstance(entry, type) and inspect.isabstract(constructor_owner(entry)):
            return Settings((), ())
        return Settings.of(entry, skip=self.passed)

    def settings_from(self, name: str, values: dict) -> dict:
        """``name``'s settings found in ``values``, a mapping that holds those of every entry (e.g. a config with
        ``beta_min`` for one SDE and ``sigma_min`` for another); the ones it lacks keep their default."""
        return {k: values[k] for k in self.settings(name).names if k in values}

    def build(self, name: str, /, *passed, **settings) -> T:
        """``name``'s entry called with ``passed`` (the code's arguments, :attr:`passed`) and ``settings``; a setting
        its constructor does not take (a typo in params.yaml) or lacks is refused, listing the ones it takes (a
        constructor with ``**kwargs`` checks those keys itself)."""
        entry, known = self.get(name), self.settings(name)
        unknown, lacking = known.unknown(settings), known.lacking(settings)
        if unknown:
            raise RegistryError(f"unknown settings {unknown} for {self.kind} {name!r}", known.names)
        if lacking:
            raise RegistryError(f"missing settings {lacking} for {self.kind} {name!r} (they have no default)",
                                known.names)
        return entry(*passed, **settings)


def constructor_owner(cls: type) -> type:
    """The class in ``cls``'s MRO that defines the constructor ``cls`` runs."""
    return next(c for c in cls.__mro__ if "__init__" in vars(c))


@dataclass(frozen=True)
class Settings:
    """The keyword settings a plug-in's constructor takes: how params.yaml keys are checked before it is built."""

    names: tuple[str, ...]
    required: tuple[str, ...]  # the names without a default
    open: bool = False  # it also takes **kwargs (and checks those keys itself)
    types: dict = field(default_factory=dict)  # name -> its annotation as written ("int", "str | None")

    @classmethod
    def of(cls, constructor: Callable, skip: tuple[str, ...] = ()) -> "Settings":
        """From ``constructor``'s signature (a class: its ``__init__``); ``skip``: arguments the code passes."""
        params = [p for p in inspect.signature(constructor).parameters.values() if p.name not in skip]
        named = [p for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)]
        return cls(tuple(p.name for p in named), tuple(p.name for p in named if p.default is p.empty),
                   any(p.kind is p.VAR_KEYWORD for p in params),
                   {p.name: annotation_text(p.annotation) for p in named if p.annotation is not p.empty})

    def unknown(self, given) -> list[str]:
        """The keys of ``given`` the constructor does not take (none when it is open)."""
        return [] if self.open else sorted(set(given) - set(self.names))

    def lacking(self, given) -> list[str]:
        return [k for k in self.required if k not in given]


def annotation_text(annotation) -> str:
    """An annotation as source text (it already is one under ``from __future__ import annotations``)."""
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def one_line(text) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


class SettingError(ValueError):
    """A bad setting: ``str`` is one line, ``<file>: <dotted.key>: <message> (valid: a, b, c)``."""

    def __init__(self, key: str, message: str, valid=None, source: str = "params.yaml"):
        self.key, self.message, self.source = key, message, source
        self.valid = [str(v) for v in valid] if valid is not None else None
        super().__init__(key, message)

    def __str__(self) -> str:
        valid = f" (valid: {', '.join(self.valid) or 'none'})" if self.valid is not None else ""
        return f"{self.source}: {self.key}: {one_line(self.message)}{valid}"

