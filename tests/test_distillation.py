"""Progressive-distillation targets (distillation/targets.py, docs/distillation.md): one student
step with the closed-form target lands exactly where the teacher's two steps land, on the
Gaussian oracle with blur and block noise, for every frequency and the last step; the student's
step is the library's `ddim` solver; the teachers' orders."""

from __future__ import annotations

import pytest
import torch

from relay_diffusion.distillation import StepFrame, ddim_step, distillation_target, snr_weights, teacher_steps
from relay_diffusion.distillation.targets import weighted_error
from relay_diffusion.relay import RelaySchedule, patch_dct
from relay_diffusion.sampling.settings import BaseSamplerSettings, RelaySamplerSettings
from relay_diffusion.sampling.steppers import make_stepper
from relay_diffusion.schedules import PUBLISHED_SCHEDULES

from helpers.gaussian_oracle import EdmOracle, RelayOracle, random_gaussian

SHAPE = (1, 8, 8)
SCHEDULE = RelaySchedule(up_scale=4, blur_sigma_max=3.0, prob_length=0.93, block_scale=0.15)


def evaluator(oracle):
    return lambda x, s: oracle(x, torch.full((x.shape[0],), s, dtype=x.dtype))


@pytest.fixture(scope="module")
def relay():
    mean, cov = random_gaussian(SHAPE, seed=3)
    return RelayOracle(mean, cov, SHAPE, SCHEDULE)


