"""Steppers: every sampler's update rule, one network evaluation per call (docs/method.md §5).

A stepper owns a stage's σ grid and its state between evaluations. Whoever drives it — the
sampler functions' loop (`run_stepper`) or the diffusers scheduler — does only this:

    x = stepper.start(x)                      # pure unit noise (base) or the upsampled image (relay)
    while not stepper.done:
        x = stepper.step(x, D(x; stepper.sigma))

`step` returns the state the next evaluation sees, and after the last evaluation the image.
`eval_sigmas` lists the σ of every evaluation beforehand (the scheduler's timesteps).

Kinds: `EDMHeun` (EDM Algorithm 2 with churn), `DDIMHeun` (the DDIM-η Heun step of the official
relay sampler and CelebA-HQ stage 1, with the patch re-blur on a relay stage, §5.4) and
`Multistep` (the exponential integrators of solvers.py, one evaluation per σ). `make_stepper`
picks one from a stage's settings.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..relay import RelaySchedule, blur
from .settings import BaseSamplerSettings, RelaySamplerSettings
from .solvers import FrequencyBasis, check_solver, multistep_coefficients

Noise = Callable[[torch.Tensor], torch.Tensor]


class Stepper:
    """What every stepper shares: the grid, the evaluation counter and the start.

    sigmas: the stage's σ grid (descending); noise: the stage's unit noise (i.i.d. for a base
    stage, the relay mixture with block noise for a relay stage), called once per draw;
    from_noise: the stage starts from pure noise (x = σ₀·ε, ε given to `start`) rather than from
    an image (x = image + σ₀·noise). After each call, `denoised` is the step's estimate of x̂₀
    and `event` the finished grid step's record (step, sigma, sigma_next, x, denoised) or None
    while a step is half done."""

    def __init__(self, sigmas: list[float], noise: Noise, from_noise: bool):
        self.sigmas = [float(s) for s in sigmas]
        self.noise = noise
        self.from_noise = from_noise
        self.eval_sigmas = list(self.sigmas)
        self.k = 0                                                 # evaluations consumed
        self.denoised: torch.Tensor | None = None
        self.event: dict | None = None

    @property
    def done(self) -> bool:
        return self.k >= len(self.eval_sigmas)

    @property
    def sigma(self) -> float:
        """σ of the next evaluation."""
        return self.eval_sigmas[self.k]

    def start(self, x: torch.Tensor) -> torch.Tensor:
        s0 = self.sigmas[0]
        return x * s0 if self.from_noise else x + s0 * self.noise(x)

    def step(self, x: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        if self.done:
            raise ValueError("the stepper has run all its evaluations")
        self.k += 1
        self.event = None
        return self._step(self.k - 1, x, den)

    def _step(self, k: int, x: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class _Heun(Stepper):
    """Two evaluations per grid step — the predictor's at σ̂_i and the corrector's at σ_{i+1} —
    and one at the last σ, which ends the stage: 2n − 1 for n σ's. σ̂_i = σ_i unless churned."""

    def __init__(self, sigmas, noise, from_noise, hats: list[float] | None = None):
        super().__init__(sigmas, noise, from_noise)
        self.hats = list(hats) if hats is not None else list(self.sigmas)
        self.eval_sigmas = [self.hats[0]] + [s for i in range(1, len(self.sigmas))
                                             for s in (self.sigmas[i], self.hats[i])]
        self._x = self._den = None

    def _step(self, k, x, den):
        i, corrector = divmod(k, 2)
        s, last = self.hats[i], i == len(self.sigmas) - 1
        if not corrector and last:
            self.denoised = den
            out = self.finish(x, den, s)
            self.event = dict(step=i, sigma=s, sigma_next=0.0, x=out, denoised=den)
            return out
        s_next = self.sigmas[i + 1]
        if not corrector:
            self._x, self._den, self.denoised = x, den, den
            return self.predict(x, den, s, s_next)
        x0, den0 = self._x, self._den
        self._x = self._den = None
        self.denoised = den                              # the corrector's x̂₀ where it makes one
        out = self.correct(x0, den0, x, den, s, s_next)
        self.event = dict(step=i, sigma=s, sigma_next=s_next, x=out, denoised=den0)
        return self.enter(out, i + 1)

    def enter(self, x: torch.Tensor, i: int) -> torch.Tensor:
        """The state at σ_i → the predictor's input at σ̂_i (identity unless churned)."""
        return x


