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
* ``skipped``: clips the adapter left out because their files are unusable, ``{clip, split, reason}`` each
  (logged, counted and listed in ``data/segments/report.json``). A clip whose label is unusable (not a number, not
  one of the classes) is an error naming it and its label, unless ``dataset.drop_bad_labels: true`` skips it
  (:meth:`DatasetAdapter.bad_label`).
* :meth:`DatasetAdapter.check_disjoint`: a clip id in two splits is an error (the model would be scored on clips
  it was trained or selected on), unless ``dataset.allow_shared_ids: true``.
* ``given``: the dataset's given features (``dataset.given_features``, :mod:`remodiff.data.given`);
  :meth:`DatasetAdapter.clips_with_given` attaches each clip's rows (:attr:`Clip.given`), skipping clips without
  one, and :meth:`DatasetAdapter.skip_unlabelled_given` counts the rows no labelled clip claimed. A clip with
  ``path`` None has no video: the ``segment`` stage stores its transcript and given features without decoding.

Adapter settings come from ``params.dataset.<name>`` (see :func:`build_dataset`); a missing root or an expected
file that is not there is an error saying what was expected where.
"""
from __future__ import annotations

import abc
import dataclasses
import itertools
import logging
import pickle
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from remodiff.data.given import GivenFeatures, read_all_given
from remodiff.registry import Registry
from remodiff.store import FeatureSet

log = logging.getLogger(__name__)
DATASETS: Registry[type["DatasetAdapter"]] = Registry("dataset", passed=("root",))
SPLITS = ("train", "val", "test")


@dataclass
class Clip:
    id: str
    path: Path | None  # None: no video file (the clip's modalities are its transcript and given features)
    split: str
    labels: list[float]
    transcript: str | None  # None = no transcript for this clip (text modality missing)
    audio_path: Path | None = None  # audio file used when the video file has no audio stream
    given: dict[str, np.ndarray] = field(default_factory=dict)  # modality -> its given [D] feature row


class DatasetAdapter(abc.ABC):
    label_names: list[str]
    task: str = "regression"
    classes: list[str] | None = None  # class names of a classification task, in label-index order
    precomputed: bool = False  # True: the dataset ships features (see :meth:`features`), not clips
    transcripts: bool = True  # False: no clip comes with a transcript (text is missing unless dataset.asr runs)
    drop_bad_labels: bool = False  # dataset.drop_bad_labels: skip a clip with an unusable label instead of failing
    allow_shared_ids: bool = False  # dataset.allow_shared_ids: let two splits hold the same clip
    #: the ``eval.folds.group`` rule naming how this dataset's clips group (by speaker, by source video), for an
    #: adapter that defines ``group_of(clip_id) -> group`` (a static method refusing an id not of its form); None
    group_rule: str | None = None

    def __init__(self, root: str | Path, **params):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"dataset root {self.root} does not exist or is not a directory")
        self.params = params
        self.skipped: list[dict] = []
        self.given: dict[str, GivenFeatures] = {}  # set by build_dataset from dataset.given_features

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

    def clips_with_given(self, split: str) -> list[Clip]:
        """:meth:`clips` with each clip's given feature rows attached; a clip lacking a row is skipped."""
        clips = []
        for clip in self.clips(split):
            lacking = [m for m, given in self.given.items() if clip.id not in given.rows]
            if lacking:
                self.skip(clip.id, split, f"no row in the given features {[str(self.given[m].path) for m in lacking]}")
                continue
            clips.append(dataclasses.replace(clip, given={m: g.rows[clip.id] for m, g in self.given.items()}))
        return clips

    def skip_unlabelled_given(self, listed: set[str]) -> None:
        """Count the given-feature rows of clips that no split listed (no labels)."""
        for m, given in self.given.items():
            for clip in sorted(set(given.rows) - listed):
                self.skip(clip, None, f"a row in {given.path} ({m}) but no labelled clip")

    def skip(self, clip: str, split: str | None, reason: str) -> None:
        """Leave a clip out (``split`` None: not known, e.g. for a file name that does not parse)."""
        log.warning("%s: skipping %s (%s): %s", type(self).__name__, clip, split, reason)
        self.skipped.append({"clip": clip, "split": split, "reason": reason})

    def bad_label(self, clip: str, split: str | None, reason: str) -> None:
        """A clip whose label is unusable: an error naming it, or with ``drop_bad_labels`` a skipped clip."""
        if not self.drop_bad_labels:
            raise ValueError(f"{type(self).__name__}: clip {clip} ({split}): {reason}; fix the label, or set "
                             f"dataset.drop_bad_labels: true to skip such clips")
        self.skip(clip, split, reason)

    def check_disjoint(self, ids: dict[str, list[str]]) -> None:
        """Refuse clip ids that occur in two splits (``ids``: split -> its clip ids), unless ``allow_shared_ids``
        (then they are logged)."""
        for first, second in itertools.combinations(ids, 2):
            shared = sorted(set(ids[first]) & set(ids[second]))
            if not shared:
                continue
            what = f"{type(self).__name__}: {first} and {second} share {len(shared)} clip ids, e.g. {shared[:5]}"
            if not self.allow_shared_ids:
                raise ValueError(f"{what}: a clip in two splits scores a model on clips it was trained or selected "
                                 f"on; remove them from one split, or set dataset.allow_shared_ids: true if that is "
                                 f"intended")
            log.warning("%s (dataset.allow_shared_ids: true)", what)

    def expect_file(self, path: Path, what: str) -> Path:
        if not path.is_file():
            raise FileNotFoundError(f"{type(self).__name__}: expected {what} at {path}, but there is no such file")
        return path


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


