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

import math
from typing import Callable

import torch

from .._validate import check_finite_image, check_image
from ..relay import RelaySchedule, blur, upsample_nearest
from .grids import check_sigmas
from .settings import BaseSamplerSettings, RelaySamplerSettings
from .solvers import FrequencyBasis, check_solver, multistep

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


def _base_start(denoise, noise, labels, sigmas, st: BaseSamplerSettings, dtype, method: str):
    """(σ grid, x = σ₀·noise, evaluator) of a base sampler, after the checks both share."""
    if st.method != method:
        other = "sde_heun_sampler" if st.method == "sde" else "edm_sampler"
        raise ValueError(f"this sampler runs method {method!r} settings, got {st.method!r} (use {other})")
    check_image(noise, 1, "noise")
    check_finite_image(noise, "noise")
    grid = check_sigmas(sigmas) if sigmas is not None else st.sigmas()
    check_solver(st.solver, len(grid) - 1)
    x = _prepare(noise, labels, dtype) * float(grid[0])
    return grid, x, _evaluator(denoise, labels, x.shape[0], dtype, x.device)


def _evaluator(denoise: Denoiser, labels, batch: int, dtype, device):
    def evaluate(x: torch.Tensor, sigma: float) -> torch.Tensor:
        s = torch.full((batch,), sigma, dtype=dtype, device=device)
        return denoise(x, s, labels).to(dtype)
    return evaluate


# --------------------------------------------------------------------------------------------
# Stage 1: EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2).


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
    grid, x, evaluate = _base_start(denoise, noise, labels, sigmas, st, dtype, "edm")
    S_churn, S_min, S_max, S_noise = st.S_churn, st.S_min, st.S_max, st.S_noise
    if st.solver != "heun":
        return _edm_multistep(evaluate, x, grid, st.solver, 0.0, randn_like, callback)
    sig = grid.tolist() + [0.0]
    n = len(grid)
    for i in range(n):
        s_cur, s_next = sig[i], sig[i + 1]
        gamma = min(S_churn / n, math.sqrt(2) - 1) if S_min <= s_cur <= S_max else 0.0
        s_hat = s_cur * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(s_hat ** 2 - s_cur ** 2) * S_noise * randn_like(x)
        den = evaluate(x, s_hat)
        x_next = edm_euler(x, den, s_hat, s_next)
        if s_next > 0:                                   # 2nd-order correction (Heun)
            x_next = edm_heun(x, den, x_next, evaluate(x_next, s_next), s_hat, s_next)
        x = x_next
        if callback is not None:
            callback(dict(step=i, sigma=s_hat, sigma_next=s_next, x=x, denoised=den))
    return x


def edm_euler(x: torch.Tensor, den: torch.Tensor, s: float, s_next: float) -> torch.Tensor:
    """EDM's Euler step from σ = s to s_next along d = (x − D)/s (Algorithm 2)."""
    return x + (s_next - s) * ((x - den) / s)


def edm_heun(x, den, x_pred, den_pred, s: float, s_next: float) -> torch.Tensor:
    """EDM's Heun step: the Euler prediction x_pred corrected by the mean of the two slopes."""
    d, d2 = (x - den) / s, (x_pred - den_pred) / s_next
    return x + (s_next - s) * (d + d2) / 2


# --------------------------------------------------------------------------------------------
# The DDIM-η Heun step shared by the "SDE Heun" sampler and the relay sampler (docs/solvers.md §3, §5).


def ddim_renoise(x0_hat: torch.Tensor, x_cur: torch.Tensor, s: float, s_next: float, eta: float,
                 fresh_noise: Callable[[torch.Tensor], torch.Tensor],
                 reblur: Callable[[torch.Tensor, float], torch.Tensor] | None) -> torch.Tensor:
    """The state at s_next from x̂₀ and x at s: re-blur x̂₀, keep √(1−η²)·s_next/s of the noise
    x − A x̂₀, add η·s_next of fresh noise (docs/method.md §5.4). reblur None: no blur (EDM)."""
    gamma = math.sqrt(1 - eta ** 2) * s_next / s
    if reblur is None:
        y = torch.lerp(x0_hat, x_cur, gamma)
    else:
        y = reblur(x0_hat, s_next) + gamma * (x_cur - reblur(x0_hat, s))
    return y + (eta * s_next) * fresh_noise(x_cur) if eta > 0 else y


def heun_denoised(x, den, x_pred, den_pred, s: float, s_next: float, corrector: str) -> torch.Tensor:
    """The Heun corrector's x̂₀ from the two evaluations (see `_ddim_heun`)."""
    if corrector == "denoised":
        return (den + den_pred) / 2
    return x - (s / 2) * ((x - den) / s + (x_pred - den_pred) / s_next)


