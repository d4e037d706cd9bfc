"""The entry point of the thin ``stages/<stage>.py`` scripts and ``remodiff run``.

Its own module, so that the validation pass (:mod:`remodiff.check`, which reads paths of
:mod:`remodiff.pipeline.common`) and the stage modules never import each other."""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Callable

# Set to a file path, every stage run appends the params keys it read there (a JSON line): how the tests check
# that each stage's declared params (dvc.yaml) cover what it reads.
PARAMS_READ = "REMODIFF_PARAMS_READ"


class ReadParams(dict):
    """``params`` (or one of its sections) that notes the dotted key of every setting read from it into ``read``.

    A key is noted when its value is used: a scalar or list when looked up, a section when it is iterated, copied,
    counted or compared (``dict(section)``, ``**section``, ``section.items()``); looking a section up only to read
    further down notes nothing, so ``params["masks"]["train"]`` notes ``masks.train``, not ``masks``. Asking
    whether a key is there (``"train" in section``) notes that key. What a stage notes must be covered by the params
    it declares (``PARAMS`` of its module, dvc.yaml's ``params:``): tests/pipeline/test_pipeline.py checks the reads
    of a ``dvc repro`` with ``REMODIFF_PARAMS_READ`` set (:func:`remodiff.pipeline.entry.main`)."""

    def __init__(self, values: dict, read: set[str], prefix: str = ""):
        super().__init__(values)
        self.read, self.prefix = read, prefix

    def _key(self, key) -> str:
        return f"{self.prefix}.{key}" if self.prefix else str(key)

    def _whole(self) -> None:
        if self.prefix:
            self.read.add(self.prefix)
        else:  # the whole file: every section
            self.read.update(str(k) for k in super().keys())

    def _value(self, key, value):
        if isinstance(value, dict):
            return ReadParams(value, self.read, self._key(key))
        self.read.add(self._key(key))
        return value

    def __getitem__(self, key):
        return self._value(key, super().__getitem__(key))

    def get(self, key, default=None):
        if not super().__contains__(key):
            self.read.add(self._key(key))  # its absence is read: a default applies
            return default
        return self[key]

    def __contains__(self, key) -> bool:
        self.read.add(self._key(key))
        return super().__contains__(key)

    def __iter__(self):
        self._whole()
        return super().__iter__()

    def __len__(self) -> int:
        self._whole()
        return super().__len__()

    def __bool__(self) -> bool:  # `section or {}`: whether it is there, not what it holds
        return super().__len__() > 0

    def __eq__(self, other) -> bool:
        self._whole()
        return super().__eq__(other)

    __hash__ = None

    def keys(self):
        self._whole()
        return super().keys()

    def items(self):
        self._whole()
        return super().items()

    def values(self):
        self._whole()
        return super().values()

    def copy(self) -> dict:
        self._whole()
        return dict(super().items())


def main(run: Callable[..., object], *args: str, params_path: str | Path = "params.yaml") -> None:
    """Entry point of the thin ``stages/<stage>.py`` scripts and ``remodiff run``: log, read and check params.yaml
    (:func:`remodiff.check.check_params`, so a bad setting fails in seconds, before any work), run.

    A user error (a bad setting, a missing file) prints one line and exits with status 2; ``REMODIFF_DEBUG=1``
    shows the traceback instead."""
    from remodiff.check import load_checked, reported_errors  # validation only: not a DVC dependency (deps.py)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with reported_errors():
        params = load_checked(params_path)
        log_path = os.environ.get(PARAMS_READ)
        if not log_path:
            run(params, *args)
            return
        read: set[str] = set()
        run(ReadParams(params, read), *args)
        with open(log_path, "a") as log:  # one line per stage run; appending lines keeps each whole
            log.write(json.dumps({"stage": run.__module__.rsplit(".", 1)[-1], "args": list(args),
                                  "read": sorted(read)}) + "\n")
