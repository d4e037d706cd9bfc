"""Score-based diffusion: SDE marginals, samplers, a trained conditional toy, and the imputer wrapper."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from remodiff.diffusion import SAMPLERS, SDES, time_grid
from remodiff.diffusion.sampling import evaluations_per_step
from remodiff.diffusion.sde import append_dims
from remodiff.imputers import build_imputer, load_imputer
from remodiff.imputers.diffusion import resolve_config
from remodiff.registry import UnknownNameError
from remodiff.store import FeatureSet

torch.set_num_threads(1)


@pytest.mark.parametrize("name", ["vp", "ve"])
def test_forward_sde_marginals_match_closed_form(name):
    """Euler-Maruyama paths of dx = f dt + g dw from a point mass have the kernel's mean and std."""
    sde = SDES.build(name)
    g = torch.Generator().manual_seed(0)
    x0 = 1.5
    x = torch.full((20000,), x0)
    steps = 1000
    checkpoints = {250: None, 600: None, 1000: None}
    for i in range(steps):
        t = torch.full((1,), i / steps)
        x = x + sde.drift(x, t) / steps + sde.diffusion(t) * (1 / steps) ** 0.5 * torch.randn(x.shape, generator=g)
        if i + 1 in checkpoints:
            checkpoints[i + 1] = x.clone()
    for k, xt in checkpoints.items():
        t = torch.tensor([k / steps])
        mean, std = sde.marginal_prob(torch.tensor([x0]), t)
        assert abs(xt.mean().item() - mean.item()) < 0.03 * max(std.item(), 1.0)
        assert abs(xt.std().item() / std.item() - 1) < 0.04


def gaussian_score(sde, mu: float, s: float):
    """Exact score of the marginals when the data is N(mu, s^2)."""

    def score(x, t, offset=0.0):
        a, sd = append_dims(sde.alpha(t), x.ndim), append_dims(sde.std(t), x.ndim)
        return -(x - a * (mu + offset)) / (a ** 2 * s ** 2 + sd ** 2)

    return score


@pytest.mark.parametrize("name", ["vp", "ve"])
@pytest.mark.parametrize("sampler,steps,grid", [("euler_maruyama", 200, "uniform"), ("pc", 100, "uniform"),
                                                ("ode", 30, "karras"), ("ddim", 50, "karras")])
def test_samplers_recover_gaussian_and_are_deterministic(name, sampler, steps, grid):
    sde = SDES.build(name)
    score = gaussian_score(sde, mu=2.0, s=0.5)
    ts = time_grid(sde, steps, kind=grid)

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        x = sde.prior_sampling((2000, 3), g)
        return SAMPLERS.get(sampler)(score, sde, x, ts, extra_args={"offset": 0.0}, generator=g)

    out = run(0)
    assert out.shape == (2000, 3) and torch.isfinite(out).all()
    assert abs(out.mean().item() - 2.0) < 0.08
    assert abs(out.std().item() - 0.5) < 0.08
    assert torch.equal(out, run(0))
    assert not torch.equal(out, run(1))


def test_extra_args_reach_the_score():
    sde = SDES.build("vp")
    score = gaussian_score(sde, mu=0.0, s=0.5)
    g = torch.Generator().manual_seed(0)
    x = sde.prior_sampling((500, 2), g)
    out = SAMPLERS.get("ddim")(score, sde, x, time_grid(sde, 20), extra_args={"offset": 3.0}, generator=g)
    assert abs(out.mean().item() - 3.0) < 0.1


def test_evaluations_per_step_are_counted_from_the_samplers():
    assert {s: evaluations_per_step(s) for s in SAMPLERS.names()} == {"ddim": 1, "euler_maruyama": 1, "ode": 2,
                                                                     "pc": 2}
    assert evaluations_per_step("pc", corrector_steps=3) == 4


def featureset(arrays: dict[str, np.ndarray]) -> FeatureSet:
    n, s = next(iter(arrays.values())).shape[:2]
    return FeatureSet([f"c{i}" for i in range(n)], arrays, {m: np.ones((n, s), bool) for m in arrays},
                      np.zeros((n, 1), np.float32), ["y"])


def toy(n: int, rng: np.random.Generator) -> FeatureSet:
    """x2 = f(x1) + small noise, as two one-dimensional 'modalities' with one segment."""
    x1 = rng.normal(size=(n, 1, 1)).astype(np.float32)
    x2 = (np.tanh(2 * x1) + 0.1 * rng.normal(size=(n, 1, 1))).astype(np.float32)
    return featureset({"a": x1, "b": x2})


