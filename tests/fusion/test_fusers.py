"""Fusers: they learn regression and classification, honour availability, mask while training, save and load;
the classical rows (linear, mlp) too, and every fuser's settings pass `remodiff check`."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from remodiff.check import check_params, read_params

from remodiff.evaluation.matrix import lower_bound_predict
from remodiff.fusion import FUSERS, build_fuser, load_fuser
from remodiff.fusion.blocks import drop_modalities, split_inputs, standardised_inputs
from remodiff.imputers import build_imputer
from remodiff.registry import SettingError
from remodiff.store import FeatureSet
from remodiff.tasks import Task, class_indices, classification_metrics, regression_metrics
from tests.conftest import ROOT, toy_featureset

MODALITIES = ["audio", "video", "text"]
CLASSES = ["calm", "happy", "sad"]
TRAIN = {"epochs": 40, "batch_size": 16, "lr": 0.005, "patience": 10, "seed": 0}
LOOP = {k: v for k, v in TRAIN.items() if k != "seed"}  # an auto candidate's train section: the seed is auto's
FAST = {
    "auto": {"candidates": {"linear": {}, "mlp": {"hidden": 32, "train": LOOP}}, "train": {"seed": 0}},
    "early": {"hidden": 16, "train": TRAIN},
    "late": {"hidden": 16, "combine": "learned", "train": TRAIN},
    "transformer": {"hidden": 16, "heads": 2, "layers": 1, "feedforward": 32, "train": TRAIN},
    "linear": {"train": {"seed": 0}},  # the one train key the pipeline passes
    "mlp": {"hidden": 32, "train": TRAIN},
}
ALL = ["auto", "early", "late", "linear", "mlp", "transformer"]


def as_classification(fs: FeatureSet) -> FeatureSet:
    """Three classes from a fixed linear map of the clip's mean audio features (so the features predict them)."""
    weights = np.random.default_rng(5).normal(size=(fs.features["audio"].shape[-1], len(CLASSES)))
    label = (fs.features["audio"].mean(axis=1) @ weights).argmax(axis=1)
    return FeatureSet(fs.ids, fs.features, fs.available, label[:, None].astype(np.float32), ["emotion"],
                      {"task": "classification", "classes": CLASSES})


def hide(fs: FeatureSet, modality: str, rows: slice) -> FeatureSet:
    mask = {m: np.ones_like(a) for m, a in fs.available.items()}
    mask[modality][rows] = False
    return fs.with_mask(mask)


@pytest.fixture(scope="module")
def regression_data():
    return toy_featureset(120, seed=0), toy_featureset(30, seed=1), toy_featureset(40, seed=2)


def fit_every_fuser(train, val) -> dict:
    fusers = {}
    for name in FUSERS.names():
        fusers[name] = build_fuser(name, MODALITIES, FAST[name])
        fusers[name].fit(train, val)
    return fusers


@pytest.fixture(scope="module")
def regression_fusers(regression_data):
    return fit_every_fuser(*regression_data[:2])


@pytest.fixture(scope="module")
def classification_data(regression_data):
    return tuple(as_classification(fs) for fs in regression_data)


@pytest.fixture(scope="module")
def classification_fusers(classification_data):
    return fit_every_fuser(*classification_data[:2])


def test_every_fuser_is_registered():
    assert FUSERS.names() == ALL


@pytest.mark.parametrize("name", ALL)
def test_fuser_beats_the_label_mean_on_regression(name, regression_data, regression_fusers):
    train, _, test = regression_data
    prediction = regression_fusers[name].predict(test)
    assert prediction.shape == test.labels.shape and prediction.dtype == np.float32
    floor = np.broadcast_to(train.labels.mean(axis=0), test.labels.shape)
    fused_mae = regression_metrics(test.labels, prediction, test.label_names)["mae"]
    floor_mae = regression_metrics(test.labels, floor, test.label_names)["mae"]
    assert fused_mae < 0.6 * floor_mae


