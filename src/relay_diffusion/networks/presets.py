"""Network configurations: the four RDM paper models (docs/networks.md#presets) and tiny CPU models for tests and
smoke runs. A config is a frozen, JSON-friendly dataclass; `build()` makes the module."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

from torch import nn

from .adm import ADMUNet


@dataclasses.dataclass(frozen=True)
class NetworkConfig:
    """Arguments of the network; defaults are EDM's ADM ones (64×64 RGB, unconditional)."""

    arch: str = "adm"                                 # only "adm" (EDM's DhariwalUNet layout)
    img_resolution: int = 64                          # height = width [pixels]
    in_channels: int = 3                              # image channels in
    out_channels: int = 3                             # image channels out
    label_dim: int = 0                                # number of classes; 0 = unconditional
    augment_dim: int = 0                              # augmentation-label length (EDM pipe: 9); 0 = none
    model_channels: int = 192                         # base channel count
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)      # channels per level, × model_channels
    channel_mult_emb: int = 4                         # embedding width, × model_channels
    num_blocks: int = 3                               # residual blocks per encoder level
    attn_resolutions: tuple[int, ...] = (32, 16, 8)   # resolutions [pixels] with self-attention
    dropout: float = 0.10                             # dropout probability inside the blocks
    guidance_embed: bool = False                      # takes a guidance scale w (distilled guidance,
                                                      # docs/distillation.md): embedding added to σ's

    def __post_init__(self):
        if self.arch != "adm":
            raise ValueError(f"unknown arch {self.arch!r}; only 'adm' is implemented")
        for name in ("channel_mult", "attn_resolutions"):
            value = getattr(self, name)
            if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or \
                    not all(_is_int(v) and v > 0 for v in value):
                raise ValueError(f"network {name} must be a list of positive integers, got {value!r}")
            # lists (e.g. from JSON) become tuples so that configs stay hashable and compare equal
            object.__setattr__(self, name, tuple(int(v) for v in value))
        if not self.channel_mult:
            raise ValueError("network channel_mult must name at least one level")
        for name, low in (("img_resolution", 1), ("in_channels", 1), ("out_channels", 1), ("label_dim", 0),
                          ("augment_dim", 0), ("model_channels", 1), ("channel_mult_emb", 1), ("num_blocks", 1)):
            value = getattr(self, name)
            if not _is_int(value) or value < low:
                raise ValueError(f"network {name} must be an integer >= {low}, got {value!r}")
        levels = len(self.channel_mult) - 1
        if self.img_resolution % (1 << levels):
            raise ValueError(f"network img_resolution {self.img_resolution} must be divisible by 2^{levels} "
                             f"({len(self.channel_mult)} levels of channel_mult)")
        if isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout <= 1:
            raise ValueError(f"network dropout must be in [0, 1], got {self.dropout!r}")
        if not isinstance(self.guidance_embed, bool):
            raise ValueError(f"network guidance_embed must be true or false, got {self.guidance_embed!r}")

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["channel_mult"], d["attn_resolutions"] = list(self.channel_mult), list(self.attn_resolutions)
        if not self.guidance_embed:                   # configs without it read and write as before
            del d["guidance_embed"]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetworkConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown NetworkConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**d)

    def with_data(self, resolution: int, channels: int, label_dim: int) -> NetworkConfig:
        """Copy with the image size, channel count (in = out) and number of classes of a dataset."""
        return dataclasses.replace(self, img_resolution=resolution, in_channels=channels,
                                   out_channels=channels, label_dim=label_dim)

    def build(self) -> nn.Module:
        kwargs = self.to_dict()
        del kwargs["arch"]
        return ADMUNet(**kwargs)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars (buffers such as the resampling filters are not counted)."""
    return sum(p.numel() for p in module.parameters())


_STAGE1 = dict(img_resolution=64, model_channels=192, channel_mult=(1, 2, 3, 4), num_blocks=3,
               attn_resolutions=(32, 16, 8))
_STAGE2 = dict(img_resolution=256, model_channels=256, channel_mult=(1, 1, 2, 2, 4, 4), num_blocks=2,
               attn_resolutions=(32, 16, 8))
_TINY = dict(channel_mult_emb=4, dropout=0.0)

NETWORK_PRESETS: dict[str, NetworkConfig] = {
    # Paper models (docs/networks.md#presets; paper: "295M" / "553M"). The ImageNet and CelebA-HQ counts differ
    # by the class embedding (1000 × emb 768 / 1024, absent when unconditional) and the augment
    # embedding (9 × 192 / 256, present with EDM's augmentation pipe).
    # 295.9 M: class-conditional, no augmentation.
    "imagenet64-stage1": NetworkConfig(label_dim=1000, augment_dim=0, dropout=0.1, **_STAGE1),
    # 553.8 M: the official ImageNet stage-2 run used EDM's default augmentation (augment_dim 9).
    "imagenet256-stage2": NetworkConfig(label_dim=1000, augment_dim=9, dropout=0.1, **_STAGE2),
    # 295.1 M: unconditional, augmentation on.
    "celebahq64-stage1": NetworkConfig(label_dim=0, augment_dim=9, dropout=0.15, **_STAGE1),
    # 552.8 M: unconditional, augmentation on.
    "celebahq256-stage2": NetworkConfig(label_dim=0, augment_dim=9, dropout=0.2, **_STAGE2),
    # Tiny CPU models (< 1 M parameters), sized for training on 2 CPU cores (fwd + bwd of a batch
    # of 128, fp32: tiny-8 ≈ 2,200 img/s, tiny-16 ≈ 600, tiny-32 ≈ 270, tiny-64 ≈ 30). Attention
    # needs >= 64 channels (heads = channels // 64), so it sits at the 64-channel level.
    # Channels/labels/resolution come from the dataset via `with_data`.
    "tiny-8": NetworkConfig(img_resolution=8, model_channels=32, channel_mult=(1, 2), num_blocks=1,
                            attn_resolutions=(4,), **_TINY),
    "tiny-16": NetworkConfig(img_resolution=16, model_channels=32, channel_mult=(1, 2), num_blocks=1,
                             attn_resolutions=(8,), **_TINY),
    "tiny-32": NetworkConfig(img_resolution=32, model_channels=16, channel_mult=(1, 2, 4), num_blocks=1,
                             attn_resolutions=(8,), **_TINY),
    "tiny-64": NetworkConfig(img_resolution=64, model_channels=16, channel_mult=(1, 2, 4, 4), num_blocks=1,
                             attn_resolutions=(8,), **_TINY),
}
