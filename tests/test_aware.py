"""Imputation-aware fusion: training masks, reconstructed training copies, cross-fitting, K-sample aggregation and
the `aware` stage on a tiny feature set."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from remodiff.check import check_params
from remodiff.evaluation.aware import (aggregate_samples, agreement_weights, drop_mask, fit_aware, gap_closed,
                                       training_imputer)
from remodiff.imputers import build_imputer
from remodiff.registry import SettingError
from remodiff.store import FeatureSet, save_featureset
from tests.conftest import toy_featureset

MARKER = 7.5  # what the marking imputer writes into missing slots


class MarkingImputer:
    """Fills every missing slot with MARKER: reconstructed values are recognisable downstream."""

    stochastic = False

    def impute(self, data: FeatureSet, rng) -> FeatureSet:
        features = {m: np.where(data.available[m][..., None], data.features[m], MARKER).astype(np.float32)
                    for m in data.modalities}
        return FeatureSet(list(data.ids), features, {m: np.ones_like(a) for m, a in data.available.items()},
                          data.labels, list(data.label_names), dict(data.attrs))


class RecordingFuser:
    def fit(self, train, val, history_path=None):
        self.train, self.val = train, val


def present(data: FeatureSet, mask) -> np.ndarray:
    return np.stack([(data.available[m] & mask[m]).any(axis=1) for m in data.modalities], axis=1)


def test_drop_mask_keeps_a_modality_and_is_seeded_by_clip_id():
    data = toy_featureset(60, segments=2)
    data.available["text"][:10] = False  # naturally missing: never the one kept
    mask = drop_mask(data, 0.9, seed=3)
    kept = present(data, mask)
    assert kept.any(axis=1).all()
    assert not kept[:10, 2].any()
    assert 0.2 < 1 - kept[10:].mean() < 0.7  # p = 0.9 drops much, capped by the keep-one rule
    order = np.arange(len(data))[::-1]
    shuffled = drop_mask(data.rows(order), 0.9, seed=3)
    for m in data.modalities:
        np.testing.assert_array_equal(shuffled[m], mask[m][order])
    other = drop_mask(data, 0.9, seed=4)
    assert any((other[m] != mask[m]).any() for m in data.modalities)
    with pytest.raises(ValueError, match="probability"):
        drop_mask(data, 1.5, seed=3)


def test_aware_training_sees_the_reconstructions_of_the_dropped_slots():
    train, val = toy_featureset(40, seed=0, segments=2), toy_featureset(12, seed=1, segments=2)
    imputer = MarkingImputer()
    fuser = fit_aware(RecordingFuser(), train, val, imputer.impute, imputer.impute, p=0.5, copies=2, seed=0)
    seen = fuser.train
    assert seen.ids[:len(train)] == train.ids  # the complete clips as given
    for copy in range(2):
        mask = drop_mask(train, 0.5, seed=0, copy=copy)
        lost = ~present(train, mask)
        rows = [i for i, cid in enumerate(seen.ids) if cid.endswith(f"#aware{copy}")]
        originals = [train.ids.index(seen.ids[i].split("#")[0]) for i in rows]
        assert sorted(originals) == sorted(np.flatnonzero(lost.any(axis=1)).tolist())  # only clips that lost one
        for j, m in enumerate(train.modalities):
            for i, o in zip(rows, originals):
                expected = MARKER if lost[o, j] else train.features[m][o]
                np.testing.assert_allclose(seen.features[m][i], np.broadcast_to(expected, seen.features[m][i].shape))
            np.testing.assert_array_equal(seen.labels[rows], train.labels[originals])
    assert any("#aware0" in cid for cid in fuser.val.ids) and (fuser.val.features["audio"] == MARKER).any()


def test_an_aware_fuser_learns_what_a_reconstruction_means():
    """Audio and video carry the label; the marking imputer writes an out-of-range value into dropped audio. The
    fuser trained on complete data is thrown by it; the aware fuser has learnt to read video instead."""
    from remodiff.fusion import build_fuser

    def redundant(n: int, seed: int) -> FeatureSet:
        y = np.random.default_rng(seed).normal(size=(n, 1)).astype(np.float32)
        return FeatureSet([f"c{seed}_{i}" for i in range(n)], {"audio": y[:, None, :].copy(), "video": y[:, None, :].copy()},
                          {"audio": np.ones((n, 1), bool), "video": np.ones((n, 1), bool)}, y, ["y"])

    train, val, test = redundant(96, 0), redundant(32, 1), redundant(100, 2)
    params = {"hidden": 16, "dropout": 0.0, "input_dropout": 0.0, "loss": "mse",
              "train": {"epochs": 15, "batch_size": 32, "lr": 0.02, "patience": 15, "min_epochs": 1,
                        "schedule": "constant", "seed": 0}}
    imputer = MarkingImputer()
    lost_audio = imputer.impute(test.with_mask({"audio": np.zeros((100, 1), bool), "video": np.ones((100, 1), bool)}),
                                None)
    plain = build_fuser("early", ["audio", "video"], params)
    plain.fit(train, val)
    aware = fit_aware(build_fuser("early", ["audio", "video"], params), train, val, imputer.impute, imputer.impute,
                      p=0.5, copies=1, seed=0)
    plain_error = np.abs(plain.predict(lost_audio) - test.labels).mean()
    aware_error = np.abs(aware.predict(lost_audio) - test.labels).mean()
    assert aware_error < 0.5 * plain_error


def test_cross_fitted_imputers_do_not_reconstruct_a_clip_from_itself():
    train, val = toy_featureset(40, seed=0, segments=2), toy_featureset(10, seed=1, segments=2)

    def fitted(part, validation):
        imputer = build_imputer("knn", {"k": 1})
        imputer.fit(part, validation)
        return imputer

    main = fitted(train, val)
    masked = train.with_mask({m: np.full((40, 2), m != "audio") for m in train.modalities})
    own = training_imputer(main, fitted, train, val, 0, seed=0)(masked, np.random.default_rng(0))
    crossed = training_imputer(main, fitted, train, val, 4, seed=0)(masked, np.random.default_rng(0))
    # the main kNN finds each training clip itself (k = 1): a perfect, optimistic reconstruction
    np.testing.assert_allclose(own.features["audio"], train.features["audio"], atol=1e-5)
    assert not np.isclose(crossed.features["audio"], train.features["audio"], atol=1e-5).all(axis=(1, 2)).any()
    np.testing.assert_array_equal(crossed.features["video"], train.features["video"])
    with pytest.raises(ValueError, match="training clips only"):
        training_imputer(main, fitted, train, val, 4, seed=0)(val.with_mask(
            {m: np.full((10, 2), m != "audio") for m in val.modalities}), np.random.default_rng(0))


def test_agreement_weighting_downweights_an_outlier_sample():
    values = [np.array([[1.0]]), np.array([[1.1]]), np.array([[0.9]]), np.array([[1.05]]), np.array([[9.0]])]
    weights = agreement_weights(np.stack(values))
    assert weights[:, 0].argmin() == 4 and np.isclose(weights.sum(), 1.0)
    plain = aggregate_samples("regression", values, "plain")[0, 0]
    agreed = aggregate_samples("regression", values, "agreement")[0, 0]
    assert abs(agreed - 1.0) < 0.5 * abs(plain - 1.0)
    same = [np.array([[0.2, 0.8]])] * 3
    np.testing.assert_allclose(aggregate_samples("classification", same, "agreement"), [[0.0, 1.0]])
    # two samples for class 0, one confident outlier for class 1: it gets the smallest weight in the vote
    votes = [np.array([[0.6, 0.4]]), np.array([[0.62, 0.38]]), np.array([[0.0, 1.0]])]
    shares = aggregate_samples("classification", votes, "agreement")[0]
    assert shares[1] < 1 / 3 and np.isclose(shares.sum(), 1.0)
    with pytest.raises(ValueError, match="aware.aggregate"):
        aggregate_samples("regression", values, "median")


def test_gap_closed():
    assert gap_closed(0.5, 0.4, 0.6) == pytest.approx(0.5)
    assert gap_closed(0.3, 0.4, 0.6) == pytest.approx(-0.5)
    assert gap_closed(0.5, 0.6, 0.6) is None and gap_closed(0.5, None, 0.6) is None


@pytest.mark.parametrize("key, value, message", [
    ("drop", 0.0, "aware.drop: must be a probability in (0, 1)"),
    ("folds", 1, "aware.folds: must be 0 (the main imputer) or a number of folds >= 2"),
    ("start", "finetune", "aware.start: finetune is not available"),
    ("aggregate", "median", "aware.aggregate: unknown aggregation 'median' (valid: plain, agreement)"),
    ("copies", 0, "aware.copies: must be a positive integer"),
    ("colour", 1, "aware.colour: unknown setting"),
])
def test_unknown_or_bad_aware_settings_are_refused(key, value, message):
    params = yaml.safe_load(open("params.yaml"))
    params["aware"][key] = value
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_params(params)


def test_the_aware_stage_scores_every_pattern_next_to_the_bounds(tmp_path, monkeypatch):
    from remodiff.pipeline import stage

    monkeypatch.chdir(tmp_path)
    dims = (("audio", 4), ("video", 3))
    for split, n, seed in (("train", 40, 0), ("val", 12, 1), ("test", 16, 2)):
        save_featureset(tmp_path / "data" / "features" / f"{split}.h5", toy_featureset(n, seed, 2, dims))
    train = {"epochs": 3, "batch_size": 16, "lr": 0.01, "patience": 3, "device": "cpu"}
    params = {"features": {"audio": {}, "video": {}},
              "masks": {"protocol": "independent", "seed": 0, "independent": [{"audio": 0.5, "video": 0.5}]},
              "eval": {"seeds": [0, 1], "samples": 2, "lower_bound": True},
              "imputer": {"type": "knn", "knn": {"k": 3}}, "sampling": {"knn": {}},
              "fuser": {"type": "early", "early": {"hidden": 8, "train": train}},
              "aware": {"enabled": True, "drop": 0.5, "copies": 1, "folds": 2, "start": "scratch",
                        "aggregate": "agreement"}}
    for name in ("masks", "train_imputer", "reconstruct", "train_fuser", "evaluate", "aware"):
        stage(name)(params)
    result = json.loads((tmp_path / "metrics" / "aware.json").read_text())
    cell = result["independent"]["pa_0.5-pv_0.5"]
    assert set(cell) == {"imputed_aware", "imputed", "lower_bound", "gap_closed"}
    assert 0 <= cell["imputed_aware"]["mean_acc"] <= 1 and cell["imputed_aware"]["mean_acc_ci95"] is not None
    assert result["complete"] == json.loads((tmp_path / "metrics" / "downstream.json").read_text())["complete"]
    assert sorted(p.name for p in (tmp_path / "models" / "fuser_aware").iterdir()) == ["seed_0", "seed_1"]
    params["aware"]["enabled"] = False
    assert stage("aware")(params) == {"enabled": False}
    assert not any((tmp_path / "models" / "fuser_aware").iterdir())