@pytest.fixture(scope="module")
def toy_imputer():
    rng = np.random.default_rng(0)
    imputer = build_imputer("diffusion", {
        "preset": "none", "conditioning": "mlp", "hidden": 32, "layers": 2, "sampler": "ddim", "steps": 5,
        "train": {"epochs": 60, "batch_size": 128, "lr": 3e-3, "patience": 1000, "device": "cpu"}})
    imputer.fit(toy(1500, rng), toy(200, rng), seed=0)
    return imputer


def test_trained_model_recovers_conditional_mean(toy_imputer):
    test = toy(300, np.random.default_rng(1))
    truth = np.tanh(2 * test.features["a"][:, 0, 0])
    masked = test.with_mask({"a": np.ones((300, 1), bool), "b": np.zeros((300, 1), bool)})
    restored = toy_imputer.impute(masked, np.random.default_rng(2))
    error = np.sqrt(np.mean((restored.features["b"][:, 0, 0] - truth) ** 2))
    # conditional noise is 0.1; ignoring the condition costs the std of f(x1) (about 0.8)
    assert error < 0.3 * truth.std()
    np.testing.assert_array_equal(restored.features["a"], test.features["a"])


def test_unconditional_generation_matches_marginals(toy_imputer):
    train = toy(2000, np.random.default_rng(3))
    nothing = train.with_mask({m: np.zeros((2000, 1), bool) for m in train.modalities})
    # few-step DDIM under-disperses; the second-order ODE sampler on a Karras grid keeps the spread; one sample
    # per slot (the conditional mean of mode mean has the spread of the mean, not of the data)
    toy_imputer.set_sampling(sampler="ode", steps=20, time_grid="karras", mode="sample")
    try:
        generated = toy_imputer.impute(nothing, np.random.default_rng(4))
    finally:
        toy_imputer.set_sampling(sampler="ddim", steps=5, time_grid=None, mode="mean")
    for m in train.modalities:
        real, fake = train.features[m].ravel(), generated.features[m].ravel()
        assert abs(fake.mean() - real.mean()) < 0.15 * real.std()
        assert abs(fake.std() / real.std() - 1) < 0.25


def tiny(n: int, seed: int) -> FeatureSet:
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, 3, 2))
    return featureset({m: (z @ rng.normal(size=(2, d)) + 0.1 * rng.normal(size=(n, 3, d))).astype(np.float32)
                       for m, d in (("audio", 4), ("video", 5), ("text", 6))})


TINY_TRAIN = {"epochs": 3, "batch_size": 8, "device": "cpu"}


@pytest.mark.parametrize("preset", ["imder", "efficient"])
def test_presets_construct_fit_and_impute(preset, tmp_path):
    imputer = build_imputer("diffusion", {"preset": preset, "hidden": 16, "steps": 4, "train": TINY_TRAIN})
    expected = {"imder": ("ve", "euler_maruyama"), "efficient": ("vp", "ddim")}[preset]
    assert (imputer.config.sde, imputer.config.sampler, imputer.config.conditioning) == (*expected, "transformer")
    train, test = tiny(16, 0), tiny(6, 1)
    imputer.fit(train, tiny(4, 2), seed=0)
    assert len(imputer.history) == 3
    # two modalities missing everywhere, plus single missing segments of the third
    mask = {"audio": np.zeros((6, 3), bool), "video": np.zeros((6, 3), bool), "text": np.ones((6, 3), bool)}
    mask["text"][0, 1] = False
    masked = test.with_mask(mask)
    first = imputer.impute(masked, np.random.default_rng(5))
    for m in test.modalities:
        np.testing.assert_array_equal(first.features[m][masked.available[m]], test.features[m][masked.available[m]])
        assert np.isfinite(first.features[m]).all()
        assert not np.allclose(first.features[m][~masked.available[m]], 0.0)
    np.testing.assert_array_equal(first.features["audio"], imputer.impute(masked, np.random.default_rng(5)).features["audio"])
    assert not np.array_equal(first.features["audio"], imputer.impute(masked, np.random.default_rng(6)).features["audio"])

    imputer.save(tmp_path / "imputer")
    loaded = load_imputer(tmp_path / "imputer")
    again = loaded.impute(masked, np.random.default_rng(5))
    for m in test.modalities:
        np.testing.assert_array_equal(again.features[m], first.features[m])
    assert loaded.history == imputer.history


