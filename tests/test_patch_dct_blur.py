"""Patch DCT and patch-wise blurring against independent definitions (scipy, explicit loops)."""

import math

import numpy as np
import pytest
import scipy.fft
import torch

from relay_diffusion import blur, blur_factors, patch_dct, patch_idct
from relay_diffusion.relay import dct_matrix

SHAPES = [(2, 3, 8, 8, 4), (1, 2, 12, 8, 4), (2, 1, 6, 9, 3), (1, 1, 8, 8, 1), (2, 2, 8, 8, 8), (1, 3, 16, 32, 2)]


@pytest.mark.parametrize("p", [1, 2, 3, 4, 8, 16])
def test_dct_matrix_is_orthonormal(p):
    m = dct_matrix(p)
    torch.testing.assert_close(m @ m.T, torch.eye(p, dtype=torch.float64), atol=1e-14, rtol=0)


@pytest.mark.parametrize("b,c,h,w,p", SHAPES)
def test_patch_dct_equals_scipy_per_patch(b, c, h, w, p):
    x = torch.randn(b, c, h, w, dtype=torch.float64)
    u = patch_dct(x, p).numpy()
    xn = x.numpy()
    for i in range(h // p):
        for j in range(w // p):
            ref = scipy.fft.dctn(xn[:, :, i * p:(i + 1) * p, j * p:(j + 1) * p], axes=(2, 3), norm="ortho")
            np.testing.assert_allclose(u[:, :, i * p:(i + 1) * p, j * p:(j + 1) * p], ref, atol=1e-12)


@pytest.mark.parametrize("b,c,h,w,p", SHAPES)
def test_patch_dct_round_trip_and_isometry(b, c, h, w, p):
    x = torch.randn(b, c, h, w, dtype=torch.float64)
    u = patch_dct(x, p)
    torch.testing.assert_close(patch_idct(u, p), x, atol=1e-12, rtol=0)
    torch.testing.assert_close(patch_dct(patch_idct(x, p), p), x, atol=1e-12, rtol=0)
    # orthonormal map: norms preserved per image
    torch.testing.assert_close(u.flatten(1).norm(dim=1), x.flatten(1).norm(dim=1), atol=1e-12, rtol=0)


def test_patch_dct_whole_image_is_global_dct_and_float32_works():
    x = torch.randn(2, 3, 16, 16)
    ref = scipy.fft.dctn(x.double().numpy(), axes=(2, 3), norm="ortho")
    np.testing.assert_allclose(patch_dct(x, 16).numpy(), ref, atol=2e-5)
    assert patch_dct(x, 16).dtype == torch.float32
    torch.testing.assert_close(patch_idct(patch_dct(x, 4), 4), x, atol=2e-6, rtol=0)


def test_dc_of_constant_patch_is_p_times_value():
    x = torch.full((1, 1, 8, 8), 0.7, dtype=torch.float64)
    u = patch_dct(x, 4)
    assert torch.allclose(u[0, 0, ::4, ::4], torch.full((2, 2), 4 * 0.7, dtype=torch.float64))
    u[0, 0, ::4, ::4] = 0
    assert u.abs().max() < 1e-14


def _blur_by_definition(x, sb, p, m):
    """U⁻¹(α ⊙ U x) with α_kl = (1−m)·exp(−π²(k²+l²)/p² · σ_B²/2) + m, written out per sample."""
    out = torch.empty_like(x)
    k = torch.arange(p, dtype=torch.float64)
    lam = math.pi ** 2 * (k[:, None] ** 2 + k[None, :] ** 2) / p ** 2
    for n in range(x.shape[0]):
        a = (1 - m) * torch.exp(-lam * float(sb[n]) ** 2 / 2) + m
        tiled = a.repeat(x.shape[2] // p, x.shape[3] // p)
        out[n] = patch_idct(patch_dct(x[n:n + 1], p) * tiled, p)[0]
    return out


@pytest.mark.parametrize("b,c,h,w,p", SHAPES)
@pytest.mark.parametrize("m", [1e-3, 0.0, 0.2])
def test_blur_equals_dct_scale_idct(b, c, h, w, p, m):
    x = torch.randn(b, c, h, w, dtype=torch.float64)
    sb = torch.rand(b, dtype=torch.float64) * 3
    torch.testing.assert_close(blur(x, sb, p, m), _blur_by_definition(x, sb, p, m), atol=1e-12, rtol=0)
    # one σ_B shared by the batch
    torch.testing.assert_close(blur(x, 1.3, p, m), _blur_by_definition(x, torch.full((b,), 1.3, dtype=torch.float64), p, m),
                               atol=1e-12, rtol=0)


def test_blur_float32_matches_float64():
    x = torch.randn(3, 3, 32, 24, dtype=torch.float64)
    sb = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    torch.testing.assert_close(blur(x.float(), sb.float(), 4).double(), blur(x, sb, 4), atol=5e-6, rtol=0)


def test_blur_limits():
    x = torch.randn(2, 3, 8, 12, dtype=torch.float64)
    assert torch.equal(blur(x, 0.0, 4), x)
    torch.testing.assert_close(blur(x, torch.zeros(2, dtype=torch.float64), 4), x, atol=1e-13, rtol=0)
    # infinite heat: every patch becomes its mean, plus m times its detail
    means = torch.nn.functional.avg_pool2d(x, 4)
    up = means.repeat_interleave(4, 2).repeat_interleave(4, 3)
    torch.testing.assert_close(blur(x, 1e3, 4, min_scale=0.0), up, atol=1e-12, rtol=0)
    torch.testing.assert_close(blur(x, 1e3, 4), up + 1e-3 * (x - up), atol=1e-12, rtol=0)
    # patch means are preserved at every blur level (α_00 = 1)
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(blur(x, 2.0, 4), 4), means, atol=1e-12, rtol=0)


def test_blur_factors_table():
    f = blur_factors(torch.tensor([0.0, 1.0, 3.0]), 4)
    assert f.shape == (3, 4, 4)
    assert torch.allclose(f[0], torch.ones(4, 4, dtype=torch.float64))
    assert (f[..., 0, 0] == 1).all() and (f >= 1e-3).all() and (f <= 1).all()
    # docs/method.md §3.1–3.2: σ_B,max = 3 → α_01 = 0.0632, α_11 = 0.0049; σ_B,max = 2 → α_01 = 0.2919
    assert abs(float(f[2, 0, 1]) - 0.0632) < 5e-5 and abs(float(f[2, 1, 1]) - 0.0049) < 5e-5
    assert abs(float(blur_factors(2.0, 4)[0, 1]) - 0.2919) < 5e-5


@pytest.mark.parametrize("dtype,tol", [(torch.bfloat16, 3e-2), (torch.float16, 5e-3)])
def test_half_precision_keeps_dtype(dtype, tol):
    x = torch.randn(2, 3, 8, 8)
    sb = torch.tensor([0.5, 2.0])
    out = blur(x.to(dtype), sb, 4)
    assert out.dtype == dtype and patch_dct(x.to(dtype), 4).dtype == dtype
    torch.testing.assert_close(out.float(), blur(x, sb, 4), atol=tol * 4, rtol=0)