@pytest.mark.parametrize("name", ALL)
def test_fuser_beats_chance_on_three_classes(name, classification_data, classification_fusers):
    _, _, test = classification_data
    probabilities = classification_fusers[name].predict(test)
    assert probabilities.shape == (len(test), 3)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities >= 0).all()
    majority = np.bincount(test.labels[:, 0].astype(int)).max() / len(test)
    accuracy = classification_metrics(test.labels, probabilities, CLASSES)["accuracy"]
    assert accuracy > max(majority, 1 / 3) + 0.2
    assert np.mean(class_indices(probabilities) == test.labels[:, 0]) == pytest.approx(accuracy)
    floor = np.full_like(probabilities, 1 / 3)  # [N, C], not [N, 1]
    routed = lower_bound_predict({"audio+text+video": classification_fusers[name]}, test, floor)
    np.testing.assert_array_equal(routed, probabilities)


@pytest.mark.parametrize("name", ["late", "transformer"])
def test_unavailable_modality_values_do_not_change_the_prediction(name, regression_data, regression_fusers):
    """Checked on the network itself: the fuser's z-scoring already zeroes missing slots before it."""
    fuser, test = regression_fusers[name], regression_data[2]
    incomplete = hide(hide(test, "video", slice(0, 20)), "text", slice(10, 30))
    x, available = split_inputs({k: torch.as_tensor(v) for k, v in
                                 standardised_inputs(fuser.scaler, incomplete, MODALITIES).items()}, MODALITIES)
    noisy = dict(x)
    for m in ("video", "text"):
        noise = torch.randn(x[m].shape, generator=torch.Generator().manual_seed(1)) * 5
        noisy[m] = torch.where(available[m][..., None], x[m], noise)
    with torch.no_grad():
        clean_out, noisy_out = fuser.model(x, available), fuser.model(noisy, available)
        available_changed = dict(x, audio=x["audio"] + 1.0)
        changed_out = fuser.model(available_changed, available)
    torch.testing.assert_close(noisy_out, clean_out, atol=1e-6, rtol=0)
    assert not torch.allclose(changed_out, clean_out, atol=1e-3)  # the check could fail: inputs do matter

    changed = FeatureSet(incomplete.ids, {**incomplete.features, "video": np.where(
        incomplete.available["video"][..., None], incomplete.features["video"], 7.0).astype(np.float32)},
        incomplete.available, incomplete.labels, incomplete.label_names)
    np.testing.assert_allclose(fuser.predict(changed), fuser.predict(incomplete), atol=1e-6)


def test_late_fusion_weights_sum_to_one(regression_data, regression_fusers):
    weights = regression_fusers["late"].combination_weights()
    assert list(weights) == MODALITIES
    assert sum(weights.values()) == pytest.approx(1.0)
    assert min(weights.values()) > 0
    assert max(weights.values()) - min(weights.values()) > 1e-4  # learned: moved off the uniform start
    mean = build_fuser("late", MODALITIES, {**FAST["late"], "combine": "mean", "train": {**TRAIN, "epochs": 2}})
    mean.fit(regression_data[0], None)
    assert list(mean.combination_weights().values()) == pytest.approx([1 / 3] * 3)


@pytest.mark.parametrize("name", ALL)
def test_save_and_load_give_identical_predictions(name, tmp_path, regression_data, regression_fusers,
                                                  classification_data, classification_fusers):
    for fusers, test in ((regression_fusers, regression_data[2]), (classification_fusers, classification_data[2])):
        fusers[name].save(tmp_path / name)
        # no pickle: the settings, and the state_dict as JSON + safetensors (remodiff.statefile)
        assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["fuser.json", "state.json", "state.safetensors"]
        again = load_fuser(tmp_path / name)
        assert type(again) is type(fusers[name]) and again.params == fusers[name].params
        np.testing.assert_array_equal(again.predict(test), fusers[name].predict(test))


