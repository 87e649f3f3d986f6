"""Input checks shared by the public API: fail early with a ValueError that says what is wrong."""

from __future__ import annotations

import torch


def check_patch(p, name: str = "p") -> None:
    if isinstance(p, bool) or not isinstance(p, int) or p < 1:
        raise ValueError(f"{name} must be a positive integer, got {p!r}")


def check_image(x, p: int, name: str = "x") -> None:
    """x must be a [B, C, H, W] tensor whose H and W are divisible by the patch size p."""
    check_patch(p)
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be 4-D [B, C, H, W], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}")
    h, w = x.shape[-2:]
    if h % p or w % p:
        raise ValueError(f"patch size {p} must divide the image size, got H×W = {h}×{w}")


def check_positive(sigma, name: str = "sigma") -> torch.Tensor:
    """Return sigma as a float64 tensor after checking that every entry is finite and > 0."""
    t = sigma if torch.is_tensor(sigma) else torch.as_tensor(sigma, dtype=torch.float64)
    t = t.detach().to(torch.float64)
    if t.numel() == 0 or not bool(((t > 0) & torch.isfinite(t)).all()):
        raise ValueError(f"{name} must be finite and > 0, got {sigma}")
    return t


def check_blur_sigma(blur_sigma) -> None:
    """Every σ_B must be finite and >= 0 (NaN and inf would turn the whole image into NaN)."""
    t = torch.as_tensor(blur_sigma, dtype=torch.float64) if not torch.is_tensor(blur_sigma) else blur_sigma
    if not bool(((t >= 0) & torch.isfinite(t)).all()):
        raise ValueError(f"blur_sigma must be finite and >= 0, got {blur_sigma}")


def check_finite(value, name: str) -> None:
    """A number (or tensor) setting must be finite: NaN slips through every comparison."""
    t = torch.as_tensor(value, dtype=torch.float64) if not torch.is_tensor(value) else value
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be finite, got {value}")


def check_finite_image(x: torch.Tensor, name: str = "x") -> None:
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or inf values")
