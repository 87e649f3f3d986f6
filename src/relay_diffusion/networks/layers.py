"""Building blocks of the ADM U-Net (docs/networks.md), laid out so that parameter and buffer names,
shapes and initial values agree with EDM's re-implementation of ADM (NVlabs/edm,
training/networks.py). Independent code: only the facts (names, shapes, init, order) are shared.

Every layer casts its parameters to the input dtype, so a float32 network can be run on half
precision activations (as EDM does with use_fp16) without changing the stored weights.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def uniform_init(shape: Sequence[int], fan_in: int, gain: float) -> torch.Tensor:
    """U(-b, b) with b = gain·sqrt(3/fan_in); gain sqrt(1/3) gives b = 1/sqrt(fan_in), ADM's scale.

    Random numbers are drawn even when gain is 0: EDM draws them for its zero-initialised
    layers too, so drawing here keeps the random stream (and thus every later layer's initial
    weights under a fixed seed) identical to EDM's."""
    return math.sqrt(3 / fan_in) * (torch.rand(*shape) * 2 - 1) * gain


def normal_init(shape: Sequence[int], fan_in: int, gain: float) -> torch.Tensor:
    """N(0, gain²/fan_in)."""
    return math.sqrt(1 / fan_in) * torch.randn(*shape) * gain


ADM_GAIN = math.sqrt(1 / 3)  # uniform bound 1/sqrt(fan_in) for weights and biases alike


class Linear(nn.Module):
    """y = x·Wᵀ + b with W: [out, in] drawn uniformly, or normally if `normal` (weight and bias
    both scaled by `gain`)."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, gain: float = ADM_GAIN,
                 normal: bool = False):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        init = normal_init if normal else uniform_init
        self.weight = nn.Parameter(init([out_features, in_features], in_features, gain))
        self.bias = nn.Parameter(uniform_init([out_features], in_features, gain)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


def resample_filter_2d(taps: Sequence[float] = (1, 1)) -> torch.Tensor:
    """Separable low-pass filter [1, 1, k, k] normalised to sum 1 ([1,1] → a 2×2 box of 0.25)."""
    f = torch.as_tensor(taps, dtype=torch.float32)
    return (torch.outer(f, f) / f.sum() ** 2)[None, None]


def resample(x: torch.Tensor, filt: torch.Tensor, mode: str, box: bool = False) -> torch.Tensor:
    """Depthwise ×2 resampling with `filt`: 'down' filters then keeps every second pixel, 'up'
    is the transposed conv with the filter ×4 (gain 1). With `box` (filt is the 2×2 box of 0.25)
    the same results come from average pooling and nearest-neighbour upsampling, which are
    exact for the box (up: bit-identical; down: the four-term sum in another order) and far
    cheaper than a depthwise convolution — 10× under bf16 autocast on CPU (docs/speed.md)."""
    if box:
        return F.avg_pool2d(x, 2) if mode == "down" else F.interpolate(x, scale_factor=2.0, mode="nearest")
    c = x.shape[1]
    filt = filt.to(x.dtype)
    pad = (filt.shape[-1] - 1) // 2
    if mode == "down":
        return F.conv2d(x, filt.tile(c, 1, 1, 1), groups=c, stride=2, padding=pad)
    return F.conv_transpose2d(x, (filt * 4).tile(c, 1, 1, 1), groups=c, stride=2, padding=pad)


class ResampleFilter(nn.Module):
    """Holder of the persistent `resample_filter` buffer of EDM's state dicts. `box_filter` (may
    `resample` take the box path?) is kept true to the buffer's values on every load_state_dict,
    so a checkpoint with another filter is still resampled exactly."""

    def register_resample_filter(self) -> None:
        self.register_buffer("resample_filter", resample_filter_2d())
        self.box_filter = True

    def _load_from_state_dict(self, *args, **kwargs):
        super()._load_from_state_dict(*args, **kwargs)
        filt = getattr(self, "resample_filter", None)
        self.box_filter = filt is not None and filt.shape == (1, 1, 2, 2) and bool((filt == 0.25).all())


class Resample(ResampleFilter):
    """Parameter-free ×2 resampling; used as the residual skip of an up/down block whose channel
    count does not change. Holds only the `resample_filter` buffer, as in EDM's state dicts."""

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        self.register_resample_filter()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return resample(x, self.resample_filter, self.mode, self.box_filter)


