"""Score-based diffusion imputer (``imputer.type: diffusion``): IMDer's recovery as a stand-alone stage.

Design:

* **One joint network for every missing subset.** Features are standardised per modality and concatenated per
  segment; the network is conditioned on the availability mask (a learned null embedding per missing
  modality), so a clip missing one, two or all modalities, or single segments, is filled by the same model.
  IMDer trains one network per target modality and so covers only the subsets it was built for.
* **Decoupled two-stage training** (efficient IMDer): this imputer is trained alone in ``train_imputer`` and
  then frozen; downstream training never samples.
* **Sampling with known slots.** During the reverse process the available slots follow the exact score of their
  forward kernel around the clean value, so the whole state (the network's input) stays on a correct noisy
  trajectory; only the missing slots are taken from the result.

* **Conditional mean or sample.** ``mode: mean`` averages ``draws`` reverse-process samples per missing slot
  (a Monte-Carlo conditional mean: lower squared error, one reconstruction per clip); ``mode: sample`` returns
  one sample (a draw from the learned conditional distribution, for K-sample evaluation). With ``steps: 1`` (the
  pipeline's default for mode mean) each draw is one denoiser call from a fresh prior draw ``x_1``:
  ``D(x_1, 1 | available)``, the network's estimate of ``E[x_0 | x_1, available]``, which at maximal noise is the
  conditional mean itself (``x_1`` carries almost nothing of ``x_0``); averaging draws smooths what the network
  still reads from ``x_1``. On both dev sets it scored as 10 steps did, at a tenth of the calls.
* **Shrunk conditional mean.** An average of ``draws`` samples still carries their variance / draws, which
  matters where the condition predicts little (First Impressions audio <-> text: the average was 4-5 % worse
  than the training mean). In ``mode: mean`` each modality's estimate is shrunk toward the training mean by a
  least-squares factor in [0, 1] fitted on (up to 256) validation clips with the current sampling settings, so
  the error stays at or below the mean's wherever validation clips resemble the test clips.

Training settings live in ``imputer.diffusion``, sampling settings (:attr:`DiffusionImputer.sampling_settings`)
in ``sampling.diffusion``; both resolve with this precedence: an explicit non-null value >
the preset's value > the default below. ``preset: imder`` = VE (sigma_max 25), transformer conditioning,
Euler-Maruyama 100 steps; ``preset: efficient`` = VP, transformer conditioning, DDIM 10 steps; ``preset: none``
= defaults only.
"""
from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field

import numpy as np
import torch

from remodiff.device import resolve_device
from remodiff.diffusion import (CONDITIONINGS, GRIDS, SAMPLERS, SDES, AveragedModel, ScoreModel, dsm_loss, expand_mask,
                                sample_condition_mask, sample_ddim, time_grid)
from remodiff.standardise import Standardiser
from remodiff.imputers.base import IMPUTERS, Imputer, check_mode
from remodiff.registry import RegistryError, UnknownNameError
from remodiff.store import FeatureSet
from remodiff.training import Batch, TrainConfig, fit, seed_everything, to_tensors

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DiffusionConfig:
    """The settings of every SDE, conditioning network and sampler: the chosen ones take theirs (the names in their
    signatures, :meth:`remodiff.registry.Registry.settings_from`), the others are unused."""

    sde: str = "vp"                   # vp | ve
    beta_min: float = 0.1             # VP
    beta_max: float = 20.0            # VP
    sigma_min: float = 0.01           # VE
    sigma_max: float = 25.0           # VE
    conditioning: str = "mlp"         # mlp | transformer
    hidden: int = 64
    layers: int = 2
    heads: int = 4                    # transformer only
    cond_dropout: float = 0.1         # training clips with no condition (classifier-free guidance)
    segment_mask_prob: float = 0.3    # training clips that hide single segments instead of whole modalities
    likelihood_weighting: bool = False
    ema: float = 0.995                # EMA decay of the weights (0 = off)
    train_eps: float = 1e-5           # t ~ U(train_eps, 1) in the loss
    sampler: str = "euler_maruyama"   # euler_maruyama | pc | ode | ddim
    steps: int = 100
    time_grid: str = "uniform"        # uniform | karras
    eps: float = 1e-3                 # the reverse process stops at t = eps
    snr: float = 0.16                 # pc: Langevin corrector signal-to-noise ratio
    corrector_steps: int = 1          # pc
    guidance: float = 0.0             # classifier-free guidance scale w: (1 + w) s(x|c) - w s(x); 0 = off
    sample_batch: int = 256           # clips per sampling batch (each with its draws: one network call per step)
    mode: str = "mean"                # mean: average of `draws` samples | sample: one sample
    draws: int = 16                   # samples averaged per slot in mode mean
    train: dict = field(default_factory=dict)  # the shared loop's TrainConfig (its seed is the imputer seed)


