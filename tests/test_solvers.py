"""The exponential-integrator solvers (sampling/solvers.py, docs/solvers.md).

Convergence order is measured without sampling error: with a Gaussian oracle (tests/
gaussian_oracle.py) the denoiser is affine in x, so with η = 0 every sampler is an affine map. Run
on the start mean and on the mean plus each column of the start covariance's Cholesky factor, it
gives the exact output mean and covariance. The exact relay ODE (docs/solvers.md §1; on plain
EDM the probability-flow ODE) carries the start marginal at σ₀ to the marginal at σ_min, so the
output must have mean μ and the covariance of E[x₀|x_σmin]; the error of the output covariance
against the number of steps gives the order. `python tests/test_solvers.py` prints the measured
slopes and few-step error ratios quoted in docs/solvers.md §6.
"""

import math

import pytest
import torch

from helpers.gaussian_oracle import EdmOracle, RelayOracle, gaussian_z_scores, random_gaussian
from helpers.nets import tiny_denoiser
from relay_diffusion import (SOLVERS, RelaySamplerSettings, RelaySchedule, SeededNoise, blur_factors,
                             classifier_free_guidance, edm_sampler, karras_sigmas, patch_dct, patch_idct,
                             relay_sampler, sde_heun_sampler, upsample_nearest)
from relay_diffusion.sampling import lambda_sigmas, relay_grid

SHAPE = (1, 8, 8)
MULTISTEP = [s for s in SOLVERS if s != "heun"]


@pytest.fixture(scope="module")
def gaussian():
    return random_gaussian(SHAPE, seed=0)


def _exact_relay(oracle, sigmas, **kw):
    """(output mean error, relative output covariance error) of the η = 0 relay sampler."""
    s0 = float(sigmas[0])
    a, _ = oracle.gain(s0)
    m0 = a @ oracle.mean
    chol = torch.linalg.cholesky(a @ oracle.cov @ a.T + s0 ** 2 * oracle.noise_cov)
    starts = torch.cat([m0[None], m0[None] + chol.T]).reshape(-1, *SHAPE)
    out = relay_sampler(oracle, starts, schedule=oracle.schedule, sigmas=sigmas, s_noise=0.0,
                        randn_like=torch.zeros_like, dtype=torch.float64, **kw).flatten(1)
    spread = (out[1:] - out[0]).T
    target = oracle.output_cov(float(sigmas[-1]))
    return (out[0] - oracle.mean).abs().max().item(), ((spread @ spread.T - target).norm() / target.norm()).item()


def _exact_edm(oracle, cov, sigmas, solver):
    s0 = float(sigmas[0])
    chol = torch.linalg.cholesky(cov + s0 ** 2 * torch.eye(cov.shape[0], dtype=torch.float64))
    starts = torch.cat([oracle.mean[None], oracle.mean[None] + chol.T]).reshape(-1, *SHAPE) / s0
    out = edm_sampler(oracle, starts, sigmas=sigmas, solver=solver, dtype=torch.float64).flatten(1)
    spread = (out[1:] - out[0]).T
    e, v = torch.linalg.eigh(cov)
    s = float(sigmas[-1])
    target = (v * (e ** 2 / (e + s ** 2))) @ v.T                     # Cov E[x₀|x_σmin]
    return ((spread @ spread.T - target).norm() / target.norm()).item()


def _slopes(errors):
    return [math.log2(errors[i] / errors[i + 1]) for i in range(len(errors) - 1)]


# solver (+ Heun corrector) → accepted range of the last measured slope (error ∝ steps^−order)
RELAY_ORDERS = {
    ("heun", "noise"): (0.85, 1.15),          # official: first order wherever a blur factor is < 1
    ("heun", "denoised"): (1.8, 2.3),
    ("ddim", "noise"): (0.85, 1.15),
    ("dpmpp-2m", "noise"): (1.8, 2.3),
    ("dpmpp-3m", "noise"): (2.7, 3.3),
    ("ddim-pc", "noise"): (1.8, 2.3),
    ("dpmpp-2m-pc", "noise"): (2.7, 3.6),
    ("dpmpp-3m-pc", "noise"): (3.0, 4.3),     # 4 in the bulk; its 2nd-order first step caps it at 3
}


