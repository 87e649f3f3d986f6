"""Image tensors ↔ pixels: [−1, 1] floats to uint8 (the official rounding) and PIL, PNG grids,
the official colour edits, and input images read as a tensor batch."""

from __future__ import annotations

import os

import torch

from .files import atomic_write

COLOUR_EDITS = ("contrast", "brightness", "color")   # PIL ImageEnhance, in the official CelebA-HQ order


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float images → uint8, the official rounding: clip(x·127.5 + 128), as the official sampling scripts save images."""
    return (images.detach().float() * 127.5 + 128).clamp(0, 255).to(torch.uint8)


def to_pil(image_u8: torch.Tensor):
    """One uint8 [C, H, W] image (C = 1 or 3) → a PIL image ("L" or "RGB")."""
    from PIL import Image

    a = image_u8.detach().cpu().permute(1, 2, 0).numpy()
    return Image.fromarray(a[:, :, 0], "L") if a.shape[2] == 1 else Image.fromarray(a, "RGB")


def save_image_grid(images: torch.Tensor, path: str | os.PathLike, ncol: int, pad: int = 1) -> None:
    """Save [N, C, H, W] images in [-1, 1] as one PNG grid with `ncol` columns (atomically)."""
    n, c, h, w = images.shape
    nrow = -(-n // ncol)
    grid = torch.full((c, nrow * (h + pad) + pad, ncol * (w + pad) + pad), 255, dtype=torch.uint8)
    pix = to_uint8(images.cpu())
    for i in range(n):
        r, q = divmod(i, ncol)
        grid[:, pad + r * (h + pad):pad + r * (h + pad) + h, pad + q * (w + pad):pad + q * (w + pad) + w] = pix[i]
    img = to_pil(grid)
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))


def enhance(images_u8: torch.Tensor, edits: dict) -> list:
    """PIL images after explicit colour edits (`COLOUR_EDITS` name → ImageEnhance factor, 1 =
    unchanged): the official reproduction scripts' brightness/contrast/colour post-processing."""
    from PIL import ImageEnhance

    pil = []
    for u8 in images_u8:
        im = to_pil(u8)
        for name in COLOUR_EDITS:
            if edits.get(name) is not None:
                im = getattr(ImageEnhance, name.capitalize())(im).enhance(edits[name])
        pil.append(im)
    return pil


def read_images(files, channels: int, size: int, what: str = "the model") -> torch.Tensor:
    """Image files as one float tensor [N, channels, size, size] in [−1, 1] (the data layer's
    mode rules: 16-bit and float files are refused, not clipped; a wrong size names `what`)."""
    from .data.images import read_image

    images = [torch.tensor(read_image(f, channels, size, what)) for f in files]
    return torch.stack(images).permute(0, 3, 1, 2).float() / 127.5 - 1