PRESETS: dict[str, dict] = {
    "imder": {"sde": "ve", "sigma_max": 25.0, "conditioning": "transformer", "sampler": "euler_maruyama",
              "steps": 100, "time_grid": "uniform"},
    "efficient": {"sde": "vp", "conditioning": "transformer", "sampler": "ddim", "steps": 10,
                  "time_grid": "uniform"},
    "none": {},
}
CALIBRATION_CLIPS = 256  # validation clips kept with the model to fit the conditional mean's shrinkage
# The early-stopping criterion: the validation denoising loss keeps falling long after reconstructions stop improving
# (measured: best epoch at the 100-epoch cap on both dev sets), so the loop follows a cheap version of what imputation
# outputs instead. Fixed settings, not the sampling section's: changing how reconstructions are drawn never retrains.
CRITERION_SAMPLING = DiffusionConfig(sampler="ddim", steps=4, time_grid="uniform", guidance=0.0, mode="mean", draws=2)
CRITERION = (f"validation MSE (z-scored, per hidden modality, averaged over modalities) of the shrunk mode-mean "
             f"reconstruction of up to {CALIBRATION_CLIPS} clips ({CRITERION_SAMPLING.steps}-step DDIM, "
             f"{CRITERION_SAMPLING.draws} fixed draws)")
TRAIN_DEFAULTS = {"epochs": 150, "batch_size": 128, "lr": 2e-3, "weight_decay": 0.0, "patience": 20,
                  "monitor_from": 5}


def resolve_config(params: dict) -> DiffusionConfig:
    """Defaults < preset < explicit non-null params; unknown keys or option values fail naming the valid ones."""
    params = dict(params)
    preset = params.pop("preset", None) or "none"
    if preset not in PRESETS:
        raise UnknownNameError(f"unknown diffusion preset {preset!r}", PRESETS)
    known = {f.name for f in dataclasses.fields(DiffusionConfig)}
    unknown = sorted(set(params) - known)
    if unknown:
        raise RegistryError(f"unknown settings {unknown} for imputer 'diffusion'", sorted(known | {"preset"}))
    explicit = {k: v for k, v in params.items() if v is not None}
    config = DiffusionConfig(**{**PRESETS[preset], **explicit})
    config = dataclasses.replace(config, train={**TRAIN_DEFAULTS, **config.train})
    for registry, name in ((SDES, config.sde), (CONDITIONINGS, config.conditioning), (SAMPLERS, config.sampler),
                           (GRIDS, config.time_grid)):
        registry.get(name)  # an unknown name fails here, listing the valid ones
    if not isinstance(config.steps, int) or config.steps < 1:
        raise ValueError(f"diffusion: steps must be a positive integer, got {config.steps!r}")
    check_mode("diffusion", config.mode, config.draws)
    if config.mode == "sample" and config.steps == 1:
        raise ValueError("diffusion: steps 1 gives the denoiser's one-step estimate of the conditional mean, not a "
                         "sample: mode sample needs steps >= 2 (the efficient preset's 10, sampling.diffusion.steps)")
    return config


