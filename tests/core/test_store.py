import h5py
import numpy as np
import pytest

from remodiff.store import ClipStore, atomic_h5, load_featureset, partial_path, save_featureset
from tests.conftest import toy_featureset


def test_featureset_round_trip(tmp_path):
    fs = toy_featureset(7)
    fs.available["text"][2] = False
    save_featureset(tmp_path / "f.h5", fs)
    back = load_featureset(tmp_path / "f.h5")
    assert back.ids == fs.ids and back.label_names == fs.label_names
    np.testing.assert_array_equal(back.labels, fs.labels)
    for m in fs.modalities:
        np.testing.assert_array_equal(back.features[m], fs.features[m])
        np.testing.assert_array_equal(back.available[m], fs.available[m])
    assert load_featureset(tmp_path / "f.h5", ["video"]).modalities == ["video"]
    with pytest.raises(ValueError, match="no features for modality"):
        load_featureset(tmp_path / "f.h5", ["smell"])


def test_non_finite_features_are_refused_naming_the_clip(tmp_path):
    fs = toy_featureset(4)
    fs.features["audio"][3, 1, 0] = np.nan
    with pytest.raises(ValueError, match="clip0_3"):
        save_featureset(tmp_path / "f.h5", fs)
    assert not (tmp_path / "f.h5").exists()


def test_atomic_write_leaves_no_file_under_the_real_name_on_failure(tmp_path):
    target = tmp_path / "out.h5"
    with pytest.raises(RuntimeError):
        with atomic_h5(target) as f:
            f["x"] = np.arange(3)
            raise RuntimeError("crash")
    assert not target.exists() and partial_path(target).exists()


def test_clip_store_resumes_after_interruption(tmp_path):
    target = tmp_path / "seg.h5"
    with pytest.raises(RuntimeError):
        with ClipStore(target, {"fps": 5}) as store:
            store.write("a.mp4", {"audio": np.ones((2, 3))}, {"labels": [0.5]})
            raise RuntimeError("interrupted")
    with ClipStore(target, {"fps": 5}) as store:
        assert store.done("a.mp4") and not store.done("b.mp4")
        store.write("b.mp4", {"audio": np.zeros((2, 3))}, {"labels": [0.1]})
    with h5py.File(target) as f:
        assert sorted(f["clips"]) == ["a.mp4", "b.mp4"]
    # other settings: the partial's clips are not reused
    with pytest.raises(RuntimeError):
        with ClipStore(tmp_path / "x.h5", {"fps": 5}) as store:
            store.write("a.mp4", {"audio": np.ones((2, 3))}, {})
            raise RuntimeError
    with ClipStore(tmp_path / "x.h5", {"fps": 10}) as store:
        assert not store.done("a.mp4")


def test_mask_application_merges_natural_missingness():
    fs = toy_featureset(3)
    fs.available["audio"][0] = False  # e.g. no audio track
    mask = {m: np.ones((3, 5), bool) for m in fs.modalities}
    mask["video"][:] = False
    masked = fs.with_mask(mask)
    assert not masked.available["audio"][0].any() and masked.available["audio"][1:].all()
    assert not masked.available["video"].any() and not masked.features["video"].any()
    np.testing.assert_array_equal(masked.features["text"], fs.features["text"])
    with pytest.raises(ValueError, match="shape"):
        fs.with_mask({m: np.ones((2, 5), bool) for m in fs.modalities})


def test_standardiser_centres_a_dimension_constant_in_training_without_blowing_it_up():
    from remodiff.standardise import Standardiser

    train = toy_featureset(12, seed=0)
    train.features["audio"][..., 0] = 3.0  # e.g. a tf-idf word no training clip uses
    scaler = Standardiser.fit(train)
    test = toy_featureset(4, seed=1)
    test.features["audio"][..., 0] = 5.0
    z = scaler.transform(test, "audio")
    np.testing.assert_allclose(z[..., 0], 2.0)  # centred, unscaled: not 2 / 1e-6
    assert np.abs(z[..., 1:]).max() < 50  # the varying dimensions are z-scored as before
