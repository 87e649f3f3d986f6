"""relay-diffusion: Relay Diffusion Models (Teng et al., ICLR 2024) in PyTorch."""

__version__ = "0.1.0"

from .losses import EDMLoss, RelayLoss, drop_labels
from .precond import EDMPrecond, edm_coefficients, edm_loss_weight
from .relay import (RelaySchedule, blur, blur_factors, block_noise, block_noise_covariance, patch_dct,
                    patch_idct, relay_noise, upsample_nearest)
from .sampling import (RELAY_RECIPES, SOLVERS, BaseSamplerSettings, RelaySamplerSettings, SeededNoise, classifier_free_guidance,
                       edm_sampler, karras_sigmas, relay_sampler, relay_sigmas, relay_stage,
                       sde_heun_sampler, truncate_sigmas)

__all__ = [
    "patch_dct", "patch_idct", "blur", "blur_factors", "block_noise", "block_noise_covariance",
    "relay_noise", "upsample_nearest", "RelaySchedule", "EDMPrecond", "edm_coefficients",
    "edm_loss_weight", "EDMLoss", "RelayLoss", "drop_labels", "edm_sampler", "sde_heun_sampler",
    "relay_sampler", "relay_sigmas", "relay_stage", "classifier_free_guidance", "SeededNoise",
    "karras_sigmas", "truncate_sigmas", "RELAY_RECIPES", "RelaySamplerSettings", "BaseSamplerSettings",
    "SOLVERS",
]
