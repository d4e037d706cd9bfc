"""Imputation-aware fusion: training masks, reconstructed training copies, cross-fitting, and the comparison's own
fusers (`compare.fuser: own`) and incomplete training clips (`masks.train`) on a tiny feature set."""
from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

from remodiff.check import check_params
from remodiff.evaluation.aware import drop_mask, fit_aware, training_imputer
from remodiff.imputers import build_imputer
from remodiff.fusion import build_fuser
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


@pytest.mark.parametrize("key, value, message", [
    ("own", {"drop": 0.0, "copies": 1, "folds": 0}, "compare.own.drop: must be a probability in (0, 1)"),
    ("own", {"drop": 0.5, "copies": 1, "folds": 1}, "compare.own.folds: must be 0 (the main imputer) or a number"),
    ("own", {"drop": 0.5, "copies": 0, "folds": 0}, "compare.own.copies: must be a positive integer"),
    ("own", {"drop": 0.5, "copies": 1, "folds": 0, "colour": 1}, "compare.own.colour: unknown setting"),
    ("fuser", "aware", "compare.fuser: unknown fuser mode 'aware' (valid: shared, own, joint)"),
    ("joint", {"drop": 0.5, "weight": -1}, "compare.joint.weight: must be a number >= 0"),
])
def test_unknown_or_bad_comparison_fuser_settings_are_refused(key, value, message):
    params = yaml.safe_load(open("params.yaml"))
    params["compare"][key] = value
    with pytest.raises(SettingError, match=message.replace("(", r"\(").replace(")", r"\)")):
        check_params(params)


@pytest.mark.parametrize("setting, message", [
    ({"fixed": None}, "masks.train: null, or one protocol with one setting"),
    ({"independent": {"smell": 0.5}}, "unknown modalities"),
    ({"random": 0.9}, "impossible"),
])
def test_bad_training_masks_are_refused(setting, message):
    params = yaml.safe_load(open("params.yaml"))
    params["masks"]["train"] = setting
    with pytest.raises(SettingError, match=message):
        check_params(params)


def tiny_project(tmp_path, monkeypatch) -> dict:
    monkeypatch.chdir(tmp_path)
    dims = (("audio", 4), ("video", 3))
    for split, n, seed in (("train", 40, 0), ("val", 12, 1), ("test", 16, 2)):
        save_featureset(tmp_path / "data" / "features" / f"{split}.h5", toy_featureset(n, seed, 2, dims))
    train = {"epochs": 3, "batch_size": 16, "lr": 0.01, "patience": 3, "device": "cpu"}
    return {"features": {"audio": {}, "video": {}},
            "masks": {"protocol": "independent", "seed": 0, "independent": [{"audio": 0.5, "video": 0.5}],
                      "train": None},
            "eval": {"seeds": [0, 1], "samples": 2, "lower_bound": True},
            "imputer": {"type": "knn", "knn": {"k": 3}, "mean": {}}, "sampling": {"knn": {}, "mean": {}},
            "fuser": {"type": "early", "early": {"hidden": 8, "train": train}},
            "compare": {"imputers": ["mean", "knn"], "seeds": None, "resamples": 50, "metric": "auto",
                        "fuser": "own", "own": {"drop": 0.5, "copies": 1, "folds": 2},
                        "joint": {"drop": 0.5, "weight": 1.0}}}


def run_stages(params: dict) -> dict:
    """Every stage after extract, each checked to read only the params it declares (its dvc.yaml params)."""
    for name in ("masks", "train_imputer", "reconstruct", "train_fuser", "evaluate"):
        run_declared(name, params)
    for imputer in params["compare"]["imputers"]:
        run_declared("compare_train", params, imputer)
        run_declared("compare", params, imputer)
    return run_declared("compare_table", params)


def run_declared(name: str, params: dict, *args: str):
    from remodiff.pipeline import stage
    from remodiff.pipeline.deps import undeclared
    from remodiff.pipeline.entry import ReadParams

    read: set[str] = set()
    result = stage(name)(ReadParams(params, read), *args)
    missing = undeclared(name, read, params, args)
    assert not missing, f"stage {name} {args} reads params it does not declare: {missing}"
    return result


def test_own_fusers_are_trained_per_imputer_and_run_and_score_every_pattern(tmp_path, monkeypatch):
    params = tiny_project(tmp_path, monkeypatch)
    table = run_stages(params)
    own = tmp_path / "models" / "compare_fuser"
    assert sorted(p.name for p in (own / "knn").iterdir()) == ["fuser.json", "seed_0", "seed_1"]
    row = table["independent"]["pa_0.5-pv_0.5"]
    assert set(row) == {"mean", "knn", "lower_bound", "auto"}
    assert 0 <= row["knn"]["mean_acc"] <= 1 and row["knn"]["mean_acc_ci95"] is not None
    # the own fuser, not the shared one, scored the complete clips too
    shared = json.loads((tmp_path / "metrics" / "downstream.json").read_text())["complete"]["mean_acc"]
    assert json.loads((tmp_path / "metrics/compare/knn/downstream.json").read_text())["complete"]["mean_acc"] != shared


