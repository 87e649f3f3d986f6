"""Noise-level grids: EDM's ρ-spaced σ grid (Karras et al. 2022, Eq. 5) and its truncation for a
relay stage, which runs only the low-noise end of the trajectory (docs/solvers.md §4)."""

from __future__ import annotations

import math
from typing import Callable

import torch


# the most σ's a grid may have: far beyond any published sampler (the official ones use ≤ 256)
MAX_STEPS = 10_000


def check_num_steps(num_steps) -> None:
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or not 2 <= num_steps <= MAX_STEPS:
        raise ValueError(f"num_steps must be an integer from 2 to {MAX_STEPS:,}, got {num_steps!r}")


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i < n, float64, descending."""
    check_num_steps(num_steps)
    if not 0 < sigma_min < sigma_max < float("inf"):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
    if not 0 < rho < float("inf"):
        raise ValueError(f"rho must be finite and > 0, got {rho}")
    i = torch.arange(num_steps, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + i / (num_steps - 1) * (b - a)) ** rho


def truncate_sigmas(sigmas: torch.Tensor, truncation_sigma: float) -> torch.Tensor:
    """Drop every σ ≥ truncation_sigma (the official rule); the first kept σ is the relay start σ₀."""
    lo, hi = float(sigmas.min()), float(sigmas.max())
    if not lo < hi:
        raise ValueError(f"the σ grid is constant ({lo:.4g}); nothing to truncate")
    if not lo < truncation_sigma <= hi:
        raise ValueError(f"truncation_sigma={truncation_sigma} is outside the σ grid ({lo:.4g}, {hi:.4g}]: "
                         "it would keep no step or drop none")
    return sigmas[sigmas < truncation_sigma]


def check_sigmas(sigmas) -> torch.Tensor:
    """An explicit grid: a 1-D, strictly decreasing sequence of finite positive σ's."""
    s = torch.as_tensor(sigmas, dtype=torch.float64).detach().cpu()
    if s.dim() != 1 or s.numel() < 1:
        raise ValueError(f"sigmas must be a non-empty 1-D sequence, got shape {tuple(s.shape)}")
    if not bool(((s > 0) & torch.isfinite(s)).all()):
        raise ValueError(f"sigmas must be finite and > 0, got {s.tolist()}")
    if s.numel() > 1 and not bool((s[1:] < s[:-1]).all()):
        raise ValueError("sigmas must be strictly decreasing")
    return s


# --------------------------------------------------------------------------------------------
# Relay grids (docs/solvers.md §4). The official one truncates a nominal EDM grid; for few steps
# it is better to place exactly `num_steps` σ's between the start and σ_min.

RELAY_GRIDS = ("truncated", "rho", "lambda")


def relay_grid(kind: str, num_steps: int, sigma_min: float, sigma_max: float, rho: float,
               truncation_sigma: float, schedule=None, lambda_frequency: float = 0.0) -> torch.Tensor:
    """The σ's a relay stage runs (float64, descending):

    truncated: the EDM grid of `num_steps` nominal points on [σ_min, σ_max], every σ ≥
      truncation_sigma dropped (the official rule; the first kept σ is the start σ₀);
    rho: `num_steps` ρ-spaced σ's from σ₀ = truncation_sigma down to σ_min (sigma_max unused);
    lambda: `num_steps` σ's from truncation_sigma to σ_min, uniform in λ = log d(σ) − log σ of the
      patch-DCT frequency of radius `lambda_frequency` (0: the DC, i.e. uniform in log σ) under
      `schedule` (a RelaySchedule with the sampler's L).
    """
    if kind not in RELAY_GRIDS:
        raise ValueError(f"sigma_grid must be one of {RELAY_GRIDS}, got {kind!r}")
    if kind == "truncated":
        return truncate_sigmas(karras_sigmas(num_steps, sigma_min, sigma_max, rho), truncation_sigma)
    if not 0 < sigma_min < truncation_sigma < float("inf"):
        raise ValueError(f"sigma_grid {kind!r} runs from truncation_sigma down to sigma_min: need "
                         f"0 < sigma_min < truncation_sigma < inf, got {sigma_min}, {truncation_sigma}")
    if kind == "rho":
        return karras_sigmas(num_steps, sigma_min, truncation_sigma, rho)
    if schedule is None:
        raise ValueError("sigma_grid 'lambda' needs the relay schedule")
    top = math.sqrt(2) * (schedule.up_scale - 1)
    if not 0 <= lambda_frequency <= top:
        raise ValueError(f"lambda_frequency must be in [0, {top:.3g}] (a patch-DCT frequency radius for "
                         f"up_scale {schedule.up_scale}), got {lambda_frequency}")
    return lambda_sigmas(num_steps, sigma_min, truncation_sigma,
                         lambda s: torch.log(schedule.frequency_factor(s, lambda_frequency)))


def lambda_sigmas(num_steps: int, sigma_min: float, sigma_start: float,
                  log_factor: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """`num_steps` σ's from sigma_start to sigma_min, equally spaced in λ(σ) = log d(σ) − log σ
    (strictly decreasing in σ for a non-increasing blur factor d; d ≡ 1 gives log σ)."""
    ends = karras_sigmas(num_steps, sigma_min, sigma_start, 1.0)[[0, -1]]      # validates
    if log_factor is None:
        return torch.exp(torch.linspace(math.log(sigma_start), math.log(sigma_min), num_steps,
                                        dtype=torch.float64))

    def lam(log_sigma: torch.Tensor) -> torch.Tensor:
        return log_factor(torch.exp(log_sigma)) - log_sigma

    lo_hi = torch.log(ends)
    target = torch.linspace(float(lam(lo_hi[0])), float(lam(lo_hi[1])), num_steps, dtype=torch.float64)
    lo = torch.full_like(target, float(lo_hi[1]))                   # log σ_min: λ largest
    hi = torch.full_like(target, float(lo_hi[0]))
    for _ in range(80):                                             # bisection on log σ
        mid = (lo + hi) / 2
        above = lam(mid) > target                                   # σ still too small
        lo, hi = torch.where(above, mid, lo), torch.where(above, hi, mid)
    out = torch.exp((lo + hi) / 2)
    out[0], out[-1] = sigma_start, sigma_min
    return out