# What the official dataset pickles need (First Impressions: dicts of strings and numpy float scalars, written by
# Python 2 or, re-saved by Python 3 in protocol 2, with bytes as _codecs.encode; MMSA: dicts of numpy arrays, also
# protocol 5's _frombuffer): containers, strings, numbers and numpy arrays / scalars. Unpickling any other global
# can run code (os.system, eval, ...), and these files come from dataset downloads and DVC remotes.
_BUILTINS = ("dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float", "complex",
             "bool")
_NUMPY_CORE = ("numpy.core.multiarray", "numpy._core.multiarray")  # numpy 1 / numpy 2 spelling
DATASET_PICKLE_GLOBALS = frozenset(
    [(module, name) for module in ("builtins", "__builtin__") for name in _BUILTINS]  # Python 3 / Python 2
    + [(module, name) for module in _NUMPY_CORE for name in ("_reconstruct", "scalar")]
    + [(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")]
    + [("numpy", "ndarray"), ("numpy", "dtype"), ("collections", "OrderedDict"), ("_codecs", "encode")])


class DatasetUnpickler(pickle.Unpickler):
    """Unpickles a dataset file admitting only :data:`DATASET_PICKLE_GLOBALS`; any other global is refused by an
    ``UnpicklingError`` naming the file and the global, before it is looked up."""

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # the official files are Python 2 pickles
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) not in DATASET_PICKLE_GLOBALS:
            raise pickle.UnpicklingError(
                f"{self.path}: refused to unpickle {module}.{name}: a dataset pickle may hold only containers, "
                f"strings, numbers and numpy arrays (unpickling anything else can run code)")
        return super().find_class(module, name)


def load_pickle(path: Path) -> dict:
    """A dataset's own pickle (First Impressions annotations / transcripts, MMSA features), read by
    :class:`DatasetUnpickler`."""
    with open(path, "rb") as f:
        return DatasetUnpickler(f, path).load()


@DATASETS.register("first_impressions")
class FirstImpressions(DatasetAdapter):
    """ChaLearn First Impressions V2: ``<split dir>/**/*.mp4``, ``annotation_<split>.pkl`` =
    ``{trait: {video_file: score}}`` and optional ``transcription_<split>.pkl`` = ``{video_file: text}``.

    ``split_dirs`` maps our split names to folders under the root (defaults: train, val, test); a split mapped to
    another split's folder, e.g. ``{test: val}`` to evaluate on the validation set, also reads that split's
    annotation and transcription files.
    A clip without a label is an error; a missing transcript file or entry, or an empty transcript,
    makes the text modality missing for that clip.

    Without videos (a split's folder missing or empty) the split's clips are those of its annotation file, with no
    video: their modalities are the transcripts and ``dataset.given_features``. ``val_every: n`` makes the val
    split the training split's clips of every n-th YouTube video (crc32 of the id before the clip's last two dots
    modulo n is 0; grouped, so no speaker is in both) and trains on the rest.
    """

    label_names = ["extraversion", "neuroticism", "agreeableness", "conscientiousness", "openness", "interview"]
    annotation_names = {"train": "training", "val": "validation", "test": "test"}
    group_rule = "youtube_id"

    @staticmethod
    def group_of(clip_id: str) -> str:
        """The YouTube video: ``J4GQm9j0JZ0.003.mp4`` -> ``J4GQm9j0JZ0`` (the id before the last two dots)."""
        parts = clip_id.rsplit(".", 2)
        if len(parts) != 3 or not parts[0]:
            raise ValueError(f"clip id {clip_id!r} is not of the form <youtube id>.<nnn>.mp4 "
                             f"(e.g. J4GQm9j0JZ0.003.mp4)")
        return parts[0]

    def __init__(self, root: str | Path, split_dirs: dict | None = None, val_every: int | None = None):
        super().__init__(root)
        self.split_dirs = {**{s: s for s in SPLITS}, **(split_dirs or {})}
        if val_every is not None and (not isinstance(val_every, int) or isinstance(val_every, bool) or val_every < 2):
            raise ValueError(f"val_every must be null or an integer >= 2, got {val_every!r}")
        self.val_every = val_every

    def clips(self, split: str) -> list[Clip]:
        check_split(split)
        if self.val_every is None or split == "test":
            return self.split_clips(split)
        held_out = [c for c in self.split_clips("train") if (split == "val") == self.in_val(c.id)]
        return [dataclasses.replace(c, split=split) for c in held_out]

    def in_val(self, clip_id: str) -> bool:
        youtube_id = clip_id.rsplit(".", 2)[0]
        return zlib.crc32(youtube_id.encode()) % self.val_every == 0

    def split_clips(self, split: str) -> list[Clip]:
        folder = self.root / self.split_dirs[split]
        videos = sorted(folder.rglob("*.mp4"), key=lambda p: p.name) if folder.is_dir() else []
        # a split read from another split's folder (e.g. {test: val}) reads that split's label files too
        source = self.split_dirs[split] if self.split_dirs[split] in self.annotation_names else split
        tag = self.annotation_names[source]
        annotation_file = self.root / f"annotation_{tag}.pkl"
        if not videos and not annotation_file.exists():
            log.warning("first_impressions: no videos in %s and no %s; split %s is empty", folder,
                        annotation_file.name, split)
            return []
        if not annotation_file.exists():
            raise FileNotFoundError(f"first_impressions: {len(videos)} clips in {folder} but no labels file "
                                    f"{annotation_file} (expected {{trait: {{video_file: score}}}})")
        annotation = load_pickle(annotation_file)
        missing_traits = [t for t in self.label_names if t not in annotation]
        if missing_traits:
            raise ValueError(f"{annotation_file} lacks traits {missing_traits}")
        if not videos:
            log.info("first_impressions: no videos in %s; the %s clips are those of %s, without video", folder,
                     split, annotation_file.name)
        names = [v.name for v in videos] or sorted(annotation[self.label_names[0]])
        paths = [*videos] or [None] * len(names)
        transcript_file = self.root / f"transcription_{tag}.pkl"
        transcripts = load_pickle(transcript_file) if transcript_file.exists() else {}
        if not transcript_file.exists():
            log.warning("first_impressions: no %s; text is missing for all %d %s clips", transcript_file.name,
                        len(names), split)
        clips = []
        for name, video in zip(names, paths):
            unlabelled = [t for t in self.label_names if name not in annotation[t]]
            if unlabelled:
                raise ValueError(f"clip {name} ({video or 'no video'}) has no label for {unlabelled} in "
                                 f"{annotation_file}")
            text = transcripts.get(name)
            text = text.strip() if isinstance(text, str) and text.strip() else None
            clips.append(Clip(name, video, split, [float(annotation[t][name]) for t in self.label_names], text))
        no_text = sum(c.transcript is None for c in clips)
        if no_text and transcripts:
            log.warning("first_impressions: %d of %d %s clips have no transcript (text missing for them)",
                        no_text, len(clips), split)
        return clips


# Keys of params.dataset that are not an adapter's own section.
STAGE_KEYS = ("name", "root", "asr", "given_features", "drop_bad_labels", "allow_shared_ids")


def build_dataset(params: dict) -> DatasetAdapter:
    """The adapter ``params.name`` at ``params.root`` with its own settings ``params[<name>]``, the given
    features ``params.given_features`` and the checks ``drop_bad_labels`` / ``allow_shared_ids`` (default false);
    the sections of the other datasets are ignored, anything else is an error (a misplaced setting would silently
    do nothing)."""
    DATASETS.get(params["name"])
    stray = [k for k in params if k not in STAGE_KEYS and k not in DATASETS]
    if stray:
        raise ValueError(f"dataset settings {stray} are not understood: an adapter's settings go under "
                         f"dataset.{params['name']} (other keys: {', '.join(STAGE_KEYS)})")
    adapter = DATASETS.build(params["name"], params["root"], **(params.get(params["name"]) or {}))
    adapter.drop_bad_labels = params.get("drop_bad_labels", False)
    adapter.allow_shared_ids = params.get("allow_shared_ids", False)
    adapter.given = read_all_given(adapter.root, params.get("given_features"))
    if adapter.given and adapter.precomputed:
        raise ValueError(f"dataset.given_features: dataset {params['name']} ships all its features already; given "
                         "features are for datasets of clips")
    return adapter