def edm_euler(x: torch.Tensor, den: torch.Tensor, s: float, s_next: float) -> torch.Tensor:
    """EDM's Euler step from σ = s to s_next along d = (x − D)/s (Algorithm 2)."""
    return x + (s_next - s) * ((x - den) / s)


def edm_heun(x, den, x_pred, den_pred, s: float, s_next: float) -> torch.Tensor:
    """EDM's Heun step: the Euler prediction x_pred corrected by the mean of the two slopes."""
    d, d2 = (x - den) / s, (x_pred - den_pred) / s_next
    return x + (s_next - s) * (d + d2) / 2


class EDMHeun(_Heun):
    """EDM's stochastic Heun sampler (Karras et al. 2022, Algorithm 2): where S_min ≤ σ_i ≤ S_max,
    σ is first raised to σ̂_i = σ_i(1 + γ), γ = min(S_churn/n, √2 − 1), by adding fresh noise
    (one draw per churned step, in order); Euler + Heun correction down the grid, and a final
    Euler step to σ = 0."""

    def __init__(self, sigmas, noise, S_churn=0.0, S_min=0.0, S_max=float("inf"), S_noise=1.0):
        n = len(sigmas)
        gammas = [min(S_churn / n, math.sqrt(2) - 1) if S_min <= s <= S_max else 0.0 for s in sigmas]
        super().__init__(sigmas, noise, True, [s * (1 + g) for s, g in zip(sigmas, gammas)])
        self.gammas, self.S_noise = gammas, S_noise

    def start(self, x):
        return self.enter(x * self.sigmas[0], 0)

    def enter(self, x, i):
        if self.gammas[i] > 0:
            s, s_hat = self.sigmas[i], self.hats[i]
            x = x + math.sqrt(s_hat ** 2 - s ** 2) * self.S_noise * self.noise(x)
        return x

    def predict(self, x, den, s, s_next):
        return edm_euler(x, den, s, s_next)

    def correct(self, x, den, x_pred, den_pred, s, s_next):
        return edm_heun(x, den, x_pred, den_pred, s, s_next)

    def finish(self, x, den, s):
        return edm_euler(x, den, s, 0.0)


def ddim_renoise(x0_hat: torch.Tensor, x_cur: torch.Tensor, s: float, s_next: float, eta: float,
                 fresh_noise: Noise, reblur: Callable[[torch.Tensor, float], torch.Tensor] | None) -> torch.Tensor:
    """The state at s_next from x̂₀ and x at s: re-blur x̂₀, keep √(1−η²)·s_next/s of the noise
    x − A x̂₀, add η·s_next of fresh noise (docs/method.md §5.4). reblur None: no blur (EDM)."""
    gamma = math.sqrt(1 - eta ** 2) * s_next / s
    if reblur is None:
        y = torch.lerp(x0_hat, x_cur, gamma)
    else:
        y = reblur(x0_hat, s_next) + gamma * (x_cur - reblur(x0_hat, s))
    return y + (eta * s_next) * fresh_noise(x_cur) if eta > 0 else y


def heun_denoised(x, den, x_pred, den_pred, s: float, s_next: float, corrector: str) -> torch.Tensor:
    """The Heun corrector's x̂₀ from the two evaluations (see `DDIMHeun`)."""
    if corrector == "denoised":
        return (den + den_pred) / 2
    return x - (s / 2) * ((x - den) / s + (x_pred - den_pred) / s_next)


