"""Every registered imputer behind the one interface, plus what each one promises on its own."""
from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch

from remodiff.check import SettingError, check_params
from remodiff.evaluation.reconstruction import frechet_distance, reconstruction_metrics
from remodiff.imputers import IMPUTERS, build_imputer, load_imputer
from remodiff.statefile import load_state
from remodiff.store import FeatureSet
from tests.conftest import COMMITTED

DIMS = {"audio": 6, "video": 5, "text": 4}
# Small budgets so every registered imputer fits in well under a second here; unlisted ones use their defaults.
FAST = {
    "cvae": {"hidden": 16, "latent": 3, "train": {"epochs": 3, "batch_size": 32}},
    "gan": {"hidden": 16, "noise": 3, "train": {"epochs": 3, "batch_size": 32}},
    "gmm": {"max_iter": 50},
    "diffusion": {"hidden": 16, "steps": 4, "draws": 2, "train": {"epochs": 3, "batch_size": 32}},
}
NAMES = IMPUTERS.names()


def learnable(n: int, seed: int, segments: int = 2, modalities=tuple(DIMS)) -> FeatureSet:
    """Per segment, each modality is a different nonlinear map of a shared 2-d latent, so any one modality is
    a learnable function of the others; the labels are a function of the clip's latent too."""
    weights = np.random.default_rng(99)
    w = {m: weights.normal(size=(2, d)) for m, d in DIMS.items()}
    rng = np.random.default_rng(seed)
    u = rng.uniform(-1.5, 1.5, size=(n, segments, 2))
    maps = {"audio": lambda v: v, "video": np.tanh, "text": lambda v: np.sin(1.5 * v)}
    features = {m: (maps[m](u @ w[m]) + 0.05 * rng.normal(size=(n, segments, DIMS[m]))).astype(np.float32)
                for m in modalities}
    return FeatureSet([f"clip{seed}_{i}" for i in range(n)], features,
                      {m: np.ones((n, segments), bool) for m in modalities},
                      np.tanh(u.mean(axis=1)).astype(np.float32), ["trait_a", "trait_b"])


def hide(data: FeatureSet, gone) -> FeatureSet:
    return data.with_mask({m: np.full(data.available[m].shape, m not in gone) for m in data.modalities})


_fitted: dict = {}


def fitted(name: str, modalities=tuple(DIMS)):
    """One fitted imputer per (name, modalities), shared by the tests of this module."""
    key = (name, modalities)
    if key not in _fitted:
        imputer = build_imputer(name, FAST.get(name))
        imputer.fit(learnable(30, seed=0, segments=3, modalities=modalities),
                    learnable(10, seed=1, segments=3, modalities=modalities), seed=0)
        _fitted[key] = imputer
    return _fitted[key]


def check_filled(data: FeatureSet, out: FeatureSet) -> None:
    for m in data.modalities:
        assert out.features[m].shape == data.features[m].shape and out.features[m].dtype == np.float32
        assert np.all(np.isfinite(out.features[m]))
        assert out.available[m].all()
        kept = data.available[m]
        np.testing.assert_array_equal(out.features[m][kept], data.features[m][kept])


@pytest.mark.parametrize("name", NAMES)
def test_every_missing_subset_is_filled_and_available_slots_kept(name):
    for modalities in (tuple(DIMS), ("audio", "text")):
        imputer = fitted(name, modalities)
        test = learnable(8, seed=2, segments=3, modalities=modalities)
        subsets = [set(c) for r in range(1, len(modalities)) for c in itertools.combinations(modalities, r)]
        for gone in subsets:
            masked = hide(test, gone)
            out = imputer.impute(masked, np.random.default_rng(0))
            check_filled(masked, out)
        # slot-level missingness: some segments of some clips, including whole clips without a modality
        rng = np.random.default_rng(3)
        mask = {m: rng.random(test.available[m].shape) < 0.5 for m in modalities}
        mask[modalities[0]][0] = False
        masked = test.with_mask(mask)
        check_filled(masked, imputer.impute(masked, np.random.default_rng(0)))


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_imputation(name):
    imputer = fitted(name)
    masked = hide(learnable(8, seed=2, segments=3), {"video", "text"})
    first = imputer.impute(masked, np.random.default_rng(7))
    again = imputer.impute(masked, np.random.default_rng(7))
    other = imputer.impute(masked, np.random.default_rng(8))
    for m in DIMS:
        np.testing.assert_array_equal(first.features[m], again.features[m])
    differs = any(not np.array_equal(first.features[m], other.features[m]) for m in DIMS)
    # a stochastic imputer draws from the generator; so does a Monte-Carlo conditional mean (mode mean with
    # draws), which is one reconstruction (not stochastic) but an estimate; the others ignore the generator
    monte_carlo = "draws" in imputer.sampling_settings and not imputer.stochastic
    assert differs == (imputer.stochastic or monte_carlo)


