"""Samplers: pure functions of a denoiser D(x, sigma, labels) → x̂₀ (docs/solvers.md).

Every Gaussian draw goes through `randn_like` (pass `SeededNoise(seeds)` for per-seed images).
`sigma` reaches the denoiser as a [B] tensor of the working dtype. All arithmetic runs in
`dtype` (float32 by default; float64 on request, which also runs the networks in float64, whereas
the official relay sampler keeps only its state in float64).

Settings: each sampler takes a settings object (`settings=`, the single home of the defaults:
`BaseSamplerSettings`, `RelaySamplerSettings`) and/or any of its fields as keywords, which
override it; the official code's names are accepted as aliases (s_noise, s_block, truncation_t,
sde_scale). Guidance is not a setting of the sampler but a wrapper around the denoiser
(`classifier_free_guidance`).

Samplers run under torch.no_grad(). `callback`, if given, receives a dict after every step: step, sigma, sigma_next, x (the new
state; the final image after the last step) and denoised.
"""

from __future__ import annotations

from typing import Callable

import torch

from .._validate import check_finite_image, check_image
from ..relay import RelaySchedule, upsample_nearest
from .grids import check_sigmas
from .settings import BaseSamplerSettings, RelaySamplerSettings
from .steppers import make_stepper, run_stepper

Denoiser = Callable[..., torch.Tensor]
RandnLike = Callable[[torch.Tensor], torch.Tensor]
Callback = Callable[[dict], None]


def _prepare(x, labels, dtype):
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if labels is not None and labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} rows for a batch of {x.shape[0]}")
    return x.to(dtype)


def _settings(default, settings, overrides: dict, sampler: str):
    """`settings` (or the class defaults) with `overrides` applied, validated once here."""
    if "cfg_scale" in overrides:
        raise TypeError(f"{sampler} does not apply guidance; wrap the denoiser: "
                        "classifier_free_guidance(denoise, cfg_scale)")
    if settings is not None and not isinstance(settings, type(default)):
        raise TypeError(f"{sampler} takes {type(default).__name__}, got {type(settings).__name__}")
    return (settings or default).with_overrides(overrides)


def _base_sample(denoise, noise, labels, sigmas, st: BaseSamplerSettings, dtype, method: str, randn_like, callback):
    """A base stage from pure noise, after the checks both base samplers share."""
    if st.method != method:
        other = "sde_heun_sampler" if st.method == "sde" else "edm_sampler"
        raise ValueError(f"this sampler runs method {method!r} settings, got {st.method!r} (use {other})")
    check_image(noise, 1, "noise")
    check_finite_image(noise, "noise")
    return _run(denoise, noise, labels, st, None, sigmas, dtype, randn_like, callback)


def _run(denoise: Denoiser, x, labels, st, schedule, sigmas, dtype, randn_like, callback) -> torch.Tensor:
    """Every sampler's body: the stepper its settings pick (or an explicit σ grid), driven from x
    with D(x; σ) evaluated on a [B] σ tensor of the working dtype."""
    stepper = make_stepper(st, schedule, check_sigmas(sigmas) if sigmas is not None else None, randn_like)
    x = _prepare(x, labels, dtype)
    batch, device = x.shape[0], x.device

    def evaluate(x: torch.Tensor, sigma: float) -> torch.Tensor:
        return denoise(x, torch.full((batch,), sigma, dtype=dtype, device=device), labels).to(dtype)
    return run_stepper(stepper, evaluate, x, callback)


# --------------------------------------------------------------------------------------------
# Stage 1: EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2) and the DDIM-η Heun
# sampler of the official CelebA-HQ stage 1 (docs/solvers.md §3); the steps are steppers.py's.


@torch.no_grad()
def edm_sampler(denoise: Denoiser, noise: torch.Tensor, labels: torch.Tensor | None = None, *,
                settings: BaseSamplerSettings | None = None,
                sigmas=None,
                randn_like: RandnLike = torch.randn_like,
                dtype: torch.dtype = torch.float32,
                callback: Callback | None = None,
                **overrides) -> torch.Tensor:
    """Sample from pure noise: x₀ = σ₀·noise, then Heun steps down the grid and a final Euler
    step to σ = 0. Churn: where S_min ≤ σ_i ≤ S_max, σ is first raised to σ̂ = σ_i(1 + γ),
    γ = min(S_churn/n, √2 − 1), by adding fresh noise. Draws: one ε per churned step, in order.
    `sigmas` (descending) overrides the grid settings. Settings (`BaseSamplerSettings`, method
    "edm"): num_steps, sigma_min, sigma_max, rho, S_churn, S_min, S_max, S_noise, solver — "heun"
    (EDM's) or one of the other SOLVERS, deterministic exponential integrators (solvers.py; no
    churn) that return D(x; σ_min) after one evaluation per σ."""
    st = _settings(BaseSamplerSettings(), settings, overrides, "edm_sampler")
    return _base_sample(denoise, noise, labels, sigmas, st, dtype, "edm", randn_like, callback)


