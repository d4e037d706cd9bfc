"""Feature extractors, registered in :data:`EXTRACTORS` by backend name."""
from remodiff.features.base import EXTRACTORS, MODALITIES, Extractor, SegmentedClip, build_extractor
from remodiff.features import fast  # noqa: F401  (registers logmel, frame_stats, tfidf)

__all__ = ["EXTRACTORS", "MODALITIES", "Extractor", "SegmentedClip", "build_extractor"]
