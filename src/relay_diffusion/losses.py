"""Training objectives (paper §3.3): EDM's loss for a base stage, the relay (blurring) loss for an
up-sampling stage. Both return the per-pixel weighted squared error [B, C, H, W]; the training
loop sums it per sample and divides by the per-GPU batch (EDM's convention — not the official
RDM code's hard-coded 32/256, docs/method.md §4.4).

`denoise` is a preconditioned denoiser D(x, sigma, labels, **kwargs), e.g. `EDMPrecond`.
`generator`: a torch.Generator, None (global RNG), or a `SeededNoise` for per-sample draws.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ._validate import check_image
from .precond import edm_loss_weight
from .relay import RelaySchedule
from .seeds import SeededNoise

Denoiser = Callable[..., torch.Tensor]


class _Draws:
    """Random draws for one loss call: from one torch.Generator (or the global RNG), or per
    sample from a `SeededNoise` (then sample b's draws depend only on its seed — how the training
    loop makes multi-process runs equal single-process ones)."""

    def __init__(self, source: torch.Generator | SeededNoise | None, device: torch.device):
        self.source, self.device = source, device

    def randn_like(self, t: torch.Tensor) -> torch.Tensor:
        if isinstance(self.source, SeededNoise):
            return self.source.randn_like(t)
        return torch.randn(t.shape, generator=self.source, dtype=t.dtype, device=t.device)

    def rand(self, n: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if isinstance(self.source, SeededNoise):
            if len(self.source.seeds) != n:
                raise ValueError(f"{len(self.source.seeds)} seeds for a batch of {n}")
            return self.source.rand(dtype=dtype).to(self.device)
        return torch.rand(n, generator=self.source, dtype=dtype, device=self.device)


def drop_labels(labels: torch.Tensor | None, p: float,
                generator: torch.Generator | SeededNoise | None = None) -> torch.Tensor | None:
    """Label dropout for classifier-free guidance: zero each sample's label with probability p.
    The zero vector is the "unconditional" label that guidance uses at sampling time."""
    if labels is None or p == 0:
        return labels
    if not 0 <= p <= 1:
        raise ValueError(f"label dropout must be in [0, 1], got {p}")
    keep = _Draws(generator, labels.device).rand(labels.shape[0]) >= p
    return labels * keep.to(labels.dtype).reshape(-1, *([1] * (labels.dim() - 1)))


def _check_batch(images: torch.Tensor, labels: torch.Tensor | None, p: int = 1) -> None:
    check_image(images, p, "images")
    if labels is not None and labels.shape[0] != images.shape[0]:
        raise ValueError(f"labels has {labels.shape[0]} rows for {images.shape[0]} images")


@dataclasses.dataclass
class EDMLoss:
    """Stage-1 loss: ln σ ~ N(P_mean, P_std²), λ(σ)·‖D(y + σε; σ) − y‖² (EDM Eq. 2, 8).
    Draw order per call: σ (one normal per sample), ε, then the label-dropout uniforms."""

    P_mean: float = -1.2         # mean of ln σ
    P_std: float = 1.2           # std of ln σ
    sigma_data: float = 0.5      # σ_d of images in [−1, 1]
    label_dropout: float = 0.0   # probability of training a sample unconditionally (for CFG)

    def __call__(self, denoise: Denoiser, images: torch.Tensor, labels: torch.Tensor | None = None,
                 generator: torch.Generator | SeededNoise | None = None, **net_kwargs) -> torch.Tensor:
        _check_batch(images, labels)
        draws = _Draws(generator, images.device)
        n = draws.randn_like(images.new_empty(images.shape[0], 1, 1, 1))
        sigma = (n * self.P_std + self.P_mean).exp()
        noisy = images + sigma * draws.randn_like(images)
        labels = drop_labels(labels, self.label_dropout, generator)
        denoised = denoise(noisy, sigma.flatten(), labels, **net_kwargs)
        return edm_loss_weight(sigma, self.sigma_data) * (denoised - images) ** 2


@dataclasses.dataclass
class RelayLoss:
    """Stage-2 (relay) loss (docs/method.md §4.3): u ~ U(0, 1), σ = σ(u), x = blur(y; σ_B(u)) + σ·(ε + α·Block),
    λ(σ)·‖D(x; σ) − y‖² — the target is the clean, un-blurred image.

    u is clamped below at u(train_sigma_min), so the smallest trained σ is exactly 7.5e-3. (The
    official code multiplies by L where it must divide and reaches 0.00712 for L = 0.93, docs/method.md §3.5.)
    Draw order per call: u (one uniform per sample, float64), ε, ε' (if α > 0), label dropout.
    """

    schedule: RelaySchedule = dataclasses.field(default_factory=RelaySchedule)
    sigma_data: float = 0.5         # σ_d of images in [−1, 1]
    train_sigma_min: float = 7.5e-3  # smallest trained σ (official: truncate_sigma, "stabilises training")
    max_weight: float = 1e5         # clamp of λ(σ) = 4 + 1/σ² at σ_d = 0.5; inactive above σ ≈ 0.0032
    label_dropout: float = 0.0      # probability of training a sample unconditionally (for CFG)

    def __post_init__(self):
        if self.schedule.prob_length >= 1:
            raise ValueError(f"training needs prob_length < 1 (σ is finite only below u·L = 1), "
                             f"got {self.schedule.prob_length}")
        if not 0 < self.train_sigma_min < self.schedule.sigma_top:
            raise ValueError(f"train_sigma_min must be in (0, sigma_top={self.schedule.sigma_top:.4g}), "
                             f"got {self.train_sigma_min}")
        if self.max_weight <= 0:
            raise ValueError(f"max_weight must be > 0, got {self.max_weight}")

    @property
    def u_min(self) -> float:
        return float(self.schedule.u(self.train_sigma_min))

    def __call__(self, denoise: Denoiser, images: torch.Tensor, labels: torch.Tensor | None = None,
                 generator: torch.Generator | SeededNoise | None = None, **net_kwargs) -> torch.Tensor:
        sch = self.schedule
        _check_batch(images, labels, sch.up_scale)
        draws = _Draws(generator, images.device)
        u = draws.rand(images.shape[0], torch.float64).clamp_(min=self.u_min)
        sigma64 = sch.sigma(u, check=False)                      # u ∈ [u_min, 1): valid
        sigma = sigma64.to(images.dtype).reshape(-1, 1, 1, 1)
        noisy = sch.corrupt(images, sigma64, draws.randn_like, u=u, check=False)
        labels = drop_labels(labels, self.label_dropout, generator)
        denoised = denoise(noisy, sigma.flatten(), labels, **net_kwargs)
        weight = edm_loss_weight(sigma, self.sigma_data).clamp(max=self.max_weight)
        return weight * (denoised - images) ** 2