@pytest.mark.parametrize("sampler", ["euler_maruyama", "pc", "ode", "ddim"])
def test_every_sampler_and_guidance_through_the_imputer(sampler):
    imputer = build_imputer("diffusion", {"preset": "none", "hidden": 16, "train": TINY_TRAIN})
    imputer.fit(tiny(12, 0), None, seed=0)
    imputer.set_sampling(sampler=sampler, steps=3, guidance=1.0)
    masked = tiny(4, 1).with_mask({m: np.full((4, 3), m == "text") for m in ("audio", "video", "text")})
    out = imputer.impute(masked, np.random.default_rng(0))
    assert all(np.isfinite(out.features[m]).all() for m in out.modalities)


def test_one_step_draws_are_for_the_conditional_mean_not_for_samples():
    assert resolve_config({"preset": "efficient", "mode": "mean", "steps": 1}).steps == 1
    with pytest.raises(ValueError, match="mode sample needs steps >= 2"):
        resolve_config({"preset": "efficient", "mode": "sample", "steps": 1})
    assert resolve_config({"preset": "efficient", "mode": "sample"}).steps == 10  # the preset's, when not set


def test_preset_precedence_and_unknown_values():
    assert resolve_config({"preset": "imder"}).steps == 100
    assert resolve_config({"preset": "imder", "steps": 20, "sampler": None}).steps == 20
    assert resolve_config({"preset": "imder", "sampler": None}).sampler == "euler_maruyama"
    assert resolve_config({"preset": "efficient", "sde": "ve"}).sde == "ve"
    for bad, valid in [({"preset": "fast"}, "efficient"), ({"sampler": "heun"}, "ddim"), ({"sde": "subvp"}, "ve"),
                       ({"conditioning": "film"}, "transformer"), ({"time_grid": "cosine"}, "karras")]:
        with pytest.raises(UnknownNameError, match=valid):
            resolve_config(bad)
    with pytest.raises(ValueError, match=r"unknown settings \['sigma'\] for imputer 'diffusion'; valid values: "
                                         r"beta_max,"):
        resolve_config({"sigma": 3})


def gaussian_pair(n: int, rng: np.random.Generator) -> FeatureSet:
    """b = 0.6 a + 0.8 noise: E[b | a] = 0.6 a, Var[b | a] = 0.64 (one sample's error is twice the mean's)."""
    a = rng.normal(size=(n, 1, 1)).astype(np.float32)
    return featureset({"a": a, "b": (0.6 * a + 0.8 * rng.normal(size=(n, 1, 1))).astype(np.float32)})


def test_mean_mode_is_deterministic_and_beats_one_sample_on_a_gaussian(tmp_path):
    rng = np.random.default_rng(0)
    imputer = build_imputer("diffusion", {
        "preset": "none", "conditioning": "mlp", "hidden": 32, "sampler": "ddim", "steps": 10,
        "train": {"epochs": 30, "batch_size": 128, "lr": 3e-3, "patience": 1000, "device": "cpu"}})
    imputer.fit(gaussian_pair(1000, rng), gaussian_pair(200, rng), seed=0)
    test = gaussian_pair(400, np.random.default_rng(1))
    masked = test.with_mask({"a": np.ones((400, 1), bool), "b": np.zeros((400, 1), bool)})
    weights = {k: v.clone() for k, v in imputer.model.state_dict().items()}

    def error(rng_seed: int) -> float:
        restored = imputer.impute(masked, np.random.default_rng(rng_seed))
        return float(np.mean((restored.features["b"] - test.features["b"]) ** 2))

    assert imputer.config.mode == "mean" and not imputer.stochastic  # the default: one reconstruction
    np.testing.assert_array_equal(imputer.impute(masked, np.random.default_rng(3)).features["b"],
                                  imputer.impute(masked, np.random.default_rng(3)).features["b"])
    mean_error = error(3)
    imputer.set_sampling(mode="sample")
    assert imputer.stochastic
    sample_error = error(3)
    assert mean_error < 0.8 * sample_error, (mean_error, sample_error)  # about 0.64 + 0.08 vs 1.28
    # only sampling changed: the weights are those fitted
    assert all(torch.equal(v, imputer.model.state_dict()[k]) for k, v in weights.items())

    imputer.set_sampling(steps=7, draws=3)
    imputer.save(tmp_path / "imputer")
    loaded = load_imputer(tmp_path / "imputer")
    assert (loaded.config.mode, loaded.config.steps, loaded.config.draws, loaded.stochastic) == ("sample", 7, 3, True)
    np.testing.assert_array_equal(loaded.impute(masked, np.random.default_rng(4)).features["b"],
                                  imputer.impute(masked, np.random.default_rng(4)).features["b"])
    with pytest.raises(ValueError, match=r"unknown sampling settings \['hidden'\] for imputer 'diffusion'; "
                                         r"valid values: sampler, steps"):
        loaded.set_sampling(hidden=8)  # a training setting cannot change after fitting


