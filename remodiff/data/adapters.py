"""Dataset adapters: turn a dataset's own layout into a list of :class:`Clip` per split.

The protocol (every adapter subclasses :class:`DatasetAdapter` and is registered in :data:`DATASETS`):

* ``clips(split) -> list[Clip]``: raw clips for the ``segment`` stage to decode (a :class:`Clip` may name a
  separate ``audio_path``, decoded when the video file has no audio stream).
* ``label_names``; ``task``: ``"regression"`` (labels ``[L]`` floats) or ``"classification"`` (labels ``[1]`` =
  the class index into ``classes``). The segment store's config and the feature sets' ``attrs`` carry both.
* ``features(split, segments) -> FeatureSet | None``: adapters of datasets that ship precomputed features return
  them here, ``[N, segments, D]`` per modality (``precomputed`` is then True and ``clips`` is not used): the
  ``segment`` stage stores that feature set in its segment store instead of decoding anything, and the
  ``extract`` stage writes it to ``data/features/<split>.h5`` unchanged (no extractor runs; the keys of
  ``params.features`` choose which of the dataset's modalities to keep).
* ``modalities()``: for datasets that ship features, the modalities they hold, read cheaply (``remodiff check``
  compares them with ``params.features`` before any stage runs); ``transcripts``: False when no clip has one.
* ``skipped``: clips the adapter left out because their files or labels are unusable, ``{clip, split, reason}``
  each (logged, counted and listed in ``data/segments/report.json``).

Adapter settings come from ``params.dataset.<name>`` (see :func:`build_dataset`); a missing root or an expected
file that is not there is an error saying what was expected where.
"""
from __future__ import annotations

import abc
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

from remodiff.registry import Registry
from remodiff.store import FeatureSet

log = logging.getLogger(__name__)
DATASETS: Registry[type["DatasetAdapter"]] = Registry("dataset")
SPLITS = ("train", "val", "test")
TASKS = ("regression", "classification")


@dataclass
class Clip:
    id: str
    path: Path
    split: str
    labels: list[float]
    transcript: str | None  # None = no transcript for this clip (text modality missing)
    audio_path: Path | None = None  # audio file used when the video file has no audio stream


class DatasetAdapter(abc.ABC):
    label_names: list[str]
    task: str = "regression"
    classes: list[str] | None = None  # class names of a classification task, in label-index order
    precomputed: bool = False  # True: the dataset ships features (see :meth:`features`), not clips
    transcripts: bool = True  # False: no clip comes with a transcript (text is missing unless dataset.asr runs)

    def __init__(self, root: str | Path, **params):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} does not exist or is not a directory")
        self.params = params
        self.skipped: list[dict] = []

    @abc.abstractmethod
    def clips(self, split: str) -> list[Clip]:
        """All clips of ``split`` (``train``, ``val`` or ``test``), sorted by id."""

    def features(self, split: str, segments: int) -> FeatureSet | None:
        """The dataset's own features of ``split`` as ``[N, segments, D]`` per modality; None = decode the clips."""
        return None

    def modalities(self) -> list[str] | None:
        """Datasets that ship features: the modalities they hold, found without loading the features (and, where
        the files define them, ``label_names`` set); None for datasets of clips, whose modalities are the
        extractors'."""
        return None

    def skip(self, clip: str, split: str | None, reason: str) -> None:
        """Leave a clip out (``split`` None: not known, e.g. for a file name that does not parse)."""
        log.warning("%s: skipping %s (%s): %s", type(self).__name__, clip, split, reason)
        self.skipped.append({"clip": clip, "split": split, "reason": reason})

    def expect_file(self, path: Path, what: str) -> Path:
        if not path.is_file():
            raise FileNotFoundError(f"{type(self).__name__}: expected {what} at {path}, but there is no such file")
        return path


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


def load_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # the official files are Python 2 pickles


@DATASETS.register("first_impressions")
class FirstImpressions(DatasetAdapter):
    """ChaLearn First Impressions V2: ``<split dir>/**/*.mp4``, ``annotation_<split>.pkl`` =
    ``{trait: {video_file: score}}`` and optional ``transcription_<split>.pkl`` = ``{video_file: text}``.

    ``split_dirs`` maps our split names to folders under the root (defaults: train, val, test); a split mapped to
    another split's folder, e.g. ``{test: val}`` to evaluate on the validation set, also reads that split's
    annotation and transcription files.
    A clip without a label is an error; a missing transcript file or entry, or an empty transcript,
    makes the text modality missing for that clip.
    """

    label_names = ["extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness", "interview"]
    annotation_names = {"train": "training", "val": "validation", "test": "test"}

    def __init__(self, root: str | Path, split_dirs: dict | None = None):
        super().__init__(root)
        self.split_dirs = {**{s: s for s in SPLITS}, **(split_dirs or {})}

    def clips(self, split: str) -> list[Clip]:
        check_split(split)
        folder = self.root / self.split_dirs[split]
        if not folder.is_dir():
            log.warning("first_impressions: no %s folder %s; split %s is empty", split, folder, split)
            return []
        videos = sorted(folder.rglob("*.mp4"), key=lambda p: p.name)
        if not videos:
            return []
        # a split read from another split's folder (e.g. {test: val}) reads that split's label files too
        source = self.split_dirs[split] if self.split_dirs[split] in self.annotation_names else split
        tag = self.annotation_names[source]
        annotation_file = self.root / f"annotation_{tag}.pkl"
        if not annotation_file.exists():
            raise FileNotFoundError(f"first_impressions: {len(videos)} clips in {folder} but no labels file "
                                    f"{annotation_file} (expected {{trait: {{video_file: score}}}})")
        annotation = load_pickle(annotation_file)
        missing_traits = [t for t in self.label_names if t not in annotation]
        if missing_traits:
            raise ValueError(f"{annotation_file} lacks traits {missing_traits}")
        transcript_file = self.root / f"transcription_{tag}.pkl"
        transcripts = load_pickle(transcript_file) if transcript_file.exists() else {}
        if not transcript_file.exists():
            log.warning("first_impressions: no %s; text is missing for all %d %s clips", transcript_file.name,
                        len(videos), split)
        clips = []
        for video in videos:
            unlabelled = [t for t in self.label_names if video.name not in annotation[t]]
            if unlabelled:
                raise ValueError(f"clip {video.name} ({video}) has no label for {unlabelled} in {annotation_file}")
            text = transcripts.get(video.name)
            text = text.strip() if isinstance(text, str) and text.strip() else None
            clips.append(Clip(video.name, video, split, [float(annotation[t][video.name]) for t in self.label_names],
                              text))
        no_text = sum(c.transcript is None for c in clips)
        if no_text and transcripts:
            log.warning("first_impressions: %d of %d %s clips have no transcript (text missing for them)",
                        no_text, len(clips), split)
        return clips


# Keys of params.dataset that are not an adapter's own section.
STAGE_KEYS = ("name", "root", "asr")


def build_dataset(params: dict) -> DatasetAdapter:
    """The adapter ``params.name`` at ``params.root`` with its own settings ``params[<name>]``; the sections of
    the other datasets are ignored, anything else is an error (a misplaced setting would silently do nothing)."""
    cls = DATASETS.get(params["name"])
    stray = [k for k in params if k not in STAGE_KEYS and k not in DATASETS]
    if stray:
        raise ValueError(f"dataset settings {stray} are not understood: an adapter's settings go under "
                         f"dataset.{params['name']} (other keys: {', '.join(STAGE_KEYS)})")
    return cls(params["root"], **(params.get(params["name"]) or {}))
