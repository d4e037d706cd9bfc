import numpy as np
import pytest

from remodiff.imputers import build_imputer, load_imputer
from remodiff.registry import UnknownNameError
from tests.conftest import toy_featureset


def hide(fs, modality):
    return fs.with_mask({m: np.full(fs.available[m].shape, m != modality) for m in fs.modalities})


def test_zero_and_mean_fill_only_the_missing_slots(tmp_path):
    train, test = toy_featureset(40, seed=1), toy_featureset(10, seed=2)
    masked = hide(test, "video")
    zero = build_imputer("zero")
    zero.fit(train)
    out = zero.impute(masked)
    assert not out.features["video"].any()
    np.testing.assert_array_equal(out.features["audio"], test.features["audio"])
    mean = build_imputer("mean")
    mean.fit(train)
    out = mean.impute(masked)
    expected = train.features["video"].mean(axis=0)  # per segment position
    np.testing.assert_allclose(out.features["video"], np.broadcast_to(expected, out.features["video"].shape), rtol=1e-5)
    np.testing.assert_array_equal(out.features["text"], test.features["text"])
    assert all(a.all() for a in out.available.values())
    mean.save(tmp_path / "imp")
    again = load_imputer(tmp_path / "imp").impute(masked)
    np.testing.assert_array_equal(again.features["video"], out.features["video"])


def test_mean_ignores_naturally_missing_training_slots():
    train = toy_featureset(20, seed=3)
    train.available["text"][:10] = False
    train.features["text"][:10] = 1e6  # would dominate the mean if counted
    imputer = build_imputer("mean")
    imputer.fit(train)
    np.testing.assert_allclose(imputer.means["text"], train.features["text"][10:].mean(axis=0), rtol=1e-5)


def test_unknown_imputer_names_the_valid_ones():
    with pytest.raises(UnknownNameError, match="mean.*zero|zero.*mean"):
        build_imputer("nope")


def test_imputer_refuses_other_modalities():
    imputer = build_imputer("zero")
    imputer.fit(toy_featureset(5).subset(["audio", "video"]))
    with pytest.raises(ValueError, match="fitted on"):
        imputer.impute(toy_featureset(5))
