"""Block noise against the official s²-roll definition and its closed-form statistics (docs/method.md §2.2–2.4)."""

import pytest
import torch

from relay_diffusion.reference import reference_block_noise as roll_block_noise
from relay_diffusion import RelaySchedule, block_noise, block_noise_covariance, patch_dct, relay_noise


@pytest.mark.parametrize("s,h,w", [(1, 8, 8), (2, 8, 6), (3, 9, 12), (4, 16, 16), (4, 8, 12),
                                   (5, 10, 15), (7, 14, 7), (8, 8, 16), (4, 4, 4)])
def test_block_noise_equals_roll_definition(s, h, w):
    eps = torch.randn(3, 2, h, w, dtype=torch.float64)
    torch.testing.assert_close(block_noise(eps, s), roll_block_noise(eps, s), atol=1e-12, rtol=0)
    e32 = eps.float()
    torch.testing.assert_close(block_noise(e32, s), roll_block_noise(e32, s), atol=1e-5, rtol=0)


def test_block_noise_does_not_modify_input():
    eps = torch.randn(2, 1, 8, 8)
    copy = eps.clone()
    block_noise(eps, 4)
    block_noise(eps, 1)
    assert torch.equal(eps, copy)


def _stats(field, offsets):
    """Per-pixel variance and circular covariances, averaged over batch, channels and pixels."""
    var = field.pow(2).mean().item()
    cov = {d: (field * torch.roll(field, d, (2, 3))).mean().item() for d in offsets}
    return var, cov


def test_block_noise_statistics():
    # 4096 images of 32×32: each estimate averages ≈ 4M correlated products; std error < 0.005.
    g = torch.Generator().manual_seed(1)
    field = block_noise(torch.randn(4096, 1, 32, 32, generator=g), 4)
    offsets = [(1, 0), (0, 1), (1, 1), (2, 3), (3, 3), (4, 0), (0, 5), (-1, 2)]
    var, cov = _stats(field, offsets)
    assert abs(var - 1) < 0.01
    for dx, dy in offsets:
        expect = max(0, 4 - abs(dx)) * max(0, 4 - abs(dy)) / 16
        assert abs(cov[(dx, dy)] - expect) < 0.01, (dx, dy, cov[(dx, dy)], expect)


def test_block_noise_patch_dct_variances():
    # docs/method.md §2.3: the DC coefficient of a 4×4 patch has variance (11/4)² = 121/16 = 7.5625;
    # nearest-upsampled noise puts all 16 units of variance there instead.
    g = torch.Generator().manual_seed(2)
    u = patch_dct(block_noise(torch.randn(4096, 1, 16, 16, generator=g), 4), 4)
    dc = u[:, :, ::4, ::4]
    assert abs(dc.var().item() - 121 / 16) < 0.1          # std error ≈ 0.047
    assert abs(u[:, :, ::4, 1::4].var().item() - 2.35) < 0.05
    total = u.pow(2).mean().item() * 16                   # orthonormal: 16 units per patch
    assert abs(total - 16) < 0.2
    v = patch_dct(block_noise(torch.randn(4096, 1, 16, 16, generator=g), 4, kind="nearest"), 4)
    assert abs(v[:, :, ::4, ::4].var().item() - 16) < 0.3
    v[:, :, ::4, ::4] = 0
    assert v.abs().max() < 1e-5


def test_nearest_kind_is_cell_constant_with_unit_variance():
    eps = torch.randn(2, 3, 8, 12)
    n = block_noise(eps, 4, kind="nearest")
    assert torch.equal(n[:, :, 1, 5], eps[:, :, 0, 4])
    assert torch.equal(n, n[:, :, ::4, ::4].repeat_interleave(4, 2).repeat_interleave(4, 3))


def test_nearest_covariance_and_schedule_option():
    cov = block_noise_covariance(8, 8, 4, kind="nearest")
    z = block_noise(torch.randn(100_000, 1, 8, 8, dtype=torch.float64), 4, kind="nearest").flatten(1)
    assert ((z.T @ z / z.shape[0]) - cov).abs().max() < 0.02
    sch = RelaySchedule(block_kind="nearest")
    n = sch.noise(torch.zeros(40000, 1, 8, 8, dtype=torch.float64)).flatten(1)   # SE ≈ 0.005
    assert ((n.T @ n / n.shape[0]) - sch.noise_covariance(8, 8)).abs().max() < 0.035


def test_covariance_matrix_matches_the_paper_formula_and_samples():
    h, w, s = 8, 8, 4
    cov = block_noise_covariance(h, w, s)
    for (a, b) in [(0, 1), (0, 9), (0, 7), (5, 62), (0, 36), (10, 10)]:
        ya, xa, yb, xb = a // w, a % w, b // w, b % w
        dy = min(abs(ya - yb), h - abs(ya - yb))
        dx = min(abs(xa - xb), w - abs(xa - xb))
        assert cov[a, b].item() == pytest.approx(max(0, s - dy) * max(0, s - dx) / s ** 2)
    # the operator's own empirical covariance
    g = torch.Generator().manual_seed(3)
    z = block_noise(torch.randn(200_000, 1, h, w, dtype=torch.float64, generator=g), s).flatten(1)
    emp = z.T @ z / z.shape[0]
    assert (emp - cov).abs().max() < 0.02
    # s = H: every pixel sees the whole row/column
    assert torch.allclose(block_noise_covariance(4, 4, 4), torch.ones(16, 16, dtype=torch.float64))


@pytest.mark.parametrize("mixture,expect", [("official", 1 + 0.15 ** 2), ("paper", 1.0)])
def test_noise_mixture_variance(mixture, expect):
    g = torch.Generator().manual_seed(4)
    e1, e2 = torch.randn(2, 2048, 1, 16, 16, generator=g)
    n = relay_noise(e1, e2, 0.15, 4, mixture)
    assert abs(n.var().item() - expect) < 0.01
    c = RelaySchedule(noise_mixture=mixture).noise_covariance(16, 16)
    assert torch.allclose(torch.diagonal(c), torch.full((256,), expect, dtype=torch.float64))


def test_relay_noise_without_blocks_is_eps():
    e = torch.randn(1, 1, 8, 8)
    assert torch.equal(relay_noise(e, None, 0.0, 4), e)
    with pytest.raises(ValueError, match="eps_block"):
        relay_noise(e, None, 0.15, 4)
