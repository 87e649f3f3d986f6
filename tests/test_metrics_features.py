"""Tests for relay_diffusion.metrics.features (FID, P/R, IS, KID, stats I/O)."""

import numpy as np
import pytest
import torch

from relay_diffusion.metrics import (
    feature_statistics,
    frechet_distance,
    inception_score,
    kernel_inception_distance,
    load_statistics,
    precision_recall,
    save_statistics,
)


def _psd_sqrt(a):
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def _random_spd(rng, d):
    a = rng.normal(size=(d, d))
    return a @ a.T + 0.5 * np.eye(d)


# ---------------------------------------------------------------- statistics

def test_feature_statistics_unbiased():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 4))
    mu, sigma = feature_statistics(x)
    xc = x - x.mean(0)
    np.testing.assert_allclose(mu, x.mean(0))
    np.testing.assert_allclose(sigma, xc.T @ xc / 49)
    assert mu.dtype == np.float64 and sigma.dtype == np.float64
    mu_t, sigma_t = feature_statistics(torch.from_numpy(x).float())
    np.testing.assert_allclose(sigma_t, sigma, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("bad", [np.zeros((1, 3)), np.zeros(5), np.zeros((2, 2, 2))])
def test_feature_statistics_rejects_bad_input(bad):
    with pytest.raises(ValueError):
        feature_statistics(bad)


# ---------------------------------------------------------------- FID

def test_frechet_distance_diagonal_closed_form():
    mu1, mu2 = np.array([0.0, 1.0, -2.0]), np.array([1.0, 3.0, 0.5])
    s1, s2 = np.array([1.0, 4.0, 0.25]), np.array([2.0, 1.0, 9.0])
    expected = np.sum((mu1 - mu2) ** 2) + np.sum(s1 + s2 - 2 * np.sqrt(s1 * s2))
    got = frechet_distance(mu1, np.diag(s1), mu2, np.diag(s2))
    assert got == pytest.approx(expected, rel=1e-9)


def test_frechet_distance_nondiagonal_matches_eigen_formula():
    rng = np.random.default_rng(1)
    d = 6
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    # Tr((S1 S2)^{1/2}) == Tr((S1^{1/2} S2 S1^{1/2})^{1/2}), the latter symmetric PSD.
    r1 = _psd_sqrt(s1)
    tr_cov = np.trace(_psd_sqrt(r1 @ s2 @ r1))
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * tr_cov
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(expected, rel=1e-7)


def test_frechet_distance_identical_is_zero():
    rng = np.random.default_rng(2)
    s = _random_spd(rng, 5)
    mu = rng.normal(size=5)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-8


def test_fid_of_samples_self_and_shift():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8))
    mu, sigma = feature_statistics(x)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-6
    shift = np.linspace(-1.0, 2.0, 8)
    mu2, sigma2 = feature_statistics(x + shift)
    assert frechet_distance(mu, sigma, mu2, sigma2) == pytest.approx(
        np.sum(shift**2), rel=1e-6
    )


def test_frechet_distance_singular_covariance_is_finite():
    s = np.diag([1.0, 0.0, 0.0])
    d = frechet_distance(np.zeros(3), s, np.ones(3), s)
    assert np.isfinite(d) and d == pytest.approx(3.0, abs=1e-3)


def test_frechet_distance_shape_mismatch():
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(4), np.eye(4))
    with pytest.raises(ValueError):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), np.eye(2))


# ---------------------------------------------------------------- precision / recall

def test_precision_recall_identical_distributions():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(1000, 2))
    fake = rng.normal(size=(1000, 2))
    p, r = precision_recall(real, fake, k=3)
    assert p > 0.85 and r > 0.85


def test_precision_recall_disjoint():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(300, 4))
    fake = rng.normal(size=(300, 4)) + 100.0
    assert precision_recall(real, fake, k=3) == (0.0, 0.0)


