"""CMU-MOSI / CMU-MOSEI as the MMSA feature pickles (``aligned_50.pkl`` / ``unaligned_50.pkl``, also IMDer's input).

Layout (what MMSA's and IMDer's ``data_loader.py`` read): a pickle ``{split: {key: array}}`` with splits
``train`` / ``valid`` / ``test`` and keys ``id`` [N], ``regression_labels`` [N] (sentiment in [-3, 3]),
``audio`` [N, Ta, Da] (COVAREP; may hold -inf), ``vision`` [N, Tv, Dv] (Facet / OpenFace), ``text`` [N, Tt, Dt]
(word or BERT-token embeddings) and ``text_bert`` [N, 3, Tt] (BERT input: token ids, attention mask, segment
ids); the unaligned pickle adds ``audio_lengths`` / ``vision_lengths``.

Features: per modality the valid time steps (the first ``*_lengths`` steps where the pickle gives lengths, as
MMSA-FET pads at the end; otherwise the steps whose feature row is not all zeros, the padding of the aligned
pickles) are mean-pooled into ``segment.segments`` equal parts. -inf / NaN values are set to 0, as MMSA's loader
does, and counted in the log. Text uses ``text``; a pickle with only ``text_bert`` (token ids, which need a BERT
forward pass that this adapter does not run) is an error. Modalities are named audio (``audio``), video
(``vision``) and text (``text``); the task is regression with label ``sentiment``.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from remodiff.data.adapters import DATASETS, Clip, DatasetAdapter, check_split, load_pickle
from remodiff.data.precomputed import lengths_mask, pool_segments, usable_labels
from remodiff.store import FeatureSet

log = logging.getLogger(__name__)
# our split -> the pickle's split key
PICKLE_SPLITS = {"train": "train", "val": "valid", "test": "test"}
# our modality -> (the pickle's feature key, its lengths key)
MODALITY_KEYS = {"audio": ("audio", "audio_lengths"), "video": ("vision", "vision_lengths"), "text": ("text", None)}


@DATASETS.register("mmsa")
class MMSA(DatasetAdapter):
    """Settings: ``file`` (the pickle under the root, default ``aligned_50.pkl``)."""

    label_names = ["sentiment"]
    precomputed = True
    group_rule = "mmsa_video"

    @staticmethod
    def group_of(clip_id: str) -> str:
        """The source video: ``03bSnISJMiM$_$1`` -> ``03bSnISJMiM``."""
        video, separator, _ = clip_id.partition("$_$")
        if not separator or not video:
            raise ValueError(f"clip id {clip_id!r} is not of the form <video>$_$<clip> (e.g. 03bSnISJMiM$_$1)")
        return video

    def __init__(self, root: str | Path, file: str = "aligned_50.pkl"):
        super().__init__(root)
        self.path = self.root / file
        self._data: dict | None = None

    def clips(self, split: str) -> list[Clip]:
        raise TypeError("mmsa: this dataset ships features, not clips (use features())")

    def modalities(self) -> list[str]:
        self.expect_file(self.path, "an MMSA feature pickle")
        return list(MODALITY_KEYS)

    def data(self) -> dict:
        if self._data is None:
            self.expect_file(self.path, "an MMSA feature pickle ({'train'|'valid'|'test': {'id', "
                                        "'regression_labels', 'audio', 'vision', 'text', ...}})")
            self._data = load_pickle(self.path)
            lacking = [s for s in PICKLE_SPLITS.values() if s not in self._data]
            if lacking:
                raise ValueError(f"mmsa: {self.path} lacks the splits {lacking} (has {sorted(self._data)})")
        return self._data

    def features(self, split: str, segments: int) -> FeatureSet:
        check_split(split)
        part = self.data()[PICKLE_SPLITS[split]]
        if "text" not in part and "text_bert" in part:
            raise ValueError(f"mmsa: {self.path} [{PICKLE_SPLITS[split]}] has only `text_bert` (BERT token ids, "
                             f"attention mask, segment ids), which needs a BERT forward pass to become features; "
                             f"use an MMSA pickle with `text` embeddings (e.g. MMSA's aligned_50.pkl)")
        lacking = [k for k in ("id", "regression_labels", *(key for key, _ in MODALITY_KEYS.values()))
                   if k not in part]
        if lacking:
            raise ValueError(f"mmsa: {self.path} [{PICKLE_SPLITS[split]}] lacks {lacking} (has {sorted(part)})")
        ids = [str(i) for i in np.asarray(part["id"]).reshape(-1)]
        labels = np.asarray(part["regression_labels"], np.float32).reshape(len(ids), -1)
        keep = usable_labels(self, ids, labels, split, f"{self.path} [{PICKLE_SPLITS[split]}]")
        kept_ids = [i for i, k in zip(ids, keep) if k]
        features, available = {}, {}
        for m, (key, lengths_key) in MODALITY_KEYS.items():
            x = np.asarray(part[key], np.float32)
            if x.ndim != 3 or len(x) != len(ids):
                raise ValueError(f"mmsa: {self.path} [{PICKLE_SPLITS[split]}] {key} has shape {x.shape}, "
                                 f"expected [{len(ids)}, T, D]")
            bad = ~np.isfinite(x)
            if bad.any():
                log.warning("mmsa %s: %d non-finite %s values set to 0 (as MMSA's loader does)", split,
                            int(bad.sum()), key)
                x = np.where(bad, 0.0, x).astype(np.float32)
            if lengths_key in part:
                valid = lengths_mask(part[lengths_key], x.shape[1])
            else:
                valid = np.any(x != 0, axis=2)
            features[m], available[m] = pool_segments(x[keep], valid[keep], segments, kept_ids)
            if not available[m].all():
                log.info("mmsa %s: %d clips have no %s steps (modality missing)", split,
                         int((~available[m].any(axis=1)).sum()), m)
        log.info("mmsa %s: %d clips from %s", split, len(kept_ids), self.path.name)
        return FeatureSet(kept_ids, features, available, labels[keep], list(self.label_names),
                          {"source": str(self.path)})
