"""Which images each process trains on at each step — a pure function of (seed, step), so a
resumed run and a run on another number of processes see exactly the same samples."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers (splitmix64 rounds): distinct inputs → unrelated streams."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
        h = h * 0x94D049BB133111EB & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 29
    return h & 0x7FFFFFFFFFFFFFFF


class BatchSchedule:
    """Global batch of step k = positions [k·B, (k+1)·B) of an endless stream that visits the
    dataset (size n, flips included) in a fresh seeded permutation every epoch."""

    def __init__(self, n: int, batch: int, seed: int):
        self.n, self.batch, self.seed = n, batch, seed
        self._epoch, self._perm = None, None

    def _permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(mix_seed(self.seed, 0x5EED, epoch))
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm

    def indices(self, step: int) -> list[int]:
        pos = torch.arange(step * self.batch, (step + 1) * self.batch)
        out = torch.empty_like(pos)
        for epoch in torch.unique(pos // self.n).tolist():
            sel = pos // self.n == epoch
            out[sel] = self._permutation(epoch)[pos[sel] % self.n]
        return out.tolist()


CACHE_LIMIT = 4 * 2 ** 30                 # bytes of uint8 images a run may hold in memory


class ImageSource:
    """Images of a dataset as float tensors in [−1, 1] at the training resolution.

    Index i ≥ len(dataset) is the mirror image of i − len(dataset) (x-flip doubling, as EDM).
    With `cache`, the whole dataset is held in memory as uint8 when that takes at most
    CACHE_LIMIT bytes; else (or without `cache`) items are read on demand.
    A training resolution below the dataset's is made by box averaging (the patch mean — the
    state a relay stage starts from, so a base model trained on it matches the relay chain).
    """

    def __init__(self, dataset, resolution: int, xflip: bool, cache: bool):
        self.dataset, self.xflip = dataset, xflip
        self.base = len(dataset)
        self.factor = dataset.resolution // resolution
        self.images = self.labels = None
        if cache and self.base * dataset.num_channels * dataset.resolution ** 2 <= CACHE_LIMIT:
            items = [dataset[i] for i in range(self.base)]
            self.images = torch.stack([torch.as_tensor(im) for im, _ in items])
            self.labels = torch.tensor([int(lb) for _, lb in items])

    def __len__(self) -> int:
        return self.base * (2 if self.xflip else 1)

    def fetch(self, indices: list[int], device) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.tensor(indices)
        src = idx % self.base
        if self.images is not None:
            images, labels = self.images[src], self.labels[src]
        else:
            items = [self.dataset[int(i)] for i in src]
            images = torch.stack([torch.as_tensor(im) for im, _ in items])
            labels = torch.tensor([int(lb) for _, lb in items])
        images = images.to(device).to(torch.float32).div_(127.5).sub_(1)
        flip = (idx >= self.base).to(device)
        if flip.any():
            images = torch.where(flip[:, None, None, None], images.flip(-1), images)
        if self.factor > 1:
            images = F.avg_pool2d(images, self.factor)
        return images, labels.to(device)