class DDIMHeun(_Heun):
    """Each step re-blurs the predicted clean image to the next level and re-noises it, keeping
    a fraction √(1−η²) of the predicted noise and adding fresh noise of weight η (docs/method.md §5.4):

        x_{i+1} = A_{i+1} x̂₀ + γ (x_i − A_i x̂₀) + η σ_{i+1} ε̃,   γ = √(1−η²) σ_{i+1}/σ_i,

    first with x̂₀ = D(x_i; σ_i), then (Heun) with a corrected x̂₀:
      corrector="noise" (official, = EDM's Heun when A = I): the x̂₀ implied by the mean of the
        noise directions (x − D)/σ at x_i and at the predicted x̃_{i+1}. Wherever A ≠ I (every
        relay step) this is only first-order accurate, whether or not A changes across the step
        (docs/solvers.md §5; tests/test_solvers.py, tests/test_sampler_oracle.py);
      corrector="denoised": the mean of D(x_i; σ_i) and D(x̃_{i+1}; σ_{i+1}) — second order
        with or without blur; same cost.
    The predictor's fresh noise is discarded and drawn again for the corrector (as the official
    code). The last evaluation returns D(x; σ_last). Identical, term by term, to the paper's update
    in patch-DCT space (§3.3), because the blur A is diagonal there; with A = I (reblur None) it is
    the DDIM-η / "SDE Heun" update."""

    def __init__(self, sigmas, noise, from_noise: bool, eta: float, corrector: str,
                 reblur: Callable[[torch.Tensor, float], torch.Tensor] | None = None):
        super().__init__(sigmas, noise, from_noise)
        self.eta, self.corrector, self.reblur = eta, corrector, reblur

    def predict(self, x, den, s, s_next):
        return ddim_renoise(den, x, s, s_next, self.eta, self.noise, self.reblur)

    def correct(self, x, den, x_pred, den_pred, s, s_next):
        self.denoised = heun_denoised(x, den, x_pred, den_pred, s, s_next, self.corrector)
        return ddim_renoise(self.denoised, x, s, s_next, self.eta, self.noise, self.reblur)

    def finish(self, x, den, s):
        return den


class Multistep(Stepper):
    """The multistep solver (solvers.py) one network evaluation at a time: `step(x, D(x; σ_i))`
    returns the state for σ_{i+1}, and D itself after the last σ. corrector: once x̂₀ at the new σ
    is known (evaluated at the predicted state, needed for the next step anyway), redo the step
    with it (Eq. 10 of docs/solvers.md) — one order more, no extra evaluation. Draws: one
    stage-noise sample per step when η > 0 (shared by predictor and corrector). `event` after
    every evaluation: x is the predicted state, the one the next evaluation sees (a corrector
    then replaces it as the step's start)."""

    def __init__(self, sigmas: list[float], noise: Noise, from_noise: bool, order: int, eta: float,
                 log_factors: torch.Tensor, basis: FrequencyBasis, corrector: bool = False):
        super().__init__(sigmas, noise, from_noise)
        self.order, self.eta, self.basis = order, eta, basis
        self.pred = multistep_coefficients(log_factors, self.sigmas, order, eta)
        # corrected steps: all with the corrector; else, for order ≥ 3, the warm-up steps (order 1,
        # 2), whose lower order would otherwise cap the global order at 2 (docs/solvers.md §2.3)
        self.corrected = len(self.sigmas) if corrector else (order - 1 if order >= 3 else 0)
        self.corr = (multistep_coefficients(log_factors, self.sigmas, order, eta, corrector=True)
                     if self.corrected else None)
        self.history: list[torch.Tensor] = []                      # U x̂₀, newest first
        self.x_prev = self.fresh = None

    @property
    def current_state(self) -> torch.Tensor | None:
        """The state at the σ just evaluated, after the corrector where the solver corrects (the
        start of the step just predicted); None before the first evaluation. After the last
        evaluation it is stale (the output is D, not a state)."""
        return self.x_prev

    def _step(self, i, x, den):
        basis, last = self.basis, i == len(self.sigmas) - 1
        self.denoised = den
        self.history.insert(0, basis.analyse(den))
        del self.history[self.order + 1:]
        if 0 < i <= self.corrected and not last:
            a, tables = self.corr[i - 1]
            x = torch.add(basis.synthesise(basis.combine(tables, self.history)), self.x_prev, alpha=a)
            if self.fresh is not None:
                x = x.add_(self.fresh)
        if last:
            x = den
        else:
            a, tables = self.pred[i]
            self.x_prev = x
            x = torch.add(basis.synthesise(basis.combine(tables, self.history)), x, alpha=a)
            if self.eta > 0:
                self.fresh = self.noise(x).mul_(self.eta * self.sigmas[i + 1])
                x = x.add_(self.fresh)
        self.event = dict(step=i, sigma=self.sigmas[i], sigma_next=0.0 if last else self.sigmas[i + 1], x=x,
                          denoised=den)
        return x


