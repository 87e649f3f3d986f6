"""Per-sample random streams: sample b of every draw comes from its own generator seeded with
seeds[b], so an image depends only on its seed — not on batch size, batch position or the
number of processes (as in EDM's generate.py)."""

from __future__ import annotations

from typing import Sequence

import torch


class SeededNoise:
    """A `randn_like` whose row b is drawn from a generator seeded with seeds[b] (mod 2³²)."""

    def __init__(self, seeds: Sequence[int], device: str | torch.device = "cpu"):
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("need at least one seed")
        self.seeds = seeds
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(s % (1 << 32)) for s in seeds]

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A [len(seeds), *shape] standard-normal tensor. Drawn in float32 and cast, so that a
        float64 run sees the same noise as a float32 run of the same seed."""
        return torch.stack([torch.randn(shape, generator=g, dtype=torch.float32, device=self.device)
                            for g in self.generators]).to(dtype)

    def rand(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A [len(seeds), *shape] tensor of U[0, 1) draws, row b from generator b."""
        return torch.stack([torch.rand(shape, generator=g, dtype=dtype, device=self.device)
                            for g in self.generators])

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != len(self.generators):
            raise ValueError(f"tensor has batch {x.shape[0]} but there are {len(self.generators)} seeds")
        return self.randn(*x.shape[1:], dtype=x.dtype).to(x.device)

    __call__ = randn_like