@pytest.mark.parametrize("name", NAMES)
def test_save_load_round_trip(name, tmp_path):
    imputer = fitted(name)
    masked = hide(learnable(8, seed=2, segments=3), {"audio"})
    imputer.save(tmp_path / name)
    # no pickle: the settings, and the fitted state as JSON + safetensors (remodiff.statefile)
    assert sorted(p.name for p in (tmp_path / name).iterdir()) == ["imputer.json", "state.json", "state.safetensors"]
    loaded = load_imputer(tmp_path / name)
    assert type(loaded) is type(imputer) and loaded.modalities == imputer.modalities
    pairs = [(imputer, loaded)]
    if "mode" in imputer.sampling_settings:  # drawing samples reads more of the state than the mean does
        pairs.append(tuple(copy.deepcopy(i) for i in (imputer, loaded)))
        for i in pairs[1]:
            i.set_sampling(mode="sample")
    for original, again in pairs:
        before = original.impute(masked, np.random.default_rng(5))
        after = again.impute(masked, np.random.default_rng(5))
        for m in DIMS:
            np.testing.assert_array_equal(before.features[m], after.features[m])


@pytest.mark.parametrize("name", ["cvae", "gan"])
def test_neural_imputers_keep_history_and_save_weights_not_modules(name, tmp_path):
    imputer = fitted(name)
    assert len(imputer.history) == FAST[name]["train"]["epochs"]
    assert all("val_loss" in row and np.isfinite(row["val_score"]) for row in imputer.history)
    imputer.save(tmp_path)
    state = load_state(tmp_path / "state")
    assert not any(isinstance(v, torch.nn.Module) for v in state.values())
    assert state["generator"] and all(isinstance(v, torch.Tensor) and v.device.type == "cpu"
                                      for v in state["generator"].values())


@pytest.mark.parametrize("name", NAMES)
def test_fit_summary_says_how_training_went_and_survives_save_load(name, tmp_path):
    imputer = fitted(name)
    summary = imputer.fit_summary
    if name in ("cvae", "gan", "diffusion"):
        history = imputer.history
        assert summary["epochs"] == len(history) and summary["epoch_cap"] == FAST[name]["train"]["epochs"]
        # the restored epoch is the best by the criterion, which is the validation reconstruction error
        assert summary["best_epoch"] == max(range(len(history)), key=lambda e: history[e]["val_score"])
        assert summary["criterion"].startswith("validation MSE")
    else:
        assert summary is None  # not trained by gradient
    imputer.save(tmp_path / name)
    assert load_imputer(tmp_path / name).fit_summary == summary


@pytest.mark.parametrize("name, params", [
    ("knn", {"k": 5}),
    ("cvae", {"hidden": 64, "latent": 4, "train": {"epochs": 25, "batch_size": 32, "lr": 0.003}}),
    ("gan", {"hidden": 64, "noise": 4, "train": {"epochs": 25, "batch_size": 32, "lr": 0.002}}),
])
def test_learned_imputers_beat_the_training_mean(name, params):
    train, val, test = learnable(120, seed=0), learnable(40, seed=1), learnable(40, seed=2)
    mean = build_imputer("mean")
    mean.fit(train)
    imputer = build_imputer(name, params)
    imputer.fit(train, val, seed=0)
    for gone in DIMS:
        masked = hide(test, {gone})
        errors = {}
        for label, model in (("mean", mean), (name, imputer)):
            out = model.impute(masked, np.random.default_rng(0))
            errors[label] = float(((out.features[gone] - test.features[gone]) ** 2).mean())
        assert errors[name] < 0.75 * errors["mean"], (gone, errors)  # typically 0.1-0.5 of it


