"""Relay-stage recipes of the official code (docs/solvers.md §5): the model's forward schedule (as
trained) plus the sampler settings used for the reported numbers."""

from __future__ import annotations

import dataclasses
import math

import torch

from ..relay import RelaySchedule
from .grids import RELAY_GRIDS, karras_sigmas, relay_grid
from .solvers import SOLVERS, nfe


def _check_solver_name(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")


def _check_numbers(settings, may_be_infinite: tuple = ()) -> None:
    """Every numeric field is a number, not NaN, and finite unless named in may_be_infinite
    (NaN passes every range test further down, so it is caught here by name)."""
    for f in dataclasses.fields(settings):
        v = getattr(settings, f.name)
        if v is None or isinstance(v, str):
            continue
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{f.name} must be a number, got {v!r}")
        if math.isnan(v) or (math.isinf(v) and f.name not in may_be_infinite):
            raise ValueError(f"{f.name} must be finite, got {v}")


@dataclasses.dataclass(frozen=True)
class RelaySamplerSettings:
    """Arguments of `relay_sampler` (and the guidance scale wrapped around its denoiser)."""

    num_steps: int = 18               # grid size: nominal EDM grid before truncation ("truncated"),
                                      # σ's run ("rho", "lambda")
    sigma_min: float = 0.008          # last σ; the sampler returns D(x; σ_min)
    sigma_max: float = 80.0           # top of the nominal grid ("truncated" only)
    rho: float = 7.0                  # grid exponent (EDM Eq. 5)
    truncation_sigma: float = 0.9     # start: keep only σ < this ("truncated"), else σ₀ = this
    truncation_t: float | None = None  # L used by the sampler's u(σ); None = the model's L
    s_noise: float = 0.2              # η: fresh-noise fraction per step (paper Table 3: best 0.2)
    s_block: float | None = None      # α of the injected noise; None = the model's block_scale
    corrector: str = "noise"          # Heun corrector: "noise" (official) or "denoised" (2nd order)
    solver: str = "heun"              # "heun" (official) or an exponential integrator (solvers.py)
    sigma_grid: str = "truncated"     # "truncated" (official), "rho" or "lambda" (grids.relay_grid)
    lambda_frequency: float = 0.0     # "lambda" grid: patch-DCT frequency radius whose λ is uniform
    cfg_scale: float = 1.0            # classifier-free guidance weight w (1 = off)

    def __post_init__(self):
        _check_numbers(self)
        _check_solver_name(self.solver)
        if self.truncation_t is not None and not 0 < self.truncation_t <= 2:
            raise ValueError(f"truncation_t must be in (0, 2] (the sampler's L), got {self.truncation_t}")
        if self.sigma_grid not in RELAY_GRIDS:
            raise ValueError(f"sigma_grid must be one of {RELAY_GRIDS}, got {self.sigma_grid!r}")

    def sigmas(self, schedule: RelaySchedule | None = None) -> torch.Tensor:
        """The σ's run; the "lambda" grid needs the model's schedule (for the sampler's u(σ))."""
        return relay_grid(self.sigma_grid, self.num_steps, self.sigma_min, self.sigma_max, self.rho,
                          self.truncation_sigma, schedule and schedule.for_sampling(self.truncation_t),
                          self.lambda_frequency)

    def nfe(self, schedule: RelaySchedule | None = None) -> int:
        """Denoiser calls per image (each is two network evaluations under guidance)."""
        return nfe(self.solver, len(self.sigmas(schedule)))

    def sampler_kwargs(self) -> dict:
        kw = dataclasses.asdict(self)
        del kw["cfg_scale"]
        return kw


@dataclasses.dataclass(frozen=True)
class BaseSamplerSettings:
    """Arguments of the stage-1 samplers: EDM's stochastic Heun ("edm") or the DDIM-η Heun of the
    official CelebA-HQ stage 1 ("sde")."""

    method: str = "edm"               # "edm" (Heun + churn) or "sde" (DDIM-η Heun)
    num_steps: int = 18               # grid size
    sigma_min: float = 0.002          # last σ before the final step
    sigma_max: float = 80.0           # start σ (pure noise)
    rho: float = 7.0                  # grid exponent (EDM Eq. 5)
    S_churn: float = 0.0              # edm: total churn
    S_min: float = 0.0                # edm: churn only for σ in [S_min, S_max]
    S_max: float = float("inf")
    S_noise: float = 1.0              # edm: noise inflation of the churn
    sde_scale: float = 0.05           # sde: η, fresh-noise fraction per step
    solver: str = "heun"              # "heun" (EDM / official) or an exponential integrator;
                                      # with "edm" deterministic (no churn), with "sde" η = sde_scale
    cfg_scale: float = 1.0            # classifier-free guidance weight w (1 = off)

    def __post_init__(self):
        if self.method not in ("edm", "sde"):
            raise ValueError(f"base sampler method must be 'edm' or 'sde', got {self.method!r}")
        _check_numbers(self, may_be_infinite=("S_min", "S_max"))
        _check_solver_name(self.solver)

    def sigmas(self) -> torch.Tensor:
        return karras_sigmas(self.num_steps, self.sigma_min, self.sigma_max, self.rho)

    def nfe(self, schedule=None) -> int:
        """Denoiser calls per image (each is two network evaluations under guidance)."""
        return nfe(self.solver, self.num_steps)

    def sampler_kwargs(self) -> dict:
        kw = dict(num_steps=self.num_steps, sigma_min=self.sigma_min, sigma_max=self.sigma_max, rho=self.rho,
                  solver=self.solver)
        if self.method == "edm":
            kw.update(S_churn=self.S_churn, S_min=self.S_min, S_max=self.S_max, S_noise=self.S_noise)
        else:
            kw.update(sde_scale=self.sde_scale)
        return kw


BASE_RECIPES = {
    # generate_imagenet.py stage 1 (EDM's ImageNet-64 setting, FID 1.36 in EDM): 256 steps,
    # S_churn 40 in [0.05, 50], S_noise 1.003 → 511 NFE; no guidance.
    "imagenet64": BaseSamplerSettings(method="edm", num_steps=256, S_churn=40.0, S_min=0.05, S_max=50.0,
                                      S_noise=1.003),
    # generate_celebahq.py stage 1: DDIM-η Heun, 120 steps, sde_scale 0.05 → 239 NFE.
    "celebahq64": BaseSamplerSettings(method="sde", num_steps=120, sde_scale=0.05),
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
        RelaySchedule(up_scale=4, blur_sigma_max=3.0, prob_length=0.93),
        RelaySamplerSettings(num_steps=200, rho=100.0, truncation_sigma=0.9, truncation_t=0.93,
                             s_noise=0.2, s_block=0.15, cfg_scale=3.5),
        "official ImageNet 64→256 stage 2 (generate_imagenet.py)"),
    # generate_celebahq.py: 150 nominal steps, ρ = 7 → 54 kept, σ₀ = 0.92191, 107 NFE;
    # truncation_t 1.05 differs from the training L = 0.89 (docs/solvers.md §4). FID 3.15 (Table 1).
    "celebahq256": RelayRecipe(
        RelaySchedule(up_scale=4, blur_sigma_max=2.0, prob_length=0.89),
        RelaySamplerSettings(num_steps=150, rho=7.0, truncation_sigma=0.95, truncation_t=1.05,
                             s_noise=0.2, s_block=0.15, cfg_scale=1.0),
        "official CelebA-HQ 64→256 stage 2 (generate_celebahq.py)"),
    # generate.py CLI defaults: 18 nominal steps → 7 kept, σ₀ = 0.89750, 13 NFE.
    "default": RelayRecipe(RelaySchedule(), RelaySamplerSettings(), "official generate.py defaults"),
}


