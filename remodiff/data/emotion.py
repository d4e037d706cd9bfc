"""Acted-emotion video datasets whose labels live in the file names: RAVDESS and CREMA-D.

Both are classification (label = class index into ``classes``) with actor-independent splits: the actors listed
in ``val_actors`` / ``test_actors`` form those splits, every other actor is training. Neither ships transcripts
(the text modality is missing unless ``dataset.asr`` transcribes the clips). Files whose names do not follow the
scheme are skipped (logged and listed in the segment report); an emotion code that is not one of the classes is a
bad label: an error naming the file, unless ``dataset.drop_bad_labels: true`` skips it too.
"""
from __future__ import annotations

import abc
import logging
from pathlib import Path

from remodiff.data.adapters import DATASETS, Clip, DatasetAdapter, check_split

log = logging.getLogger(__name__)


def id_fields(clip_id: str, separator: str, count: int, form: str) -> list[str]:
    """The ``count`` non-empty fields of ``clip_id`` between ``separator``; another id is refused, naming its
    ``form``."""
    fields = clip_id.split(separator)
    if len(fields) != count or not all(fields):
        raise ValueError(f"clip id {clip_id!r} is not of the form {form}")
    return fields


class ActorSplitDataset(DatasetAdapter):
    """Shared by the adapters below: clips are assigned to splits by actor."""

    task = "classification"
    transcripts = False

    def __init__(self, root: str | Path, val_actors: list[int], test_actors: list[int]):
        super().__init__(root)
        self.val_actors, self.test_actors = {int(a) for a in val_actors}, {int(a) for a in test_actors}
        if self.val_actors & self.test_actors:
            raise ValueError(f"{type(self).__name__}: actors {sorted(self.val_actors & self.test_actors)} are in "
                             f"both val_actors and test_actors")
        self._clips: dict[str, list[Clip]] | None = None

    def split_of(self, actor: int) -> str:
        return "val" if actor in self.val_actors else "test" if actor in self.test_actors else "train"

    def clips(self, split: str) -> list[Clip]:
        check_split(split)
        if self._clips is None:
            self._clips = {s: [] for s in ("train", "val", "test")}
            for clip in self.all_clips():
                self._clips[clip.split].append(clip)
            for s, clips in self._clips.items():
                clips.sort(key=lambda c: c.id)
            log.info("%s: %s clips per split (%d skipped)", type(self).__name__,
                     {s: len(c) for s, c in self._clips.items()}, len(self.skipped))
        return self._clips[split]

    @abc.abstractmethod
    def all_clips(self) -> list[Clip]:
        """Every usable clip of the dataset, its split set."""


@DATASETS.register("ravdess")
class RAVDESS(ActorSplitDataset):
    """RAVDESS audio-visual speech: ``**/MM-CC-EE-II-SS-RR-AA.mp4`` (modality, vocal channel, emotion, intensity,
    statement, repetition, actor), e.g. ``Actor_12/01-01-06-01-02-01-12.mp4``. Only full audio-video (modality 01)
    speech (channel 01) files are used; video-only, audio-only and song files are counted and left out.
    Settings: ``val_actors`` (default [21, 22]), ``test_actors`` (default [23, 24])."""

    classes = ["neutral", "calm", "happy", "sad", "angry", "fearful", "disgust", "surprised"]
    label_names = ["emotion"]
    group_rule = "ravdess_actor"

    @staticmethod
    def group_of(clip_id: str) -> str:
        """The actor: ``01-01-06-01-02-01-12`` -> ``12`` (the last of the seven fields)."""
        return id_fields(clip_id, "-", 7, "MM-CC-EE-II-SS-RR-AA (e.g. 01-01-06-01-02-01-12)")[6]

    def __init__(self, root: str | Path, val_actors: list[int] = (21, 22), test_actors: list[int] = (23, 24)):
        super().__init__(root, val_actors, test_actors)

    def all_clips(self) -> list[Clip]:
        videos = sorted(self.root.rglob("*.mp4"))
        if not videos:
            raise FileNotFoundError(f"ravdess: no .mp4 files under {self.root} (expected the audio-video speech "
                                    f"files, e.g. Actor_01/01-01-01-01-01-01-01.mp4)")
        clips, other = [], 0
        for video in videos:
            fields = video.stem.split("-")
            if len(fields) != 7 or not all(f.isdigit() and len(f) == 2 for f in fields):
                self.skip(video.name, None, f"name is not MM-CC-EE-II-SS-RR-AA.mp4 ({video})")
                continue
            modality, channel, emotion, _, _, _, actor = (int(f) for f in fields)
            if (modality, channel) != (1, 1):
                other += 1  # video-only, audio-only or song: not part of the audio-visual speech set
                continue
            if not 1 <= emotion <= len(self.classes):
                self.bad_label(video.name, self.split_of(actor), f"emotion code {emotion:02d} is not 01-08 ({video})")
                continue
            clips.append(Clip(video.stem, video, self.split_of(actor), [float(emotion - 1)], None))
        if other:
            log.info("ravdess: left out %d files that are not audio-video speech (modality 01, channel 01)", other)
        return clips