def test_incomplete_training_clips_train_complete_case_and_subset_fusers(tmp_path, monkeypatch):
    from remodiff.pipeline.runs import runs_of

    params = tiny_project(tmp_path, monkeypatch)
    params["masks"]["train"] = {"independent": {"audio": 0.5, "video": 0.5}}
    run = runs_of(params)[0]
    present = np.stack([run.train.available[m].any(axis=1) for m in ("audio", "video")], axis=1)
    assert present.any(axis=1).all() and not present.all(axis=1).all() and present.all(axis=1).any()
    test = np.stack([run.test.available[m].all(axis=1) for m in ("audio", "video")], axis=1)
    assert test.all()  # the test clips stay whole: the masks stage hides theirs
    assert runs_of(params)[0].train.ids == run.train.ids  # the same gaps every time
    np.testing.assert_array_equal(runs_of(params)[0].train.available["audio"], run.train.available["audio"])
    table = run_stages(params)
    assert set(table["independent"]["pa_0.5-pv_0.5"]) == {"mean", "knn", "lower_bound", "auto", "complete_case"}
    assert set(table["independent"]["pa_0.5-pv_0.5"]["knn"]["paired"]) >= {"lower_bound", "complete_case"}
    md = (tmp_path / "metrics" / "comparison.md").read_text()
    assert "complete-case training (knn fill)" in md


def test_joint_training_fits_both_and_the_task_loss_reaches_the_imputer():
    import torch

    from remodiff.joint import fit_joint

    dims = (("audio", 4), ("video", 3))
    train, val, test = (toy_featureset(n, seed, 2, dims) for n, seed in ((40, 0), (12, 1), (10, 2)))
    train_cfg = {"epochs": 4, "batch_size": 16, "patience": 4, "min_epochs": 0, "device": "cpu", "seed": 3}
    imputer_params = {"hidden": 16, "latent": 4, "train": {"device": "cpu"}}

    def joint(weight: float):
        imputer = build_imputer("cvae", imputer_params)
        fuser = build_fuser("early", ["audio", "video"], {"hidden": 8, "train": train_cfg})
        history = fit_joint(imputer, fuser, train, val, drop=0.5, weight=weight, seed=3)
        return imputer, fuser, history

    imputer, fuser, history = joint(weight=1.0)
    assert len(history) == 4 and "val_score" in history[0] and "joint" in imputer.fit_summary["criterion"]
    # the pair warms up as long as the cvae does (5 epochs): in 4 epochs none is a candidate, the last is kept
    assert history.best_epoch == 3
    restored = imputer.impute(test.with_mask({"audio": np.zeros((10, 2), bool), "video": np.ones((10, 2), bool)}))
    assert fuser.predict(restored).shape == (10, test.labels.shape[1])
    # with the imputer's own loss switched off, only the fuser's task loss trains the imputer: its weights move
    untrained = build_imputer("cvae", imputer_params).joint_setup(train, 3)
    imputer, _, _ = joint(weight=0.0)
    moved = [not torch.equal(a, b) for a, b in zip(untrained.state_dict().values(),
                                                    imputer.generator.state_dict().values())]
    assert any(moved)
    with pytest.raises(ValueError, match="cannot be trained jointly"):
        fit_joint(build_imputer("knn", {}), build_fuser("early", ["audio", "video"], {}), train, val, 0.5, 1.0, 0)


def test_joint_comparison_trains_cvae_with_its_fuser_and_gives_mean_its_own(tmp_path, monkeypatch):
    params = tiny_project(tmp_path, monkeypatch)
    params["compare"].update(imputers=["mean", "cvae"], fuser="joint", joint={"drop": 0.5, "weight": 1.0})
    params["imputer"]["cvae"] = {"hidden": 16, "latent": 4, "train": {"epochs": 3, "device": "cpu"}}
    params["sampling"]["cvae"] = {"draws": 2}
    table = run_stages(params)
    assert sorted(p.name for p in (tmp_path / "models/compare/cvae/joint_fuser").iterdir()) == ["seed_0", "seed_1"]
    assert json.loads((tmp_path / "models/compare_fuser/cvae/fuser.json").read_text())["scored_by"].endswith(
        "joint_fuser")
    assert sorted(p.name for p in (tmp_path / "models/compare_fuser/mean").iterdir()) == ["fuser.json", "seed_0",
                                                                                      "seed_1"]
    training = json.loads((tmp_path / "metrics/training/cvae.json").read_text())
    assert set(training["runs"]) == {"seed_0", "seed_1"} and training["runs"]["seed_0"]["epoch_cap"] == 3
    assert set(table["independent"]["pa_0.5-pv_0.5"]) == {"mean", "cvae", "lower_bound", "auto"}
