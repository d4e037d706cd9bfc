import numpy as np
import pytest

from remodiff.evaluation.masks import fitting_notes, make_masks, missing_rate, named_settings
from remodiff.results import load_masks, load_patterns, save_masks
from remodiff.evaluation.matrix import aggregate, ci95, lower_bound_predict
from remodiff.store import FeatureSet
from remodiff.tasks import regression_metrics
from remodiff.registry import UnknownNameError
from tests.conftest import TRAITS, toy_featureset


def keyed(masks: dict) -> dict:
    return {pattern.key: mask for pattern, mask in masks.items()}


def test_fixed_protocol_hides_every_proper_subset(tmp_path):
    fs = toy_featureset(6)
    patterns = make_masks(fs, {"fixed": None}, seed=0)
    masks = keyed(patterns)
    assert sorted(masks) == sorted(f"fixed/{p}_missing" for p in
                                   ["audio", "video", "text", "audio+video", "audio+text", "video+text"])
    for m, mask in masks["fixed/audio+text_missing"].items():
        assert mask.shape == (6, 5) and mask.all() == (m == "video") and mask.any() == (m == "video")
    # each pattern says what it hides, so no reader decodes setting names
    described = {p.key: p for p in patterns}["fixed/audio+text_missing"]
    assert described.rate == pytest.approx(2 / 3) and described.label == "audio + text missing"
    save_masks(tmp_path / "m.h5", patterns, fs.ids, {"protocol": "fixed"})
    assert set(load_patterns(tmp_path / "m.h5")) == set(patterns)
    again = keyed(load_masks(tmp_path / "m.h5", fs.ids))
    assert sorted(again) == sorted(masks)
    for p in masks:
        for m in masks[p]:
            np.testing.assert_array_equal(again[p][m], masks[p][m])
    # a fold's test clips read their own rows, in their order; clips the file lacks are refused
    some = keyed(load_masks(tmp_path / "m.h5", fs.ids[4:1:-1]))
    np.testing.assert_array_equal(some["fixed/audio_missing"]["video"], masks["fixed/audio_missing"]["video"][4:1:-1])
    with pytest.raises(ValueError, match="other clips"):
        load_masks(tmp_path / "m.h5", [*fs.ids[:2], "unknown-clip"])
    with pytest.raises(UnknownNameError, match="fixed"):
        make_masks(fs, {"nope": None}, seed=0)


@pytest.mark.parametrize("rate", [0.0, 0.1, 0.3, 0.5, 0.6])
def test_random_protocol_hits_the_rate_and_keeps_a_modality_per_clip(rate):
    fs = toy_featureset(200)
    pattern, mask = next(iter(make_masks(fs, {"random": [rate]}, seed=7).items()))
    assert pattern.key == f"random/mr_{rate:.1f}" and pattern.rate == rate
    assert abs(missing_rate(mask) - rate) <= 0.005
    kept = np.stack([a.all(axis=1) for a in mask.values()], axis=1)
    assert kept.sum(axis=1).min() >= 1
    if rate == 0.0:  # IMDer's batch protocol dropped modalities even here
        assert kept.all()


def test_random_masks_are_seeded_and_independent_of_clip_order():
    fs = toy_featureset(50)
    a = keyed(make_masks(fs, {"random": [0.4]}, seed=1))["random/mr_0.4"]
    order = np.random.default_rng(0).permutation(len(fs))
    shuffled = FeatureSet([fs.ids[i] for i in order], {m: x[order] for m, x in fs.features.items()},
                          {m: x[order] for m, x in fs.available.items()}, fs.labels[order], fs.label_names)
    b = keyed(make_masks(shuffled, {"random": [0.4]}, seed=1))["random/mr_0.4"]
    for m in a:
        np.testing.assert_array_equal(a[m][order], b[m])
    c = keyed(make_masks(fs, {"random": [0.4]}, seed=2))["random/mr_0.4"]
    assert any((a[m] != c[m]).any() for m in a)
    with pytest.raises(ValueError, match="impossible"):
        make_masks(fs, {"random": [0.7]}, seed=1)


def test_independent_and_segment_protocols_keep_something_per_clip():
    fs = toy_featureset(300)
    masks = keyed(make_masks(fs, {"independent": [{"audio": 0.9, "video": 0.9, "text": 0.9}], "segments": [0.5]},
                             seed=3))
    ind = masks["independent/pa_0.9-pv_0.9-pt_0.9"]
    present = np.stack([a.all(axis=1) for a in ind.values()], axis=1)
    assert present.sum(axis=1).min() == 1
    # P(all three dropped) = .729, then one comes back: about 2.07 of 3 modalities dropped per clip
    assert 0.62 < 1 - present.mean() < 0.71
    seg = masks["segments/p_0.5"]
    for a in seg.values():
        assert a.any(axis=1).all() and 0.4 < 1 - a.mean() < 0.6
    with pytest.raises(ValueError, match="unknown modalities"):
        make_masks(fs, {"independent": [{"smell": 0.5}]}, seed=0)