def _ddim_heun(evaluate, x: torch.Tensor, sigmas: list[float], eta: float,
               fresh_noise: Callable[[torch.Tensor], torch.Tensor],
               reblur: Callable[[torch.Tensor, float], torch.Tensor] | None,
               corrector: str, callback: Callback | None) -> torch.Tensor:
    """Each step re-blurs the predicted clean image to the next level and re-noises it, keeping
    a fraction √(1−η²) of the predicted noise and adding fresh noise of weight η (docs/method.md §5.4):

        x_{i+1} = A_{i+1} x̂₀ + γ (x_i − A_i x̂₀) + η σ_{i+1} ε̃,   γ = √(1−η²) σ_{i+1}/σ_i,

    first with x̂₀ = D(x_i; σ_i), then (Heun) with a corrected x̂₀:
      corrector="noise" (official, = EDM's Heun when A = I): the x̂₀ implied by the mean of the
        noise directions (x − D)/σ at x_i and at the predicted x̃_{i+1}. Wherever A ≠ I (every
        relay step) this is only first-order accurate, whether or not A changes across the step
        (docs/solvers.md §5; tests/test_solvers.py, tests/test_sampler_oracle.py);
      corrector="denoised": the mean of D(x_i; σ_i) and D(x̃_{i+1}; σ_{i+1}) — second order
        with or without blur; same cost. The predictor's fresh noise is
    discarded and drawn again for the corrector (as the official code). The last step returns
    D(x; σ_last). Identical, term by term, to the paper's update in patch-DCT space (Eq. of §3.3),
    because the blur A is diagonal there; with A = I it is the DDIM-η / "SDE Heun" update.
    """
    for i, s in enumerate(sigmas):
        den = evaluate(x, s)
        if i == len(sigmas) - 1:
            if callback is not None:
                callback(dict(step=i, sigma=s, sigma_next=0.0, x=den, denoised=den))
            return den
        s_next = sigmas[i + 1]
        x_pred = ddim_renoise(den, x, s, s_next, eta, fresh_noise, reblur)
        x0_bar = heun_denoised(x, den, x_pred, evaluate(x_pred, s_next), s, s_next, corrector)
        x = ddim_renoise(x0_bar, x, s, s_next, eta, fresh_noise, reblur)
        if callback is not None:
            callback(dict(step=i, sigma=s, sigma_next=s_next, x=x, denoised=den))
    raise AssertionError("unreachable")


def _edm_multistep(evaluate, x, grid: torch.Tensor, solver: str, eta: float, fresh_noise, callback):
    """A multistep solver on plain EDM (d ≡ 1: DPM-Solver++ in λ = −log σ)."""
    order, corrector = check_solver(solver, len(grid) - 1)
    flat = torch.zeros(len(grid), 1, 1, dtype=torch.float64)
    return multistep(evaluate, x, grid.tolist(), order, eta, flat, FrequencyBasis(1), fresh_noise, callback,
                     corrector)


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
    grid, x, evaluate = _base_start(denoise, noise, labels, sigmas, st, dtype, "sde")
    if st.solver != "heun":
        return _edm_multistep(evaluate, x, grid, st.solver, st.eta, randn_like, callback)
    return _ddim_heun(evaluate, x, grid.tolist(), st.eta, randn_like, None, st.corrector, callback)


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

    solver: "heun" (official; `corrector` picks its second evaluation, see `_ddim_heun`) or one of
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
    sch = st.sampling_schedule(schedule)
    sig = check_sigmas(sigmas) if sigmas is not None else st.sigmas(schedule)
    order, pc = check_solver(st.solver, len(sig) - 1)
    x = _prepare(x_up, labels, dtype)
    noise = lambda like: sch.noise(like, randn_like)                       # noqa: E731
    x = x + float(sig[0]) * noise(x)
    evaluate = _evaluator(denoise, labels, x.shape[0], dtype, x.device)
    if order:
        log_factors = torch.log(sch.factors(sig))                          # [n, p, p]
        return multistep(evaluate, x, sig.tolist(), order, st.eta, log_factors,
                         FrequencyBasis(sch.up_scale), noise, callback, pc)
    blur_sigmas = {s: float(sch.blur_sigma_at(s)) for s in sig.tolist()}

    def reblur(x0: torch.Tensor, s: float) -> torch.Tensor:
        return blur(x0, blur_sigmas[s], sch.up_scale, sch.min_scale, check=False)

    return _ddim_heun(evaluate, x, sig.tolist(), st.eta, noise, reblur, st.corrector, callback)


def relay_stage(denoise: Denoiser, x_low: torch.Tensor, labels: torch.Tensor | None = None, *,
                schedule: RelaySchedule = RelaySchedule(), **sampler_kwargs) -> torch.Tensor:
    """Chain a relay stage after a lower-resolution one: nearest-upsample x_low by
    schedule.up_scale (every s×s patch constant = fully blurred, §3.2) and run `relay_sampler`."""
    check_image(x_low, 1, "x_low")
    return relay_sampler(denoise, upsample_nearest(x_low, schedule.up_scale), labels,
                         schedule=schedule, **sampler_kwargs)
