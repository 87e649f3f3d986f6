"""Images for the analyses: uint8 batches of a dataset zip/folder, an .npz or a built-in source."""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from ..data.convert import BUILTIN_SOURCES, open_source
from ..data.loader import ImageDataset


def image_batches(data: str, max_images: int | None, batch_size: int = 256) -> Iterator[torch.Tensor]:
    """uint8 [B, C, R, R] batches of `data`: a folder or EDM zip (ImageDataset; `max_images`
    picks EDM's seeded random subset), or an .npz / "fashion-mnist" / "twemoji" (the data
    layer's sources; the first `max_images`). Every image must be square and of one size."""
    if data in BUILTIN_SOURCES or str(data).lower().endswith(".npz"):
        src = open_source(data)
        count = len(src) if max_images is None else min(len(src), max_images)
        load = lambda i: torch.from_numpy(np.ascontiguousarray(src.load(i).transpose(2, 0, 1)))  # noqa: E731
        close = src.close
    else:
        ds = ImageDataset(data, max_size=max_images, use_labels=False)
        count, load, close = len(ds), (lambda i: ds[i][0]), ds.close
    if count == 0:
        raise ValueError(f"{data}: no images")
    try:
        shape = None
        for start in range(0, count, batch_size):
            batch = [load(i) for i in range(start, min(count, start + batch_size))]
            for img in batch:
                shape = shape or tuple(img.shape)
                if tuple(img.shape) != shape or shape[1] != shape[2]:
                    raise ValueError(f"{data}: images must be square and of one size; found "
                                     f"{'x'.join(map(str, img.shape))} after {'x'.join(map(str, shape))} (CxHxW)")
            yield torch.stack(batch)
    finally:
        close()


def first_image_shape(data: str) -> tuple[int, int, int]:
    """(C, H, W) of the first image of `data`."""
    return tuple(next(image_batches(data, 1, 1)).shape[1:])
