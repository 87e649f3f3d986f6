"""Transcriptions of the official algorithms, independent of relay_diffusion's fast paths: the
reference implementations the benchmarks time against and the equivalence tests compare with
(tests/test_sampler_equivalences.py, tests/test_block_noise.py). Patch DCT by FFT as in the
official code's torch-dct path; block noise as the s² circular rolls of its definition.
"""

from __future__ import annotations

import math

import torch

from relay_diffusion import blur_factors


def _dct_fft(x: torch.Tensor) -> torch.Tensor:
    """Orthonormal DCT-II along the last axis via one FFT of the even/odd re-ordering (Makhoul)."""
    n = x.shape[-1]
    v = torch.cat([x[..., ::2], x[..., 1::2].flip(-1)], dim=-1)
    spec = torch.fft.fft(v, dim=-1)
    k = torch.arange(n, dtype=x.dtype, device=x.device)
    w = torch.polar(torch.ones_like(k), -math.pi * k / (2 * n))
    out = (spec * w).real * math.sqrt(2.0 / n)
    out[..., 0] /= math.sqrt(2.0)
    return out


def _idct_fft(c: torch.Tensor) -> torch.Tensor:
    n = c.shape[-1]
    c = c * math.sqrt(n / 2.0)
    c = torch.cat([c[..., :1] * math.sqrt(2.0), c[..., 1:]], dim=-1)
    k = torch.arange(n, dtype=c.dtype, device=c.device)
    w = torch.polar(torch.ones_like(k), math.pi * k / (2 * n))
    c_rev = torch.cat([torch.zeros_like(c[..., :1]), -c.flip(-1)[..., :-1]], dim=-1)
    v = torch.fft.ifft(torch.complex(c, c_rev) * w, dim=-1).real
    out = torch.empty_like(v)
    out[..., ::2] = v[..., : (n + 1) // 2]
    out[..., 1::2] = v.flip(-1)[..., : n // 2]
    return out


def _to_patches(x, p):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(-1, c, p, p)


def _from_patches(u, p, shape):
    b, c, h, w = shape
    return u.reshape(b, h // p, w // p, c, p, p).permute(0, 3, 1, 4, 2, 5).reshape(shape)


def reference_block_noise(eps: torch.Tensor, s: int) -> torch.Tensor:
    """The official definition, written out: the sum of s² circular shifts, divided by s."""
    out = torch.zeros_like(eps)
    for i in range(s):
        for j in range(s):
            out += torch.roll(eps, shifts=(i, j), dims=(2, 3))
    return out / s


def _pdct(x, p):
    u = _to_patches(x, p)
    return _from_patches(_dct_fft(_dct_fft(u).transpose(-1, -2)).transpose(-1, -2), p, x.shape)


def _pidct(u, p):
    v = _to_patches(u, p)
    return _from_patches(_idct_fft(_idct_fft(v).transpose(-1, -2)).transpose(-1, -2), p, u.shape)


def reference_relay_sampler(denoise, x_up, sigmas, sch, s_noise, s_block, randn_like, on_step=None):
    """The official stage-2 loop as written there (docs/method.md §5.3): float64, DCT space, maps
    tiled per step, the official argument names; `denoise(x, σ)` takes a float σ. `on_step(x)`
    sees the state after every step and the final denoised image."""
    p, (h, w) = sch.up_scale, x_up.shape[-2:]
    x_up = x_up.double()
    sig = sigmas.tolist()

    def amap(s):
        return blur_factors(sch.blur_sigma_at(s), p, sch.min_scale).repeat(h // p, w // p).to(x_up.device)

    def noise(like):
        return randn_like(like) + s_block * reference_block_noise(randn_like(like), p)

    x = x_up + sig[0] * noise(x_up)
    for i, s in enumerate(sig):
        d_hat = denoise(x, s).double()
        if i == len(sig) - 1:
            if on_step is not None:
                on_step(d_hat)
            return d_hat
        s_next = sig[i + 1]
        a_c, a_n = amap(s), amap(s_next)
        u_c = _pdct(x, p)
        d = (u_c - _pdct(d_hat, p)) / s
        g = math.sqrt(1 - s_noise ** 2) * s_next / s
        x_t = _pidct((a_n + g - g * a_c) * u_c + s * (g * a_c - a_n) * d, p) + s_noise * s_next * noise(x)
        d2 = (_pdct(x_t, p) - _pdct(denoise(x_t, s_next).double(), p)) / s_next
        x = _pidct((a_n + g - g * a_c) * u_c + s * (g * a_c - a_n) * (d + d2) / 2, p) + s_noise * s_next * noise(x)
        if on_step is not None:
            on_step(x)


def reference_edm_sampler(denoise, noise, sigmas):
    """EDM's deterministic Heun (S_churn = 0) as the official stage 1 runs it: float64 state,
    the network called in float32, a final Euler step to σ = 0."""
    sig = sigmas.tolist() + [0.0]
    x = noise.double() * sig[0]
    for s, s_next in zip(sig[:-1], sig[1:]):
        d = (x - denoise(x, s)) / s
        x_next = x + (s_next - s) * d
        if s_next > 0:
            x_next = x + (s_next - s) * (d + (x_next - denoise(x_next, s_next)) / s_next) / 2
        x = x_next
    return x
