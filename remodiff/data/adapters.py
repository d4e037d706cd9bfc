"""Dataset adapters: turn a dataset's own layout into a list of :class:`Clip` per split."""
from __future__ import annotations

import abc
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path

from remodiff.registry import Registry

log = logging.getLogger(__name__)
DATASETS: Registry[type["DatasetAdapter"]] = Registry("dataset")
SPLITS = ("train", "val", "test")


@dataclass
class Clip:
    id: str
    path: Path
    split: str
    labels: list[float]
    transcript: str | None  # None = no transcript for this clip (text modality missing)


class DatasetAdapter(abc.ABC):
    label_names: list[str]

    def __init__(self, root: str | Path, **params):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} does not exist or is not a directory")
        self.params = params

    @abc.abstractmethod
    def clips(self, split: str) -> list[Clip]:
        """All clips of ``split`` (``train``, ``val`` or ``test``), sorted by id."""


def load_pickle(path: Path) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="latin1")  # the official files are Python 2 pickles


@DATASETS.register("first_impressions")
class FirstImpressions(DatasetAdapter):
    """ChaLearn First Impressions V2: ``<split dir>/**/*.mp4``, ``annotation_<split>.pkl`` =
    ``{trait: {video_file: score}}`` and optional ``transcription_<split>.pkl`` = ``{video_file: text}``.

    ``split_dirs`` maps our split names to folders under the root (defaults: train, val, test).
    A clip without a label is an error; a missing transcript file or entry, or an empty transcript,
    makes the text modality missing for that clip.
    """

    label_names = ["extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness", "interview"]
    annotation_names = {"train": "training", "val": "validation", "test": "test"}

    def __init__(self, root: str | Path, split_dirs: dict | None = None):
        super().__init__(root)
        self.split_dirs = {**{s: s for s in SPLITS}, **(split_dirs or {})}

    def clips(self, split: str) -> list[Clip]:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        folder = self.root / self.split_dirs[split]
        if not folder.is_dir():
            log.warning("first_impressions: no %s folder %s; split %s is empty", split, folder, split)
            return []
        videos = sorted(folder.rglob("*.mp4"), key=lambda p: p.name)
        if not videos:
            return []
        tag = self.annotation_names[split]
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


def build_dataset(params: dict) -> DatasetAdapter:
    params = dict(params)
    name = params.pop("name")
    return DATASETS.get(name)(**params)
