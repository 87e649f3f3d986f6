"""The real correctness check of the samplers: Gaussian data with closed-form denoisers.

For x₀ ~ N(μ, Σ) the exact denoiser is known (tests/gaussian_oracle.py), so a correct sampler
must turn its start distribution into N(μ, Σ) (stage 1) or, for a relay stage started from the
exact forward marginal at σ₀, into the law of D(x_σmin; σmin) — Gaussian with mean μ and
covariance ΣAᵀ(AΣAᵀ + σ²C)⁻¹AΣ at σ = σmin (≈ Σ).

Tolerance. With N samples, the sample mean and every sample-covariance entry have known standard
errors (√(Σ_ii/N), √((Σ_iiΣ_jj + Σ_ij²)/N)); we z-score all of them (64 + 2080 for an 8×8 image).
A correct sampler must give max|z_mean| < 5, max|z_cov| < 5.5 and mean z_cov² < 1.6: under
the null the max of ~2000 |z| is ≈ 3.5 and mean z² ≈ 1; the extra room covers the small, known
biases — discretisation with the stated number of steps, and the O(η⁴) variance loss per step of
DDIM-η with a posterior-mean denoiser (docs/method.md §5.4). Seeds are fixed, so the tests are deterministic.
The negative controls show that these tolerances catch a sampler whose blur map or noise model
differs from the forward process only slightly.
"""

import pytest
import torch

from helpers.gaussian_oracle import EdmOracle, RelayOracle, gaussian_z_scores, random_gaussian
from relay_diffusion import RelaySchedule, edm_sampler, relay_sampler, relay_sigmas, sde_heun_sampler

N = 20000


def _randn(seed):
    g = torch.Generator().manual_seed(seed)
    return lambda t: torch.randn(t.shape, generator=g, dtype=t.dtype)


def _scores(samples, mean, cov):
    zm, zc = gaussian_z_scores(samples, mean, cov)
    return zm.abs().max().item(), zc.abs().max().item(), zc.pow(2).mean().item()


def assert_matches(samples, mean, cov):
    zm, zc, zc2 = _scores(samples, mean, cov)
    assert zm < 5 and zc < 5.5 and zc2 < 1.6, f"max|z_mean|={zm:.2f} max|z_cov|={zc:.2f} mean z_cov²={zc2:.2f}"


def assert_detected(samples, mean, cov):
    zm, zc, zc2 = _scores(samples, mean, cov)
    assert zm > 8 or zc2 > 3, f"mismatch not detected: max|z_mean|={zm:.2f} mean z_cov²={zc2:.2f}"


# --------------------------------------------------------------------------------------------
# Stage 1: from pure noise at σ_max = 80.

SHAPE1 = (2, 4, 4)


@pytest.fixture(scope="module")
def stage1():
    mean, cov = random_gaussian(SHAPE1, seed=0)
    z = torch.randn(N, *SHAPE1, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    return mean, cov, EdmOracle(mean, cov, SHAPE1), z


def test_edm_deterministic_heun(stage1):
    mean, cov, oracle, z = stage1
    assert_matches(edm_sampler(oracle, z, num_steps=64, dtype=torch.float64), mean, cov)
    assert oracle.calls >= 127


def test_edm_heun_with_churn(stage1):
    mean, cov, oracle, z = stage1
    kw = dict(num_steps=128, S_churn=40, S_min=0.05, S_max=50, randn_like=_randn(2), dtype=torch.float64)
    assert_matches(edm_sampler(oracle, z, **kw), mean, cov)
    # negative control: 5 % too much churn noise inflates the covariance
    assert_detected(edm_sampler(oracle, z, **{**kw, "S_noise": 1.05}), mean, cov)


@pytest.mark.parametrize("corrector", ["noise", "denoised"])
def test_sde_heun(stage1, corrector):
    mean, cov, oracle, z = stage1
    out = sde_heun_sampler(oracle, z, num_steps=64, sde_scale=0.05, corrector=corrector,
                           randn_like=_randn(3), dtype=torch.float64)
    assert_matches(out, mean, cov)


def test_stage1_too_few_steps_is_detected(stage1):
    mean, cov, oracle, z = stage1
    assert_detected(edm_sampler(oracle, z, num_steps=12, dtype=torch.float64), mean, cov)


# --------------------------------------------------------------------------------------------
# Relay stage: from the exact forward marginal at σ₀ (x_up = A_σ₀ x₀; the sampler adds σ₀·noise).

SHAPE2 = (1, 8, 8)
STEPS_71 = dict(num_steps=200, rho=7.0, truncation_sigma=0.9)      # keeps 71 steps below 0.9


def _relay_run(schedule, seed=5, sampler_schedule=None, steps=STEPS_71, **kw):
    mean, cov = random_gaussian(SHAPE2, seed=0)
    oracle = RelayOracle(mean, cov, SHAPE2, schedule)
    sig = relay_sigmas(num_steps=steps["num_steps"], rho=steps["rho"], truncation_sigma=steps["truncation_sigma"])
    x_up = oracle.blurred_clean(float(sig[0]), N, seed)
    out = relay_sampler(oracle, x_up.float(), schedule=sampler_schedule or schedule,
                        randn_like=_randn(seed + 1), **steps, **kw)               # float32 default
    return out, mean, oracle.output_cov(float(sig[-1]))


@pytest.mark.parametrize("mixture,eta", [("official", 0.2), ("official", 0.0), ("paper", 0.2)])
def test_relay_sampler_preserves_the_marginals(mixture, eta):
    out, mean, cov = _relay_run(RelaySchedule(noise_mixture=mixture), s_noise=eta, corrector="denoised")
    assert_matches(out, mean, cov)


def test_relay_sampler_celebahq_schedule():
    sch = RelaySchedule(blur_sigma_max=2.0, prob_length=0.89)
    out, mean, cov = _relay_run(sch, s_noise=0.2, corrector="denoised",
                                steps=dict(num_steps=300, rho=7.0, truncation_sigma=0.95))
    assert_matches(out, mean, cov)


def test_official_corrector_converges_at_first_order():
    """The official Heun corrector averages (x − D)/σ; wherever a blur factor is below 1 (every
    relay step) that is first-order accurate: the mean bias halves when the steps double, and
    with 141 steps it is within tolerance."""
    sch = RelaySchedule()
    rms = []
    for nominal in (100, 200, 400):                                  # 35, 71, 141 kept steps
        out, mean, cov = _relay_run(sch, s_noise=0.0, steps=dict(num_steps=nominal, rho=7.0, truncation_sigma=0.9))
        zm, _ = gaussian_z_scores(out, mean, cov)
        rms.append(zm.pow(2).mean().sqrt().item())
    assert 1.5 < rms[0] / rms[1] < 2.6, rms
    assert rms[0] > 3, rms                                           # the bias is real at 35 steps
    assert_matches(out, mean, cov)


@pytest.mark.parametrize("wrong", [
    dict(truncation_t=1.05),                                          # CelebA-style u(σ) mismatch
    dict(s_block=0.0),                                                # forgets the block noise
    dict(sampler_schedule=RelaySchedule(blur_sigma_max=2.8)),        # slightly wrong blur
])
def test_relay_mismatch_is_detected(wrong):
    out, mean, cov = _relay_run(RelaySchedule(), s_noise=0.2, corrector="denoised", **wrong)
    assert_detected(out, mean, cov)
