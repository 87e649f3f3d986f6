"""Relay-stage recipes of the official code (spec §E.2.5): the model's forward schedule (as
trained) plus the sampler settings used for the reported numbers."""

from __future__ import annotations

import dataclasses

import torch

from ..relay import RelaySchedule
from .grids import karras_sigmas, truncate_sigmas


@dataclasses.dataclass(frozen=True)
class RelaySamplerSettings:
    """Arguments of `relay_sampler` (and the guidance scale wrapped around its denoiser)."""

    num_steps: int = 18               # nominal EDM grid size before truncation
    sigma_min: float = 0.008          # last σ; the sampler returns D(x; σ_min)
    sigma_max: float = 80.0           # top of the nominal grid
    rho: float = 7.0                  # grid exponent (EDM Eq. 5)
    truncation_sigma: float = 0.9     # keep only σ < this; the first kept σ is the start σ₀
    truncation_t: float | None = None  # L used by the sampler's u(σ); None = the model's L
    s_noise: float = 0.2              # η: fresh-noise fraction per step (paper Table 3: best 0.2)
    s_block: float | None = None      # α of the injected noise; None = the model's block_scale
    corrector: str = "noise"          # Heun corrector: "noise" (official) or "denoised" (2nd order)
    cfg_scale: float = 1.0            # classifier-free guidance weight w (1 = off)

    def sigmas(self) -> torch.Tensor:
        return truncate_sigmas(karras_sigmas(self.num_steps, self.sigma_min, self.sigma_max, self.rho),
                               self.truncation_sigma)

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
    cfg_scale: float = 1.0            # classifier-free guidance weight w (1 = off)

    def __post_init__(self):
        if self.method not in ("edm", "sde"):
            raise ValueError(f"base sampler method must be 'edm' or 'sde', got {self.method!r}")

    def sampler_kwargs(self) -> dict:
        kw = dict(num_steps=self.num_steps, sigma_min=self.sigma_min, sigma_max=self.sigma_max, rho=self.rho)
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
    # truncation_t 1.05 differs from the training L = 0.89 (spec §C.4). FID 3.15 (Table 1).
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
    sig = settings.sigmas()
    u, sb = sch.u(sig), sch.blur_sigma_at(sig)
    fac = sch.factors(sig)
    p = sch.up_scale
    steps = [dict(step=i, sigma=float(sig[i]), u=float(u[i]), blur_sigma=float(sb[i]),
                  alpha_01=float(fac[i, 0, 1]) if p > 1 else 1.0,
                  alpha_11=float(fac[i, 1, 1]) if p > 1 else 1.0) for i in range(len(sig))]
    nfe = 2 * len(sig) - 1
    return dict(schedule=dataclasses.asdict(schedule), sampler=dataclasses.asdict(settings),
                sigma_top=schedule.sigma_top, sigma_start=float(sig[0]), steps_kept=len(sig),
                nfe=nfe, nfe_with_guidance=nfe * (2 if settings.cfg_scale != 1 else 1), steps=steps)
