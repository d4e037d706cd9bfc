"""Any collection of videos described by a CSV manifest.

Columns: ``path`` (the video; relative paths are resolved against the CSV's folder), ``split`` (train, val or
test), the label columns named by the ``labels`` setting, and optionally ``id`` (default: the file name without
its extension; ids must be unique), ``transcript`` (empty = text missing for that clip) and ``audio_path`` (an
audio file decoded when the video has no audio stream).

Regression: each label column holds a number. Classification: exactly one label column holding class names; the
``classes`` setting fixes their order (default: the sorted names found in the manifest). A row whose file is
missing is skipped (logged and listed); a label that is empty, not a number, or not one of ``classes`` is an error
naming the line, unless ``dataset.drop_bad_labels: true`` skips the row too.
"""
from __future__ import annotations

import csv
import logging
import math
from pathlib import Path

from remodiff.data.adapters import DATASETS, SPLITS, Clip, DatasetAdapter, check_split
from remodiff.registry import UnknownNameError
from remodiff.tasks import TASKS

log = logging.getLogger(__name__)


@DATASETS.register("manifest")
class Manifest(DatasetAdapter):
    """Settings: ``file`` (the CSV under the root, default ``manifest.csv``), ``labels`` (label columns),
    ``task`` (regression | classification) and ``classes`` (classification only)."""

    def __init__(self, root: str | Path, labels: list[str], file: str = "manifest.csv", task: str = "regression",
                 classes: list[str] | None = None):
        super().__init__(root)
        if task not in TASKS:
            raise UnknownNameError(f"manifest: unknown task {task!r}", TASKS.names())
        if not labels:
            raise ValueError("manifest: `labels` must name at least one label column")
        if task == "classification" and len(labels) != 1:
            raise ValueError(f"manifest: a classification task takes one label column, got {labels}")
        self.path = self.expect_file(self.root / file, "the CSV manifest (columns path, split, "
                                                        f"{', '.join(labels)}[, id, transcript, audio_path])")
        self.label_names, self.task = list(labels), task
        with open(self.path, newline="") as f:
            reader = csv.DictReader(f)
            lacking = [c for c in ("path", "split", *labels) if c not in (reader.fieldnames or [])]
            if lacking:
                raise ValueError(f"manifest: {self.path} lacks the columns {lacking} (has {reader.fieldnames})")
            self.rows = list(reader)
            self.transcripts = "transcript" in reader.fieldnames
        bad_splits = sorted({r["split"] for r in self.rows} - set(SPLITS))
        if bad_splits:
            raise ValueError(f"manifest: {self.path} has splits {bad_splits}; valid: {', '.join(SPLITS)}")
        if task == "classification":
            found = sorted({r[labels[0]].strip() for r in self.rows} - {""})
            self.classes = list(classes) if classes else found
        self._clips: dict[str, list[Clip]] | None = None

    def label(self, row: dict) -> list[float] | str:
        """The row's labels, or why they are unusable."""
        values = [row[c].strip() for c in self.label_names]
        if self.task == "classification":
            name = values[0]
            return [float(self.classes.index(name))] if name in self.classes else \
                f"label {name!r} is not one of the classes {self.classes}"
        try:
            numbers = [float(v) for v in values]
        except ValueError:
            return f"labels {values} are not all numbers"
        return numbers if all(math.isfinite(v) for v in numbers) else f"labels {values} are not all finite"

    def clips(self, split: str) -> list[Clip]:
        check_split(split)
        if self._clips is None:
            self._clips = {s: [] for s in SPLITS}
            seen: dict[str, int] = {}
            for line, row in enumerate(self.rows, start=2):  # line 1 is the header
                path = self.path.parent / row["path"]
                clip_id = (row.get("id") or "").strip() or path.stem
                if clip_id in seen:
                    raise ValueError(f"manifest: {self.path} lines {seen[clip_id]} and {line} have the same id "
                                     f"{clip_id!r}; add a unique `id` column")
                if "/" in clip_id:
                    raise ValueError(f"manifest: {self.path} line {line}: id {clip_id!r} contains '/'")
                seen[clip_id] = line
                labels = self.label(row)
                if isinstance(labels, str):
                    self.bad_label(clip_id, row["split"], f"{self.path} line {line}: {labels}")
                    continue
                if not path.is_file():
                    self.skip(clip_id, row["split"], f"line {line}: no file {path}")
                    continue
                audio = (row.get("audio_path") or "").strip()
                transcript = (row.get("transcript") or "").strip() or None
                self._clips[row["split"]].append(Clip(clip_id, path, row["split"], labels, transcript,
                                                      self.path.parent / audio if audio else None))
            for clips in self._clips.values():
                clips.sort(key=lambda c: c.id)
        return self._clips[split]
