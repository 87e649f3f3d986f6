"""Tests for relay_diffusion.metrics.offline (weight-free SWD and spectral metrics)."""

import pytest
import torch
import torch.nn.functional as F

from relay_diffusion.metrics.offline import (
    radial_power_spectrum,
    sliced_wasserstein_distance,
    spectral_distance,
)

SWD_KW = dict(patches_per_image=128, num_projections=128, seed=0)
NOISE_LEVELS = (0.3, 0.6, 1.2)
BLUR_SIGMAS = (0.7, 1.4, 2.8)


def _gaussian_blur(x, sigma):
    k = int(2 * round(3 * sigma) + 1)
    t = torch.arange(k, dtype=torch.float32) - k // 2
    g = torch.exp(-(t ** 2) / (2 * sigma * sigma))
    g = g / g.sum()
    c = x.shape[1]
    p = k // 2
    x = F.conv2d(F.pad(x, (p, p, 0, 0), mode="reflect"), g.view(1, 1, 1, k).expand(c, 1, 1, k), groups=c)
    return F.conv2d(F.pad(x, (0, 0, p, p), mode="reflect"), g.view(1, 1, k, 1).expand(c, 1, k, 1), groups=c)


def _textures(n, seed, size=32):
    """Stationary smooth random textures in [-1, 1]."""
    g = torch.Generator().manual_seed(seed)
    z = _gaussian_blur(torch.randn(n, 3, size, size, generator=g), 1.5)
    return torch.tanh(2.0 * z / z.std())


@pytest.fixture(scope="module")
def sets():
    return _textures(64, 1), _textures(64, 2)


@pytest.fixture(scope="module")
def swd_same(sets):
    a, b = sets
    return sliced_wasserstein_distance(a, b, **SWD_KW)


def _noisy(b, s):
    return b + s * torch.randn(b.shape, generator=torch.Generator().manual_seed(5))


@pytest.fixture(scope="module")
def swd_blur(sets):
    a, b = sets
    return [sliced_wasserstein_distance(a, _gaussian_blur(b, s), **SWD_KW)["mean"] for s in BLUR_SIGMAS]


def test_swd_structure_and_same_distribution_small(swd_same, swd_blur):
    assert set(swd_same["per_level"]) == {32, 16}
    vals = list(swd_same["per_level"].values())
    assert swd_same["mean"] == pytest.approx(sum(vals) / len(vals))
    assert swd_same["mean"] < 0.5 * swd_blur[-1]


def test_swd_monotone_in_noise(sets, swd_same):
    a, b = sets
    vals = [swd_same["mean"]] + [
        sliced_wasserstein_distance(a, _noisy(b, s), **SWD_KW)["mean"] for s in NOISE_LEVELS
    ]
    assert all(x < y for x, y in zip(vals, vals[1:])), vals


def test_swd_monotone_in_blur(swd_same, swd_blur):
    vals = [swd_same["mean"]] + swd_blur
    assert all(x < y for x, y in zip(vals, vals[1:])), vals


def test_swd_deterministic_and_uint8(sets, swd_same):
    a, b = sets
    again = sliced_wasserstein_distance(a, b, **SWD_KW)
    assert again == swd_same
    other = sliced_wasserstein_distance(a, b, **{**SWD_KW, "seed": 1})
    assert other["mean"] != swd_same["mean"]
    a8 = ((a + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    b8 = ((b + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    q = sliced_wasserstein_distance(a8, b8, **SWD_KW)
    assert q["mean"] == pytest.approx(swd_same["mean"], rel=0.05)


def test_swd_pyramid_levels_cap(sets):
    a, b = sets
    r = sliced_wasserstein_distance(a[:8], b[:8], patches_per_image=8, num_projections=16, pyramid_levels=1)
    assert list(r["per_level"]) == [32]


def test_spectral_distance_same_small_and_monotone(sets):
    a, b = sets
    same = spectral_distance(a, b)
    assert same < 0.05
    noise = [spectral_distance(a, _noisy(b, s)) for s in NOISE_LEVELS]
    blur = [spectral_distance(a, _gaussian_blur(b, s)) for s in BLUR_SIGMAS]
    for vals in (noise, blur):
        vals = [same] + vals
        assert all(x < y for x, y in zip(vals, vals[1:])), vals


def test_power_spectrum_white_noise_flat():
    g = torch.Generator().manual_seed(0)
    w = 0.3 * torch.randn(128, 3, 32, 32, generator=g)
    p = radial_power_spectrum(w)
    assert p.shape == (17,)
    assert p[0].abs() < 1e-6
    rel = p[1:] / p[1:].mean()
    assert ((rel - 1).abs() <= 0.2).all(), rel
    assert p[1:].mean() == pytest.approx(0.09, rel=0.1)


def test_power_spectrum_smooth_image_decays(sets):
    p = radial_power_spectrum(_gaussian_blur(sets[0], 2.0))
    assert p[1] > 1000 * p[-1]
    assert (p[2:9] < p[1:8]).all(), p  # strictly decreasing over the low/mid bins
    assert p[9:].max() < 0.01 * p[1]


def test_input_validation():
    x = torch.zeros(4, 3, 32, 32)
    with pytest.raises(ValueError, match="4-D"):
        sliced_wasserstein_distance(x[0], x)
    with pytest.raises(ValueError, match="same C, H, W"):
        sliced_wasserstein_distance(x, torch.zeros(4, 1, 32, 32))
    with pytest.raises(ValueError, match="same C, H, W"):
        spectral_distance(x, torch.zeros(4, 3, 16, 16))
    with pytest.raises(ValueError, match="H, W >= 16"):
        sliced_wasserstein_distance(torch.zeros(4, 3, 8, 8), torch.zeros(4, 3, 8, 8))
    with pytest.raises(ValueError, match="at least 2 images"):
        sliced_wasserstein_distance(x[:1], x)
    with pytest.raises(ValueError, match="patches_per_image"):
        sliced_wasserstein_distance(x, x, patches_per_image=0)
    with pytest.raises(ValueError, match="torch.Tensor"):
        radial_power_spectrum([[1.0]])
    with pytest.raises(ValueError, match="uint8 or floating"):
        radial_power_spectrum(torch.zeros(2, 3, 8, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="4-D"):
        radial_power_spectrum(torch.zeros(3, 8, 8))