@IMPUTERS.register("diffusion")
class DiffusionImputer(Imputer):
    """Fills missing (clip, modality, segment) slots by sampling the conditional reverse SDE."""

    sampling_settings = ("sampler", "steps", "time_grid", "guidance", "snr", "corrector_steps", "eps", "mode",
                         "draws", "sample_batch")

    def __init__(self, **params):
        super().__init__(**params)
        self.apply_sampling()
        self.train_cfg = TrainConfig.from_params(self.config.train)
        self.sde = SDES.build(self.config.sde, **SDES.settings_from(self.config.sde, dataclasses.asdict(self.config)))
        self.history: list[dict] = []
        self.fit_summary: dict | None = None
        self.model: AveragedModel | None = None
        self.calibration: dict[str, np.ndarray] | None = None  # validation clips for the shrinkage

    def apply_sampling(self) -> None:
        self.config = resolve_config(self.params)
        self.stochastic = self.config.mode == "sample"
        self.shrink: torch.Tensor | None = None  # fitted again to these settings on first use (:meth:`shrinkage`)

    def _build(self) -> AveragedModel:
        c = self.config
        net = CONDITIONINGS.build(c.conditioning, self.dims, self.segments,
                                  **CONDITIONINGS.settings_from(c.conditioning, dataclasses.asdict(c)))
        return AveragedModel(ScoreModel(net, self.sde), c.ema)

    def _tensors(self, data: FeatureSet) -> dict[str, np.ndarray]:
        return {"x0": self.scaler(data, self.modalities),
                "real": np.stack([data.available[m] for m in self.modalities], axis=-1)}

    def _setup(self, train: FeatureSet, seed: int) -> AveragedModel:
        """The shapes and scaler of ``train`` and a seeded, untrained score network (for fit and joint training)."""
        self.modalities = train.modalities
        self.dims = [train.features[m].shape[-1] for m in self.modalities]
        self.segments = train.n_segments
        self.scaler = Standardiser.fit(train, self.modalities)
        seed_everything(seed)
        return self._build()

    def fit(self, train: FeatureSet, val: FeatureSet | None = None, seed: int = 0) -> None:
        c = self.config
        train_cfg = dataclasses.replace(self.train_cfg, seed=seed)
        device = resolve_device(train_cfg.device)
        self.model = self._setup(train, seed).to(device)
        sde = self.sde

        val_tensors = None
        if val is not None and len(val):
            # one fixed draw of masks, times and noise, so the validation loss is comparable across epochs
            arrays = self._tensors(val)
            g = torch.Generator().manual_seed(seed + 1)
            real = torch.as_tensor(arrays["real"])
            arrays["cond_mask"] = sample_condition_mask(real, c.segment_mask_prob, c.cond_dropout, g).numpy()
            arrays["t"] = (torch.rand(len(real), generator=g) * (1 - c.train_eps) + c.train_eps).numpy()
            arrays["z"] = torch.randn(arrays["x0"].shape, generator=g).numpy()
            val_tensors = to_tensors(arrays, device)
        self.calibration = self._calibration_clips(val) if val is not None else None

        def loss_fn(model: torch.nn.Module, batch: Batch) -> torch.Tensor:
            cond_mask = batch.get("cond_mask")
            if cond_mask is None:
                cond_mask = sample_condition_mask(batch["real"], c.segment_mask_prob, c.cond_dropout)
            return dsm_loss(model, sde, batch["x0"], batch["real"], cond_mask, self.dims, t=batch.get("t"),
                            z=batch.get("z"), eps=c.train_eps, likelihood_weighting=c.likelihood_weighting)

        def val_score(model: AveragedModel) -> float:
            return -self.reconstruction_error(model, device, seed)

        history = fit(self.model, loss_fn, to_tensors(self._tensors(train), device), val_tensors, train_cfg,
                      after_step=self.model.update, desc="diffusion imputer",
                      val_score=val_score if self.calibration is not None else None)
        self.history = list(history)
        self.fit_summary = history.summary(CRITERION if self.calibration is not None else
                                           "validation denoising loss" if val_tensors is not None else "training loss")
        self.model.cpu().eval()
        self.shrink = None

    # Joint training (remodiff.joint): the score network trained together with a fuser.
    joint_steps = 2  # DDIM steps of the differentiable completion a fuser is trained on

    def joint_setup(self, train: FeatureSet, seed: int) -> torch.nn.Module:
        self.model = self._setup(train, seed)
        return self.model

    def joint_loss(self, model: AveragedModel, x: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
        c = self.config
        real = available.bool()
        cond_mask = sample_condition_mask(real, c.segment_mask_prob, c.cond_dropout)
        return dsm_loss(model, self.sde, x, real, cond_mask, self.dims, eps=c.train_eps,
                        likelihood_weighting=c.likelihood_weighting)

    def joint_fill(self, model: AveragedModel, x: torch.Tensor, keep: torch.Tensor,
                   noise: torch.Generator | None = None) -> torch.Tensor:
        """A :attr:`joint_steps`-step DDIM completion of ``x`` given the kept slots, with gradients (IMDer samples
        inside training too; two steps keep it cheap)."""
        known = expand_mask(keep.bool(), self.dims)

        def score_fn(state: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            mean, std = self.sde.marginal_prob(x, t)
            return torch.where(known, -(state - mean) / std ** 2, model(state, t, x, keep.bool()))

        start = self.sde.prior_sampling(tuple(x.shape), noise).to(x.device)
        ts = time_grid(self.sde, self.joint_steps, self.config.eps, device=x.device)
        return sample_ddim(score_fn, self.sde, start, ts)

    def joint_done(self, model: AveragedModel, history, val: FeatureSet | None) -> None:
        self.history, self.fit_summary = list(history), history.summary("the joint validation task score")
        self.model = model.cpu().eval()
        self.calibration = self._calibration_clips(val) if val is not None else None
        self.shrink = None

    def _calibration_clips(self, val: FeatureSet) -> dict[str, np.ndarray] | None:
        """Up to :data:`CALIBRATION_CLIPS` validation clips with two or more modalities (one to hide, one to keep:
        clips with one are useless here, and masked validation sets have many), None if there is none."""
        arrays = self._tensors(val)
        useful = arrays["real"].any(axis=1).sum(axis=-1) >= 2
        if not useful.any():
            return None
        return {k: v[useful][:CALIBRATION_CLIPS] for k, v in arrays.items()}

    @torch.no_grad()
    def sample(self, cond: torch.Tensor, cond_mask: torch.Tensor, generator: torch.Generator,
               config: DiffusionConfig | None = None, model: AveragedModel | None = None) -> torch.Tensor:
        """Standardised ``[B, S, D]`` completions of ``cond`` (zeros where ``cond_mask [B, S, M]`` is False), with
        the sampling settings of ``config`` (default: the imputer's) and ``model`` (default: the fitted one)."""
        c = config or self.config
        model, sde = model if model is not None else self.model, self.sde
        known = expand_mask(cond_mask, self.dims)
        unconditional = torch.zeros_like(cond_mask)

        def score_fn(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor, cond_mask: torch.Tensor) -> torch.Tensor:
            score = model(x, t, cond, cond_mask)
            if c.guidance:
                score = (1 + c.guidance) * score - c.guidance * model(x, t, cond, unconditional)
            # known slots: the exact score of their forward kernel around the clean value
            mean, std = sde.marginal_prob(cond, t)
            return torch.where(known, -(x - mean) / std ** 2, score)

        x = sde.prior_sampling(tuple(cond.shape), generator)
        ts = time_grid(sde, c.steps, c.eps, c.time_grid, device=cond.device)
        return SAMPLERS.get(c.sampler)(score_fn, sde, x, ts, extra_args={"cond": cond, "cond_mask": cond_mask},
                                       generator=generator, **SAMPLERS.settings_from(c.sampler, dataclasses.asdict(c)))

    def completion(self, cond: torch.Tensor, cond_mask: torch.Tensor, generator: torch.Generator,
                   config: DiffusionConfig | None = None, model: AveragedModel | None = None) -> torch.Tensor:
        """One sample (``mode: sample``) or the average of ``draws`` samples (``mode: mean``). The draws of every
        clip go through the sampler together, one batched network call per step, not one pass per draw."""
        c = config or self.config
        draws = c.draws if c.mode == "mean" else 1
        samples = self.sample(cond.repeat(draws, *[1] * (cond.dim() - 1)),
                              cond_mask.repeat(draws, *[1] * (cond_mask.dim() - 1)), generator, c, model)
        return samples.view(draws, *cond.shape).mean(0)

    def held_out_estimates(self, config: DiffusionConfig, model: AveragedModel, device: torch.device,
                           seed: int) -> list[tuple[torch.Tensor, torch.Tensor] | None]:
        """Per modality, ``(estimate, truth)`` of its standardised features on the calibration clips that have it
        (every segment) and another modality, with it hidden; None where no clip qualifies."""
        x0, real = torch.as_tensor(self.calibration["x0"]), torch.as_tensor(self.calibration["real"])
        bounds = np.cumsum([0, *self.dims])
        generator = torch.Generator(device).manual_seed(seed)  # the same noise for the same settings
        out = []
        for i in range(len(self.modalities)):
            keep = real.clone()
            keep[..., i] = False
            rows = real[..., i].all(dim=1) & keep.flatten(1).any(dim=1)
            if not rows.any():
                out.append(None)
                continue
            estimate = self.completion(x0[rows].to(device), keep[rows].to(device), generator, config, model).cpu()
            columns = slice(bounds[i], bounds[i + 1])
            out.append((estimate[..., columns], x0[rows][..., columns]))
        return out

    def shrinkage(self, device: torch.device) -> torch.Tensor:
        """Per modality, the factor in [0, 1] by which ``mode: mean`` scales its standardised estimate toward the
        training mean (0): least squares ``<estimate, truth> / <estimate, estimate>`` over the validation clips kept
        at fit time, each modality hidden in turn where the clip has it and another; 1 without such clips."""
        if self.shrink is None:
            factors = torch.ones(len(self.modalities))
            if self.calibration is not None:
                self.model.to(device).eval()
                for i, pair in enumerate(self.held_out_estimates(self.config, self.model, device, seed=0)):
                    if pair is not None:
                        factors[i] = shrink_factor(*pair)
                log.info("diffusion imputer: conditional mean shrunk toward the training mean, share kept per "
                         "modality (1 = unshrunk) %s",
                         dict(zip(self.modalities, np.round(factors.numpy(), 3).tolist())))
            self.shrink = factors
        return self.shrink.repeat_interleave(torch.tensor(self.dims)).to(device)

    def reconstruction_error(self, model: AveragedModel, device: torch.device, seed: int) -> float:
        """The early-stopping criterion (:data:`CRITERION`): on the calibration clips, each modality hidden in
        turn, the MSE of a cheap ``mode: mean`` reconstruction (:data:`CRITERION_SAMPLING`, fixed noise) after its
        least-squares shrinkage, averaged over the modalities."""
        errors = []
        for pair in self.held_out_estimates(CRITERION_SAMPLING, model, device, seed):
            if pair is not None:
                guess, truth = pair
                errors.append(((shrink_factor(guess, truth) * guess - truth) ** 2).mean())
        return float(torch.stack(errors).mean())

    def _fill(self, data: FeatureSet, rng: np.random.Generator) -> dict[str, np.ndarray]:
        device = resolve_device(self.train_cfg.device)
        self.model.to(device).eval()
        arrays = self._tensors(data)
        x0, available = torch.as_tensor(arrays["x0"]), torch.as_tensor(arrays["real"])
        rows = torch.nonzero(~available.flatten(1).all(dim=1)).flatten()
        generator = torch.Generator(device).manual_seed(int(rng.integers(2 ** 63)))
        scale = self.shrinkage(device) if self.config.mode == "mean" and len(rows) else None
        filled = x0.clone()
        for start in range(0, len(rows), self.config.sample_batch):
            idx = rows[start:start + self.config.sample_batch]
            cond, cond_mask = x0[idx].to(device), available[idx].to(device)
            estimate = self.completion(cond, cond_mask, generator)
            filled[idx] = (estimate if scale is None else estimate * scale).cpu()
        self.model.cpu()
        parts = np.split(filled.numpy(), np.cumsum(self.dims)[:-1], axis=-1)
        return {m: self.scaler.inverse(part, m) for m, part in zip(self.modalities, parts)}

    def _state(self) -> dict:
        return {"dims": self.dims, "segments": self.segments, "history": self.history, "fit_summary": self.fit_summary,
                "scaler": (self.scaler.mean, self.scaler.std), "calibration": self.calibration,
                "weights": {k: v.cpu() for k, v in self.model.state_dict().items()}}

    def _set_state(self, state: dict) -> None:
        self.dims, self.segments, self.history = state["dims"], state["segments"], state["history"]
        self.fit_summary = state["fit_summary"]
        self.calibration, self.shrink = state["calibration"], None
        self.scaler = Standardiser(*state["scaler"])
        self.model = self._build()
        self.model.load_state_dict(state["weights"])
        self.model.eval()


def shrink_factor(estimate: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """The least-squares factor in [0, 1] that scales ``estimate`` toward 0 (the training mean) to fit ``truth``."""
    return ((estimate * truth).sum() / (estimate * estimate).sum().clamp_min(1e-12)).clamp(0.0, 1.0)
