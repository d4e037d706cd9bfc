"""Imputers: one module each, registered in :data:`IMPUTERS` (import side effect of this package)."""
from remodiff.imputers.base import IMPUTERS, Imputer, build_imputer, imputer_label, load_imputer
from remodiff.imputers import baselines  # noqa: F401  (registers zero, mean)
from remodiff.imputers import repeat  # noqa: F401
from remodiff.imputers import uniform  # noqa: F401  (registers random)
from remodiff.imputers import knn  # noqa: F401
from remodiff.imputers import gmm  # noqa: F401
from remodiff.imputers import cvae  # noqa: F401
from remodiff.imputers import gan  # noqa: F401
from remodiff.imputers import oracle  # noqa: F401  (registers oracle_same, oracle_other, oracle_mean)
from remodiff.imputers import diffusion  # noqa: F401  (registers diffusion)

__all__ = ["IMPUTERS", "Imputer", "build_imputer", "imputer_label", "load_imputer"]
