"""Classifier-free guidance as a denoiser wrapper (Ho & Salimans 2022):
D_w(x; σ, y) = D(x; σ, ∅) + w·(D(x; σ, y) − D(x; σ, ∅)) = w·D(x; σ, y) − (w−1)·D(x; σ, ∅).
The unconditional label ∅ is the zero vector, as in training with label dropout."""

from __future__ import annotations

from typing import Callable

import torch

Denoiser = Callable[..., torch.Tensor]


def _doubled(v):
    if torch.is_tensor(v) and v.dim() > 0:
        return torch.cat([v, v])
    return v


def classifier_free_guidance(denoise: Denoiser, guidance_scale: float) -> Denoiser:
    """Wrap `denoise` so every call evaluates the conditional and unconditional branches in one
    batch of 2B and mixes them. guidance_scale = 1 returns `denoise` itself."""
    if not guidance_scale >= 0:
        raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")
    if guidance_scale == 1:
        return denoise

    def guided(x: torch.Tensor, sigma, labels: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        if labels is None:
            raise ValueError("classifier-free guidance needs class labels")
        both = denoise(torch.cat([x, x]), _doubled(sigma), torch.cat([labels, torch.zeros_like(labels)]),
                       **{k: _doubled(v) for k, v in kwargs.items()})
        cond, uncond = both.chunk(2)
        return torch.lerp(uncond, cond, guidance_scale)

    return guided