def test_confidence_interval_and_aggregation_against_hand_values():
    assert ci95([1.0]) is None
    # mean 2, sd 1, n 3: t(0.975, 2) = 4.302653 -> half-width 4.302653 / sqrt(3)
    assert ci95([1.0, 2.0, 3.0]) == pytest.approx(4.302653 / np.sqrt(3), rel=1e-5)
    out = aggregate([{"a": {"acc": 0.8, "r": None}}, {"a": {"acc": 0.9, "r": 0.5}}])
    assert out["a"]["acc"] == pytest.approx(0.85) and out["a"]["r"] == 0.5 and out["a"]["r_ci95"] is None


class ConstantFuser:
    def __init__(self, value, modalities):
        self.value, self.modalities = value, modalities

    def predict(self, data):
        assert data.modalities == self.modalities
        return np.full(data.labels.shape, self.value, np.float32)


def test_lower_bound_routes_each_clip_to_the_fuser_of_its_modalities():
    fs = toy_featureset(4).subset(["audio", "video"])
    mask = {"audio": np.array([[1] * 5, [0] * 5, [1] * 5, [1, 0, 0, 0, 0]], bool), "video": np.ones((4, 5), bool)}
    mask["video"][2] = False
    fusers = {"audio": ConstantFuser(1.0, ["audio"]), "video": ConstantFuser(2.0, ["video"]),
              "audio+video": ConstantFuser(3.0, ["audio", "video"])}
    floor = np.full(fs.labels.shape, 9.0, np.float32)
    out = lower_bound_predict(fusers, fs.with_mask(mask), floor)
    assert out[:, 0].tolist() == [3.0, 2.0, 1.0, 3.0]
    mask["video"][0] = False  # clip 0 loses its last modality: the training floor is all that is left
    mask["audio"][0] = False
    assert lower_bound_predict(fusers, fs.with_mask(mask), floor)[:, 0].tolist() == [9.0, 2.0, 1.0, 3.0]
    del fusers["video"]
    with pytest.raises(ValueError, match="no lower-bound fuser for modalities 'video'"):
        lower_bound_predict(fusers, fs.with_mask(mask), floor)


def test_regression_metrics_against_hand_values():
    y = np.array([[0.2, 0.4], [0.6, 0.8], [1.0, 0.0]])
    p = np.array([[0.3, 0.4], [0.5, 0.6], [0.9, 0.2]])
    out = regression_metrics(y, p, ["extraversion", "interview"])
    assert out["extraversion_acc"] == pytest.approx(0.9)  # |err| = .1, .1, .1
    assert out["interview_acc"] == pytest.approx(1 - 0.4 / 3)  # |err| = 0, .2, .2
    assert out["mean_acc"] == pytest.approx(0.9)  # the Big Five only: interview is not a trait
    assert out["mae"] == pytest.approx((0.3 + 0.4) / 6)
    assert out["extraversion_r"] == pytest.approx(np.corrcoef([0.2, 0.6, 1.0], [0.3, 0.5, 0.9])[0, 1])


def test_metrics_report_undefined_correlation_as_null_and_refuse_nan():
    y = np.array([[0.1], [0.5], [0.9]])
    out = regression_metrics(y, np.full_like(y, 0.5), ["openness"])
    assert out["openness_r"] is None and out["pearson_r"] is None
    assert out["mean_acc"] == pytest.approx(1 - 0.8 / 3)
    with pytest.raises(ValueError, match="NaN"):
        regression_metrics(y, np.array([[0.1], [np.nan], [0.2]]), ["openness"])
    with pytest.raises(ValueError, match="do not fit"):
        regression_metrics(y, y, TRAITS)


def test_three_modality_mask_settings_fit_a_two_modality_run():
    defaults = [{"audio": 0.5, "video": 0.0, "text": 0.0}, {"audio": 0.0, "video": 0.0, "text": 0.5},
                {"audio": 0.3, "video": 0.3, "text": 0.3}]
    # the text-only setting would drop nothing: it goes; the others keep their audio and video probabilities
    assert list(named_settings("independent", defaults, ["audio", "video"])) == ["pa_0.5-pv_0.0", "pa_0.3-pv_0.3"]
    assert list(named_settings("random", [0.0, 0.5, 0.6], ["audio", "video"])) == ["mr_0.0", "mr_0.5"]
    assert list(named_settings("random", None, ["audio", "video"]))[-1] == "mr_0.5"
    notes = fitting_notes({"independent": defaults, "random": [0.0, 0.5, 0.6]}, ["independent", "random"],
                          ["audio", "video"])
    assert len(notes) == 2 and "text" in notes[0] and "2 of 3 settings kept" in notes[0] and "[0.6]" in notes[1]
    assert fitting_notes({"independent": defaults}, ["independent"], ["audio", "video", "text"]) == []
