"""Imputers: one module each, registered in :data:`IMPUTERS` (import side effect of this package)."""
from remodiff.imputers.base import IMPUTERS, Imputer, build_imputer, load_imputer
from remodiff.imputers import baselines  # noqa: F401  (registers zero, mean)
from remodiff.imputers import diffusion  # noqa: F401  (registers diffusion)

__all__ = ["IMPUTERS", "Imputer", "build_imputer", "load_imputer"]
