"""Random images with the dataset interface the trainer reads (`training.loop.prepare(cfg,
dataset)`): for throughput measurements and device checks that need no files."""

from __future__ import annotations

import torch


class SyntheticDataset:
    """n random uint8 images [channels, resolution, resolution] in memory (seeded: the same every
    time), labelled i mod classes (unlabelled when classes = 0)."""

    def __init__(self, n, resolution, channels, classes):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (n, channels, resolution, resolution), generator=g, dtype=torch.uint8)
        self.labels = torch.arange(n) % max(classes, 1)
        self.resolution, self.num_channels = resolution, channels
        self.label_dim, self.has_labels = classes, classes > 0

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.images[i], int(self.labels[i]) if self.has_labels else -1