@torch.no_grad()
def sde_heun_sampler(denoise: Denoiser, noise: torch.Tensor, labels: torch.Tensor | None = None, *,
                     settings: BaseSamplerSettings | None = None,
                     sigmas=None,
                     randn_like: RandnLike = torch.randn_like,
                     dtype: torch.dtype = torch.float32,
                     callback: Callback | None = None,
                     **overrides) -> torch.Tensor:
    """The DDIM-η Heun sampler of the official CelebA-HQ stage 1 (docs/solvers.md §3), from pure noise:
    x₀ = σ₀·noise, g = η·σ_{i+1} of fresh noise per step (η = `eta`, the official sde_scale),
    returns the denoised image at σ_min. Draws: one ε for the predictor and one for the corrector
    per step. The other SOLVERS (exponential integrators, solvers.py) keep the same η: one
    evaluation and one draw per step. Settings: `BaseSamplerSettings` with method "sde" (num_steps
    defaults to 18 there; the official CelebA-HQ recipe, BASE_RECIPES["celebahq64"], runs 120)."""
    st = _settings(BaseSamplerSettings(method="sde"), settings, overrides, "sde_heun_sampler")
    return _base_sample(denoise, noise, labels, sigmas, st, dtype, "sde", randn_like, callback)


# --------------------------------------------------------------------------------------------
# Stage 2+: the RDM stochastic relay sampler (paper Algorithm 1; docs/solvers.md §5).


def relay_sigmas(settings: RelaySamplerSettings | None = None, schedule: RelaySchedule | None = None,
                 **overrides) -> torch.Tensor:
    """The σ's a relay sampler runs (default: the official grid, the EDM grid with every σ ≥
    truncation_sigma dropped); `schedule` is needed by the "lambda" grid only."""
    return _settings(RelaySamplerSettings(), settings, overrides, "relay_sigmas").sigmas(schedule)


@torch.no_grad()
def relay_sampler(denoise: Denoiser, x_up: torch.Tensor, labels: torch.Tensor | None = None, *,
                  schedule: RelaySchedule = RelaySchedule(),
                  settings: RelaySamplerSettings | None = None,
                  sigmas=None,
                  randn_like: RandnLike = torch.randn_like,
                  dtype: torch.dtype = torch.float32,
                  callback: Callback | None = None,
                  **overrides) -> torch.Tensor:
    """Continue the diffusion from a fully blurred image (e.g. a nearest-upsampled low-res sample).

    x_up: [B, C, H, W], H and W divisible by schedule.up_scale. Starts at σ₀ = the grid's first σ
    with x = x_up + σ₀·(ε + α·Block(ε')) and integrates down the grid with the patch blur of
    `schedule` — but its u(σ) uses the settings' `prob_length` as L (default: the schedule's; the
    official CelebA-HQ recipe uses 1.05 against a training L of 0.89). `eta` is the paper's η,
    `block_scale` its α (default: the schedule's). Settings: `RelaySamplerSettings`.

    solver: "heun" (official; `corrector` picks its second evaluation, see steppers.DDIMHeun) or one of
    the other SOLVERS, exponential integrators per patch-DCT frequency (solvers.py): one
    evaluation per σ, the same η and injected relay noise. sigma_grid: "truncated" (official,
    `num_steps` nominal), "rho" or "lambda" (`num_steps` σ's from truncation_sigma down, ρ-spaced
    or uniform in λ of frequency radius `lambda_frequency`); see `relay_grid`. `sigmas`
    (descending) overrides all grid settings. The defaults are the official generate.py defaults.

    Draws: ε, ε' for the start; then per step (heun) ε, ε' for the predictor and ε, ε' for the
    corrector, or (other solvers) one ε, ε' (ε' skipped when α = 0, all skipped when η = 0).
    """
    st = _settings(RelaySamplerSettings(), settings, overrides, "relay_sampler")
    check_image(x_up, schedule.up_scale, "x_up")
    check_finite_image(x_up, "x_up")
    return _run(denoise, x_up, labels, st, schedule, sigmas, dtype, randn_like, callback)


def relay_stage(denoise: Denoiser, x_low: torch.Tensor, labels: torch.Tensor | None = None, *,
                schedule: RelaySchedule = RelaySchedule(), **sampler_kwargs) -> torch.Tensor:
    """Chain a relay stage after a lower-resolution one: nearest-upsample x_low by
    schedule.up_scale (every s×s patch constant = fully blurred, §3.2) and run `relay_sampler`."""
    check_image(x_low, 1, "x_low")
    return relay_sampler(denoise, upsample_nearest(x_low, schedule.up_scale), labels,
                         schedule=schedule, **sampler_kwargs)
