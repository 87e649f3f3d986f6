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


def classifier_free_guidance(denoise: Denoiser, guidance_scale: float | torch.Tensor) -> Denoiser:
    """Wrap `denoise` so every call evaluates the conditional and unconditional branches in one
    batch of 2B and mixes them. guidance_scale is one w for every sample, or a [B] tensor of one w
    per sample (distillation's teacher, docs/distillation.md Eq. D6). A scalar 1 returns `denoise`
    itself."""
    per_sample = torch.is_tensor(guidance_scale) and guidance_scale.dim() > 0
    if per_sample:
        if guidance_scale.dim() != 1 or not bool((guidance_scale >= 0).all()):
            raise ValueError("a per-sample guidance_scale must be a 1-D tensor of scales >= 0")
    else:
        guidance_scale = float(guidance_scale)
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
        if per_sample:
            if guidance_scale.shape[0] != x.shape[0]:
                raise ValueError(f"{guidance_scale.shape[0]} guidance scales for a batch of {x.shape[0]}")
            w = guidance_scale.to(cond).reshape(-1, *[1] * (cond.dim() - 1))
            return torch.lerp(uncond, cond, w)
        return torch.lerp(uncond, cond, guidance_scale)

    return guided