@pytest.mark.parametrize("solver,corrector", list(RELAY_ORDERS))
def test_convergence_order_on_the_relay_process(gaussian, solver, corrector):
    """ImageNet-256 schedule, 8×8 image, 4×4 patches, block noise: the blur changes all the way
    from σ₀ = 0.9 (α₀₁ from 0.08 to 1) while the solvers run 64, 128 and 256 ρ-spaced steps."""
    mean, cov = gaussian
    oracle = RelayOracle(mean, cov, SHAPE, RelaySchedule())
    errors, mean_errors = [], []
    for n in (64, 128, 256):
        m, c = _exact_relay(oracle, relay_grid("rho", n, 0.008, 80.0, 7.0, 0.9), solver=solver,
                            corrector=corrector)
        errors.append(c)
        mean_errors.append(m)
    lo, hi = RELAY_ORDERS[(solver, corrector)]
    assert lo < _slopes(errors)[-1] < hi, (errors, _slopes(errors))
    if (solver, corrector) != ("heun", "noise"):
        # x̂₀ = μ along the mean path, and constant x̂₀ is integrated exactly
        assert max(mean_errors) < 1e-10, mean_errors
    else:
        assert min(mean_errors) > 1e-4, mean_errors             # the official corrector's mean bias


def _relay_state_errors(oracle, sigmas, corrector):
    """(relative error of the mean, relative error of the covariance) of the state at the last σ
    (before the final denoising) of the η = 0 Heun step, started from the exact marginal."""
    s0, s1 = float(sigmas[0]), float(sigmas[-1])
    (a0, _), (a1, _) = oracle.gain(s0), oracle.gain(s1)
    m0 = a0 @ oracle.mean
    chol = torch.linalg.cholesky(a0 @ oracle.cov @ a0.T + s0 ** 2 * oracle.noise_cov)
    starts = torch.cat([m0[None], m0[None] + chol.T]).reshape(-1, *SHAPE)
    states = []
    relay_sampler(oracle, starts, schedule=oracle.schedule, sigmas=sigmas, s_noise=0.0, randn_like=torch.zeros_like,
                  dtype=torch.float64, solver="heun", corrector=corrector, callback=lambda d: states.append(d["x"]))
    x = states[-2].flatten(1)                                   # the state at σ_last (the last entry is D)
    spread = (x[1:] - x[0]).T
    target_mean, target_cov = a1 @ oracle.mean, a1 @ oracle.cov @ a1.T + s1 ** 2 * oracle.noise_cov
    return (((x[0] - target_mean).norm() / target_mean.norm()).item(),
            ((spread @ spread.T - target_cov).norm() / target_cov.norm()).item())


def test_official_corrector_is_first_order_even_with_constant_blur(gaussian):
    """docs/solvers.md §5, Eq. 13: the official corrector's error comes from (1 − d)/σ, not from a
    change of d. Above σ_top the schedule clamps the blur level, so every factor is constant (and
    below 1 off the DC): the mean error still halves per doubling of the steps. Without blur the
    same step is EDM's Heun: no mean error, covariance second order."""
    mean, cov = gaussian

    def sigmas(n):                                                  # log-uniform from 40 down to 2
        return torch.exp(torch.linspace(math.log(40.0), math.log(2.0), n + 1, dtype=torch.float64))

    blurred = RelayOracle(mean, cov, SHAPE, RelaySchedule(blur_sigma_max=1.0))
    assert float(blurred.schedule.sigma(1.0)) < 2.0                 # the whole grid is above σ_top
    mean_errors = [_relay_state_errors(blurred, sigmas(n), "noise")[0] for n in (32, 64)]
    assert 0.85 < _slopes(mean_errors)[0] < 1.15, mean_errors
    assert _relay_state_errors(blurred, sigmas(64), "denoised")[0] < 1e-10
    sharp = RelayOracle(mean, cov, SHAPE, RelaySchedule(blur_sigma_max=0.0))
    errors = [_relay_state_errors(sharp, sigmas(n), "noise") for n in (32, 64)]
    assert max(e[0] for e in errors) < 1e-10, errors
    assert 1.8 < _slopes([e[1] for e in errors])[0] < 2.3, errors