def test_drop_modalities_is_seeded_and_never_empties_a_clip():
    n, segments = 2000, 4
    x = {m: torch.ones(n, segments, 3) for m in MODALITIES}
    available = {m: torch.ones(n, segments, dtype=torch.bool) for m in MODALITIES}
    available["text"][:500] = False  # naturally missing: never counted as dropped, never the one kept
    x["text"][:500] = 0.0

    def draw(seed):
        return drop_modalities(x, available, 0.5, torch.Generator().manual_seed(seed), "missing")

    dropped_x, dropped_available = draw(3)
    again_x, again_available = draw(3)
    other_x, other_available = draw(4)
    for m in MODALITIES:
        assert torch.equal(dropped_x[m], again_x[m]) and torch.equal(dropped_available[m], again_available[m])
    assert any(not torch.equal(dropped_available[m], other_available[m]) for m in MODALITIES)
    kept = torch.stack([dropped_available[m].all(dim=1) for m in MODALITIES], dim=1)
    gone = torch.stack([~dropped_available[m].any(dim=1) for m in MODALITIES], dim=1)
    assert (kept | gone).all()  # whole modalities go, never single segments
    assert kept.sum(dim=1).min() >= 1
    for m in MODALITIES:  # dropped = zeroed, kept = untouched
        assert (dropped_x[m][gone[:, MODALITIES.index(m)]] == 0).all()
        assert (dropped_x[m][kept[:, MODALITIES.index(m)]] == 1).all()
    # audio of a complete clip goes with p = 0.5, less the draws where all three went (1/8, one of three kept)
    assert gone[500:, 0].float().mean().item() == pytest.approx(0.5 - 0.125 / 3, abs=0.04)


def test_train_masking_is_deterministic_under_the_seed(regression_data):
    train, val, test = regression_data
    params = {**FAST["early"], "train": {**TRAIN, "epochs": 5}}

    def trained(masking: float, seed: int = 0) -> np.ndarray:
        fuser = build_fuser("early", MODALITIES, {**params, "train_masking": masking,
                                                  "train": {**params["train"], "seed": seed}})
        fuser.fit(train, val)
        return fuser.predict(test)

    masked = trained(0.5)
    np.testing.assert_array_equal(trained(0.5), masked)
    assert not np.allclose(trained(0.0), masked, atol=1e-4)
    assert not np.allclose(trained(0.5, seed=1), masked, atol=1e-4)


def test_masking_as_mean_trains_on_what_a_mean_reconstruction_looks_like():
    """masked_as: mean shows a dropped modality exactly as the `mean` imputer's reconstruction reaches the fuser at
    test time (the training mean, marked available); masked_as: missing shows a natural gap, which late fusion reads
    otherwise (it leaves the modality out). One segment: the mean imputer fills the mean per segment position."""
    train, test = toy_featureset(120, seed=0, segments=1), toy_featureset(40, seed=2, segments=1)
    fuser = build_fuser("late", MODALITIES, {**FAST["late"], "train_masking": 0.5, "masked_as": "mean",
                                             "train": {**TRAIN, "epochs": 5}})
    fuser.fit(train, None)
    x, available = split_inputs({k: torch.as_tensor(v) for k, v in
                                 standardised_inputs(fuser.scaler, test, MODALITIES).items()}, MODALITIES)

    def shown(masked_as: str):  # one training-time draw, shown both ways
        return drop_modalities(x, available, 0.5, torch.Generator().manual_seed(0), masked_as)

    gaps = {m: a.numpy() for m, a in shown("missing")[1].items()}
    assert sum(int((~g).sum()) for g in gaps.values()) > 0
    imputer = build_imputer("mean")
    imputer.fit(train)
    reconstructed = fuser.predict(imputer.impute(test.with_mask(gaps)))
    with torch.no_grad():
        as_mean = fuser.output.predictions(fuser.model(*shown("mean")).numpy())
        as_missing = fuser.output.predictions(fuser.model(*shown("missing")).numpy())
    np.testing.assert_allclose(reconstructed, as_mean, atol=1e-5)
    assert not np.allclose(reconstructed, as_missing, atol=1e-3)


