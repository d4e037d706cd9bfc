"""Score-based diffusion: forward SDEs, conditional score networks, the denoising score matching loss and
reverse-time samplers. The imputer that puts them together is :mod:`remodiff.imputers.diffusion`."""
from remodiff.diffusion.losses import dsm_loss, expand_mask, sample_condition_mask
from remodiff.diffusion.networks import CONDITIONINGS, AveragedModel, ScoreModel
from remodiff.diffusion.sampling import (GRIDS, SAMPLERS, sample_ddim, sample_euler_maruyama, sample_ode, sample_pc,
                                         time_grid)
from remodiff.diffusion.sde import SDE, SDES, VESDE, VPSDE

__all__ = ["CONDITIONINGS", "GRIDS", "SAMPLERS", "SDE", "SDES", "VESDE", "VPSDE", "AveragedModel", "ScoreModel",
           "dsm_loss", "expand_mask", "sample_condition_mask", "sample_ddim", "sample_euler_maruyama", "sample_ode",
           "sample_pc", "time_grid"]
