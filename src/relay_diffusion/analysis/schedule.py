"""How much of a patch's detail the relay forward process still holds at a given σ (paper §3.3;
docs/analysis.md): blur factors α_kl(σ), the surviving non-DC energy, and curves for plotting.

Stage 2 starts from the nearest-upsampled low-resolution image, i.e. a patch-constant image with
*no* non-DC energy, at the sampler's first σ₀. The network was trained on blur(x; σ₀), which keeps
α_kl(σ₀)² of the energy of every AC patch frequency (k, l) ≠ (0, 0). The fraction reported here is
the size of that approximation (docs/method.md §3.6: CelebA-HQ keeps α01 = 0.377 at σ₀ = 0.92191).
"""

from __future__ import annotations

import dataclasses
from typing import Iterable

import torch

from ..relay import RelaySchedule, patch_dct
from ..sampling.settings import RelaySamplerSettings
from ..sampling.solvers import nfe
from .snr import to_unit_range


def relay_step_table(schedule: RelaySchedule, settings: RelaySamplerSettings) -> dict:
    """What a relay stage will do, step by step: σ, the sampler's u and σ_B, and the two lowest
    AC blur factors α(0,1), α(1,1) — plus the start σ₀ and the number of network evaluations."""
    sch = schedule.for_sampling(settings.prob_length)
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


def start_sigma(schedule: RelaySchedule, settings: RelaySamplerSettings) -> float:
    """σ₀: the first σ of the sampler's grid (the official one: of the truncated Karras grid)."""
    return float(settings.sigmas(schedule)[0])


def surviving_energy(factors: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Fraction of non-DC energy that blurring keeps: Σ_AC w α² / Σ_AC w over the s×s patch
    frequencies. weights=None assumes a white patch spectrum (w = 1: the mean of α² over AC).
    factors: [..., s, s]; returns [...]. In [0, 1] since 0 < α ≤ 1."""
    s = factors.shape[-1]
    w = torch.ones(s, s, dtype=torch.float64) if weights is None else weights.to(torch.float64)
    w = w.clone()
    w[0, 0] = 0.0                                                   # DC is kept exactly (α00 = 1)
    if s == 1 or w.sum() <= 0:
        return torch.zeros(factors.shape[:-2], dtype=torch.float64)
    return (factors.to(torch.float64) ** 2 * w).sum(dim=(-2, -1)) / w.sum()


def patch_spectrum(batches: Iterable[torch.Tensor], p: int) -> torch.Tensor:
    """Mean squared patch-DCT coefficient [p, p] of a dataset (uint8 or [−1, 1] batches), over
    images, channels and patches: the weights of a data-weighted `surviving_energy`."""
    total, count = torch.zeros(p, p, dtype=torch.float64), 0
    for batch in batches:
        x = to_unit_range(batch)
        b, c, h, w = x.shape
        if h % p or w % p:
            raise ValueError(f"the patch size {p} must divide the image size {h}x{w}")
        u = patch_dct(x, p).reshape(b, c, h // p, p, w // p, p)
        total += u.pow(2).sum(dim=(0, 1, 2, 4))
        count += b * c * (h // p) * (w // p)
    if count == 0:
        raise ValueError("no images to analyse")
    return total / count


def start_report(schedule: RelaySchedule, settings: RelaySamplerSettings,
                 weights: torch.Tensor | None = None) -> dict:
    """The state the sampler assumes at σ₀ (with its own L = settings.prob_length, docs/method.md §3.4): u, σ_B, the
    s×s blur factors and the surviving non-DC energy (white, and data-weighted when given)."""
    sch = schedule.for_sampling(settings.prob_length)
    sigma0 = start_sigma(schedule, settings)
    factors = sch.factors(sigma0)
    report = dict(sigma_start=sigma0, u=float(sch.u(sigma0)), blur_sigma=float(sch.blur_sigma_at(sigma0)),
                  factors=factors.tolist(), nondc_energy_white=float(surviving_energy(factors)))
    if weights is not None:
        report["nondc_energy_data"] = float(surviving_energy(factors, weights))
    return report


def schedule_curves(schedule: RelaySchedule, settings: RelaySamplerSettings, num: int = 200,
                    weights: torch.Tensor | None = None) -> dict:
    """σ, σ_B, α_kl and the surviving non-DC energy along u ∈ (0, min(1, 1/L)) with the sampler's
    mapping (L = settings.prob_length), plus the sampler's kept σ's — the data of the schedule plot."""
    sch = schedule.for_sampling(settings.prob_length)
    u_max = min(1.0, 0.999 / sch.prob_length)
    u = torch.linspace(1e-3, u_max, num, dtype=torch.float64)
    sigma = sch.sigma(u)
    factors = sch.factors(sigma)
    curves = dict(u=u, sigma=sigma, blur_sigma=sch.blur_sigma(u), factors=factors,
                  nondc_white=surviving_energy(factors), steps=settings.sigmas(schedule).to(torch.float64))
    if weights is not None:
        curves["nondc_data"] = surviving_energy(factors, weights)
    return curves
