"""The entry point of the thin ``stages/<stage>.py`` scripts and ``remodiff run``.

Its own module, so that the validation pass (:mod:`remodiff.check`, which reads paths of
:mod:`remodiff.pipeline.common`) and the stage modules never import each other."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Callable


def main(run: Callable[..., object], *args: str, params_path: str | Path = "params.yaml") -> None:
    """Entry point of the thin ``stages/<stage>.py`` scripts and ``remodiff run``: log, read and check params.yaml
    (:func:`remodiff.check.check_params`, so a bad setting fails in seconds, before any work), run.

    A user error (a bad setting, a missing file) prints one line and exits with status 2; ``REMODIFF_DEBUG=1``
    shows the traceback instead."""
    from remodiff.check import load_checked, reported_errors  # validation only: not a DVC dependency (deps.py)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with reported_errors():
        run(load_checked(params_path), *args)
