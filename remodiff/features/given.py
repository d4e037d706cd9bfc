"""The ``given`` backend: a modality's features come with the dataset (``dataset.given_features``), not from media."""
from __future__ import annotations

import numpy as np

from remodiff.data.segments import SegmentedClip
from remodiff.features.base import EXTRACTORS, Extractor


@EXTRACTORS.register("given")
class Given(Extractor):
    """The clip's given feature row (one vector per clip, e.g. clip-level audio statistics), repeated over its
    segments. Serves any modality (``features.<modality>: {backend: given}``); a clip without a row for it has
    the modality missing."""

    modality = ""  # any: build_extractor sets the configured one

    def __init__(self):
        super().__init__()
        self._dim: int | None = None

    def fit(self, clips: list[SegmentedClip]) -> None:
        dims = {clip.given[self.modality].shape[0] for clip in clips if self.modality in clip.given}
        if not dims:
            raise ValueError(f"features.{self.modality}: backend given, but no training clip has given "
                             f"{self.modality} features: set dataset.given_features.{self.modality}")
        if len(dims) > 1:
            raise ValueError(f"given {self.modality} features of different sizes {sorted(dims)}")
        self._dim = dims.pop()

    def has_modality(self, clip: SegmentedClip) -> bool:
        return self.modality in clip.given

    @property
    def media(self) -> set[str]:
        return set()  # the rows come with the segment store: nothing to decode

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise RuntimeError("given: fit() on the training clips first")
        return self._dim

    def extract(self, clip: SegmentedClip) -> np.ndarray:
        row = clip.given[self.modality]
        if row.shape != (self.dim,):
            raise ValueError(f"clip {clip.id}: given {self.modality} features of size {row.shape[0]}, "
                             f"the training clips' are {self.dim}")
        return np.repeat(row[None].astype(np.float32), len(clip.frames), axis=0)
