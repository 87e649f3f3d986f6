"""The measurement protocol (evaluation/protocol.py): seed sets never overlap, every replicate is
the metric recomputed on its resample, and the paired intervals cover known differences at their
stated rate."""

import numpy as np
import pytest
import torch

from relay_diffusion.evaluation import protocol as P
from relay_diffusion.metrics.features import (_mmd2_unbiased, feature_statistics, frechet_distance,
                                              precision_recall)
from relay_diffusion.metrics.offline import high_frequency_power, spectral_distance


def test_selection_and_report_seeds_are_disjoint_and_checked():
    assert P.SELECTION.start + P.SELECTION.capacity <= P.REPORT.start
    assert P.REPORT.seeds(3) == [1_000_000, 1_000_001, 1_000_002]
    P.check_disjoint(P.SELECTION.seeds(10_000), P.REPORT.seeds(10_000))
    with pytest.raises(ValueError, match="chosen on 5 of the seeds"):
        P.check_disjoint(range(0, 100), range(95, 200), "the preset")
    for bad in (0, -1, 2_000_000, 1.5, True):
        with pytest.raises(ValueError, match="seed set holds"):
            P.REPORT.seeds(bad)


def test_bootstrap_counts_are_resamples_and_fixed_by_seed():
    boot = P.Bootstrap(50, 20, seed=3)
    assert boot.counts.shape == (20, 50) and (boot.counts.sum(axis=1) == 50).all()
    np.testing.assert_array_equal(boot.counts, P.Bootstrap(50, 20, seed=3).counts)
    assert not np.array_equal(boot.counts, P.Bootstrap(50, 20, seed=4).counts)
    for bad in (dict(n=1), dict(n=10, resamples=1), dict(n=2.5)):
        with pytest.raises(ValueError, match="whole number >= 2"):
            P.Bootstrap(**bad)


def multiset(x, counts):
    return x[np.repeat(np.arange(len(x)), counts)]


def test_every_replicate_is_the_metric_on_its_resample():
    """Full-sample values equal the package's metrics; replicate b equals the metric recomputed
    on the multiset of resample b (duplicates included)."""
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(300, 6)) + 0.2, rng.normal(size=(400, 6))
    boot = P.Bootstrap(300, 4, seed=1)
    m = P.measure(x, boot, y)
    ref = feature_statistics(y)
    assert m["fid"].value == pytest.approx(frechet_distance(*feature_statistics(x), *ref), rel=1e-9)
    assert m["kid"].value == pytest.approx(_mmd2_unbiased(y, x), rel=1e-9)
    assert (m["precision"].value, m["recall"].value) == precision_recall(y, x, k=3)
    for b in range(boot.resamples):
        xb = multiset(x, boot.counts[b])
        assert m["fid"].replicates[b] == pytest.approx(frechet_distance(*feature_statistics(xb), *ref), rel=1e-9)
        assert m["kid"].replicates[b] == pytest.approx(_mmd2_unbiased(y, xb), rel=1e-9)
        p, r = precision_recall(y, xb, k=3)
        assert m["precision"].replicates[b] == pytest.approx(p) and m["recall"].replicates[b] == pytest.approx(r)


def test_image_measures_match_the_offline_metrics():
    gen = torch.Generator().manual_seed(0)
    real = torch.rand(40, 1, 16, 16, generator=gen) * 255
    fake = torch.rand(30, 1, 16, 16, generator=gen) * 200
    boot = P.Bootstrap(30, 5)
    sp = P.spectra(real, fake, boot)
    assert sp["hf_power"].value == pytest.approx(high_frequency_power(real, fake), rel=1e-12)
    assert sp["spectral"].value == pytest.approx(spectral_distance(real, fake), rel=1e-9)
    fb = torch.from_numpy(multiset(fake.numpy(), boot.counts[2]))
    assert sp["hf_power"].replicates[2] == pytest.approx(high_frequency_power(real, fb), rel=1e-9)
    assert sp["spectral"].replicates[2] == pytest.approx(spectral_distance(real, fb), rel=1e-9)
    target = fake + 1.0
    err = P.rmse(fake, target, boot)
    assert err.value == pytest.approx(1.0) and np.allclose(err.replicates, 1.0)
    with pytest.raises(ValueError, match="differ in shape"):
        P.rmse(fake, target[:-1], boot)


def test_paired_difference_needs_the_same_resamples():
    a = P.weighted_mean(np.arange(10.0), P.Bootstrap(10, 5, seed=0))
    with pytest.raises(ValueError, match="same resamples"):
        a - P.weighted_mean(np.arange(10.0), P.Bootstrap(10, 5, seed=1))
    zero = a - a
    assert zero.value == 0 and not zero.measurable()
    assert P.describe_difference(zero).startswith("no measurable difference")


def coverage(trials, make_arms, truth, resamples=1000):
    hits = 0
    for t in range(trials):
        boot = P.Bootstrap(make_arms.n, resamples, seed=10_000 + t)
        a, b = make_arms(np.random.default_rng(t), boot)
        lo, hi = (a - b).interval()
        hits += lo <= truth <= hi
    return hits / trials


def test_interval_of_a_mean_difference_covers_it_at_the_stated_rate():
    """Paired samples (the same seed feeds both arms) with a known mean difference of 0.3: the
    95 % interval holds it in ≥ 90 % of 200 trials."""
    def arms(rng, boot):
        shared = rng.normal(size=boot.n)
        return (P.weighted_mean(shared + 0.3 + 0.2 * rng.normal(size=boot.n), boot),
                P.weighted_mean(shared + 0.2 * rng.normal(size=boot.n), boot))
    arms.n = 200
    assert 0.90 <= coverage(200, arms, 0.3) <= 0.99           # not vacuously wide either


def test_interval_of_an_fid_difference_covers_it_at_the_stated_rate():
    """Two Gaussian arms against exact reference statistics N(0, I): FID = |μ|² + (tr of the
    covariance mismatch); arm a is arm b's samples shifted by (0.5, 0, 0), so the true
    difference is 0.25."""
    d = 3
    ref = (np.zeros(d), np.eye(d))

    def arms(rng, boot):
        shared = rng.normal(size=(boot.n, d))               # the same seeds in both arms
        return P.fid(shared + [0.5, 0, 0], *ref, boot), P.fid(shared, *ref, boot)
    arms.n = 400
    assert 0.90 <= coverage(200, arms, 0.25) <= 0.99
