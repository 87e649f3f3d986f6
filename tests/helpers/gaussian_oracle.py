"""Closed-form denoisers for Gaussian data x₀ ~ N(μ, Σ) on small images (test helper).

Stage 1 (x_σ = x₀ + σε):           E[x₀|x] = μ + Σ(Σ + σ²I)⁻¹(x − μ).
Relay stage (x_σ = A_σx₀ + σn, n ~ N(0, C)):
                                    E[x₀|x] = μ + ΣA_σᵀ(A_σΣA_σᵀ + σ²C)⁻¹(x − A_σμ).
A_σ is built from its definition (scipy's orthonormal DCT of every patch, factors from the
formula of docs/method.md §3.1–3.2), C from the block-noise covariance formula — independent of the fast paths.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import torch

from relay_diffusion import RelaySchedule


def random_gaussian(shape, seed: int):
    """μ and an SPD Σ (float64) with per-pixel variance ≈ 0.25 (σ_data² = 0.25) and strong,
    spatially structured correlations, so that both coarse and fine structure matter."""
    c, h, w = shape
    d = c * h * w
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    pos = torch.stack([yy.flatten(), xx.flatten()], 1).double().repeat(c, 1)
    smooth = torch.exp(-torch.cdist(pos, pos) ** 2 / 8.0)
    a = torch.randn(d, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    cov = 0.6 * smooth + 0.4 * a @ a.T + 0.05 * torch.eye(d, dtype=torch.float64)
    cov = 0.25 * cov / torch.diagonal(cov).mean()
    mean = 0.3 * torch.randn(d, generator=g, dtype=torch.float64)
    return mean, cov


def patch_dct_matrix(h: int, w: int, p: int) -> torch.Tensor:
    """The (HW × HW) matrix of the orthonormal patch DCT, column by column with scipy."""
    basis = np.eye(h * w).reshape(h * w, h, w)
    out = np.empty_like(basis)
    for i in range(0, h, p):
        for j in range(0, w, p):
            out[:, i:i + p, j:j + p] = scipy.fft.dctn(basis[:, i:i + p, j:j + p], axes=(1, 2), norm="ortho")
    return torch.from_numpy(out.reshape(h * w, h * w).T.copy())


def blur_matrix(schedule: RelaySchedule, sigma: float, shape) -> torch.Tensor:
    c, h, w = shape
    p = schedule.up_scale
    sb = float(schedule.blur_sigma(schedule.u(sigma)))
    k = np.arange(p)
    lam = math.pi ** 2 * (k[:, None] ** 2 + k[None, :] ** 2) / p ** 2
    alpha = (1 - schedule.min_scale) * np.exp(-lam * sb ** 2 / 2) + schedule.min_scale
    tiled = torch.from_numpy(np.tile(alpha, (h // p, w // p)).reshape(-1))
    u = patch_dct_matrix(h, w, p)
    a = u.T @ torch.diag(tiled) @ u
    return torch.block_diag(*[a] * c)


def block_covariance_formula(h: int, w: int, s: int) -> torch.Tensor:
    """The paper's formula (valid for s ≤ H/2, W/2): (s − dis_y)₊(s − dis_x)₊/s², wrap-around."""
    assert 2 * s <= h and 2 * s <= w
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    y, x = yy.flatten(), xx.flatten()
    dy = (y[:, None] - y[None, :]).abs()
    dx = (x[:, None] - x[None, :]).abs()
    dy, dx = torch.minimum(dy, h - dy), torch.minimum(dx, w - dx)
    return ((s - dy).clamp(min=0) * (s - dx).clamp(min=0)).double() / s ** 2


class EdmOracle:
    """Exact stage-1 denoiser D(x, sigma, labels) for N(μ, Σ)."""

    def __init__(self, mean, cov, shape):
        self.mean, self.shape = mean, shape
        self.evals, self.vecs = torch.linalg.eigh(cov)
        self.calls = 0

    def __call__(self, x, sigma, labels=None):
        self.calls += 1
        s = float(sigma.flatten()[0])
        assert torch.all(sigma == sigma.flatten()[0])
        z = (x.double().flatten(1) - self.mean) @ self.vecs
        z = z * (self.evals / (self.evals + s ** 2))
        return (self.mean + z @ self.vecs.T).reshape(-1, *self.shape).to(x.dtype)


class RelayOracle:
    """Exact relay-stage denoiser for N(μ, Σ) under `schedule`'s forward process."""

    def __init__(self, mean, cov, shape, schedule: RelaySchedule):
        c, h, w = shape
        self.mean, self.cov, self.shape, self.schedule = mean, cov, shape, schedule
        blk = block_covariance_formula(h, w, schedule.up_scale)
        noise = torch.eye(h * w, dtype=torch.float64) + schedule.block_scale ** 2 * blk
        if schedule.noise_mixture == "paper":
            noise = noise / (1 + schedule.block_scale ** 2)
        self.noise_cov = torch.block_diag(*[noise] * c)
        self._cache = {}

    def gain(self, sigma: float):
        """(A_σ, K_σ) with E[x₀|x] = μ + K_σ(x − A_σμ)."""
        if sigma not in self._cache:
            a = blur_matrix(self.schedule, sigma, self.shape)
            s = a @ self.cov @ a.T + sigma ** 2 * self.noise_cov
            k = torch.linalg.solve(s, a @ self.cov).T
            self._cache[sigma] = (a, k)
        return self._cache[sigma]

    def output_cov(self, sigma: float) -> torch.Tensor:
        """Covariance of E[x₀|x_σ] when x_σ has the exact forward marginal."""
        a, k = self.gain(sigma)
        return k @ a @ self.cov

    def __call__(self, x, sigma, labels=None):
        s = float(sigma.flatten()[0])
        assert torch.all(sigma == sigma.flatten()[0])
        a, k = self.gain(s)
        y = self.mean + (x.double().flatten(1) - a @ self.mean) @ k.T
        return y.reshape(-1, *self.shape).to(x.dtype)

    def blurred_clean(self, sigma: float, n: int, seed: int) -> torch.Tensor:
        """A_σx₀ for n draws x₀ ~ N(μ, Σ): the relay start before the sampler adds σ₀·noise."""
        g = torch.Generator().manual_seed(seed)
        l = torch.linalg.cholesky(self.cov)
        x0 = self.mean + torch.randn(n, self.mean.numel(), generator=g, dtype=torch.float64) @ l.T
        a, _ = self.gain(sigma)
        return (x0 @ a.T).reshape(n, *self.shape)


def gaussian_z_scores(samples: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor):
    """z-scores of the sample mean and of every sample-covariance entry against N(mean, cov):
    standard errors √(Σ_ii/N) and √((Σ_iiΣ_jj + Σ_ij²)/N) (Gaussian fourth moments)."""
    x = samples.double().flatten(1)
    n = x.shape[0]
    m = x.mean(0)
    c = (x - m).T @ (x - m) / (n - 1)
    dg = torch.diagonal(cov)
    z_mean = (m - mean) / (dg / n).sqrt()
    se = ((dg[:, None] * dg[None, :] + cov ** 2) / n).sqrt()
    iu = torch.triu_indices(len(dg), len(dg))
    z_cov = ((c - cov) / se)[iu[0], iu[1]]
    return z_mean, z_cov
