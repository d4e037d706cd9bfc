"""Given features: clip-level feature vectors a dataset ships in a CSV beside its clips or labels (e.g. OpenFace or
COVAREP statistics), used for a modality instead of decoding and extracting it.

``dataset.given_features`` maps a modality to its file::

    given_features:
      audio: {file: audio_features.csv, id_column: video_file, exclude: [split]}

``file`` is relative to ``dataset.root``; every column except ``id_column`` and ``exclude`` is a feature. The
adapter attaches each clip's row (:attr:`Clip.given`); the ``segment`` stage stores it without decoding and the
``given`` extractor (``features.<modality>.backend: given``) repeats it over the clip's segments. A clip without a
row, or a row without a labelled clip, is skipped (counted and logged); a missing value, a non-number or a row with
the wrong number of fields is an error naming the file and row.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from remodiff.store import MODALITIES


@dataclass
class GivenFeatures:
    """One modality's given features: ``rows[clip id]`` = its ``[D]`` float32 vector."""

    path: Path
    columns: list[str]
    rows: dict[str, np.ndarray]


def read_given(root: Path, modality: str, spec) -> GivenFeatures:
    if not isinstance(spec, dict) or not isinstance(spec.get("file"), str):
        raise ValueError(f"dataset.given_features.{modality}: expected {{file: <csv under the root>, id_column: "
                         f"<column of clip ids>, exclude: [<non-feature columns>]}}, got {spec!r}")
    unknown = sorted(set(spec) - {"file", "id_column", "exclude"})
    if unknown:
        raise ValueError(f"dataset.given_features.{modality}: unknown settings {unknown} "
                         "(valid: file, id_column, exclude)")
    path = root / spec["file"]
    if not path.is_file():
        raise FileNotFoundError(f"dataset.given_features.{modality}: no file {path}")
    id_column, exclude = spec.get("id_column", "id"), list(spec.get("exclude") or [])
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file, expected a header row")
        lacking = [c for c in [id_column, *exclude] if c not in header]
        if lacking:
            raise ValueError(f"{path}: no column {lacking} (header: {', '.join(header[:8])}...)")
        id_index = header.index(id_column)
        feature_index = [i for i, c in enumerate(header) if c != id_column and c not in exclude]
        if not feature_index:
            raise ValueError(f"{path}: no feature column besides {id_column} and {exclude}")
        rows: dict[str, np.ndarray] = {}
        for line, fields in enumerate(reader, start=2):
            if len(fields) != len(header):
                raise ValueError(f"{path} row {line}: {len(fields)} fields, the header has {len(header)}")
            clip = fields[id_index]
            if clip in rows:
                raise ValueError(f"{path} row {line}: clip {clip} appears twice")
            try:
                values = [float(fields[i]) for i in feature_index]
            except ValueError:
                raise ValueError(f"{path} row {line} (clip {clip}): a feature is not a number") from None
            bad = [header[i] for i, v in zip(feature_index, values) if not math.isfinite(v)]
            if bad:
                raise ValueError(f"{path} row {line} (clip {clip}): missing or non-finite value in {bad}")
            rows[clip] = np.array(values, np.float32)
    return GivenFeatures(path, [header[i] for i in feature_index], rows)


def read_all_given(root: Path, specs) -> dict[str, GivenFeatures]:
    if specs is None:
        return {}
    if not isinstance(specs, dict):
        raise ValueError(f"dataset.given_features: expected {{modality: {{file: ..., id_column: ...}}}} or null, "
                         f"got {specs!r}")
    unknown = sorted(set(specs) - set(MODALITIES))
    if unknown:
        raise ValueError(f"dataset.given_features: {unknown} are not modalities (valid: {', '.join(MODALITIES)})")
    return {m: read_given(root, m, spec) for m, spec in specs.items()}