@pytest.mark.parametrize("solver,order", [("ddim", 1), ("dpmpp-2m", 2), ("dpmpp-3m", 3), ("ddim-pc", 2),
                                          ("dpmpp-2m-pc", 3), ("dpmpp-3m-pc", 4)])
def test_convergence_order_on_edm(gaussian, solver, order):
    """Plain EDM from σ = 80: each solver's order (the -pc corrector adds one)."""
    mean, cov = gaussian
    oracle = EdmOracle(mean, cov, SHAPE)
    errors = [_exact_edm(oracle, cov, karras_sigmas(n, 0.002, 80.0, 7.0), solver) for n in (64, 128, 256)]
    assert abs(_slopes(errors)[-1] - order) < 0.25, (errors, _slopes(errors))


def test_few_steps_beat_the_official_heun_at_equal_cost(gaussian):
    """At 15–16 network evaluations (8 Heun steps vs 16 σ's) every solver of order ≥ 2 has at
    most half the official sampler's covariance error, the third-order -pc solvers a quarter
    (measured: 2.6× dpmpp-2m, 4.6× dpmpp-3m, 2.1× ddim-pc, 4.6× dpmpp-2m-pc, 7.2× dpmpp-3m-pc)."""
    mean, cov = gaussian
    oracle = RelayOracle(mean, cov, SHAPE, RelaySchedule())
    heun = _exact_relay(oracle, relay_grid("rho", 8, 0.008, 80.0, 7.0, 0.9))[1]
    for solver, gain in (("dpmpp-2m", 2), ("dpmpp-3m", 2), ("ddim-pc", 2), ("dpmpp-2m-pc", 4), ("dpmpp-3m-pc", 4)):
        error = _exact_relay(oracle, relay_grid("rho", 16, 0.008, 80.0, 7.0, 0.9), solver=solver)[1]
        assert error < heun / gain, (solver, error, heun)


def test_quadrature_weights_integrate_polynomials_exactly():
    """Eq. 6: with q nodes, Σ_j w_j P(t_j) = ∫₀ʰ e^{w−h} P(w) dw for every P of degree < q —
    checked against a fine trapezoidal rule, for step sizes around the series/closed-form switch."""
    from relay_diffusion.sampling.solvers import _exp_weights

    for h in (0.01, 0.2, 0.3, 2.0):
        h_t = torch.tensor(h, dtype=torch.float64)
        nodes = [torch.tensor(t, dtype=torch.float64) for t in (h, 0.0, -0.7 * h, -1.9 * h)]
        w = torch.linspace(0, h, 200001, dtype=torch.float64)
        for q in (1, 2, 3, 4):
            weights = _exp_weights(h_t, nodes[:q])
            for degree in range(q):
                exact = torch.trapezoid(torch.exp(w - h) * w ** degree, w)
                got = sum(float(weights[j]) * float(nodes[j]) ** degree for j in range(q))
                assert got == pytest.approx(float(exact), rel=1e-8, abs=1e-14), (h, q, degree)


# --------------------------------------------------------------------------------------------
# Equivalences


