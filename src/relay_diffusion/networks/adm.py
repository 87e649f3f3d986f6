"""ADM U-Net (Dhariwal & Nichol 2021) as re-implemented by EDM (Karras et al. 2022, `DhariwalUNet`)
and used by RDM for both stages (docs/networks.md).

The module tree is arranged so that `state_dict()` keys, shapes and initial values are those of
EDM's DhariwalUNet: EDM/RDM checkpoints load with `load_state_dict` unchanged.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Conv2d, GroupNorm, Linear, PositionalEmbedding, ResBlock

CHANNELS_PER_HEAD = 64  # EDM's ADM: heads = channels // 64


class ADMUNet(nn.Module):
    """F(x, c_noise, class_labels, augment_labels) → tensor shaped like x (the raw network that
    `EDMPrecond` wraps).

    Layout: embedding MLP; encoder = 3×3 stem, then per resolution level a ×2 down block (except
    at the top) and `num_blocks` residual blocks; two middle blocks (the first with attention);
    decoder mirrors it with an up block per level and `num_blocks + 1` blocks that each take one
    encoder output (skip connection) concatenated on the channel axis; GroupNorm → SiLU →
    zero-initialised 3×3 conv. At initialisation the output is exactly zero.

    Label dropout for classifier-free guidance is NOT done here (EDM's network does it inside
    forward): the project's losses apply it via `relay_diffusion.losses.drop_labels`, so that
    the random draws are in one place. `label_dropout` is accepted only so that EDM-style configs
    load; any value other than 0 raises ValueError.
    """

    def __init__(self,
                 img_resolution: int,                            # input/output height = width [pixels]
                 in_channels: int,                               # image channels at the input
                 out_channels: int,                              # image channels at the output
                 label_dim: int = 0,                             # number of classes; 0 = unconditional
                 augment_dim: int = 0,                           # augmentation-label length; 0 = none
                 model_channels: int = 192,                      # base channel count
                 channel_mult: Sequence[int] = (1, 2, 3, 4),     # channels per level, × model_channels
                 channel_mult_emb: int = 4,                      # embedding width, × model_channels
                 num_blocks: int = 3,                            # residual blocks per encoder level
                 attn_resolutions: Sequence[int] = (32, 16, 8),  # resolutions [pixels] with self-attention
                 dropout: float = 0.10,                          # dropout probability inside the blocks
                 label_dropout: float = 0,                       # must be 0: see the docstring
                 guidance_embed: bool = False,                   # takes a guidance scale w (distilled CFG)
                 ):
        super().__init__()
        channel_mult, attn_resolutions = list(channel_mult), list(attn_resolutions)
        _check_arguments(img_resolution, in_channels, out_channels, label_dim, augment_dim, model_channels,
                         channel_mult, channel_mult_emb, num_blocks, dropout, label_dropout)
        self.img_resolution, self.in_channels, self.out_channels = img_resolution, in_channels, out_channels
        self.label_dim, self.augment_dim = label_dim, augment_dim
        self._size_factor = 2 ** (len(channel_mult) - 1)
        emb_channels = model_channels * channel_mult_emb

        def block(cin: int, cout: int, res: int, attn: bool = False, mode: str | None = None) -> ResBlock:
            return ResBlock(cin, cout, emb_channels, mode=mode, num_heads=_num_heads(cout, res, attn),
                            dropout=dropout)

        # Embedding of σ (and augmentation labels, class labels). Construction order = EDM's, so
        # that a fixed seed draws the same initial weights.
        self.map_noise = PositionalEmbedding(model_channels)
        self.map_augment = None
        if augment_dim:  # zero-init: augmentation labels start with no effect
            self.map_augment = Linear(augment_dim, model_channels, bias=False, gain=0)
        self.map_layer0 = Linear(model_channels, emb_channels)
        self.map_layer1 = Linear(emb_channels, emb_channels)
        self.map_label = None
        if label_dim:  # one-hot labels → N(0, 1) rows: kaiming-normal (std 1/sqrt(fan_in)) × sqrt(label_dim)
            self.map_label = Linear(label_dim, emb_channels, bias=False, gain=math.sqrt(label_dim), normal=True)

        # Encoder. Keys "<res>x<res>_conv|_down|_block<i>", as in EDM.
        self.enc = nn.ModuleDict()
        levels = [(img_resolution >> level, model_channels * mult) for level, mult in enumerate(channel_mult)]
        cout = model_channels * channel_mult[0]
        self.enc[_key(img_resolution, "conv")] = Conv2d(in_channels, cout, 3)
        for level, (res, ch) in enumerate(levels):
            if level > 0:
                self.enc[_key(res, "down")] = block(cout, cout, res, mode="down")
            for i in range(num_blocks):
                self.enc[_key(res, f"block{i}")] = block(cout, ch, res, res in attn_resolutions)
                cout = ch
        skip_channels = [layer.out_channels for layer in self.enc.values()]

        # Decoder: middle blocks "in0" (always with attention) and "in1" at the lowest resolution,
        # then per level an up block (except at the bottom) and num_blocks + 1 skip-taking blocks.
        self.dec = nn.ModuleDict()
        for level, (res, ch) in reversed(list(enumerate(levels))):
            if level == len(levels) - 1:
                self.dec[_key(res, "in0")] = block(cout, cout, res, attn=True)
                self.dec[_key(res, "in1")] = block(cout, cout, res)
            else:
                self.dec[_key(res, "up")] = block(cout, cout, res, mode="up")
            for i in range(num_blocks + 1):
                self.dec[_key(res, f"block{i}")] = block(cout + skip_channels.pop(), ch, res,
                                                         res in attn_resolutions)
                cout = ch
        self.out_norm = GroupNorm(cout)
        self.out_conv = Conv2d(cout, out_channels, 3, gain=0)  # zero-init → initial output is 0
        # Guidance scale w of a guidance-distilled student (docs/distillation.md §6): its sinusoidal
        # embedding through a zero-initialised layer, added like the class labels' — a student made
        # from a teacher starts as the teacher. Built last: the other weights draw as without it.
        self.map_guidance = Linear(model_channels, emb_channels, gain=0) if guidance_embed else None

    def forward(self, x: torch.Tensor, noise_labels: torch.Tensor, class_labels: torch.Tensor | None = None,
                augment_labels: torch.Tensor | None = None, guidance: torch.Tensor | None = None) -> torch.Tensor:
        """x: [N, in_channels, H, W]; noise_labels: [N] (EDM's c_noise = ln(σ)/4); class_labels:
        [N, label_dim] or None (= the all-zero "no label" vector, whose embedding is exactly zero
        because map_label has no bias); augment_labels: [N, augment_dim] or None (= no augmentation);
        guidance: [N] guidance scales of a guidance-distilled network (None = 1)."""
        self._check_inputs(x, noise_labels, class_labels, augment_labels)
        emb = self.map_noise(noise_labels)
        if self.map_augment is not None and augment_labels is not None:
            emb = emb + self.map_augment(augment_labels.to(emb.dtype))
        emb = self.map_layer1(F.silu(self.map_layer0(emb)))
        if self.map_label is not None and class_labels is not None:
            emb = emb + self.map_label(class_labels.to(emb.dtype))
        if self.map_guidance is not None:                     # w = 1 (no guidance) unless given
            w = guidance.to(emb.dtype).reshape(-1) if guidance is not None else emb.new_ones(emb.shape[0])
            emb = emb + self.map_guidance(self.map_noise(w.expand(emb.shape[0]) - 1))
        elif guidance is not None:
            raise ValueError("this network takes no guidance scale (it was not distilled with guidance)")
        emb = F.silu(emb)

        skips = []
        for name, layer in self.enc.items():
            x = layer(x) if name.endswith("_conv") else layer(x, emb)
            skips.append(x)
        for name, layer in self.dec.items():
            if "_block" in name:  # only these blocks take an encoder output (EDM: channel-count test)
                x = torch.cat([x, skips.pop()], dim=1)
            x = layer(x, emb)
        return self.out_conv(F.silu(self.out_norm(x), inplace=not torch.is_grad_enabled()))

    def _check_inputs(self, x, noise_labels, class_labels, augment_labels) -> None:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"x must be [N, {self.in_channels}, H, W], got {tuple(x.shape)}")
        n = x.shape[0]
        if x.shape[2] % self._size_factor or x.shape[3] % self._size_factor:  # skips must line up
            raise ValueError(f"H and W must be divisible by {self._size_factor}, got {tuple(x.shape[2:])}")
        if noise_labels.shape != (n,):
            raise ValueError(f"noise_labels must have shape ({n},), got {tuple(noise_labels.shape)}")
        for name, labels, dim in (("class_labels", class_labels, self.label_dim),
                                  ("augment_labels", augment_labels, self.augment_dim)):
            if labels is not None and dim and tuple(labels.shape) != (n, dim):
                raise ValueError(f"{name} must have shape ({n}, {dim}), got {tuple(labels.shape)}")


def _key(res: int, what: str) -> str:
    return f"{res}x{res}_{what}"


def _num_heads(channels: int, res: int, attn: bool) -> int:
    """heads = channels // 64 (EDM). EDM silently drops attention when that is 0 and fails in
    forward when the heads do not divide the channels; both are rejected here instead."""
    if not attn:
        return 0
    heads = channels // CHANNELS_PER_HEAD
    if heads == 0 or channels % heads:
        raise ValueError(f"attention at {res}x{res} needs channels >= {CHANNELS_PER_HEAD} and divisible by "
                         f"channels // {CHANNELS_PER_HEAD}; got {channels} channels (drop {res} from "
                         f"attn_resolutions or raise model_channels/channel_mult)")
    return heads


def _check_arguments(img_resolution, in_channels, out_channels, label_dim, augment_dim, model_channels,
                     channel_mult, channel_mult_emb, num_blocks, dropout, label_dropout) -> None:
    def positive(name, v, allow_zero=False):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if allow_zero else 1):
            raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer, got {v!r}")

    for name, v in (("img_resolution", img_resolution), ("in_channels", in_channels),
                    ("out_channels", out_channels), ("model_channels", model_channels),
                    ("channel_mult_emb", channel_mult_emb), ("num_blocks", num_blocks)):
        positive(name, v)
    positive("label_dim", label_dim, allow_zero=True)
    positive("augment_dim", augment_dim, allow_zero=True)
    if not channel_mult:
        raise ValueError("channel_mult must have at least one level")
    for m in channel_mult:
        positive("channel_mult entries", m)
        if model_channels * m < 4:  # GroupNorm needs >= 4 channels per group
            raise ValueError(f"every level needs >= 4 channels, got model_channels*{m} = {model_channels * m}")
    if model_channels % 2:
        raise ValueError(f"model_channels must be even (sin/cos embedding halves), got {model_channels}")
    factor = 2 ** (len(channel_mult) - 1)
    if img_resolution % factor:
        raise ValueError(f"img_resolution {img_resolution} must be divisible by 2**(levels-1) = {factor} "
                         f"for {len(channel_mult)} levels")
    if not 0 <= dropout < 1:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    if label_dropout != 0:
        raise ValueError(f"label_dropout={label_dropout}: the network does not drop labels; set the loss's "
                         f"label_dropout instead (relay_diffusion.losses.drop_labels)")
