import numpy as np
import pytest

from remodiff.evaluation.masks import load_masks, make_masks, save_masks
from remodiff.evaluation.metrics import regression_metrics
from remodiff.registry import UnknownNameError
from tests.conftest import TRAITS, toy_featureset


def test_fixed_protocol_hides_one_modality_per_pattern(tmp_path):
    fs = toy_featureset(6)
    masks = make_masks(fs, "fixed", seed=0)
    assert sorted(masks) == ["audio_missing", "text_missing", "video_missing"]
    for gone in fs.modalities:
        for m, mask in masks[f"{gone}_missing"].items():
            assert mask.shape == (6, 5) and mask.all() == (m != gone) and mask.any() == (m != gone)
    save_masks(tmp_path / "m.h5", masks, fs.ids, {"protocol": "fixed"})
    again = load_masks(tmp_path / "m.h5", fs.ids)
    for p in masks:
        for m in masks[p]:
            np.testing.assert_array_equal(again[p][m], masks[p][m])
    with pytest.raises(ValueError, match="other clips"):
        load_masks(tmp_path / "m.h5", fs.ids[::-1])
    with pytest.raises(UnknownNameError, match="fixed"):
        make_masks(fs, "nope", seed=0)


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