def test_mask_validation_changes_what_early_stopping_follows_not_the_training(tmp_path, regression_data):
    train, val, _ = regression_data

    def fitted(mask_validation: bool) -> tuple:
        fuser = build_fuser("mlp", MODALITIES, {**FAST["mlp"], "train_masking": 0.5, "masked_as": "mean",
                                                "mask_validation": mask_validation,
                                                "train": {**TRAIN, "epochs": 6, "min_epochs": 6}})
        history = tmp_path / f"{mask_validation}.json"
        fuser.fit(train, val, history_path=history)
        return fuser, json.loads(history.read_text())

    (plain, plain_history), (masked, masked_history) = fitted(False), fitted(True)
    assert [r["train_loss"] for r in masked_history] == [r["train_loss"] for r in plain_history]
    assert all(a["val_score"] != b["val_score"] for a, b in zip(masked_history, plain_history))
    # validation_score: the kept model on the validation clips as given, masked or not while training
    assert plain.validation_score == pytest.approx(max(r["val_score"] for r in plain_history), abs=1e-6)
    task = Task.from_attrs(val.attrs)
    for fuser in (plain, masked):
        assert fuser.validation_score == pytest.approx(task.score(fuser.predict(val), val.labels), abs=1e-6)


@pytest.mark.parametrize("name", ["early", "late", "linear", "mlp", "transformer"])
def test_validation_score_is_one_definition_for_every_fuser(name, regression_data, regression_fusers,
                                                            classification_data, classification_fusers):
    """The score early stopping follows (TaskOutput.score) and linear fusion picks its penalty by are
    remodiff.tasks.Task.score of the fuser's predictions on the validation clips."""
    for data, fusers in ((regression_data, regression_fusers), (classification_data, classification_fusers)):
        train, val, _ = data
        fuser = fusers[name]
        if name == "linear":  # refitted on the validation clips by default: score the model picked before that
            fuser = build_fuser("linear", MODALITIES, {"refit_on_val": False})
            fuser.fit(train, val)
        assert fuser.validation_score == pytest.approx(
            Task.from_attrs(val.attrs).score(fuser.predict(val), val.labels), abs=1e-6)


def two_class_set(n: int, seed: int, rule) -> FeatureSet:
    rng = np.random.default_rng(seed)
    features = {m: rng.normal(size=(n, 1, 2)).astype(np.float32) for m in ("audio", "video")}
    labels = rule(features["audio"][:, 0, 0] > 0, features["video"][:, 0, 0] > 0).astype(np.float32)[:, None]
    return FeatureSet([f"c{seed}_{i}" for i in range(n)], features, {m: np.ones((n, 1), bool) for m in features},
                      labels, ["emotion"], {"task": "classification", "classes": ["calm", "happy"]})


@pytest.mark.parametrize("rule, winner", [(np.logical_xor, "mlp"), (lambda audio, video: audio, "linear")])
def test_auto_keeps_the_candidate_with_the_best_validation_score(rule, winner, tmp_path):
    """XOR of the two modalities' signs: no linear model separates the classes, a small MLP does; the sign of audio
    alone: linear does, the MLP (one epoch at a tiny learning rate) does not learn it. Auto keeps the better one
    whichever is listed first, predicts as it does alone, writes its training history, and saves and loads it."""
    train, val, test = (two_class_set(n, seed, rule) for n, seed in ((200, 0), (60, 1), (60, 2)))
    learning = winner == "mlp"
    mlp = {"hidden": 32, "dropout": 0.0, "input_dropout": 0.0,
           "train": {**LOOP, "epochs": 60} if learning else {**LOOP, "epochs": 1, "lr": 1e-6, "min_epochs": 0}}
    candidates = {"linear": {}, "mlp": mlp} if learning else {"mlp": mlp, "linear": {}}
    auto = build_fuser("auto", ["audio", "video"], {"candidates": candidates, "train": {"seed": 0}})
    auto.fit(train, val, history_path=tmp_path / "history.json")
    loser = "linear" if learning else "mlp"
    assert auto.chosen == winner and auto.scores[winner] > auto.scores[loser] + 0.2
    assert auto.validation_score == auto.scores[winner]
    alone = build_fuser(winner, ["audio", "video"], {**candidates[winner], "train": {
        **candidates[winner].get("train", {}), "seed": 0}})
    alone.fit(train, val)
    np.testing.assert_array_equal(auto.predict(test), alone.predict(test))
    assert (tmp_path / "history.json").exists() == learning  # linear has no training loop, so no history
    auto.save(tmp_path / "auto")
    again = load_fuser(tmp_path / "auto")
    assert (again.chosen, again.scores, again.standard_errors) == (auto.chosen, auto.scores, auto.standard_errors)
    np.testing.assert_array_equal(again.predict(test), auto.predict(test))
    with pytest.raises(ValueError, match="needs validation clips"):
        auto.fit(train, None)