def relay_step_table(schedule: RelaySchedule, settings: RelaySamplerSettings) -> dict:
    """What a relay stage will do, step by step: σ, the sampler's u and σ_B, and the two lowest
    AC blur factors α(0,1), α(1,1) — plus the start σ₀ and the number of network evaluations."""
    sch = schedule.for_sampling(settings.truncation_t)
    sig = settings.sigmas(schedule)
    u, sb = sch.u(sig), sch.blur_sigma_at(sig)
    fac = sch.factors(sig)
    p = sch.up_scale
    steps = [dict(step=i, sigma=float(sig[i]), u=float(u[i]), blur_sigma=float(sb[i]),
                  alpha_01=float(fac[i, 0, 1]) if p > 1 else 1.0,
                  alpha_11=float(fac[i, 1, 1]) if p > 1 else 1.0) for i in range(len(sig))]
    calls = nfe(settings.solver, len(sig))
    return dict(schedule=dataclasses.asdict(schedule), sampler=dataclasses.asdict(settings),
                sigma_top=schedule.sigma_top, sigma_start=float(sig[0]), steps_kept=len(sig),
                nfe=calls, nfe_with_guidance=calls * (2 if settings.cfg_scale != 1 else 1), steps=steps)


# Few-step recipes measured on the Fashion-MNIST models (docs/solvers-quality.md): not official,
# for any model; the numbers are the plan results they come from.
FAST_RECIPE = (
    # base: DPM-Solver++(2M) + corrector, ρ = 20 grid, 12 evaluations (plans base-grid, base-curves)
    BaseSamplerSettings(solver="dpmpp-2m-pc", num_steps=12, rho=20.0),
    # relay: the same solver per patch-DCT frequency, σ 0.9 → 0.008 on a ρ = 2 grid, 8 evaluations,
    # deterministic (plans grid-search, start-search, relay-curves, relay-eta); ρ = 2 ties the best
    # λ-uniform grid at 8 evaluations and, unlike a λ grid, suits every up-scale factor
    RelaySamplerSettings(solver="dpmpp-2m-pc", sigma_grid="rho", rho=2.0, num_steps=8, s_noise=0.0),
)

# chain recipes: (base-stage settings, relay-stage settings) for `rdm sample --preset NAME`
CHAIN_RECIPES = {
    "imagenet256": (BASE_RECIPES["imagenet64"], RELAY_RECIPES["imagenet256"].sampler),
    "celebahq256": (BASE_RECIPES["celebahq64"], RELAY_RECIPES["celebahq256"].sampler),
    "fast": FAST_RECIPE,
}


def chain_recipe(name: str | None, stages: list[str]) -> list:
    """Sampler settings for a chain of stages ("base" / "relay"): a CHAIN_RECIPES entry, or the
    defaults (generate.py's) when name is None."""
    if name is not None and name not in CHAIN_RECIPES:
        raise ValueError(f"unknown recipe {name!r}; choose from {', '.join(sorted(CHAIN_RECIPES))}")
    base, relay = CHAIN_RECIPES[name] if name else (BaseSamplerSettings(), RelaySamplerSettings())
    return [base if s == "base" else relay for s in stages]


def chain_recipe_dicts(name: str) -> tuple[dict, dict]:
    """A CHAIN_RECIPES entry as JSON-ready dicts (base settings, relay settings), the form run
    configs and the studies' evaluation plans store."""
    base, relay = chain_recipe(name, ["base", "relay"])
    return dataclasses.asdict(base), dataclasses.asdict(relay)