def test_mean_mode_is_shrunk_toward_the_training_mean_where_the_condition_says_nothing():
    """b independent of a: the average of 2 samples has error 1 + 1/2; shrunk, about the training mean's 1."""
    def independent(n: int, rng: np.random.Generator) -> FeatureSet:
        return featureset({m: rng.normal(size=(n, 1, 1)).astype(np.float32) for m in ("a", "b")})

    rng = np.random.default_rng(0)
    train, val, test = independent(800, rng), independent(200, rng), independent(400, rng)
    imputer = build_imputer("diffusion", {
        "preset": "none", "conditioning": "mlp", "hidden": 32, "sampler": "ddim", "steps": 10, "draws": 2,
        "train": {"epochs": 15, "batch_size": 128, "lr": 3e-3, "patience": 1000, "device": "cpu"}})
    imputer.fit(train, val, seed=0)
    mean = build_imputer("mean", {})
    mean.fit(train, val)
    masked = test.with_mask({"a": np.ones((400, 1), bool), "b": np.zeros((400, 1), bool)})

    def error(model) -> float:
        return float(np.mean((model.impute(masked, np.random.default_rng(1)).features["b"] - test.features["b"]) ** 2))

    assert error(imputer) < 1.05 * error(mean)
    factors = dict(zip(imputer.modalities, imputer.shrink.tolist()))
    assert 0.0 <= factors["b"] < 0.6, factors
    imputer.set_sampling(mode="sample")  # one sample: a draw from the distribution, never shrunk
    assert error(imputer) > 1.5 * error(mean)


def test_learns_from_training_and_validation_clips_none_of_which_is_complete():
    """b = tanh(2a), c = a (+ noise); every training clip lacks one of the three modalities, so they are only
    ever seen two at a time. Imputing b from a still beats the training mean by far. The validation set starts
    with 300 clips that have one modality (useless for calibration: nothing is left once it is hidden); the
    shrinkage is calibrated on the clips after them, where b is predictable, so it is barely shrunk."""
    def clips(n: int, rng: np.random.Generator, lose: int = 1) -> FeatureSet:
        a = rng.normal(size=(n, 1, 1)).astype(np.float32)
        data = featureset({"a": a, "b": (np.tanh(2 * a) + 0.1 * rng.normal(size=a.shape)).astype(np.float32),
                           "c": (a + 0.1 * rng.normal(size=a.shape)).astype(np.float32)})
        kept = rng.integers(3, size=n)  # with lose=2 the one kept, else the one lost
        return data.with_mask({m: ((kept == i) if lose == 2 else (kept != i))[:, None] for i, m in enumerate("abc")})

    rng = np.random.default_rng(0)
    train = clips(800, rng)
    single, pairs = clips(300, rng, lose=2), clips(200, rng)
    val = FeatureSet(single.ids + [f"p{i}" for i in pairs.ids],
                     {m: np.concatenate([single.features[m], pairs.features[m]]) for m in "abc"},
                     {m: np.concatenate([single.available[m], pairs.available[m]]) for m in "abc"},
                     np.zeros((500, 1), np.float32), ["y"])
    imputer = build_imputer("diffusion", {
        "preset": "none", "conditioning": "mlp", "hidden": 32, "sampler": "ddim", "steps": 10, "draws": 4,
        "train": {"epochs": 30, "batch_size": 128, "lr": 3e-3, "patience": 1000, "device": "cpu"}})
    imputer.fit(train, val, seed=0)
    assert imputer.fit_summary["criterion"].startswith("validation MSE")
    a = rng.normal(size=(300, 1, 1)).astype(np.float32)
    test = featureset({"a": a, "b": np.tanh(2 * a), "c": a})
    masked = test.with_mask({"a": np.ones((300, 1), bool), "b": np.zeros((300, 1), bool),
                             "c": np.zeros((300, 1), bool)})
    restored = imputer.impute(masked, np.random.default_rng(2)).features["b"]
    mean_error = float(np.mean((train.features["b"][train.available["b"]].mean() - test.features["b"]) ** 2))
    assert np.mean((restored - test.features["b"]) ** 2) < 0.3 * mean_error
    factors = dict(zip(imputer.modalities, imputer.shrink.tolist()))
    assert factors["b"] > 0.8, factors
