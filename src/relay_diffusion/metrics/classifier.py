"""A small classifier whose penultimate features stand in for Inception's where Inception weights
cannot be had (offline machines, grey 32×32 data): FID / precision-recall / KID on its features,
and an IS-like score on its logits. Trained by `rdm eval train-features` (`train_feature_net`);
two Fashion-MNIST nets of different design ship in `demo/` (`BUNDLED_FEATURE_NETS`,
`bundled_feature_net_dir`): "fmnist" (plain stages) and "fmnist-b" (residual stages, other
widths and seed), two independent feature spaces for checking that a ranking of models holds.

The numbers it gives are comparable only between runs that use the same feature net (its
config.json records how it was trained); they are not Inception FIDs.
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn

from .._validate import check_finite
from ..data.labels import MAX_CLASSES
from ..files import atomic_directory
from ..weights import load_weights, read_model_config, save_model_dir

FEATURE_NET_KIND = "feature-net"
MAX_WIDTH = 4096                         # channels of a stage: far above any useful feature net
BLOCKS = ("plain", "residual")           # FeatureNetConfig.block
# name → folder under demo/ of the feature nets that ship with the package (`--features NAME`)
BUNDLED_FEATURE_NETS = {"fmnist": "fmnist-features", "fmnist-b": "fmnist-features-b"}


def _whole(value, name: str, low: int, high: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        bound = f"in [{low}, {high:,}]" if high is not None else f">= {low}"
        raise ValueError(f"{name} must be a whole number {bound}, got {value!r}")


@dataclasses.dataclass
class FeatureNetConfig:
    resolution: int = 32                 # input size in pixels; other sizes are resized to it
    channels: int = 1                    # 1 (grey) or 3 (RGB); other inputs are converted
    num_classes: int = 10                # classifier outputs
    widths: tuple = (16, 32, 64, 128)    # channels per stage; each stage after the first halves H, W
    dropout: float = 0.2                 # before the linear classifier (training only)
    block: str = "plain"                 # stage design: plain = two conv-BN-ReLU; residual =
                                         # conv-BN-ReLU-conv-BN plus a skip (1x1 conv-BN where
                                         # the channels change), then ReLU

    def __post_init__(self):
        if self.block not in BLOCKS:
            raise ValueError(f"block must be one of {', '.join(map(repr, BLOCKS))}, got {self.block!r}")
        self.widths = tuple(self.widths)
        if not self.widths:
            raise ValueError("widths must list at least one stage's channels")
        for w in self.widths:
            _whole(w, "every width", 1, MAX_WIDTH)
        _whole(self.num_classes, "num_classes", 1, MAX_CLASSES)
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {self.channels!r}")
        smallest = 2 ** (len(self.widths) - 1)          # each stage after the first halves H, W
        _whole(self.resolution, "resolution", smallest, 16_384)
        check_finite(self.dropout, "dropout")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]


def _conv_bn(c_in: int, c_out: int, kernel: int = 3) -> list:
    return [nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False), nn.BatchNorm2d(c_out)]


class ResidualBlock(nn.Module):
    """relu(BN(conv3×3(relu(BN(conv3×3(x))))) + skip(x)); skip = identity, or 1×1 conv–BN when
    the channel count changes."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.main = nn.Sequential(*_conv_bn(c_in, c_out), nn.ReLU(inplace=True), *_conv_bn(c_out, c_out))
        self.skip = nn.Identity() if c_in == c_out else nn.Sequential(*_conv_bn(c_in, c_out, kernel=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.main(x) + self.skip(x))


class FeatureNet(nn.Module):
    """Stages (average-pooled ×½ between them) of two 3×3 conv–BN–ReLU layers (block "plain") or
    of one residual block (block "residual"), global average pool → features, dropout → linear
    → logits. Input: uint8-range images [N, C, H, W] (any dtype), the convention of the
    Inception extractor, so both plug into `rdm eval` alike."""

    def __init__(self, config: FeatureNetConfig):
        super().__init__()
        self.config = config
        layers, c_in = [], config.channels
        for i, width in enumerate(config.widths):
            if i > 0:
                layers.append(nn.AvgPool2d(2))
            if config.block == "residual":
                layers.append(ResidualBlock(c_in, width))
            else:                                   # "plain": the layout of the first bundled net
                for j in range(2):
                    layers += [*_conv_bn(width if j else c_in, width), nn.ReLU(inplace=True)]
            c_in = width
        self.body = nn.Sequential(*layers)
        self.dropout = nn.Dropout(config.dropout)
        self.head = nn.Linear(c_in, config.num_classes)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8-range [N, C, H, W] → [−1, 1] at the net's resolution and channel count."""
        x = images.to(torch.float32) / 127.5 - 1
        c = self.config.channels
        if x.shape[1] != c:
            if x.shape[1] == 3 and c == 1:        # ITU-R 601 luma, PIL's "L" conversion
                x = (x * x.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
            elif x.shape[1] == 1 and c == 3:
                x = x.expand(-1, 3, -1, -1)
            else:
                raise ValueError(f"feature net takes {c}-channel images, got {x.shape[1]} channels")
        r = self.config.resolution
        if x.shape[-2:] != (r, r):
            x = F.interpolate(x, size=(r, r), mode="bilinear", align_corners=False, antialias=True)
        return x

    def forward(self, images: torch.Tensor) -> dict:
        """{"pool": features [N, widths[-1]], "logits": [N, num_classes]}."""
        feats = self.body(self.prepare(images)).mean(dim=(2, 3))
        return {"pool": feats, "logits": self.head(self.dropout(feats))}


def save_feature_net(directory: str | Path, net: FeatureNet, info: dict, card: str | None = None) -> None:
    """Model directory: config.json (architecture + `info`: data, accuracy, training),
    model.safetensors and, given `card`, MODEL_CARD.md; written atomically (it replaces an
    older directory: callers check they may)."""
    config = {"kind": FEATURE_NET_KIND, "network": dataclasses.asdict(net.config), **info}
    with atomic_directory(directory) as tmp:
        save_model_dir(tmp, config, net)
        if card is not None:
            (Path(tmp) / "MODEL_CARD.md").write_text(card)


def is_feature_net_dir(directory: str | Path) -> bool:
    """True when `directory` holds a feature net (its config.json says so)."""
    try:
        return read_model_config(Path(directory)).get("kind") == FEATURE_NET_KIND
    except (ValueError, OSError):
        return False


def load_feature_net(directory: str | Path, device="cpu") -> FeatureNet:
    directory = Path(directory)
    cfg = read_model_config(directory)
    if cfg.get("kind") != FEATURE_NET_KIND:
        raise ValueError(f"{directory} is a {cfg.get('kind', 'diffusion')} model directory, not a feature net")
    net_cfg = dict(cfg["network"])
    net_cfg["widths"] = tuple(net_cfg["widths"])
    net = FeatureNet(FeatureNetConfig(**net_cfg))
    net.load_state_dict(load_weights(directory, which="model"))
    net.info = cfg
    return net.to(device).eval().requires_grad_(False)


def bundled_feature_net_dir(name: str = "fmnist") -> Path:
    """The folder of a bundled feature net, by its name in `BUNDLED_FEATURE_NETS`."""
    if name not in BUNDLED_FEATURE_NETS:
        raise ValueError(f"no bundled feature net {name!r}; bundled: {', '.join(BUNDLED_FEATURE_NETS)}")
    return Path(__file__).resolve().parent.parent / "demo" / BUNDLED_FEATURE_NETS[name]


@dataclasses.dataclass
class FeatureTrainConfig:
    epochs: int = 4                      # passes over the training set
    batch: int = 128                     # images per step
    lr: float = 3e-3                     # peak AdamW learning rate (cosine decay to 0)
    weight_decay: float = 5e-4           # AdamW weight decay
    shift: int = 2                       # random translation augmentation, ± pixels
    seed: int = 0                        # initialisation, shuffling and augmentation

    def __post_init__(self):
        _whole(self.epochs, "epochs", 1, 10_000)
        _whole(self.batch, "batch", 1)
        _whole(self.shift, "shift", 0, 64)
        _whole(self.seed, "seed", 0, 2 ** 63 - 1)
        for name in ("lr", "weight_decay"):
            check_finite(getattr(self, name), name)
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if self.weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay}")


def _shift(x: torch.Tensor, pixels: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to ±pixels (edge-replicated), one offset per image."""
    if pixels == 0:
        return x
    n, _, h, w = x.shape
    padded = F.pad(x, (pixels,) * 4, mode="replicate")
    dy, dx = (torch.randint(0, 2 * pixels + 1, (2, n), generator=gen)).tolist()
    return torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(n)])


@torch.no_grad()
def accuracy(net: FeatureNet, images: torch.Tensor, labels: torch.Tensor, batch: int = 500) -> float:
    net.eval()
    correct = sum(int((net(images[i:i + batch])["logits"].argmax(1) == labels[i:i + batch]).sum())
                  for i in range(0, len(images), batch))
    return correct / len(images)


def _check_labelled(images, labels, what: str) -> None:
    if not (torch.is_tensor(images) and images.dim() == 4 and len(images) > 0):
        raise ValueError(f"the {what} must be a non-empty [N, C, H, W] image tensor")
    if not (torch.is_tensor(labels) and labels.shape == (len(images),) and not labels.is_floating_point()
            and labels.dtype != torch.bool):
        raise ValueError(f"the {what} needs one integer label per image ({len(images)}), got "
                         f"{getattr(labels, 'dtype', type(labels).__name__)} of shape {tuple(getattr(labels, 'shape', ()))}")


def train_feature_net(train_images: torch.Tensor, train_labels: torch.Tensor,
                      test_images: Optional[torch.Tensor] = None, test_labels: Optional[torch.Tensor] = None,
                      net_config: Optional[FeatureNetConfig] = None,
                      train_config: FeatureTrainConfig = FeatureTrainConfig(),
                      log: Callable[[str], None] = print) -> tuple[FeatureNet, dict]:
    """Train a classifier on uint8 images [N, C, H, W] with labels [N] (cross-entropy, AdamW,
    cosine schedule). Returns the net (eval mode) and an info dict (accuracies, timing)."""
    _check_labelled(train_images, train_labels, "training set")
    if train_labels.min() < 0:
        raise ValueError("the training set needs class labels for every image")
    num_classes = int(train_labels.max()) + 1
    if net_config is None:
        net_config = FeatureNetConfig(resolution=train_images.shape[-1], channels=train_images.shape[1],
                                      num_classes=num_classes)
    if num_classes > net_config.num_classes:
        raise ValueError(f"labels go up to {num_classes - 1}, the net has {net_config.num_classes} classes")
    if (test_images is None) != (test_labels is None):
        raise ValueError("give both test_images and test_labels, or neither")
    if test_images is not None:
        _check_labelled(test_images, test_labels, "test set")
        if test_labels.min() < 0 or test_labels.max() >= net_config.num_classes:
            raise ValueError(f"test labels must be in [0, {net_config.num_classes}) like the training set's, got "
                             f"{int(test_labels.min())}…{int(test_labels.max())}")
    tc = train_config
    torch.manual_seed(tc.seed)
    gen = torch.Generator().manual_seed(tc.seed)
    net = FeatureNet(net_config)
    opt = torch.optim.AdamW(net.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)
    n = len(train_images)
    steps = tc.epochs * math.ceil(n / tc.batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=tc.lr, total_steps=steps, pct_start=0.15)
    start = time.perf_counter()
    for epoch in range(tc.epochs):
        net.train()
        order = torch.randperm(n, generator=gen)
        total = 0.0
        for i in range(0, n, tc.batch):
            idx = order[i:i + tc.batch]
            x = _shift(train_images[idx].float(), tc.shift, gen)
            loss = F.cross_entropy(net(x)["logits"], train_labels[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
        msg = f"epoch {epoch + 1}/{tc.epochs}: loss {total / n:.4f}"
        if test_images is not None:
            msg += f", test accuracy {accuracy(net, test_images, test_labels):.4f}"
        log(msg + f" ({time.perf_counter() - start:.0f} s)")
    net.eval().requires_grad_(False)
    info = {"train_config": dataclasses.asdict(tc), "train_images": n,
            "train_accuracy": accuracy(net, train_images, train_labels),
            "seconds": round(time.perf_counter() - start, 1)}
    if test_images is not None:
        info["test_images"] = len(test_images)
        info["test_accuracy"] = accuracy(net, test_images, test_labels)
    return net, info
