"""Targets of progressive distillation in the patch-DCT basis (docs/distillation.md, Eq. D1–D5).

A distilled stage samples with first-order steps on its own grid — DDIM per patch-DCT frequency,
the `ddim` solver with η = 0 (docs/solvers.md Eq. 5 with one node) — so a student step from σ_s
to σ_t is, per frequency k, affine in the student's x̂₀ (Eq. D1):

    u_t,k = a·u_s,k + b_k·x̂₀,k,    a = σ_t/σ_s,   b_k = d_k(σ_t) − a·d_k(σ_s) > 0,

and the x̂₀ that lands exactly where the teacher's two steps σ_s → σ_m → σ_t land is
x̂₀*,k = (u*_t,k − a·u_s,k)/b_k (Eq. D2). The last step goes to σ = 0 (a = 0, b ≡ 1): its target is
the teacher's output. A base stage is the same with d ≡ 1 (a 1×1 table, plain EDM).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from ..relay import RelaySchedule
from ..sampling.settings import RelaySamplerSettings
from ..sampling.solvers import FrequencyBasis, multistep_coefficients
from ..sampling.steppers import make_stepper

Evaluate = Callable[[torch.Tensor, float], torch.Tensor]       # (x, σ) → D(x; σ)


@dataclasses.dataclass(frozen=True)
class StepFrame:
    """The frame a stage's steps are written in: its sampler settings, and for a relay stage the
    model's forward process (the settings' own L and α applied, as in the sampler)."""

    settings: object                          # BaseSamplerSettings | RelaySamplerSettings
    schedule: RelaySchedule | None = None     # the model's; None for a base stage

    def __post_init__(self):
        if isinstance(self.settings, RelaySamplerSettings) and self.schedule is None:
            raise ValueError("a relay stage's frame needs the model's RelaySchedule")

    @classmethod
    def of_teacher(cls, config, solver: str) -> "StepFrame":
        """A distillation round's frame: the teacher's stage (`models.ModelConfig`) stepping with
        `solver`, deterministically (Eq. D5)."""
        return cls(config.kind.settings(solver=solver, eta=0.0), config.schedule)

    @property
    def sampling_schedule(self) -> RelaySchedule | None:
        return self.settings.sampling_schedule(self.schedule) if self.schedule is not None else None

    @property
    def basis(self) -> FrequencyBasis:
        sch = self.sampling_schedule
        return FrequencyBasis(sch.up_scale if sch is not None else 1)

    def log_factors(self, sigmas: list[float]) -> torch.Tensor:
        """[n, p, p] float64 log d_k(σ) (zeros for a base stage)."""
        sch = self.sampling_schedule
        sig = torch.tensor(sigmas, dtype=torch.float64)
        if sch is None:
            return torch.zeros(len(sigmas), 1, 1, dtype=torch.float64)
        return torch.log(sch.factors(sig))

    def ddim_coefficients(self, sigma_s: float, sigma_t: float) -> tuple[float, torch.Tensor]:
        """(a, b) of Eq. D1: a scalar, b a [p, p] float64 table (positive everywhere)."""
        if not sigma_s > sigma_t >= 0:
            raise ValueError(f"a step needs σ_s > σ_t ≥ 0, got {sigma_s} → {sigma_t}")
        if sigma_t == 0:                                       # the last step: output x̂₀ itself
            p = self.basis.p
            return 0.0, torch.ones(p, p, dtype=torch.float64)
        a, tables = multistep_coefficients(self.log_factors([sigma_s, sigma_t]), [sigma_s, sigma_t], 1, 0.0)[0]
        return a, tables[0]


def ddim_step(frame: StepFrame, x_s: torch.Tensor, x0: torch.Tensor, sigma_s: float, sigma_t: float) -> torch.Tensor:
    """The student's step σ_s → σ_t with its estimate x0 (Eq. D1), in pixel space."""
    a, b = frame.ddim_coefficients(sigma_s, sigma_t)
    basis = frame.basis
    return torch.add(basis.synthesise(basis.combine(b[None], [basis.analyse(x0)])), x_s, alpha=a)