def test_auto_one_standard_error_rule_keeps_the_first_listed_candidate_within_the_noise():
    def right(n_right: int, n: int) -> np.ndarray:  # per-clip accuracies
        return np.array([1.0] * n_right + [0.0] * (n - n_right))

    # 25 clips: the best (early, 0.60) has a standard error of 0.1, so linear (0.52) is within it
    scores = {"linear": right(13, 25), "mlp": right(14, 25), "early": right(15, 25)}
    auto = build_fuser("auto", MODALITIES, {"candidates": ["linear", "mlp", "early"]})
    auto.scores = {k: float(v.mean()) for k, v in scores.items()}
    assert auto.select(scores) == "linear"
    # 100 clips: early's lead over linear (0.58 vs 0.50) exceeds its standard error (0.05); mlp (0.55) is within
    scores = {"linear": right(50, 100), "mlp": right(55, 100), "early": right(58, 100)}
    assert auto.select(scores) == "mlp"
    best = build_fuser("auto", MODALITIES, {"candidates": ["linear", "mlp", "early"], "selection": "best"})
    best.scores = {k: float(v.mean()) for k, v in scores.items()}
    assert best.select(scores) == "early"


def test_bad_inputs_and_params_fail_clearly(regression_data, regression_fusers):
    train, val, test = regression_data
    with pytest.raises(ValueError, match=r"needs modalities \['depth'\]"):
        build_fuser("early", ["audio", "depth"], FAST["early"]).fit(train, val)
    with pytest.raises(ValueError, match="fitted on feature sizes"):
        regression_fusers["transformer"].predict(toy_featureset(4, dims=(("audio", 8), ("video", 6), ("text", 5))))
    with pytest.raises(ValueError, match="unknown settings \\['combine'\\] for fuser 'early'"):
        build_fuser("early", MODALITIES, {"combine": "mean"})
    with pytest.raises(ValueError, match="valid values: mean, learned"):
        build_fuser("late", MODALITIES, {"combine": "max"})
    with pytest.raises(ValueError, match="divisible by heads"):
        build_fuser("transformer", MODALITIES, {"hidden": 10, "heads": 4})
    with pytest.raises(ValueError, match=r"train_masking must be a probability"):
        build_fuser("late", MODALITIES, {"train_masking": 1.0})
    with pytest.raises(RuntimeError, match="not fitted"):
        build_fuser("late", MODALITIES).predict(test)
    bad = as_classification(toy_featureset(6))
    bad.labels[0, 0] = 3.0
    with pytest.raises(ValueError, match=r"integers in \[0, 3\); found \[3.0\]"):
        build_fuser("early", MODALITIES, FAST["early"]).fit(bad, None)
    no_classes = FeatureSet(bad.ids, bad.features, bad.available, bad.labels, bad.label_names,
                            {"task": "classification"})
    with pytest.raises(ValueError, match="at least two class names"):
        build_fuser("early", MODALITIES, FAST["early"]).fit(no_classes, None)