def noisy_state(oracle, sigma, n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    start = oracle.blurred_clean(sigma, n, seed)
    return start + sigma * SCHEDULE.noise(start, lambda t: torch.randn(t.shape, generator=g, dtype=t.dtype))


@pytest.mark.parametrize("solver", ["ddim", "ddim-pc", "dpmpp-2m-pc"])
@pytest.mark.parametrize("sigmas", [(0.9, 0.5, 0.2), (0.2, 0.05, 0.008), (0.05, 0.02, 0.0)])
def test_one_student_step_lands_where_two_teacher_steps_land(relay, solver, sigmas):
    """Eq. D2 on the oracle, blur and block noise on (α = 0.15): the student's step with the
    target reproduces the teacher's state at σ_t (the last step: its output) to float64 precision,
    in every patch-DCT frequency."""
    frame = StepFrame(RelaySamplerSettings(solver=solver), SCHEDULE)
    s, m, t = sigmas
    x_s = noisy_state(relay, s)
    x_t, evaluations = teacher_steps(frame, evaluator(relay), x_s, s, m, t)
    assert evaluations == (3 if solver.endswith("-pc") and t > 0 else 2)
    target = distillation_target(frame, x_s, x_t, s, t)
    student = ddim_step(frame, x_s, target, s, t)
    err = (patch_dct(student, 4) - patch_dct(x_t, 4)).abs().amax(dim=(0, 1))     # per frequency (tiled)
    assert err.max() < 1e-12 * x_t.abs().max()
    if t == 0:
        assert torch.allclose(target, x_t, rtol=0, atol=1e-12)                 # the teacher's output


def test_the_student_step_is_the_ddim_solver(relay):
    """Student steps on a grid, then x̂₀ at its last σ = the `ddim` solver's stepper (η = 0) on
    that grid — what relay_sampler and the diffusers scheduler drive: distilled stages sample
    with the library's engine."""
    grid = [0.9, 0.3, 0.05, 0.01]
    frame = StepFrame(RelaySamplerSettings(solver="ddim", eta=0.0), SCHEDULE)
    x0, evaluate = noisy_state(relay, grid[0]), evaluator(relay)
    x = x0
    for s, t in zip(grid, grid[1:] + [0.0]):
        x = ddim_step(frame, x, evaluate(x, s), s, t)
    stepper = make_stepper(frame.settings, SCHEDULE, grid)
    y = x0
    while not stepper.done:
        y = stepper.step(y, evaluate(y, stepper.sigma))
    assert torch.allclose(x, y, rtol=0, atol=1e-12)


def test_the_step_coefficients_are_positive_on_every_published_schedule():
    """b_k = d_k(σ_t) − (σ_t/σ_s)·d_k(σ_s) > 0 (d non-increasing in σ), so Eq. D2 never divides by 0."""
    for schedule in PUBLISHED_SCHEDULES.values():
        frame = StepFrame(RelaySamplerSettings(), schedule)
        sig = torch.logspace(0, -2.2, 40, dtype=torch.float64).tolist()
        for s, t in zip(sig, sig[1:]):
            a, b = frame.ddim_coefficients(s, t)
            assert a == pytest.approx(t / s) and (b > 0).all() and (b <= 1).all()


def test_base_stage_is_plain_edm_ddim():
    frame = StepFrame(BaseSamplerSettings(solver="ddim"))
    x_s, x0 = torch.randn(2, 1, 4, 4, dtype=torch.float64), torch.randn(2, 1, 4, 4, dtype=torch.float64)
    assert torch.allclose(ddim_step(frame, x_s, x0, 2.0, 0.5), 0.25 * x_s + 0.75 * x0, atol=1e-15)
    assert torch.allclose(distillation_target(frame, x_s, 0.25 * x_s + 0.75 * x0, 2.0, 0.5), x0, atol=1e-14)


def test_second_order_teachers_are_closer_to_the_converged_ode():
    """The teacher's two steps with a corrector are much closer to the exact ODE solution between
    σ_s and σ_t than two first-order steps (base stage, EDM oracle)."""
    mean, cov = random_gaussian(SHAPE, seed=5)
    evaluate = evaluator(EdmOracle(mean, cov, SHAPE))
    x_s = mean.reshape(1, *SHAPE) + 2.0 * torch.randn(4, *SHAPE, dtype=torch.float64)
    fine = torch.logspace(torch.log10(torch.tensor(2.0)), torch.log10(torch.tensor(0.5)), 2001,
                          dtype=torch.float64).tolist()
    frame = StepFrame(BaseSamplerSettings(solver="ddim"))
    exact = x_s
    for s, t in zip(fine, fine[1:]):
        exact = ddim_step(frame, exact, evaluate(exact, s), s, t)
    err = {}
    for solver in ("ddim", "ddim-pc", "dpmpp-2m-pc"):
        x_t, _ = teacher_steps(StepFrame(BaseSamplerSettings(solver=solver)), evaluate, x_s, 2.0, 1.0, 0.5)
        err[solver] = (x_t - exact).abs().max().item()
    assert err["ddim-pc"] < 0.4 * err["ddim"] and err["dpmpp-2m-pc"] < 0.4 * err["ddim"]   # 0.27, 0.18


def test_weights_truncate_the_snr_at_one():
    frame = StepFrame(RelaySamplerSettings(), SCHEDULE)
    w = snr_weights(frame, 0.05)
    d = SCHEDULE.for_sampling(None).factors(torch.tensor(0.05, dtype=torch.float64))
    assert torch.allclose(w, (d ** 2 / 0.05 ** 2).clamp(min=1))
    assert w[0, 0] == pytest.approx(400.0) and w.min() >= 1
    assert torch.equal(snr_weights(StepFrame(BaseSamplerSettings()), 2.0), torch.ones(1, 1, dtype=torch.float64))
    pred, target = torch.zeros(2, 1, 8, 8, dtype=torch.float64), torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    target[0, 0, 0, 0] = 1.0                                                    # a unit error in pixel (0, 0)
    loss = weighted_error(frame, pred, target, [0.05, 0.05])
    u = patch_dct(target[:1], 4)[0, 0, :4, :4] ** 2                             # its spectrum in patch 0
    assert loss[1] == 0 and loss[0].item() == pytest.approx((w * u).sum().item() / 64)


def test_bad_steps_are_refused(relay):
    frame = StepFrame(RelaySamplerSettings(solver="ddim"), SCHEDULE)
    with pytest.raises(ValueError, match="σ_s > σ_m > σ_t"):
        teacher_steps(frame, evaluator(relay), torch.zeros(1, *SHAPE), 0.5, 0.6, 0.1)
    with pytest.raises(ValueError, match="single-evaluation solver"):
        teacher_steps(StepFrame(RelaySamplerSettings(), SCHEDULE), evaluator(relay), torch.zeros(1, *SHAPE),
                      0.5, 0.3, 0.1)
    with pytest.raises(ValueError, match="needs the model's RelaySchedule"):
        StepFrame(RelaySamplerSettings())


class LinearStudent(torch.nn.Module):
    """D(x; σ) = μ + K_σ(x − A_σμ) with one learnable K per student σ, initialised from the
    relay oracle (the exact one-step denoiser): for Gaussian data the two-step teacher map is
    affine in x, so a student of this form can fit the distillation target exactly."""

    def __init__(self, oracle, sigmas):
        super().__init__()
        self.oracle, self.sigmas = oracle, list(sigmas)
        self.gains = torch.nn.ParameterList([torch.nn.Parameter(oracle.gain(s)[1].clone()) for s in self.sigmas])

    def forward(self, x, sigma, labels=None):
        out = torch.empty_like(x.flatten(1))
        for j, s in enumerate(self.sigmas):
            rows = (sigma - s).abs() < 1e-9 * s
            a, _ = self.oracle.gain(s)
            m = self.oracle.mean
            out[rows] = m + (x[rows].flatten(1) - a @ m) @ self.gains[j].T
        return out.reshape(x.shape)


def test_distilling_an_oracle_initialised_student_drives_the_loss_to_zero(relay):
    """Distillation of a student that can represent the target (relay stage, blur and block noise
    on; every step, the relay start and the last one): the target is a fixed affine function of
    the state, so minimising the loss of Eq. D4 on a batch takes it from the oracle's 0.36 to ≈ 0,
    and the fitted student is as good on states it never saw."""
    from relay_diffusion.distillation.loss import DistillationLoss
    from relay_diffusion.seeds import SeededNoise

    loss_fn = DistillationLoss(StepFrame(RelaySamplerSettings(solver="ddim"), SCHEDULE), relay, (0.9, 0.4, 0.15, 0.05))
    student = LinearStudent(relay, loss_fn.student_grid)
    images, n = relay.blurred_clean(1e-9, 320, seed=7), 320                 # clean draws x₀
    opt = torch.optim.LBFGS(student.parameters(), max_iter=300, line_search_fn="strong_wolfe", history_size=50,
                            tolerance_grad=1e-12, tolerance_change=1e-15)

    def closure():
        opt.zero_grad()
        loss = loss_fn(student, images, generator=SeededNoise(range(n))).sum() / n
        loss.backward()
        return loss
    first = closure().item()
    opt.step(closure)
    unseen = relay.blurred_clean(1e-9, 64, seed=8)
    held_out = loss_fn(student, unseen, generator=SeededNoise(range(10**6, 10**6 + 64))).sum().item() / 64
    assert closure().item() < 1e-5 * first and held_out < 1e-4 * first


@pytest.mark.parametrize("grid", [(0.9, 0.4), (0.9, 0.4, 0.15, 0.05)])
def test_relay_starts_move_only_the_first_steps_start(relay, grid):
    """With `relay_starts` the first step starts from the given low-res images plus the same noise
    (docs/distillation.md §5): the loss equals the default loss on images whose box-downsampling
    is those starts — exactly where every sample is at step 0 (one student step), and on the
    step-0 samples only otherwise."""
    from relay_diffusion.distillation.loss import DistillationLoss
    from relay_diffusion.relay import upsample_nearest
    from relay_diffusion.seeds import SeededNoise

    n = 16
    images = relay.blurred_clean(1e-9, n, seed=4)
    starts = torch.rand(n, 1, 2, 2, dtype=images.dtype) * 2 - 1
    moved = images + upsample_nearest(starts - torch.nn.functional.avg_pool2d(images, 4), 4)
    frame = StepFrame(RelaySamplerSettings(solver="ddim"), SCHEDULE)
    calls = []

    def given(b, labels, w, draws):
        calls.append(b)
        draws.randn_like(starts)                   # a sampler's own draws come after every other
        return starts

    def student(x, sigma, labels=None):            # the oracle, one σ at a time
        out = torch.empty_like(x)
        for s in sigma.unique():
            rows = sigma == s
            out[rows] = relay(x[rows], sigma[rows])
        return out
    plain = DistillationLoss(frame, relay, grid)
    started = DistillationLoss(frame, relay, grid, relay_starts=given)
    a = started(student, images, generator=SeededNoise(range(n))).sum(dim=(1, 2, 3))
    b = plain(student, moved, generator=SeededNoise(range(n))).sum(dim=(1, 2, 3))
    c = plain(student, images, generator=SeededNoise(range(n))).sum(dim=(1, 2, 3))
    step = (SeededNoise(range(n)).rand(dtype=torch.float64) * (len(grid) // 2)).long().flatten()
    at0 = step == 0
    assert at0.any() and calls == [n]
    torch.testing.assert_close(a[at0], b[at0], rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(a[~at0], c[~at0], rtol=1e-9, atol=1e-12)
    assert not torch.allclose(a[at0], c[at0])                   # the starts did change the first step
    with pytest.raises(ValueError, match="relay_starts is for a relay stage"):
        DistillationLoss(StepFrame(BaseSamplerSettings()), relay, grid, relay_starts=given)
