"""Samplers: pure functions of a denoiser D(x, sigma, labels) → x̂₀ (docs/solvers.md).

Every Gaussian draw goes through `randn_like` (pass `SeededNoise(seeds)` for per-seed images).
`sigma` reaches the denoiser as a [B] tensor of the working dtype. All arithmetic runs in
`dtype` (float32 by default; float64 on request, which also runs the networks in float64, whereas
the official relay sampler keeps only its state in float64).

Samplers run under torch.no_grad(). `callback`, if given, receives a dict after every step: step, sigma, sigma_next, x (the new
state; the final image after the last step) and denoised.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import torch

from .._validate import check_finite, check_finite_image, check_image
from ..relay import RelaySchedule, blur, upsample_nearest
from .grids import check_sigmas, karras_sigmas, relay_grid
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


def _grid(sigmas, num_steps, sigma_min, sigma_max, rho) -> torch.Tensor:
    return check_sigmas(sigmas) if sigmas is not None else karras_sigmas(num_steps, sigma_min, sigma_max, rho)


def _evaluator(denoise: Denoiser, labels, batch: int, dtype, device):
    def evaluate(x: torch.Tensor, sigma: float) -> torch.Tensor:
        s = torch.full((batch,), sigma, dtype=dtype, device=device)
        return denoise(x, s, labels).to(dtype)
    return evaluate


# --------------------------------------------------------------------------------------------
# Stage 1: EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2).


@torch.no_grad()
def edm_sampler(denoise: Denoiser, noise: torch.Tensor, labels: torch.Tensor | None = None, *,
                num_steps: int = 18,
                sigma_min: float = 0.002,
                sigma_max: float = 80.0,
                rho: float = 7.0,
                S_churn: float = 0.0,
                S_min: float = 0.0,
                S_max: float = float("inf"),
                S_noise: float = 1.0,
                solver: str = "heun",
                sigmas=None,
                randn_like: RandnLike = torch.randn_like,
                dtype: torch.dtype = torch.float32,
                callback: Callback | None = None) -> torch.Tensor:
    """Sample from pure noise: x₀ = σ₀·noise, then Heun steps down the grid and a final Euler
    step to σ = 0. Churn: where S_min ≤ σ_i ≤ S_max, σ is first raised to σ̂ = σ_i(1 + γ),
    γ = min(S_churn/n, √2 − 1), by adding fresh noise. Draws: one ε per churned step, in order.
    `sigmas` (descending) overrides the grid arguments. solver: "heun" (EDM's) or one of the
    other SOLVERS, deterministic exponential integrators (solvers.py; no churn) that return
    D(x; σ_min) after one evaluation per σ."""
    check_image(noise, 1, "noise")
    check_finite_image(noise, "noise")
    if not (0 <= S_churn < math.inf and 0 <= S_noise < math.inf):
        raise ValueError(f"S_churn and S_noise must be finite and >= 0, got {S_churn}, {S_noise}")
    grid = _grid(sigmas, num_steps, sigma_min, sigma_max, rho)
    check_solver(solver, len(grid) - 1)
    if solver != "heun" and S_churn > 0:
        raise ValueError(f"S_churn applies to solver='heun' only, got solver={solver!r}")
    x = _prepare(noise, labels, dtype) * float(grid[0])
    evaluate = _evaluator(denoise, labels, x.shape[0], dtype, x.device)
    if solver != "heun":
        return _edm_multistep(evaluate, x, grid, solver, 0.0, randn_like, callback)
    sig = grid.tolist() + [0.0]
    n = len(grid)
    for i in range(n):
        s_cur, s_next = sig[i], sig[i + 1]
        gamma = min(S_churn / n, math.sqrt(2) - 1) if S_min <= s_cur <= S_max else 0.0
        s_hat = s_cur * (1 + gamma)
        if gamma > 0:
            x = x + math.sqrt(s_hat ** 2 - s_cur ** 2) * S_noise * randn_like(x)
        den = evaluate(x, s_hat)
        d = (x - den) / s_hat
        x_next = x + (s_next - s_hat) * d
        if s_next > 0:                                   # 2nd-order correction (Heun)
            d2 = (x_next - evaluate(x_next, s_next)) / s_next
            x_next = x + (s_next - s_hat) * (d + d2) / 2
        x = x_next
        if callback is not None:
            callback(dict(step=i, sigma=s_hat, sigma_next=s_next, x=x, denoised=den))
    return x


# --------------------------------------------------------------------------------------------
# The DDIM-η Heun step shared by the "SDE Heun" sampler and the relay sampler (docs/solvers.md §3, §5).


def _ddim_heun(evaluate, x: torch.Tensor, sigmas: list[float], eta: float,
               fresh_noise: Callable[[torch.Tensor], torch.Tensor],
               reblur: Callable[[torch.Tensor, float], torch.Tensor] | None,
               corrector: str, callback: Callback | None) -> torch.Tensor:
    """Each step re-blurs the predicted clean image to the next level and re-noises it, keeping
    a fraction √(1−η²) of the predicted noise and adding fresh noise of weight η (E.2.3):

        x_{i+1} = A_{i+1} x̂₀ + γ (x_i − A_i x̂₀) + η σ_{i+1} ε̃,   γ = √(1−η²) σ_{i+1}/σ_i,

    first with x̂₀ = D(x_i; σ_i), then (Heun) with a corrected x̂₀:
      corrector="noise" (official, = EDM's Heun when A = I): the x̂₀ implied by the mean of the
        noise directions (x − D)/σ at x_i and at the predicted x̃_{i+1}. With a blur that changes
        between the two levels this is only first-order accurate (tests/test_sampler_oracle.py);
      corrector="denoised": the mean of D(x_i; σ_i) and D(x̃_{i+1}; σ_{i+1}) — second order
        whether or not A changes; same cost. The predictor's fresh noise is
    discarded and drawn again for the corrector (as the official code). The last step returns
    D(x; σ_last). Identical, term by term, to the paper's update in patch-DCT space (Eq. of §3.3),
    because the blur A is diagonal there; with A = I it is the DDIM-η / "SDE Heun" update.
    """
    def renoise(x0_hat: torch.Tensor, x_cur: torch.Tensor, s: float, s_next: float) -> torch.Tensor:
        gamma = math.sqrt(1 - eta ** 2) * s_next / s
        if reblur is None:
            y = torch.lerp(x0_hat, x_cur, gamma)
        else:
            y = reblur(x0_hat, s_next) + gamma * (x_cur - reblur(x0_hat, s))
        return y + (eta * s_next) * fresh_noise(x_cur) if eta > 0 else y

    for i, s in enumerate(sigmas):
        den = evaluate(x, s)
        if i == len(sigmas) - 1:
            if callback is not None:
                callback(dict(step=i, sigma=s, sigma_next=0.0, x=den, denoised=den))
            return den
        s_next = sigmas[i + 1]
        x_pred = renoise(den, x, s, s_next)
        den_pred = evaluate(x_pred, s_next)
        if corrector == "denoised":
            x0_bar = (den + den_pred) / 2
        else:
            x0_bar = x - (s / 2) * ((x - den) / s + (x_pred - den_pred) / s_next)
        x = renoise(x0_bar, x, s, s_next)
        if callback is not None:
            callback(dict(step=i, sigma=s, sigma_next=s_next, x=x, denoised=den))
    raise AssertionError("unreachable")


CORRECTORS = ("noise", "denoised")


def _check_eta(eta: float, name: str, corrector: str, solver: str) -> None:
    if not 0 <= eta <= 1:
        raise ValueError(f"{name} must be in [0, 1], got {eta}")
    if corrector not in CORRECTORS:
        raise ValueError(f"corrector must be one of {CORRECTORS}, got {corrector!r}")
    if corrector != "noise" and solver != "heun":
        raise ValueError(f"corrector applies to solver='heun' only, got solver={solver!r}")


def _edm_multistep(evaluate, x, grid: torch.Tensor, solver: str, eta: float, fresh_noise, callback):
    """A multistep solver on plain EDM (d ≡ 1: DPM-Solver++ in λ = −log σ)."""
    order, corrector = check_solver(solver, len(grid) - 1)
    flat = torch.zeros(len(grid), 1, 1, dtype=torch.float64)
    return multistep(evaluate, x, grid.tolist(), order, eta, flat, FrequencyBasis(1), fresh_noise, callback,
                     corrector)


@torch.no_grad()
def sde_heun_sampler(denoise: Denoiser, noise: torch.Tensor, labels: torch.Tensor | None = None, *,
                     num_steps: int = 120,
                     sigma_min: float = 0.002,
                     sigma_max: float = 80.0,
                     rho: float = 7.0,
                     sde_scale: float = 0.05,
                     corrector: str = "noise",
                     solver: str = "heun",
                     sigmas=None,
                     randn_like: RandnLike = torch.randn_like,
                     dtype: torch.dtype = torch.float32,
                     callback: Callback | None = None) -> torch.Tensor:
    """The DDIM-η Heun sampler of the official CelebA-HQ stage 1 (docs/solvers.md §3), from pure noise:
    x₀ = σ₀·noise, g = sde_scale·σ_{i+1} of fresh noise per step (η = sde_scale), returns the
    denoised image at σ_min. Draws: one ε for the predictor and one for the corrector per step.
    The other SOLVERS (exponential integrators, solvers.py) keep the same η: one evaluation and
    one draw per step."""
    check_image(noise, 1, "noise")
    check_finite_image(noise, "noise")
    _check_eta(sde_scale, "sde_scale", corrector, solver)
    grid = _grid(sigmas, num_steps, sigma_min, sigma_max, rho)
    check_solver(solver, len(grid) - 1)
    x = _prepare(noise, labels, dtype) * float(grid[0])
    evaluate = _evaluator(denoise, labels, x.shape[0], dtype, x.device)
    if solver != "heun":
        return _edm_multistep(evaluate, x, grid, solver, sde_scale, randn_like, callback)
    return _ddim_heun(evaluate, x, grid.tolist(), sde_scale, randn_like, None, corrector, callback)


# --------------------------------------------------------------------------------------------
# Stage 2+: the RDM stochastic relay sampler (paper Algorithm 1; docs/solvers.md §5).


def relay_sigmas(num_steps: int = 18, sigma_min: float = 0.008, sigma_max: float = 80.0,
                 rho: float = 7.0, truncation_sigma: float = 0.9) -> torch.Tensor:
    """The σ's of the official relay grid: the EDM grid with every σ ≥ truncation_sigma dropped."""
    return relay_grid("truncated", num_steps, sigma_min, sigma_max, rho, truncation_sigma)


@torch.no_grad()
def relay_sampler(denoise: Denoiser, x_up: torch.Tensor, labels: torch.Tensor | None = None, *,
                  schedule: RelaySchedule = RelaySchedule(),
                  num_steps: int = 18,
                  sigma_min: float = 0.008,
                  sigma_max: float = 80.0,
                  rho: float = 7.0,
                  truncation_sigma: float = 0.9,
                  truncation_t: float | None = None,
                  s_noise: float = 0.2,
                  s_block: float | None = None,
                  corrector: str = "noise",
                  solver: str = "heun",
                  sigma_grid: str = "truncated",
                  lambda_frequency: float = 0.0,
                  sigmas=None,
                  randn_like: RandnLike = torch.randn_like,
                  dtype: torch.dtype = torch.float32,
                  callback: Callback | None = None) -> torch.Tensor:
    """Continue the diffusion from a fully blurred image (e.g. a nearest-upsampled low-res sample).

    x_up: [B, C, H, W], H and W divisible by schedule.up_scale. Starts at σ₀ = the grid's first σ
    with x = x_up + σ₀·(ε + s_block·Block(ε')) and integrates down the grid with the patch blur of
    `schedule` — but its u(σ) uses `truncation_t` as L (default: the schedule's prob_length; the
    official CelebA-HQ recipe uses 1.05 against a training L of 0.89). s_noise is the paper's η,
    s_block its α (default: schedule.block_scale).

    solver: "heun" (official; `corrector` picks its second evaluation, see `_ddim_heun`) or one of
    the other SOLVERS, exponential integrators per patch-DCT frequency (solvers.py): one
    evaluation per σ, the same η and injected relay noise. sigma_grid: "truncated" (official,
    `num_steps` nominal), "rho" or "lambda" (`num_steps` σ's from truncation_sigma down, ρ-spaced
    or uniform in λ of frequency radius `lambda_frequency`); see `relay_grid`. `sigmas`
    (descending) overrides all grid arguments. The defaults are the official generate.py defaults.

    Draws: ε, ε' for the start; then per step (heun) ε, ε' for the predictor and ε, ε' for the
    corrector, or (other solvers) one ε, ε' (ε' skipped when s_block = 0, all skipped when η = 0).
    """
    check_image(x_up, schedule.up_scale, "x_up")
    check_finite_image(x_up, "x_up")
    _check_eta(s_noise, "s_noise", corrector, solver)
    if s_block is not None:
        check_finite(s_block, "s_block")
    if s_block is not None and s_block < 0:
        raise ValueError(f"s_block must be >= 0, got {s_block}")
    sch = schedule.for_sampling(truncation_t)
    if s_block is not None:
        sch = dataclasses.replace(sch, block_scale=s_block)
    sig = check_sigmas(sigmas) if sigmas is not None else relay_grid(
        sigma_grid, num_steps, sigma_min, sigma_max, rho, truncation_sigma, sch, lambda_frequency)
    order, pc = check_solver(solver, len(sig) - 1)
    x = _prepare(x_up, labels, dtype)
    noise = lambda like: sch.noise(like, randn_like)                       # noqa: E731
    x = x + float(sig[0]) * noise(x)
    evaluate = _evaluator(denoise, labels, x.shape[0], dtype, x.device)
    if order:
        log_factors = torch.log(sch.factors(sig))                          # [n, p, p]
        return multistep(evaluate, x, sig.tolist(), order, s_noise, log_factors,
                         FrequencyBasis(sch.up_scale), noise, callback, pc)
    blur_sigmas = {s: float(sch.blur_sigma_at(s)) for s in sig.tolist()}

    def reblur(x0: torch.Tensor, s: float) -> torch.Tensor:
        return blur(x0, blur_sigmas[s], sch.up_scale, sch.min_scale, check=False)

    return _ddim_heun(evaluate, x, sig.tolist(), s_noise, noise, reblur, corrector, callback)


def relay_stage(denoise: Denoiser, x_low: torch.Tensor, labels: torch.Tensor | None = None, *,
                schedule: RelaySchedule = RelaySchedule(), **sampler_kwargs) -> torch.Tensor:
    """Chain a relay stage after a lower-resolution one: nearest-upsample x_low by
    schedule.up_scale (every s×s patch constant = fully blurred, §3.2) and run `relay_sampler`."""
    check_image(x_low, 1, "x_low")
    return relay_sampler(denoise, upsample_nearest(x_low, schedule.up_scale), labels,
                         schedule=schedule, **sampler_kwargs)