@pytest.mark.parametrize("name", ["linear", "mlp"])
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_classical_fusers_learn_with_a_modality_missing(name, task, tmp_path, regression_data):
    """Video hidden for a third of the training clips and of the test clips: the fuser still learns, its
    predictions ignore the values in the hidden slots, and save/load keeps them."""
    train, val, test = regression_data if task == "regression" else tuple(as_classification(fs)
                                                                          for fs in regression_data)
    train, test = hide(train, "video", slice(0, 40)), hide(test, "video", slice(0, 15))
    fuser = build_fuser(name, MODALITIES, FAST[name])
    fuser.fit(train, val)
    prediction = fuser.predict(test)
    assert np.isfinite(prediction).all()
    if task == "regression":
        floor_mae = np.abs(test.labels - train.labels.mean(axis=0)).mean()
        assert np.abs(test.labels - prediction).mean() < 0.7 * floor_mae
    else:
        np.testing.assert_allclose(prediction.sum(axis=1), 1.0, atol=1e-5)
        assert classification_metrics(test.labels, prediction, CLASSES)["accuracy"] > 0.6
    junk = np.where(test.available["video"][..., None], test.features["video"], 9.0).astype(np.float32)
    np.testing.assert_allclose(fuser.predict(FeatureSet(test.ids, {**test.features, "video": junk}, test.available,
                                                        test.labels, test.label_names, test.attrs)),
                               prediction, atol=1e-5)
    fuser.save(tmp_path / name)
    np.testing.assert_array_equal(load_fuser(tmp_path / name).predict(test), prediction)


def test_linear_fusion_picks_its_penalty_on_validation_and_is_seed_free(regression_data):
    train, val, test = regression_data
    picked = build_fuser("linear", MODALITIES, {"penalties": [1e6, 1.0], "refit_on_val": False})
    picked.fit(train, val)
    assert picked.state["penalty"] == 1.0  # a huge ridge penalty predicts the mean: validation refuses it
    seeds = [build_fuser("linear", MODALITIES, {"train": {"seed": s}}) for s in (0, 1)]
    for fuser in seeds:
        fuser.fit(train, val)
    np.testing.assert_array_equal(seeds[0].predict(test), seeds[1].predict(test))


def test_neural_fusers_use_the_real_data_defaults_and_accept_overrides():
    fuser = build_fuser("early", MODALITIES, {"train": {"epochs": 7, "seed": 3}})
    cfg = fuser.train_cfg
    assert (cfg.epochs, cfg.seed, cfg.batch_size, cfg.weight_decay, cfg.min_epochs, cfg.schedule) == (
        7, 3, 64, 0.05, 10, "cosine")


def test_committed_params_equal_the_code_defaults():
    """params.yaml's fuser sections spell out the code's defaults: built as written or with no settings, a fuser is
    the same (so a default measured and changed in one place is changed in both)."""
    sections = read_params(ROOT / "params.yaml")["fuser"]
    for name in ALL:
        written, default = build_fuser(name, MODALITIES, sections[name]), build_fuser(name, MODALITIES)
        assert {k: v for k, v in written.params.items() if k != "train"} == {
            k: v for k, v in default.params.items() if k != "train"}, name
        assert getattr(written, "train_cfg", None) == getattr(default, "train_cfg", None), name


def test_committed_params_name_every_fuser_and_check_accepts_them(tmp_path, monkeypatch):
    params = read_params(ROOT / "params.yaml")
    assert sorted(set(params["fuser"]) - {"type", "train"}) == ALL
    monkeypatch.chdir(tmp_path)  # the sample dataset is not written yet: check reads no data
    for name in ALL:
        check_params({**params, "fuser": {**params["fuser"], "type": name}})
    refused = {"linear": ({"penalties": [0.0]}, "positive numbers"),
               "mlp": ({"input_dropout": 1.0}, "input_dropout must be a probability"),
               "early": ({"monitor": "auc"}, "valid values: score, loss"),
               "late": ({"masked_as": "zero"}, "valid values: missing, mean"),
               "auto": ({"candidates": {"linear": {}, "early": {"hidden": 0}}}, "auto fusion candidate 'early'")}
    for name, (setting, message) in refused.items():
        bad = {**params, "fuser": {**params["fuser"], "type": name, name: {**params["fuser"][name], **setting}}}
        with pytest.raises(SettingError, match=message):
            check_params(bad)
    with pytest.raises(SettingError, match="linear fusion has no training loop"):
        check_params({**params, "fuser": {**params["fuser"], "type": "linear", "linear": {"train": {"epochs": 3}}}})