def make_stepper(settings: BaseSamplerSettings | RelaySamplerSettings, schedule: RelaySchedule | None = None,
                 grid=None, randn_like: Noise = torch.randn_like) -> Stepper:
    """The stepper a stage's settings ask for. schedule: the relay model's forward process (relay
    stages; the settings' own L and α are applied here); grid: σ's to run instead of the settings'
    grid (descending, checked by the caller); randn_like: the i.i.d. draws the stage noise is made of."""
    relay = isinstance(settings, RelaySamplerSettings)
    if relay and schedule is None:
        raise ValueError("a relay stage's stepper needs the model's RelaySchedule")
    sch = settings.sampling_schedule(schedule) if relay else None
    sig = settings.sigmas(schedule) if grid is None else torch.as_tensor(grid, dtype=torch.float64)
    order, corrector = check_solver(settings.solver, len(sig) - 1)
    noise = (lambda like: sch.noise(like, randn_like)) if relay else randn_like     # noqa: E731
    grid_list = sig.tolist()
    if order:
        if relay:
            log_factors, basis, eta = torch.log(sch.factors(sig)), FrequencyBasis(sch.up_scale), settings.eta
        else:                                                       # plain EDM: d ≡ 1, one 1×1 table
            log_factors = torch.zeros(len(sig), 1, 1, dtype=torch.float64)
            basis, eta = FrequencyBasis(1), settings.eta if settings.method == "sde" else 0.0
        return Multistep(grid_list, noise, not relay, order, eta, log_factors, basis, corrector)
    if relay:
        blur_sigmas = {s: float(sch.blur_sigma_at(s)) for s in grid_list}

        def reblur(x0: torch.Tensor, s: float) -> torch.Tensor:
            return blur(x0, blur_sigmas[s], sch.up_scale, sch.min_scale, check=False)
        return DDIMHeun(grid_list, noise, False, settings.eta, settings.corrector, reblur)
    if settings.method == "sde":
        return DDIMHeun(grid_list, noise, True, settings.eta, settings.corrector)
    return EDMHeun(grid_list, noise, settings.S_churn, settings.S_min, settings.S_max, settings.S_noise)


def run_stepper(stepper: Stepper, evaluate: Callable[[torch.Tensor, float], torch.Tensor], x: torch.Tensor,
                callback: Callable[[dict], None] | None = None) -> torch.Tensor:
    """Drive a stepper to the end: evaluate(x, σ) → D(x; σ). callback(event) after every finished
    grid step (Heun) or evaluation (multistep)."""
    x = stepper.start(x)
    while not stepper.done:
        x = stepper.step(x, evaluate(x, stepper.sigma))
        if callback is not None and stepper.event is not None:
            callback(stepper.event)
    return x
