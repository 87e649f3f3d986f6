"""Samplers (pure functions of a denoiser), σ grids, guidance, seeding and the official recipes."""

from .grids import karras_sigmas, truncate_sigmas
from .guidance import classifier_free_guidance
from .presets import RELAY_RECIPES, RelayRecipe, RelaySamplerSettings, relay_step_table
from .samplers import edm_sampler, relay_sampler, relay_sigmas, relay_stage, sde_heun_sampler
from .seeds import SeededNoise

__all__ = [
    "karras_sigmas", "truncate_sigmas", "classifier_free_guidance", "RELAY_RECIPES", "RelayRecipe",
    "RelaySamplerSettings", "relay_step_table", "edm_sampler", "relay_sampler", "relay_sigmas",
    "relay_stage", "sde_heun_sampler", "SeededNoise",
]
