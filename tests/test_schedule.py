"""RelaySchedule: u ↔ σ ↔ σ_B maps, blur factors and the forward corruption (docs/method.md §3.1–3.5)."""

import math

import pytest
import torch
from scipy.stats import norm

from relay_diffusion import RelaySchedule, blur, patch_dct


def test_sigma_top_values():
    # docs/method.md §3.3: σ_top = exp(−1.2 + 1.2·Φ⁻¹(L))
    assert RelaySchedule(prob_length=0.93).sigma_top == pytest.approx(1.7699, abs=1e-4)
    assert RelaySchedule(prob_length=0.89).sigma_top == pytest.approx(1.3124, abs=1e-4)
    sch = RelaySchedule()
    assert float(sch.u(1.7699)) == pytest.approx(1.0, abs=1e-4)
    assert sch.sigma_top == pytest.approx(math.exp(-1.2 + 1.2 * norm.ppf(0.93)), rel=1e-12)


@pytest.mark.parametrize("L", [0.89, 0.93, 1.0])
def test_u_sigma_round_trip(L):
    sch = RelaySchedule(prob_length=L)
    u = torch.linspace(1e-4, 1.0 - 1e-4, 101, dtype=torch.float64)
    torch.testing.assert_close(sch.u(sch.sigma(u)), u, atol=1e-10, rtol=0)
    s = torch.logspace(-3, 0, 50, dtype=torch.float64) * 0.9 * min(sch.sigma_top, 10.0)
    torch.testing.assert_close(sch.sigma(sch.u(s)), s, atol=0, rtol=1e-9)
    # u is the CDF of σ under EDM's log-normal truncated at its L-quantile
    assert float(sch.u(0.5)) == pytest.approx(norm.cdf((math.log(0.5) + 1.2) / 1.2) / L, rel=1e-12)


def test_blur_sigma_is_sin_squared_and_clamped():
    sch = RelaySchedule(blur_sigma_max=3.0)
    assert float(sch.blur_sigma(0.5)) == pytest.approx(3.0 * math.sin(math.pi / 4) ** 2)
    assert float(sch.blur_sigma(1.0)) == pytest.approx(3.0)
    assert float(sch.blur_sigma(1.3)) == pytest.approx(3.0)       # u > 1 cannot un-blur
    assert float(sch.blur_sigma_at(50.0)) == pytest.approx(3.0)


@pytest.mark.parametrize("bmax,L", [(3.0, 0.93), (2.0, 0.89), (2.0, 1.05)])
def test_factors_invariants(bmax, L):
    sch = RelaySchedule(blur_sigma_max=bmax, prob_length=L)
    sig = torch.logspace(-3, 1.5, 200, dtype=torch.float64)          # beyond σ_top too
    f = sch.factors(sig)
    assert f.shape == (200, 4, 4)
    assert (f[:, 0, 0] == 1).all()
    assert (f >= sch.min_scale - 1e-15).all() and (f <= 1).all()
    assert (f[1:] <= f[:-1] + 1e-15).all()                           # more noise ⇒ more blur
    if L < 1:
        assert (f[-1] == f[-2]).all()                                # saturated past σ_top
    assert torch.allclose(f[0], torch.ones(4, 4, dtype=torch.float64), atol=1e-6)


def test_corrupt_mean_and_noise_statistics():
    sch = RelaySchedule()
    x0 = torch.randn(1, 3, 16, 16, dtype=torch.float64).expand(4000, -1, -1, -1)
    sigma = 0.8
    g = torch.Generator().manual_seed(0)
    randn_like = lambda t: torch.randn(t.shape, generator=g, dtype=t.dtype)   # noqa: E731
    xs = sch.corrupt(x0, sigma, randn_like)
    noise = (xs - blur(x0, float(sch.blur_sigma_at(sigma)), 4)) / sigma
    assert abs(noise.mean().item()) < 0.01
    assert abs(noise.var().item() - (1 + 0.15 ** 2)) < 0.01
    # per-sample σ
    sig = torch.tensor([0.1, 1.0], dtype=torch.float64)
    out = sch.corrupt(x0[:2], sig, lambda t: torch.zeros_like(t))
    for i in range(2):
        torch.testing.assert_close(out[i:i + 1], sch.blur(x0[i:i + 1], float(sig[i])), atol=1e-12, rtol=0)


def test_schedule_blur_matches_factors():
    sch = RelaySchedule(blur_sigma_max=2.0, prob_length=0.89)
    x = torch.randn(2, 1, 8, 8, dtype=torch.float64)
    a = sch.factors(0.5)
    ref = patch_dct(x, 4) * a.repeat(2, 2)
    torch.testing.assert_close(patch_dct(sch.blur(x, 0.5), 4), ref, atol=1e-12, rtol=0)


def test_schedule_validation():
    with pytest.raises(ValueError, match="up_scale"):
        RelaySchedule(up_scale=0)
    with pytest.raises(ValueError, match="noise_mixture"):
        RelaySchedule(noise_mixture="normalised")
    with pytest.raises(ValueError, match="prob_length"):
        RelaySchedule(prob_length=0)
    with pytest.raises(ValueError, match="sigma"):
        RelaySchedule().u(0.0)
    with pytest.raises(ValueError, match="sigma"):
        RelaySchedule().factors(torch.tensor([0.5, -1.0]))
    with pytest.raises(ValueError, match="u must be"):
        RelaySchedule().sigma(1.2)