@DATASETS.register("crema_d")
class CremaD(ActorSplitDataset):
    """CREMA-D: ``VideoFlash/<actor>_<sentence>_<emotion>_<level>.flv`` (e.g. ``1001_DFA_ANG_XX.flv``) with the
    matching ``AudioWAV/<same>.wav``; the WAV is decoded when the FLV has no audio stream (a clip without either
    has its audio missing). Settings: ``val_actors`` (default 1074-1082), ``test_actors`` (default 1083-1091)."""

    codes = ["ANG", "DIS", "FEA", "HAP", "NEU", "SAD"]
    classes = ["anger", "disgust", "fear", "happy", "neutral", "sad"]
    label_names = ["emotion"]
    group_rule = "crema_d_actor"

    @staticmethod
    def group_of(clip_id: str) -> str:
        """The actor: ``1001_DFA_ANG_XX`` -> ``1001``."""
        return id_fields(clip_id, "_", 4, "<actor>_<sentence>_<emotion>_<level> (e.g. 1001_DFA_ANG_XX)")[0]

    def __init__(self, root: str | Path, val_actors: list[int] = tuple(range(1074, 1083)),
                 test_actors: list[int] = tuple(range(1083, 1092))):
        super().__init__(root, val_actors, test_actors)

    def all_clips(self) -> list[Clip]:
        video_dir, audio_dir = self.root / "VideoFlash", self.root / "AudioWAV"
        if not video_dir.is_dir():
            raise FileNotFoundError(f"crema_d: expected the videos in {video_dir} (VideoFlash/*.flv)")
        videos = sorted(video_dir.glob("*.flv"))
        if not videos:
            raise FileNotFoundError(f"crema_d: no .flv files in {video_dir}")
        clips, without_wav = [], 0
        for video in videos:
            fields = video.stem.split("_")
            if len(fields) != 4 or not fields[0].isdigit():
                self.skip(video.name, None, f"name is not <actor>_<sentence>_<emotion>_<level>.flv ({video})")
                continue
            actor, _, emotion, _ = fields
            if emotion not in self.codes:
                self.bad_label(video.name, self.split_of(int(actor)),
                               f"emotion {emotion!r} is not one of {self.codes} ({video})")
                continue
            wav = audio_dir / f"{video.stem}.wav"
            if not wav.is_file():
                without_wav += 1
                wav = None
            clips.append(Clip(video.stem, video, self.split_of(int(actor)), [float(self.codes.index(emotion))],
                              None, audio_path=wav))
        if without_wav:
            log.warning("crema_d: %d of %d videos have no AudioWAV/<name>.wav (their audio comes from the FLV "
                        "alone)", without_wav, len(videos))
        return clips
