"""Feature extractors, registered in :data:`EXTRACTORS` by backend name."""
from remodiff.features.base import EXTRACTORS, Extractor, build_extractor
from remodiff.features import deep, fast, given  # noqa: F401  (register their backends)

__all__ = ["EXTRACTORS", "Extractor", "build_extractor"]