def dpm_solver_pp_2m(denoise, x, sigmas):
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) for x_σ = x₀ + σε (α = 1, λ = −log σ),
    written out; returns every state and, last, D(x; σ_min)."""
    lam = [-math.log(s) for s in sigmas]
    den = lambda x, s: denoise(x, torch.full((x.shape[0],), s, dtype=x.dtype), None)   # noqa: E731
    states, prev = [], None
    for i in range(len(sigmas) - 1):
        m = den(x, sigmas[i])
        h = lam[i + 1] - lam[i]
        if prev is None:
            d = m
        else:
            r = (lam[i] - lam[i - 1]) / h
            d = (1 + 1 / (2 * r)) * m - 1 / (2 * r) * prev
        x = sigmas[i + 1] / sigmas[i] * x - math.expm1(-h) * d
        prev = m
        states.append(x)
    states.append(den(x, sigmas[-1]))
    return states


def test_edm_dpmpp_2m_is_dpm_solver_pp():
    denoise = tiny_denoiser(dtype=torch.float64)
    z = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    grid = karras_sigmas(10, 0.002, 80.0, 7.0)
    ours = []
    edm_sampler(denoise, z, sigmas=grid, solver="dpmpp-2m", dtype=torch.float64,
                callback=lambda d: ours.append(d["x"]))
    ref = dpm_solver_pp_2m(denoise, z * float(grid[0]), grid.tolist())
    assert len(ours) == len(ref) == 10
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


@pytest.mark.parametrize("solver", MULTISTEP)
def test_relay_solvers_reduce_to_edm_without_blur(solver):
    """Factors ≡ 1 (σ_B,max = 0), α = 0: the relay solver is the plain-EDM one, state by state
    (deterministic, and with η = 0.3 and the same draws)."""
    denoise = tiny_denoiser(dtype=torch.float64)
    z = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    grid = karras_sigmas(9, 0.002, 80.0, 7.0)
    flat = RelaySchedule(blur_sigma_max=0.0, block_scale=0.0)
    for eta in (0.0, 0.3):
        edm, relay = [], []
        sde_heun_sampler(denoise, z, sigmas=grid, solver=solver, sde_scale=eta, randn_like=SeededNoise([1, 2]),
                         dtype=torch.float64, callback=lambda d: edm.append(d["x"]))
        relay_sampler(denoise, torch.zeros_like(z), schedule=flat, sigmas=grid, solver=solver, s_noise=eta,
                      randn_like=_start_then(z, SeededNoise([1, 2])), dtype=torch.float64,
                      callback=lambda d: relay.append(d["x"]))
        assert len(edm) == len(relay) == 9
        for a, b in zip(edm, relay):
            torch.testing.assert_close(b, a, atol=1e-11, rtol=0)


def _start_then(z, rnd):
    """randn_like that returns z for the relay sampler's start draw, then follows rnd."""
    first = [True]

    def draw(like):
        if first[0]:
            first[0] = False
            return z.clone()
        return rnd(like)
    return draw