def two_clusters(n: int, seed: int) -> tuple[FeatureSet, np.ndarray]:
    """Every modality of a clip sits around +3 or -3 (per dimension) according to the clip's cluster."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(2, size=n)
    centre = np.where(cluster == 1, 3.0, -3.0)[:, None, None]
    features = {m: (centre + rng.normal(size=(n, 2, d))).astype(np.float32) for m, d in DIMS.items()}
    data = FeatureSet([str(i) for i in range(n)], features, {m: np.ones((n, 2), bool) for m in DIMS},
                      np.zeros((n, 1), np.float32), ["y"])
    return data, cluster


def test_gmm_imputes_the_mean_of_the_cluster_the_available_modalities_point_to():
    train, train_cluster = two_clusters(200, seed=0)
    test, cluster = two_clusters(40, seed=1)
    imputer = build_imputer("gmm", {"components": 2, "pca_dims": 2})
    imputer.fit(train, seed=0)
    out = imputer.impute(hide(test, {"text"}), np.random.default_rng(0))
    cluster_means = {c: train.features["text"][train_cluster == c].mean(axis=(0, 1)) for c in (0, 1)}
    for c in (0, 1):
        imputed = out.features["text"][cluster == c]  # [n_c, S, D]
        assert np.abs(imputed - cluster_means[c]).max() < 0.5  # the cluster mean, up to PCA truncation
    sampled = build_imputer("gmm", {"components": 2, "pca_dims": 2, "mode": "sample"})
    sampled.fit(train, seed=0)
    draws = sampled.impute(hide(test, {"text"}), np.random.default_rng(0)).features["text"]
    assert np.all(np.sign(draws.mean(axis=(1, 2))) == np.where(cluster == 1, 1, -1))


def test_repeat_copies_the_nearest_available_segment_else_the_training_mean():
    train = learnable(30, seed=0, segments=4)
    test = learnable(2, seed=2, segments=4)
    imputer = build_imputer("repeat")
    imputer.fit(train)
    mask = {m: np.ones((2, 4), bool) for m in DIMS}
    mask["video"][0] = [False, True, False, False]  # clip 0: only segment 1 of video
    mask["video"][1] = False                        # clip 1: no video at all
    mask["audio"][0] = [True, False, True, False]   # segment 1 is as near to 0 as to 2: the earlier wins
    out = imputer.impute(test.with_mask(mask)).features
    video, audio = test.features["video"], test.features["audio"]
    np.testing.assert_array_equal(out["video"][0], np.repeat(video[0, 1:2], 4, axis=0))
    np.testing.assert_allclose(out["video"][1], train.features["video"].mean(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(out["audio"][0], audio[0, [0, 0, 2, 2]])


def test_random_draws_within_the_training_range():
    train = learnable(30, seed=0)
    imputer = build_imputer("random")
    imputer.fit(train)
    out = imputer.impute(hide(learnable(50, seed=2), {"text"}), np.random.default_rng(0)).features["text"]
    low, high = train.features["text"].min(axis=(0, 1)), train.features["text"].max(axis=(0, 1))
    assert np.all(out >= low) and np.all(out <= high)
    assert np.all(out.max(axis=(0, 1)) - out.min(axis=(0, 1)) > 0.5 * (high - low))  # spread, not a constant


def test_oracles_take_donors_by_label_distance():
    train = learnable(30, seed=0)
    test = learnable(5, seed=2)
    masked = hide(test, {"video"})
    distance = np.linalg.norm(test.labels[:, None] - train.labels[None], axis=2)  # [5, 30]
    expected = {
        "oracle_same": train.features["video"][distance.argmin(axis=1)],
        "oracle_other": train.features["video"][distance.argmax(axis=1)],
        "oracle_mean": train.features["video"][np.argsort(distance, axis=1)[:, :3]].mean(axis=1),
    }
    for name, want in expected.items():
        imputer = build_imputer(name, {"k": 3} if name == "oracle_mean" else None)
        imputer.fit(train)
        np.testing.assert_allclose(imputer.impute(masked).features["video"], want, rtol=1e-5)
    # the labels are what the oracle reads: other labels, other donors
    relabelled = FeatureSet(masked.ids, masked.features, masked.available, masked.labels[::-1].copy(),
                            masked.label_names)
    same = build_imputer("oracle_same")
    same.fit(train)
    assert not np.array_equal(same.impute(relabelled).features["video"], expected["oracle_same"])


def test_knn_and_neural_imputers_learn_from_training_sets_with_natural_gaps():
    train = learnable(30, seed=0, segments=3)
    train.available["text"][:10] = False        # no transcript for a third of the clips
    train.features["text"][:10] = 0.0
    test = hide(learnable(6, seed=2, segments=3), {"text"})
    for name in ("knn", "cvae", "gan", "gmm", "oracle_mean"):
        imputer = build_imputer(name, FAST.get(name))
        imputer.fit(train, seed=0)
        check_filled(test, imputer.impute(test, np.random.default_rng(0)))


def without_complete_clips(data: FeatureSet, seed: int) -> FeatureSet:
    """Each clip loses one modality (all its segments) at random: no clip is complete, every pair is seen."""
    lost = np.random.default_rng(seed).integers(len(data.modalities), size=len(data))
    return data.with_mask({m: np.repeat((lost != i)[:, None], data.n_segments, axis=1)
                           for i, m in enumerate(data.modalities)})


@pytest.mark.parametrize("name", NAMES)
def test_every_imputer_fits_on_training_clips_none_of_which_is_complete(name):
    train = without_complete_clips(learnable(30, seed=0, segments=3), seed=0)
    val = without_complete_clips(learnable(10, seed=1, segments=3), seed=1)
    assert not any(np.logical_and.reduce([train.available[m] for m in DIMS]).ravel())
    imputer = build_imputer(name, FAST.get(name))
    imputer.fit(train, val, seed=0)
    test = learnable(6, seed=2, segments=3)
    for r in (1, 2):
        for gone in itertools.combinations(DIMS, r):
            masked = hide(test, set(gone))
            check_filled(masked, imputer.impute(masked, np.random.default_rng(0)))


@pytest.mark.parametrize("name, params", [
    ("knn", {"k": 5}),
    ("cvae", {"hidden": 64, "latent": 4, "train": {"epochs": 25, "batch_size": 32, "lr": 0.003}}),
    ("gan", {"hidden": 64, "noise": 4, "train": {"epochs": 25, "batch_size": 32, "lr": 0.002}}),
])
def test_learned_imputers_beat_the_training_mean_without_complete_training_clips(name, params):
    """Every training clip lacks one modality; each test clip keeps one modality and loses two."""
    train = without_complete_clips(learnable(180, seed=0), seed=0)
    val = without_complete_clips(learnable(40, seed=1), seed=1)
    test = learnable(40, seed=2)
    mean = build_imputer("mean")
    mean.fit(train)
    imputer = build_imputer(name, params)
    imputer.fit(train, val, seed=0)
    for kept in DIMS:
        gone = set(DIMS) - {kept}
        masked = hide(test, gone)
        errors = {label: {m: float(((model.impute(masked, np.random.default_rng(0)).features[m]
                                     - test.features[m]) ** 2).mean()) for m in gone}
                  for label, model in (("mean", mean), (name, imputer))}
        for m in gone:
            assert errors[name][m] < 0.75 * errors["mean"][m], (kept, m, errors)


def test_knn_neighbours_have_what_the_query_is_compared_on_and_what_is_filled():
    train = learnable(40, seed=0, segments=1)
    # clips 0-9 have audio and video, 10-19 audio only, 20-39 audio and text (text never meets video)
    mask = {m: np.ones((40, 1), bool) for m in DIMS}
    mask["text"][:20] = False
    mask["video"][10:] = False
    train = train.with_mask(mask)
    imputer = build_imputer("knn", {"k": 3})
    imputer.fit(train)
    test = learnable(5, seed=2, segments=1)
    filled = imputer.impute(hide(test, {"video", "text"}), np.random.default_rng(0)).features
    video_keys, audio = train.features["video"][:10, 0], train.features["audio"][:, 0]
    # the video donors of a clip that keeps audio are the 3 audio-nearest among the clips with video (0-9)
    scaled = (audio - audio.mean(0)) / audio.std(0)
    query = (test.features["audio"][:, 0] - audio.mean(0)) / audio.std(0)
    nearest = np.argsort(((query[:, None] - scaled[None, :10]) ** 2).sum(-1), axis=1)[:, :3]
    np.testing.assert_allclose(filled["video"][:, 0], video_keys[nearest].mean(axis=1), rtol=1e-5)
    # text is filled from the clips with audio and text (20-39) only
    nearest = 20 + np.argsort(((query[:, None] - scaled[None, 20:]) ** 2).sum(-1), axis=1)[:, :3]
    np.testing.assert_allclose(filled["text"][:, 0], train.features["text"][nearest, 0].mean(axis=1), rtol=1e-5)
    # a clip with audio and video missing text: no training clip has all three, so the training mean
    text_mean = train.features["text"][20:].mean(axis=0)
    only_text_gone = imputer.impute(hide(test, {"text"}), np.random.default_rng(0)).features["text"]
    np.testing.assert_allclose(only_text_gone, np.broadcast_to(text_mean, only_text_gone.shape), rtol=1e-5)


def test_gmm_learns_the_clusters_from_training_clips_that_each_lack_a_modality():
    train, _ = two_clusters(300, seed=0)
    train = without_complete_clips(train, seed=0)
    test, cluster = two_clusters(40, seed=1)
    imputer = build_imputer("gmm", {"components": 2, "pca_dims": 2})
    imputer.fit(train, seed=0)
    out = imputer.impute(hide(test, {"text", "video"}), np.random.default_rng(0))
    for m in ("text", "video"):
        means = out.features[m].mean(axis=(1, 2))
        assert np.all(np.sign(means) == np.where(cluster == 1, 1, -1)) and np.all(np.abs(np.abs(means) - 3) < 0.5)


@pytest.mark.parametrize("name, params, message", [
    ("knn", {"k": 0}, "k must be a positive integer"),
    ("gmm", {"mode": "median"}, "valid values: mean, sample"),
    ("cvae", {"mode": "median"}, "valid values: mean, sample"),
    ("gan", {"draws": 0}, "draws must be a positive integer"),
    ("cvae", {"dropout": 1.0}, "dropout must be in"),
    ("cvae", {"train": {"epoch": 3}}, "unknown training params"),
    ("gan", {"recon_weight": -1.0}, "non-negative"),
    ("oracle_mean", {"k": 1.5}, "k must be a positive integer"),
    ("knn", {"neighbours": 3}, r"unknown settings \['neighbours'\] for imputer 'knn'; valid values: k$"),
    ("repeat", {"k": 3}, r"unknown settings \['k'\] for imputer 'repeat'; valid values: none$"),
])
def test_bad_params_are_refused_clearly(name, params, message):
    with pytest.raises(ValueError, match=message):
        build_imputer(name, params)


def test_oracles_refuse_data_without_usable_labels():
    imputer = build_imputer("oracle_same")
    imputer.fit(learnable(10, seed=0))
    test = hide(learnable(3, seed=2), {"audio"})
    test.labels[0, 0] = np.nan
    with pytest.raises(ValueError, match="finite labels"):
        imputer.impute(test)


def test_frechet_distance_is_zero_for_the_same_rows_and_grows_with_a_shift():
    rng = np.random.default_rng(0)
    real = rng.normal(size=(400, 6))
    assert frechet_distance(real, real) == pytest.approx(0.0, abs=1e-6)
    same_law = frechet_distance(real, rng.normal(size=(400, 6)))
    shifted = frechet_distance(real, rng.normal(size=(400, 6)) + 1.0)
    squeezed = frechet_distance(real, np.broadcast_to(real.mean(axis=0), real.shape))  # the mean imputer
    assert same_law < 0.3 and shifted > 5.0 and squeezed > 5.0
    assert shifted == pytest.approx(6.0, rel=0.1)  # |shift|^2 = 6 dimensions x 1
    # fewer rows than dimensions: measured in the real rows' principal subspace, still 0 vs > 0
    wide = rng.normal(size=(10, 40))
    assert frechet_distance(wide, wide) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(wide, wide + 1.0) > 1.0
    with pytest.raises(ValueError, match="same D"):
        frechet_distance(real, real[:, :3])


def test_reconstruction_metrics_report_frechet_per_hidden_modality():
    truth = learnable(40, seed=2)
    masked = hide(truth, {"video"})
    mean = build_imputer("mean")
    mean.fit(learnable(40, seed=0))
    metrics = reconstruction_metrics(truth, masked, mean.impute(masked))
    assert set(metrics) == {"video"}
    perfect = reconstruction_metrics(truth, masked, truth)["video"]
    assert perfect["frechet"] == pytest.approx(0.0, abs=1e-6) and metrics["video"]["frechet"] > 0.1


def test_set_sampling_changes_reconstructions_without_refitting_and_survives_save_load(tmp_path):
    imputer = fitted("cvae")
    masked = hide(learnable(8, seed=2, segments=3), {"video"})
    weights = {k: v.clone() for k, v in imputer.generator.state_dict().items()}
    history = list(imputer.history)
    assert imputer.params["mode"] == "mean" and not imputer.stochastic
    averaged = imputer.impute(masked, np.random.default_rng(1)).features["video"]
    try:
        imputer.set_sampling(mode="sample")
        assert imputer.stochastic and imputer.params["draws"] == 16  # settings not given keep their value
        one_draw = imputer.impute(masked, np.random.default_rng(1)).features["video"]
        assert not np.allclose(one_draw, averaged)
        assert all(torch.equal(v, imputer.generator.state_dict()[k]) for k, v in weights.items())
        assert imputer.history == history
        imputer.save(tmp_path / "cvae")
        loaded = load_imputer(tmp_path / "cvae")
        assert loaded.params["mode"] == "sample" and loaded.stochastic
        np.testing.assert_array_equal(loaded.impute(masked, np.random.default_rng(1)).features["video"], one_draw)
    finally:
        imputer.set_sampling(mode="mean")
    np.testing.assert_array_equal(imputer.impute(masked, np.random.default_rng(1)).features["video"], averaged)


@pytest.mark.parametrize("name, settings, message", [
    ("cvae", {"steps": 10}, r"unknown sampling settings \['steps'\] for imputer 'cvae'; valid values: mode, draws"),
    ("gmm", {"draws": 4}, r"unknown sampling settings \['draws'\] for imputer 'gmm'; valid values: mode$"),
    ("mean", {"mode": "mean"}, r"unknown sampling settings \['mode'\] for imputer 'mean'; valid values: none"),
    ("gan", {"mode": "median"}, "valid values: mean, sample"),
])
def test_set_sampling_refuses_unknown_keys_and_bad_values(name, settings, message):
    with pytest.raises(ValueError, match=message):
        build_imputer(name).set_sampling(**settings)


@pytest.mark.parametrize("section, name, key, value, expected", [
    ("sampling", "cvae", "steps", 10, "params.yaml: sampling.cvae.steps: unknown setting (valid: mode, draws)"),
    ("sampling", "knn", "mode", "mean", "params.yaml: sampling.knn.mode: unknown setting"),
    ("sampling", "diffusion", "draws", 0, "params.yaml: sampling.diffusion.draws: must be >= 1, got 0"),
    ("sampling", "gan", "mode", "median", "params.yaml: sampling.gan: gan: mode 'median'; valid values: mean, sample"),
    ("imputer", "cvae", "mode", "mean", "params.yaml: imputer.cvae.mode: a sampling setting: set it under "
                                        "sampling.cvae"),
    ("imputer", "diffusion", "steps", 10, "params.yaml: imputer.diffusion.steps: a sampling setting"),
])
def test_check_keeps_sampling_settings_under_sampling(section, name, key, value, expected, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # data/sample is not written yet: the check says so, no data is read
    params = copy.deepcopy(COMMITTED)
    check_params(params)
    params[section][name][key] = value
    with pytest.raises(SettingError) as caught:
        check_params(params)
    assert str(caught.value).startswith(expected)


@pytest.mark.parametrize("name", ["cvae", "gan", "diffusion"])
def test_params_yaml_repeats_the_constructors_defaults_of_the_neural_imputers(name):
    """params.yaml's training section of each neural imputer is its constructor's default (one source of truth
    in code; the file shows it)."""
    section = {k: v for k, v in COMMITTED["imputer"][name].items() if v is not None}
    default, configured = build_imputer(name), build_imputer(name, section)
    if name == "diffusion":  # a preset on top of the defaults; the training section is the shared part
        assert default.train_cfg == configured.train_cfg
        for key in ("hidden", "layers", "heads", "cond_dropout", "segment_mask_prob", "ema", "beta_min", "beta_max"):
            assert getattr(default.config, key) == getattr(configured.config, key), key
    else:
        assert default.train_cfg == configured.train_cfg
        assert {k: v for k, v in default.params.items() if k != "train"} == \
               {k: v for k, v in configured.params.items() if k != "train"}
