"""Fast offline feature backends: librosa log-mel (audio), frame statistics (video), TF-IDF (text)."""
from __future__ import annotations

import librosa
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from remodiff.data.segments import SegmentedClip
from remodiff.features.base import EXTRACTORS, Extractor


def mean_std(frames: np.ndarray) -> np.ndarray:
    """Pool ``[T, D]`` frame features into ``[2D]``: per-dimension mean and standard deviation."""
    return np.concatenate([frames.mean(axis=0), frames.std(axis=0)])


@EXTRACTORS.register("logmel")
class LogMel(Extractor):
    """Log-mel spectrogram frames (``n_mels`` bands, ``hop_ms`` hop) pooled per segment by mean and std."""

    modality = "audio"

    def __init__(self, n_mels: int = 32, n_fft: int = 512, hop_ms: float = 10.0):
        super().__init__(n_mels=n_mels, n_fft=n_fft, hop_ms=hop_ms)
        self.n_mels, self.n_fft, self.hop_ms = n_mels, n_fft, hop_ms

    @property
    def dim(self) -> int:
        return 2 * self.n_mels

    def frames(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        mel = librosa.feature.melspectrogram(y=audio, sr=sample_rate, n_fft=self.n_fft,
                                             hop_length=max(1, round(sample_rate * self.hop_ms / 1000)),
                                             n_mels=self.n_mels)
        return librosa.power_to_db(mel, ref=1.0, top_db=None).T  # [T, n_mels]; absolute level keeps loudness

    def extract(self, clip: SegmentedClip) -> np.ndarray:
        return np.stack([mean_std(self.frames(seg, clip.sample_rate)) for seg in clip.audio]).astype(np.float32)


@EXTRACTORS.register("frame_stats")
class FrameStats(Extractor):
    """Per frame: a ``thumb`` x ``thumb`` RGB thumbnail (area average), the mean and standard deviation of each
    colour channel, and the motion energy (mean absolute difference to the previous frame); all in [0, 1].
    Pooled per segment by mean and std over its frames."""

    modality = "video"

    def __init__(self, thumb: int = 4):
        super().__init__(thumb=thumb)
        self.thumb = thumb

    @property
    def dim(self) -> int:
        return 2 * (3 * self.thumb**2 + 6 + 1)

    def frame_features(self, frames: np.ndarray) -> np.ndarray:
        x = frames.astype(np.float32) / 255.0  # [F, H, W, 3]
        f, h, w, _ = x.shape
        rows = np.array_split(np.arange(h), self.thumb)
        cols = np.array_split(np.arange(w), self.thumb)
        thumb = np.stack([np.stack([x[:, r][:, :, c].mean(axis=(1, 2)) for c in cols], 1) for r in rows], 1)
        motion = np.abs(np.diff(x, axis=0, prepend=x[:1])).mean(axis=(1, 2, 3))
        return np.concatenate([thumb.reshape(f, -1), x.mean(axis=(1, 2)), x.std(axis=(1, 2)), motion[:, None]], 1)

    def extract(self, clip: SegmentedClip) -> np.ndarray:
        return np.stack([mean_std(self.frame_features(seg)) for seg in clip.frames]).astype(np.float32)


@EXTRACTORS.register("tfidf")
class Tfidf(Extractor):
    """scikit-learn TF-IDF over the training transcripts' vocabulary (``max_features`` most frequent terms),
    one vector per segment's words (zeros for a segment without words)."""

    modality = "text"

    def __init__(self, max_features: int = 256, ngram_max: int = 1):
        super().__init__(max_features=max_features, ngram_max=ngram_max)
        self.vectorizer = TfidfVectorizer(max_features=max_features, ngram_range=(1, ngram_max))
        self._dim: int | None = None

    def fit(self, clips: list[SegmentedClip]) -> None:
        texts = [" ".join(c.transcript) for c in clips if c.transcript is not None]
        if not texts:
            raise ValueError("tfidf: no training clip has a transcript; configure another text backend or "
                             "remove the text modality")
        self.vectorizer.fit(texts)
        self._dim = len(self.vectorizer.vocabulary_)

    @property
    def dim(self) -> int:
        if self._dim is None:
            raise RuntimeError("tfidf: fit() on the training transcripts first")
        return self._dim

    def extract(self, clip: SegmentedClip) -> np.ndarray:
        return self.vectorizer.transform(clip.transcript).toarray().astype(np.float32)
