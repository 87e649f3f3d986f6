"""EDM preconditioning and the two training losses (docs/method.md §4)."""

import math

import pytest
import torch
from scipy.stats import norm

from helpers.nets import tiny_denoiser
from relay_diffusion import (EDMLoss, EDMPrecond, RelayLoss, RelaySchedule, drop_labels, edm_coefficients,
                             edm_loss_weight)


class Recorder(torch.nn.Module):
    """Raw network that records its inputs and returns a fixed output."""

    def __init__(self, out=0.0):
        super().__init__()
        self.out, self.seen = out, []

    def forward(self, x, c_noise, labels, **kw):
        self.seen.append((x, c_noise, labels, kw))
        return torch.full_like(x, self.out)


def test_edm_coefficients_closed_form():
    s = torch.tensor([0.002, 0.5, 80.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm_coefficients(s)
    torch.testing.assert_close(c_skip, 0.25 / (s ** 2 + 0.25))
    torch.testing.assert_close(c_out, s * 0.5 / (s ** 2 + 0.25).sqrt())
    torch.testing.assert_close(c_in, 1 / (s ** 2 + 0.25).sqrt())
    torch.testing.assert_close(c_noise, s.log() / 4)
    # unit-variance network input and target (EDM's design): c_in²(σ²+σ_d²) = 1
    torch.testing.assert_close(c_in ** 2 * (s ** 2 + 0.25), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(edm_loss_weight(s), 1 / c_out ** 2)


def test_precond_wraps_network():
    raw = Recorder(out=1.0)
    d = EDMPrecond(raw, label_dim=3)
    x = torch.randn(2, 3, 4, 4)
    sigma = torch.tensor([0.5, 2.0])
    out = d(x, sigma, None, augment_labels=torch.zeros(2, 9))
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma.reshape(-1, 1, 1, 1))
    torch.testing.assert_close(out, c_skip * x + c_out)
    xin, cn, labels, kw = raw.seen[-1]
    torch.testing.assert_close(xin, c_in * x)
    torch.testing.assert_close(cn, sigma.log() / 4)
    assert torch.equal(labels, torch.zeros(2, 3)) and "augment_labels" in kw
    # scalar σ broadcasts; an unconditional model sees labels=None
    EDMPrecond(raw)(x, 0.3, torch.ones(2, 3))
    assert raw.seen[-1][2] is None and raw.seen[-1][1].shape == (2,)
    assert EDMPrecond(raw)(x.double(), 0.3).dtype == torch.float64
    with pytest.raises(ValueError, match="sigma_data"):
        EDMPrecond(raw, sigma_data=0)


def test_edm_loss_draws_lognormal_sigma_and_weights():
    raw = Recorder(out=0.0)
    loss_fn = EDMLoss()
    images = torch.randn(4096, 1, 2, 2)
    g = torch.Generator().manual_seed(0)
    loss = loss_fn(EDMPrecond(raw), images, generator=g)
    _, c_noise, _, _ = raw.seen[-1]
    ln_sigma = c_noise * 4
    assert abs(ln_sigma.mean().item() + 1.2) < 0.06 and abs(ln_sigma.std().item() - 1.2) < 0.05
    # F ≡ 0 → D = c_skip·x; the weighted error equals λ(σ)(c_skip(y + σn) − y)²
    assert loss.shape == images.shape and torch.isfinite(loss).all()
    # a perfect denoiser has zero loss
    assert loss_fn(lambda x, s, y: images, images).abs().max() == 0


def test_edm_loss_is_one_per_pixel_for_the_trivial_denoiser_in_expectation():
    """With D = c_skip·x (F ≡ 0) and y ~ N(0, σ_d²): E[λ(D − y)²] = 1 at every σ (EDM §5)."""
    raw = Recorder(out=0.0)
    y = 0.5 * torch.randn(200_000, 1, 1, 1, dtype=torch.float64)
    loss = EDMLoss()(EDMPrecond(raw), y, generator=torch.Generator().manual_seed(1))
    assert abs(loss.mean().item() - 1.0) < 0.01


def test_relay_loss_corruption_and_truncation():
    sch = RelaySchedule()
    loss_fn = RelayLoss(sch)
    assert loss_fn.u_min == pytest.approx(norm.cdf((math.log(7.5e-3) + 1.2) / 1.2) / 0.93)
    assert float(sch.sigma(loss_fn.u_min)) == pytest.approx(7.5e-3, rel=1e-12)   # exactly 7.5e-3
    seen = {}

    def denoise(x, sigma, labels):
        seen.update(x=x, sigma=sigma, labels=labels)
        return torch.zeros_like(x)

    images = torch.randn(1, 3, 8, 8, dtype=torch.float64).expand(20000, -1, -1, -1).contiguous()
    loss = loss_fn(denoise, images, generator=torch.Generator().manual_seed(2))
    sigma = seen["sigma"]
    assert sigma.min() >= 7.5e-3 * (1 - 1e-12) and sigma.max() <= sch.sigma_top
    assert (sigma == sigma.min()).sum() >= 1                 # the clamp puts ≈0.1 % at exactly 7.5e-3
    # σ follows the truncated log-normal: u(σ) ~ U(u_min, 1)
    u = sch.u(sigma)
    assert abs(u.mean().item() - 0.5) < 0.01
    # the network input is blur(y; σ_B(σ)) + σ·(ε + 0.15·Block)
    noise = (seen["x"] - sch.blur(images, sigma)) / sigma.reshape(-1, 1, 1, 1)
    assert abs(noise.var().item() - (1 + 0.15 ** 2)) < 0.01
    # D ≡ 0: loss = min(λ, 1e5)·y²
    lam = ((sigma ** 2 + 0.25) / (0.5 * sigma) ** 2).clamp(max=1e5).reshape(-1, 1, 1, 1)
    torch.testing.assert_close(loss, lam * images ** 2)


def test_relay_loss_weight_clamp_and_validation():
    sch = RelaySchedule()
    loss_fn = RelayLoss(sch, max_weight=10.0)
    images = torch.ones(64, 1, 4, 4)
    loss = loss_fn(lambda x, s, y: torch.zeros_like(x), images)
    assert loss.max() <= 10.0 + 1e-6
    with pytest.raises(ValueError, match="prob_length"):
        RelayLoss(RelaySchedule(prob_length=1.05))
    with pytest.raises(ValueError, match="train_sigma_min"):
        RelayLoss(sch, train_sigma_min=5.0)
    with pytest.raises(ValueError, match="patch size"):
        loss_fn(lambda x, s, y: x, torch.ones(2, 1, 6, 6))
    with pytest.raises(ValueError, match="labels"):
        loss_fn(lambda x, s, y: x, torch.ones(2, 1, 4, 4), torch.ones(3, 10))


def test_label_dropout():
    labels = torch.eye(10)[torch.arange(10000) % 10]
    dropped = drop_labels(labels, 0.1, torch.Generator().manual_seed(0))
    frac = (dropped.sum(1) == 0).float().mean().item()
    assert abs(frac - 0.1) < 0.01
    kept = dropped.sum(1) == 1
    assert torch.equal(dropped[kept], labels[kept])
    assert drop_labels(labels, 0.0) is labels and drop_labels(None, 0.5) is None
    with pytest.raises(ValueError):
        drop_labels(labels, 1.5)
    # the loss hook: a conditional net sees zero labels for dropped samples
    seen = {}

    def denoise(x, sigma, y):
        seen["y"] = y
        return x

    EDMLoss(label_dropout=0.5)(denoise, torch.randn(1000, 1, 2, 2), labels[:1000])
    assert 0.4 < (seen["y"].sum(1) == 0).float().mean().item() < 0.6


def test_losses_train_a_tiny_denoiser():
    """Gradients flow: a few Adam steps on one image lower the relay loss."""
    torch.manual_seed(0)
    d = tiny_denoiser(channels=1).train()
    opt = torch.optim.Adam(d.parameters(), lr=3e-3)
    images = torch.randn(16, 1, 8, 8).clamp(-1, 1)
    loss_fn = RelayLoss(RelaySchedule())
    g = torch.Generator().manual_seed(0)
    first = None
    for _ in range(60):
        loss = loss_fn(d, images, generator=g).sum() / images.shape[0]
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    g = torch.Generator().manual_seed(123)
    with torch.no_grad():
        final = sum(loss_fn(d, images, generator=g).sum().item() for _ in range(20)) / 20 / 16
    assert final < 0.8 * first


@pytest.mark.parametrize("make", [lambda: EDMLoss(label_dropout=0.3),
                                  lambda: RelayLoss(RelaySchedule(), label_dropout=0.3)])
def test_per_sample_seeded_losses_do_not_depend_on_the_batch(make):
    """With a SeededNoise source, sample b's loss depends only on its seed (how DDP runs match
    single-process ones)."""
    from relay_diffusion import SeededNoise

    d = tiny_denoiser(channels=1, label_dim=3, dtype=torch.float64)
    images = torch.randn(5, 1, 8, 8, dtype=torch.float64)
    labels = torch.eye(3, dtype=torch.float64)[[0, 1, 2, 0, 1]]
    seeds = [11, 12, 13, 14, 15]
    loss_fn = make()
    whole = loss_fn(d, images, labels, generator=SeededNoise(seeds))
    parts = torch.cat([loss_fn(d, images[i:i + 1], labels[i:i + 1], generator=SeededNoise([seeds[i]]))
                       for i in range(5)])
    torch.testing.assert_close(whole, parts, atol=1e-12, rtol=0)
    other = loss_fn(d, images, labels, generator=SeededNoise([1, 2, 3, 4, 5]))
    assert not torch.allclose(whole, other)
