"""Samplers (pure functions of a denoiser), their settings and steppers, σ grids, guidance and
the official recipes. Per-image noise streams live in `relay_diffusion.seeds`."""

from .grids import RELAY_GRIDS, karras_sigmas, lambda_sigmas, relay_grid, truncate_sigmas
from .guidance import classifier_free_guidance
from .presets import RELAY_RECIPES, RelayRecipe
from .settings import BaseSamplerSettings, RelaySamplerSettings
from .samplers import edm_sampler, relay_sampler, relay_sigmas, relay_stage, sde_heun_sampler
from .solvers import SOLVERS

__all__ = [
    "SOLVERS", "RELAY_GRIDS", "karras_sigmas", "truncate_sigmas", "relay_grid", "lambda_sigmas",
    "classifier_free_guidance", "RELAY_RECIPES", "RelayRecipe", "RelaySamplerSettings", "BaseSamplerSettings",
    "edm_sampler", "relay_sampler", "relay_sigmas", "relay_stage", "sde_heun_sampler",
]