class Conv2d(ResampleFilter):
    """'Same'-padded k×k convolution, optionally preceded by ×2 resampling (mode 'up'/'down');
    weight [out, in, k, k] and bias drawn uniformly with fan_in = in·k²."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int, gain: float = ADM_GAIN,
                 mode: str | None = None):
        super().__init__()
        self.in_channels, self.out_channels, self.mode = in_channels, out_channels, mode
        fan_in = in_channels * kernel * kernel
        self.weight = nn.Parameter(uniform_init([out_channels, in_channels, kernel, kernel], fan_in, gain))
        self.bias = nn.Parameter(uniform_init([out_channels], fan_in, gain))
        if mode is not None:  # the filter is part of EDM's state dict, so it is a (persistent) buffer
            self.register_resample_filter()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.mode is not None:
            x = resample(x, self.resample_filter, self.mode, self.box_filter)
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype), padding=self.weight.shape[-1] // 2)


class GroupNorm(nn.Module):
    """GroupNorm with 32 groups, but never fewer than 4 channels per group (EDM's rule)."""

    def __init__(self, num_channels: int, num_groups: int = 32, min_channels_per_group: int = 4,
                 eps: float = 1e-5):
        super().__init__()
        self.num_groups = min(num_groups, num_channels // min_channels_per_group)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x, self.num_groups, self.weight.to(x.dtype), self.bias.to(x.dtype), self.eps)


def attention(qkv: torch.Tensor, num_heads: int) -> torch.Tensor:
    """Multi-head self-attention over the pixels of qkv: [N, 3C, H, W] → [N, C, H, W].

    Channel layout (EDM's, hence ADM's checkpoints): head-major, and inside a head the channels
    interleave q, k, v, i.e. channel (h·C/heads + c)·3 + {0: q, 1: k, 2: v}. Softmax of
    q·k/sqrt(C/heads) over the keys; the output keeps the head-major layout.
    Half-precision inputs are computed in float32 (as EDM's AttentionOp does); float64 stays float64.
    """
    n, c3, h, w = qkv.shape
    head_dim = c3 // (3 * num_heads)
    q, k, v = qkv.reshape(n, num_heads, head_dim, 3, h * w).unbind(3)       # each [N, heads, d, L]
    dtype = torch.promote_types(qkv.dtype, torch.float32)
    q, k, v = (t.transpose(-1, -2).to(dtype) for t in (q, k, v))            # [N, heads, L, d]
    out = F.scaled_dot_product_attention(q, k, v)                           # default scale 1/sqrt(d)
    return out.transpose(-1, -2).reshape(n, num_heads * head_dim, h, w).to(qkv.dtype)


class ResBlock(nn.Module):
    """ADM residual block with adaptive GroupNorm (scale/shift from the embedding), optional ×2
    up/down resampling and optional self-attention. Attribute names equal EDM's UNetBlock."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, mode: str | None = None,
                 num_heads: int = 0, dropout: float = 0.0):
        super().__init__()
        self.in_channels, self.out_channels = in_channels, out_channels
        self.num_heads, self.dropout = num_heads, dropout
        self.norm0 = GroupNorm(in_channels)
        self.conv0 = Conv2d(in_channels, out_channels, 3, mode=mode)
        self.affine = Linear(emb_channels, 2 * out_channels)       # → (scale, shift)
        self.norm1 = GroupNorm(out_channels)
        self.conv1 = Conv2d(out_channels, out_channels, 3, gain=0)  # zero-init: block starts as identity
        self.skip = None
        if in_channels != out_channels:  # 1×1 projection (after resampling, if any)
            self.skip = Conv2d(in_channels, out_channels, 1, mode=mode)
        elif mode is not None:
            self.skip = Resample(mode)
        if num_heads:
            self.norm2 = GroupNorm(out_channels)
            self.qkv = Conv2d(out_channels, 3 * out_channels, 1)
            self.proj = Conv2d(out_channels, out_channels, 1, gain=0)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        # Without autograd, the element-wise tail writes into the block's own fresh tensors (the
        # same arithmetic, bit for bit) instead of allocating one per operation; never into x.
        inplace = not torch.is_grad_enabled()
        h = self.conv0(F.silu(self.norm0(x), inplace=inplace))
        scale, shift = self.affine(emb)[:, :, None, None].to(h.dtype).chunk(2, dim=1)
        h = self.norm1(h)
        h = torch.addcmul(shift, h, scale + 1, out=h) if inplace else torch.addcmul(shift, h, scale + 1)
        h = F.silu(h, inplace=inplace)                                # norm·(1 + scale) + shift, SiLU
        h = self.conv1(F.dropout(h, p=self.dropout, training=self.training))
        skip = x if self.skip is None else self.skip(x)
        x = h.add_(skip) if inplace else h + skip
        if self.num_heads:
            a = self.proj(attention(self.qkv(self.norm2(x)), self.num_heads))
            x = x.add_(a) if inplace else x + a
        return x


class PositionalEmbedding(nn.Module):
    """Sinusoidal embedding [cos(x·f_i), sin(x·f_i)] with f_i = max_positions^(−i/(C/2)), i < C/2."""

    def __init__(self, num_channels: int, max_positions: int = 10000):
        super().__init__()
        self.num_channels, self.max_positions = num_channels, max_positions

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.num_channels // 2
        freqs = (1 / self.max_positions) ** (torch.arange(half, dtype=torch.float32, device=x.device) / half)
        x = torch.outer(x, freqs.to(x.dtype))
        return torch.cat([x.cos(), x.sin()], dim=1)
