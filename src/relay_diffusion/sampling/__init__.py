"""Samplers (pure functions of a denoiser), σ grids, guidance, seeding and the official recipes."""

from .grids import RELAY_GRIDS, karras_sigmas, lambda_sigmas, relay_grid, truncate_sigmas
from .guidance import classifier_free_guidance
from .presets import RELAY_RECIPES, RelayRecipe, relay_step_table
from .settings import BaseSamplerSettings, RelaySamplerSettings
from .samplers import edm_sampler, relay_sampler, relay_sigmas, relay_stage, sde_heun_sampler
from ..seeds import SeededNoise, SeedList, check_seeds, parse_seeds
from .solvers import SOLVERS

__all__ = [
    "SOLVERS", "RELAY_GRIDS", "karras_sigmas", "truncate_sigmas", "relay_grid", "lambda_sigmas",
    "classifier_free_guidance", "RELAY_RECIPES", "RelayRecipe", "RelaySamplerSettings", "BaseSamplerSettings",
    "relay_step_table", "edm_sampler", "relay_sampler", "relay_sigmas", "relay_stage", "sde_heun_sampler",
    "SeededNoise", "SeedList", "check_seeds", "parse_seeds",
]