def distillation_target(frame: StepFrame, x_s: torch.Tensor, x_t: torch.Tensor, sigma_s: float,
                        sigma_t: float) -> torch.Tensor:
    """x̂₀* of Eq. D2: the estimate with which `ddim_step` goes from x_s at σ_s exactly to x_t at
    σ_t (σ_t = 0: x_t itself, the teacher's output)."""
    a, b = frame.ddim_coefficients(sigma_s, sigma_t)
    basis = frame.basis
    residual = basis.analyse(torch.add(x_t, x_s, alpha=-a))
    return basis.synthesise(basis.combine((1 / b)[None], [residual]))


def snr_weights(frame: StepFrame, sigma_s: float) -> torch.Tensor:
    """Per-frequency loss weights at the step's start (Eq. D4): max(SNR_k, 1), SNR_k = d_k(σ_s)²/σ_s²
    — progressive distillation's truncated-SNR weighting, one SNR per patch-DCT frequency."""
    snr = torch.exp(2 * frame.log_factors([sigma_s])[0]) / sigma_s ** 2
    return snr.clamp(min=1.0)


def frequency_weighted_squares(frame: StepFrame, diff: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(U diff)² with coefficient k of every patch of sample b weighted by weights[b, k] ([B, p, p]
    tables tiled over the patches): the terms of Eq. D4, [B, C, H, W] in patch-DCT order."""
    basis = frame.basis
    err = basis.analyse(diff) ** 2
    b, c, h, w = err.shape
    p = basis.p
    return (err.view(b, c, h // p, p, w // p, p) * weights[:, None, None, :, None, :]).view(b, c, h, w)


def weighted_error(frame: StepFrame, pred: torch.Tensor, target: torch.Tensor, sigma_s) -> torch.Tensor:
    """Per-sample loss of Eq. D4: mean over pixels of Σ_k w_k(σ_s) (U(pred − target))_k², w the
    `snr_weights` (one σ_s per sample: a float or a [B] sequence)."""
    sig = [float(sigma_s)] * pred.shape[0] if isinstance(sigma_s, (int, float)) else [float(s) for s in sigma_s]
    weights = torch.stack([snr_weights(frame, s) for s in sig]).to(pred)
    return frequency_weighted_squares(frame, pred - target, weights).flatten(1).mean(1)


def teacher_steps(frame: StepFrame, evaluate: Evaluate, x_s: torch.Tensor, sigma_s: float, sigma_m: float,
                  sigma_t: float) -> tuple[torch.Tensor, int]:
    """The teacher's two steps σ_s → σ_m → σ_t from x_s with the frame's solver (Eq. D5): the
    state at σ_t (σ_t = 0: the output D(x; σ_m)) and the evaluations spent. Deterministic (η = 0).
    With a corrector ("-pc" solvers) the state at σ_t is the corrected one, which takes the
    evaluation at σ_t; without, two evaluations. The steps are the library's `Multistep`."""
    if not sigma_s > sigma_m > sigma_t >= 0:
        raise ValueError(f"teacher steps need σ_s > σ_m > σ_t ≥ 0, got {sigma_s}, {sigma_m}, {sigma_t}")
    settings = frame.settings.with_overrides({"eta": 0.0})
    if settings.solver == "heun":
        raise ValueError("distillation teachers take a single-evaluation solver (ddim, ddim-pc, dpmpp-2m-pc, …)")
    corrector = settings.solver.endswith("-pc")
    if sigma_t == 0:             # one real step before the output: its first-order form
        settings = settings.with_overrides({"solver": "ddim-pc" if corrector else "ddim"})
        grid = [sigma_s, sigma_m]
    else:                    # a corrector needs x̂₀ at σ_t; the step it predicts past σ_t is discarded
        grid = [sigma_s, sigma_m, sigma_t] + [sigma_t / 2] * corrector
    stepper = make_stepper(settings, frame.schedule, grid, _no_noise)
    x = x_s
    while not stepper.done and not (sigma_t > 0 and stepper.k == len(grid) - 1):
        x = stepper.step(x, evaluate(x, stepper.sigma))
    return (stepper.current_state if corrector and sigma_t > 0 else x), stepper.k


def _no_noise(like: torch.Tensor) -> torch.Tensor:
    raise AssertionError("a deterministic teacher draws no noise")
