"""Feature extractors, registered in :data:`EXTRACTORS` by backend name."""
from remodiff.features.base import EXTRACTORS, MODALITIES, Extractor, SegmentedClip, build_extractor
from remodiff.features import deep, fast  # noqa: F401  (register hf_text, hf_audio, clip, timm; logmel, ...)

__all__ = ["EXTRACTORS", "MODALITIES", "Extractor", "SegmentedClip", "build_extractor"]
