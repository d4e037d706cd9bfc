"""The pipeline stages, one module each: ``remodiff.pipeline.<stage>.run(params, ...)``.

``stages/*.py`` call them through :func:`remodiff.pipeline.entry.main`. This file imports nothing, so importing a
stage's module imports only what that stage runs (its DVC deps are exactly that code)."""
from importlib import import_module

STAGES = ("sample", "segment", "extract", "masks", "train_imputer", "reconstruct", "train_fuser", "evaluate",
          "compare_train", "compare", "compare_table", "report")


def stage(name: str):
    """The ``run`` function of stage ``name``."""
    if name not in STAGES:
        raise ValueError(f"unknown stage {name!r}; valid: {', '.join(STAGES)}")
    return import_module(f"remodiff.pipeline.{name}").run
