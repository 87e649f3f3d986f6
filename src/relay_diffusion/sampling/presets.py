"""Sampler recipes: the official code's relay-stage recipes (docs/solvers.md §5; the model's forward
schedule as trained plus the sampler settings of the reported numbers), its base-stage ones, and
the measured few-step `fast` recipe."""

from __future__ import annotations

import dataclasses

from ..relay import RelaySchedule
from ..schedules import PUBLISHED_SCHEDULES
from .settings import BaseSamplerSettings, RelaySamplerSettings


BASE_RECIPES = {
    # generate_imagenet.py stage 1 (EDM's ImageNet-64 setting, FID 1.36 in EDM): 256 steps,
    # S_churn 40 in [0.05, 50], S_noise 1.003 → 511 NFE; no guidance.
    "imagenet64": BaseSamplerSettings(method="edm", num_steps=256, S_churn=40.0, S_min=0.05, S_max=50.0,
                                      S_noise=1.003),
    # generate_celebahq.py stage 1: DDIM-η Heun, 120 steps, η (sde_scale) 0.05 → 239 NFE.
    "celebahq64": BaseSamplerSettings(method="sde", num_steps=120, eta=0.05),
    # generate.py defaults: deterministic Heun, 18 steps → 35 NFE.
    "default": BaseSamplerSettings(),
}


@dataclasses.dataclass(frozen=True)
class RelayRecipe:
    schedule: RelaySchedule
    sampler: RelaySamplerSettings
    note: str


RELAY_RECIPES = {
    # generate_imagenet.py: 200 nominal steps, ρ = 100 → 100 kept, σ₀ = 0.86912, 199 NFE
    # (398 with CFG 3.5); FID 1.87 with guidance + class balance, 5.27 without (paper Table 2).
    "imagenet256": RelayRecipe(
        PUBLISHED_SCHEDULES["imagenet256"],
        RelaySamplerSettings(num_steps=200, rho=100.0, truncation_sigma=0.9, prob_length=0.93,
                             eta=0.2, block_scale=0.15, cfg_scale=3.5),
        "official ImageNet 64→256 stage 2 (generate_imagenet.py)"),
    # generate_celebahq.py: 150 nominal steps, ρ = 7 → 54 kept, σ₀ = 0.92191, 107 NFE;
    # the sampler's L (truncation_t) 1.05 differs from the training L = 0.89 (docs/solvers.md §4). FID 3.15 (Table 1).
    "celebahq256": RelayRecipe(
        PUBLISHED_SCHEDULES["celebahq256"],
        RelaySamplerSettings(num_steps=150, rho=7.0, truncation_sigma=0.95, prob_length=1.05,
                             eta=0.2, block_scale=0.15, cfg_scale=1.0),
        "official CelebA-HQ 64→256 stage 2 (generate_celebahq.py)"),
    # generate.py CLI defaults: 18 nominal steps → 7 kept, σ₀ = 0.89750, 13 NFE.
    "default": RelayRecipe(PUBLISHED_SCHEDULES["default"], RelaySamplerSettings(), "official generate.py defaults"),
}


# Few-step recipes measured on the Fashion-MNIST models (docs/solvers-quality.md): not official,
# for any model; the numbers are the plan results they come from.
FAST_RECIPE = (
    # base: DPM-Solver++(2M) + corrector, ρ = 20 grid, 12 evaluations (plans base-grid, base-curves)
    BaseSamplerSettings(solver="dpmpp-2m-pc", num_steps=12, rho=20.0),
    # relay: the same solver per patch-DCT frequency, σ 0.9 → 0.008 on a ρ = 2 grid, 8 evaluations,
    # deterministic (plans grid-search, start-search, relay-curves, relay-eta); ρ = 2 ties the best
    # λ-uniform grid at 8 evaluations and, unlike a λ grid, suits every up-scale factor
    RelaySamplerSettings(solver="dpmpp-2m-pc", sigma_grid="rho", rho=2.0, num_steps=8, eta=0.0),
)

# chain recipes: (base-stage settings, relay-stage settings) for `rdm sample --preset NAME`
CHAIN_RECIPES = {
    "imagenet256": (BASE_RECIPES["imagenet64"], RELAY_RECIPES["imagenet256"].sampler),
    "celebahq256": (BASE_RECIPES["celebahq64"], RELAY_RECIPES["celebahq256"].sampler),
    "fast": FAST_RECIPE,
}

# `--preset distilled`: not settings but distilled stages (rdm distill), each run on the σ grid it
# was distilled for; without --model, the bundled distilled demo chain (docs/distillation.md)
DISTILLED_PRESET = "distilled"
CHAIN_PRESETS = (*sorted(CHAIN_RECIPES), DISTILLED_PRESET)


def chain_recipe(name: str | None, classes=(BaseSamplerSettings, RelaySamplerSettings)) -> list:
    """Sampler settings of a chain recipe (CHAIN_RECIPES; None = the generate.py defaults) for a
    chain whose stages take the settings `classes` in order (each stage kind's, stages.py;
    default: a base stage then a relay stage)."""
    if name is not None and name not in CHAIN_RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(sorted(CHAIN_RECIPES))}")
    recipe = CHAIN_RECIPES[name] if name else (BaseSamplerSettings(), RelaySamplerSettings())
    by_class = {type(s): s for s in recipe}
    return [by_class[c] for c in classes]


def chain_recipe_dicts(name: str) -> tuple[dict, dict]:
    """A CHAIN_RECIPES entry as JSON-ready dicts (base settings, relay settings), the form run
    configs and the studies' evaluation plans store."""
    base, relay = chain_recipe(name)
    return dataclasses.asdict(base), dataclasses.asdict(relay)
