"""Noise-level grids: EDM's ρ-spaced σ grid (Karras et al. 2022, Eq. 5) and its truncation for a
relay stage, which runs only the low-noise end of the trajectory (spec §C.6)."""

from __future__ import annotations

import torch


def karras_sigmas(num_steps: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """σ_i = (σ_max^{1/ρ} + i/(n−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i < n, float64, descending."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
        raise ValueError(f"num_steps must be an integer >= 2, got {num_steps!r}")
    if not 0 < sigma_min < sigma_max < float("inf"):
        raise ValueError(f"need 0 < sigma_min < sigma_max < inf, got {sigma_min}, {sigma_max}")
    if not rho > 0:
        raise ValueError(f"rho must be > 0, got {rho}")
    i = torch.arange(num_steps, dtype=torch.float64)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + i / (num_steps - 1) * (b - a)) ** rho


def truncate_sigmas(sigmas: torch.Tensor, truncation_sigma: float) -> torch.Tensor:
    """Drop every σ ≥ truncation_sigma (the official rule); the first kept σ is the relay start σ₀."""
    lo, hi = float(sigmas.min()), float(sigmas.max())
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