def test_precision_recall_subset_support_and_batching():
    rng = np.random.default_rng(6)
    a = rng.normal(size=(500, 2))
    b = rng.normal(size=(500, 2)) + np.array([50.0, 0.0])
    real = np.concatenate([a, b])
    fake = rng.normal(size=(500, 2))  # covers only cluster a
    p, r = precision_recall(real, fake, k=3)
    assert p > 0.9
    assert 0.4 < r <= 0.5
    # Small batches give exactly the same answer.
    assert precision_recall(real, fake, k=3, batch=97) == (p, r)
    # Exact self-exclusion: with k=1 every duplicated point has radius 0 but is covered.
    pts = np.repeat(rng.normal(size=(10, 3)), 2, axis=0)
    assert precision_recall(pts, pts, k=1) == (1.0, 1.0)


def test_precision_recall_validation():
    with pytest.raises(ValueError):
        precision_recall(np.zeros((10, 2)), np.zeros((10, 3)))
    with pytest.raises(ValueError):
        precision_recall(np.zeros((3, 2)), np.zeros((10, 2)), k=3)


# ---------------------------------------------------------------- IS

def test_inception_score_uniform_is_one():
    mean, std = inception_score(np.zeros((100, 10)), splits=5)
    assert mean == pytest.approx(1.0, abs=1e-9) and std < 1e-9


def test_inception_score_onehot_diverse_is_num_classes():
    n = 10
    logits = np.tile(np.eye(n) * 1000.0, (20, 1))  # 200 samples, every class equally often
    mean, std = inception_score(logits, splits=10)
    assert mean == pytest.approx(n, rel=1e-6) and std < 1e-6
    # A single class everywhere scores 1.
    mean1, _ = inception_score(np.tile(np.eye(n)[:1] * 1000.0, (200, 1)), splits=10)
    assert mean1 == pytest.approx(1.0, rel=1e-6)


def test_inception_score_validation():
    with pytest.raises(ValueError):
        inception_score(np.zeros((5, 10)), splits=10)


# ---------------------------------------------------------------- KID

def test_kid_same_vs_different():
    rng = np.random.default_rng(7)
    x = rng.normal(size=(600, 16))
    y = rng.normal(size=(600, 16))
    z = rng.normal(size=(600, 16)) + 1.0
    same, _ = kernel_inception_distance(x, y, subsets=20, subset_size=200, seed=0)
    diff, _ = kernel_inception_distance(x, z, subsets=20, subset_size=200, seed=0)
    assert abs(same) < 0.05
    assert diff > 1.0
    assert diff > 20 * abs(same)
    # Deterministic for a fixed seed.
    assert kernel_inception_distance(x, y, subsets=20, subset_size=200, seed=0)[0] == same


def test_kid_subset_too_large():
    with pytest.raises(ValueError):
        kernel_inception_distance(np.zeros((10, 4)), np.zeros((10, 4)), subset_size=20)


# ---------------------------------------------------------------- stats I/O

def test_statistics_roundtrip(tmp_path):
    rng = np.random.default_rng(8)
    mu, sigma = feature_statistics(rng.normal(size=(30, 5)))
    path = tmp_path / "ref_stats.npz"
    save_statistics(path, mu, sigma)
    mu2, sigma2 = load_statistics(path)
    np.testing.assert_array_equal(mu, mu2)
    np.testing.assert_array_equal(sigma, sigma2)


def test_load_statistics_missing_key(tmp_path):
    path = tmp_path / "bad.npz"
    np.savez(path, mu=np.zeros(3))
    with pytest.raises(ValueError, match="sigma"):
        load_statistics(path)


def test_precision_radius_excludes_self():
    real = np.arange(10.0).reshape(-1, 1)  # 1-NN distance 1, 2-NN distance 2 (at ends)
    fake = np.array([[9.9], [10.5], [-1.5], [4.5]])
    # k=1: radius 1 around every real point -> 9.9 and 4.5 inside, 10.5 and -1.5 outside.
    p1, _ = precision_recall(real, fake, k=1)
    assert p1 == pytest.approx(0.5)
    # k=2: end points have radius 2 -> all four fake points inside.
    p2, _ = precision_recall(real, fake, k=2)
    assert p2 == pytest.approx(1.0)
