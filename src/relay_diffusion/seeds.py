"""Per-sample random streams: sample b of every draw comes from its own generator seeded with
seeds[b], so an image depends only on its seed — not on batch size, batch position or the
number of processes (as in EDM's generate.py)."""

from __future__ import annotations

import bisect
import numbers
import re
import zlib
from pathlib import Path
from typing import Sequence

import torch

SEED_LIMIT = 1 << 32               # user seeds are 32-bit (as EDM's): 0 … 4,294,967,295


def check_seed(seed) -> int:
    """`seed` as an int after checking it is a whole number in [0, 2³²); TypeError / ValueError
    otherwise (bools, floats and float tensors are refused rather than truncated)."""
    if torch.is_tensor(seed):
        if seed.numel() != 1 or seed.is_floating_point() or seed.is_complex() or seed.dtype == torch.bool:
            raise TypeError(f"a seed must be an integer, got a {seed.dtype} tensor of shape {tuple(seed.shape)}")
        seed = seed.item()
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"a seed must be an integer, got {seed!r} ({type(seed).__name__})")
    seed = int(seed)
    if not 0 <= seed < SEED_LIMIT:
        raise ValueError(f"seed {seed} is outside 0…{SEED_LIMIT - 1:,} (seeds are 32-bit)")
    return seed


def check_seeds(seeds: Sequence[int]) -> list[int]:
    """A list of checked seeds (check_seed); at least one."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
        raise TypeError(f"seeds must be a sequence of integers (e.g. range(16)), got {seeds!r}")
    seeds = [check_seed(s) for s in seeds]
    if not seeds:
        raise ValueError("need at least one seed")
    return seeds


class SeedList(Sequence):
    """The seeds of a list like '0-63,100,200-202', kept as ranges: len() and indexing without
    building the list, so '0-999999999' costs nothing until its seeds are used."""

    def __init__(self, text: str):
        self.text = str(text)
        self.ranges = []
        for part in self.text.split(","):
            part = part.strip()
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise ValueError(f"bad seed list {self.text!r}: use e.g. 0-63,100")
            lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
            if hi < lo:
                raise ValueError(f"bad seed range {part!r}: the end is below the start")
            if hi >= SEED_LIMIT:
                raise ValueError(f"seed {hi} is outside 0…{SEED_LIMIT - 1:,} (seeds are 32-bit)")
            self.ranges.append(range(lo, hi + 1))
        self._starts = [0]
        for r in self.ranges:
            self._starts.append(self._starts[-1] + len(r))

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(f"seed index {i} out of range for {n} seeds")
        i %= n
        k = bisect.bisect_right(self._starts, i) - 1
        return self.ranges[k][i - self._starts[k]]

    def __eq__(self, other) -> bool:
        return list(self) == list(other) if len(self) == len(other) else False

    def __repr__(self) -> str:
        return f"SeedList({self.text!r})"


def parse_seeds(text: str) -> SeedList:
    """'0-63,100,200-202' → the seeds 0, …, 63, 100, 200, 201, 202 (lazily; see SeedList)."""
    return SeedList(text)


class SeededNoise:
    """A `randn_like` whose row b is drawn from a generator seeded with seeds[b] (mod 2³²: the
    training loop's mixed 64-bit seeds land here; user seeds are checked to be below 2³²)."""

    def __init__(self, seeds: Sequence[int], device: str | torch.device = "cpu"):
        seeds = [int(s) for s in seeds]
        if not seeds:
            raise ValueError("need at least one seed")
        self.seeds = seeds
        self.device = torch.device(device)
        self.generators = [torch.Generator(self.device).manual_seed(s % (1 << 32)) for s in seeds]

    @classmethod
    def from_generators(cls, generators) -> "SeededNoise":
        """The same stream over given torch.Generators, one per row (diffusers' `generator` list)."""
        noise = cls.__new__(cls)
        noise.generators = list(generators)
        if not noise.generators:
            raise ValueError("need at least one generator")
        noise.seeds, noise.device = None, noise.generators[0].device
        return noise

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


def seed_from_name(name: str) -> int:
    """Seed of an input image in super-resolution: the number in names like 000123.png (when
    below 2³²), else a CRC32 of the name's stem — stable across runs and machines."""
    stem = Path(name).stem
    return int(stem) if stem.isdigit() and int(stem) < SEED_LIMIT else zlib.crc32(stem.encode())
