"""Reading ``params.yaml``: the single source of every setting of the pipeline."""
from __future__ import annotations

from pathlib import Path

import yaml

REQUIRED = ("dataset", "segment", "features", "masks", "eval", "imputer", "fuser")


def load_params(path: str | Path = "params.yaml", required: tuple[str, ...] = REQUIRED) -> dict:
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: run from the project root or pass --params")
    params = yaml.safe_load(path.read_text()) or {}
    lacking = [k for k in required if k not in params]
    if lacking:
        raise ValueError(f"{path} lacks the sections {lacking}")
    return params