def test_ddim_is_the_official_predictor_without_noise():
    """solver="ddim" per frequency = the official first-order update with η = 0:
    u_{i+1} = A_{i+1} û₀ + (σ_{i+1}/σ_i)(u_i − A_i û₀) in patch-DCT space."""
    sch = RelaySchedule()
    denoise = tiny_denoiser(dtype=torch.float64)
    x_up = upsample_nearest(torch.randn(2, 3, 3, 4, dtype=torch.float64), 4)
    grid = relay_grid("truncated", 30, 0.008, 80.0, 7.0, 0.9)
    states = []
    relay_sampler(denoise, x_up, schedule=sch, sigmas=grid, solver="ddim", s_noise=0.0,
                  randn_like=SeededNoise([4, 5]), dtype=torch.float64, callback=lambda d: states.append(d["x"]))
    rnd = SeededNoise([4, 5])
    x = x_up + float(grid[0]) * sch.noise(x_up, rnd)
    h, w = x_up.shape[-2:]
    amap = lambda s: blur_factors(sch.blur_sigma_at(s), 4, sch.min_scale).repeat(h // 4, w // 4)  # noqa: E731
    sig = grid.tolist()
    for i in range(len(sig) - 1):
        u0 = patch_dct(denoise(x, torch.full((2,), sig[i], dtype=torch.float64), None), 4)
        u = patch_dct(x, 4)
        x = patch_idct(amap(sig[i + 1]) * u0 + sig[i + 1] / sig[i] * (u - amap(sig[i]) * u0), 4)
        torch.testing.assert_close(states[i], x, atol=1e-12, rtol=0)


@pytest.mark.parametrize("solver", MULTISTEP)
def test_guidance_works_with_every_solver(solver):
    """The batched CFG wrapper gives the same images as an explicit two-pass guided denoiser."""
    denoise = tiny_denoiser(label_dim=3, dtype=torch.float64)
    y = torch.eye(3, dtype=torch.float64)[[0, 2]]
    x_up = upsample_nearest(torch.randn(2, 3, 2, 2, dtype=torch.float64), 4)

    def two_pass(x, sigma, labels):
        return 2.5 * denoise(x, sigma, labels) - 1.5 * denoise(x, sigma, None)

    kw = dict(solver=solver, sigma_grid="rho", num_steps=6, s_noise=0.2, dtype=torch.float64)
    a = relay_sampler(classifier_free_guidance(denoise, 2.5), x_up, y, randn_like=SeededNoise([1, 2]), **kw)
    b = relay_sampler(two_pass, x_up, y, randn_like=SeededNoise([1, 2]), **kw)
    torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


@pytest.mark.parametrize("solver", ["dpmpp-2m", "dpmpp-3m-pc"])
def test_images_depend_only_on_their_seed(solver):
    """Per-seed noise through the stochastic multistep solvers: batch 3 = three batches of 1."""
    denoise = tiny_denoiser()
    seeds = [3, 11, 2 ** 40]

    def run(idx):
        rnd = SeededNoise([seeds[i] for i in idx])
        base = sde_heun_sampler(denoise, rnd.randn(3, 4, 4), num_steps=6, solver=solver, sde_scale=0.1,
                                randn_like=rnd)
        return relay_sampler(denoise, upsample_nearest(base, 2), schedule=RelaySchedule(up_scale=2),
                             solver=solver, sigma_grid="lambda", lambda_frequency=1.0, num_steps=6, s_noise=0.3,
                             randn_like=rnd)

    together = run([0, 1, 2])
    apart = torch.cat([run([i]) for i in range(3)])
    torch.testing.assert_close(apart, together, atol=1e-5, rtol=0)
    assert not torch.equal(together[0], together[1])


# --------------------------------------------------------------------------------------------
# The stochastic variant: injected noise with the relay noise's covariance


N = 20000


def _randn(seed):
    g = torch.Generator().manual_seed(seed)
    return lambda t: torch.randn(t.shape, generator=g, dtype=t.dtype)


def _relay_samples(gaussian, solver, eta, sampler_schedule=None, s_block=None, steps=71):
    mean, cov = gaussian
    sch = RelaySchedule()
    oracle = RelayOracle(mean, cov, SHAPE, sch)
    sig = relay_grid("rho", steps, 0.008, 80.0, 7.0, 0.9)
    x_up = oracle.blurred_clean(float(sig[0]), N, 5)
    out = relay_sampler(oracle, x_up.float(), schedule=sampler_schedule or sch, sigmas=sig, solver=solver,
                        s_noise=eta, s_block=s_block, randn_like=_randn(6))
    zm, zc = gaussian_z_scores(out, mean, oracle.output_cov(float(sig[-1])))
    return zm.abs().max().item(), zc.abs().max().item(), zc.pow(2).mean().item()


@pytest.mark.parametrize("solver,eta", [("dpmpp-2m", 0.5), ("dpmpp-3m", 0.2), ("dpmpp-2m-pc", 0.2)])
def test_stochastic_solvers_preserve_the_marginals(gaussian, solver, eta):
    zm, zc, zc2 = _relay_samples(gaussian, solver, eta)
    assert zm < 5 and zc < 5.5 and zc2 < 1.6, (zm, zc, zc2)


def test_stochastic_solver_detects_wrong_noise_covariance(gaussian):
    """Negative control: the same solver injecting i.i.d. noise (α = 0) instead of the relay
    noise's covariance is caught by the same tolerances."""
    zm, zc, zc2 = _relay_samples(gaussian, "dpmpp-2m", 0.5, s_block=0.0)
    assert zm > 8 or zc2 > 3, (zm, zc2)


# --------------------------------------------------------------------------------------------
# Grids, counts and settings


def test_lambda_grid_is_uniform_in_the_chosen_frequency():
    sch = RelaySchedule()
    sig = relay_grid("lambda", 9, 0.008, 80.0, 7.0, 0.9, sch, lambda_frequency=2.0)
    lam = torch.log(sch.frequency_factor(sig, 2.0)) - torch.log(sig)
    steps = lam[1:] - lam[:-1]
    assert float(sig[0]) == 0.9 and float(sig[-1]) == 0.008 and (steps > 0).all()
    torch.testing.assert_close(steps, steps.mean().expand_as(steps), atol=1e-9, rtol=0)
    # the DC is geometric spacing
    torch.testing.assert_close(relay_grid("lambda", 9, 0.008, 80.0, 7.0, 0.9, sch, 0.0),
                               lambda_sigmas(9, 0.008, 0.9), atol=1e-12, rtol=0)
    rho = relay_grid("rho", 5, 0.008, 80.0, 7.0, 0.9)
    assert rho.tolist()[0] == pytest.approx(0.9) and rho.tolist()[-1] == pytest.approx(0.008) and len(rho) == 5


@pytest.mark.parametrize("solver", SOLVERS)
def test_nfe_counts_every_network_call(solver):
    calls = []

    def denoise(x, sigma, labels=None):
        calls.append(1)
        return torch.zeros_like(x)

    settings = RelaySamplerSettings(solver=solver, sigma_grid="rho", num_steps=5)
    relay_sampler(denoise, torch.zeros(1, 1, 8, 8), settings=settings)
    assert len(calls) == settings.nfe() == (9 if solver == "heun" else 5)


@pytest.mark.parametrize("call,match", [
    (lambda: RelaySamplerSettings(solver="euler"), "solver must be one of"),
    (lambda: RelaySamplerSettings(sigma_grid="cosine"), "sigma_grid"),
    (lambda: relay_sampler(None, torch.zeros(1, 1, 8, 8), solver="dpm"), "solver must be one of"),
    (lambda: relay_sampler(None, torch.zeros(1, 1, 8, 8), solver="dpmpp-3m", sigma_grid="rho", num_steps=3),
     "needs at least 3 steps"),
    (lambda: relay_sampler(None, torch.zeros(1, 1, 8, 8), solver="dpmpp-2m", sigmas=[0.5, 0.008]),
     "needs at least 2 steps"),
    (lambda: relay_sampler(None, torch.zeros(1, 1, 8, 8), solver="ddim", corrector="denoised"),
     "corrector applies to solver='heun' only"),
    (lambda: relay_sampler(None, torch.zeros(1, 1, 8, 8), sigma_grid="lambda", lambda_frequency=5.0),
     "lambda_frequency"),
    (lambda: relay_sampler(None, torch.zeros(1, 1, 8, 8), sigma_grid="rho", truncation_sigma=0.005),
     "truncation_sigma"),
    (lambda: edm_sampler(None, torch.zeros(1, 1, 8, 8), solver="dpmpp-2m", S_churn=10), "S_churn"),
    (lambda: edm_sampler(None, torch.zeros(1, 1, 8, 8), solver="nope"), "solver must be one of"),
])
def test_bad_solver_input_fails_before_any_evaluation(call, match):
    with pytest.raises(ValueError, match=match):
        call()


if __name__ == "__main__":
    # the numbers of docs/solvers.md §6: slopes from 128 to 256 steps and few-step error ratios
    mean, cov = random_gaussian(SHAPE, seed=0)
    relay, edm = RelayOracle(mean, cov, SHAPE, RelaySchedule()), EdmOracle(mean, cov, SHAPE)
    relay_grid_of = lambda n: relay_grid("rho", n, 0.008, 80.0, 7.0, 0.9)           # noqa: E731
    print("solver (corrector)        relay: errors at 64/128/256 steps, slope   plain EDM: slope")
    for solver, corrector in RELAY_ORDERS:
        errors = [_exact_relay(relay, relay_grid_of(n), solver=solver, corrector=corrector)[1] for n in (64, 128, 256)]
        line = f"{solver} ({corrector})".ljust(26) + " ".join(f"{e:.3e}" for e in errors)
        line += f"  {_slopes(errors)[-1]:.2f}"
        if solver != "heun":
            edm_errors = [_exact_edm(edm, cov, karras_sigmas(n, 0.002, 80.0, 7.0), solver) for n in (64, 128, 256)]
            line += f"   {_slopes(edm_errors)[-1]:.2f}"
        print(line, flush=True)
    print("relay, higher orders run on: slopes 256→512 and 512→1024 steps")
    for solver in ("dpmpp-3m", "dpmpp-2m-pc", "dpmpp-3m-pc"):
        errors = [_exact_relay(relay, relay_grid_of(n), solver=solver)[1] for n in (256, 512, 1024)]
        print(f"  {solver}: " + " ".join(f"{x:.2f}" for x in _slopes(errors)), flush=True)
    heun = _exact_relay(relay, relay_grid_of(8))[1]
    print(f"15-16 evaluations: official heun (8 steps) covariance error {heun:.3e}; heun error / solver error:")
    for solver in MULTISTEP:
        print(f"  {solver}: {heun / _exact_relay(relay, relay_grid_of(16), solver=solver)[1]:.2f}", flush=True)
