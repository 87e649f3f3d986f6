"""The loss of one progressive-distillation round (docs/distillation.md §3–5), with the training
losses' signature, so the training loop (optimizer, EMA, snapshots, resume, processes) runs it
unchanged: `loss(student, images, labels, generator)` → per-coefficient weighted squared error."""

from __future__ import annotations

import dataclasses
from typing import Callable

import torch

from .._validate import check_image
from ..losses import _Draws, drop_labels
from ..relay import upsample_nearest
from ..sampling.guidance import classifier_free_guidance
from ..seeds import SeededNoise
from .targets import StepFrame, distillation_target, frequency_weighted_squares, snr_weights, teacher_steps

Denoiser = Callable[..., torch.Tensor]


@dataclasses.dataclass
class DistillationLoss:
    """One round: the student learns to take one step where the teacher takes two.

    grid: the teacher's σ's of this round (2N, descending); the student's are every other one
    (σ₀, σ₂, …, σ_{2N−2}) and its last step goes to σ = 0 through the teacher's σ_{2N−1}
    (docs/distillation.md §1). frame: the stage's settings (the teacher's solver: its best one in
    the first round, "ddim" in later ones, whose teacher is the previous student) and schedule.
    Per sample: a student step j drawn uniformly, its start state (a relay stage's first step: the
    sampler's start, the nearest-upsampled box-downsampled image + σ₀·noise; every other step: the
    forward process at σ_{2j}), the teacher's two steps, the target (Eq. D2) and the weighted error
    (Eq. D4). With `guidance`, each sample also gets a guidance scale w that the student takes as
    input and the teacher applies (Eq. D6). With `relay_starts`, a relay stage's first step starts
    from low-resolution images that it makes (a base stage's samples, `sampled_starts`) instead of
    the box-downsampled images, with the same noise (docs/distillation.md §5). Draw order per call:
    the step index (one uniform per sample), the state's noise, w (with guidance), label dropout,
    then (with relay_starts, when a sample is at step 0) the starts' own draws."""

    frame: StepFrame
    teacher: Denoiser                      # frozen D(x, σ, labels)
    grid: tuple                            # the teacher's σ's of this round, 2N of them
    label_dropout: float = 0.0             # applied to teacher and student alike
    guidance: tuple = ()                   # (w_lo, w_hi): distil guidance, w ~ U[w_lo, w_hi] per sample
    teacher_takes_guidance: bool = False   # the teacher is a guidance-distilled student (later rounds);
                                           # else it is guided by classifier-free guidance at w
    relay_starts: Callable | None = None   # relay stage: (B, labels, w, draws) → low-res starts
                                           # [B, C, h, w]; None: the box-downsampled images

    def __post_init__(self):
        self.grid = tuple(float(s) for s in self.grid)
        if len(self.grid) < 2 or len(self.grid) % 2:
            raise ValueError(f"a distillation round needs an even teacher grid of ≥ 2 σ's, got {len(self.grid)}")
        if any(a <= b for a, b in zip(self.grid, self.grid[1:])) or self.grid[-1] <= 0:
            raise ValueError("the teacher grid must be positive and strictly decreasing")
        self._weights = torch.stack([snr_weights(self.frame, s) for s in self.student_grid])   # [N, p, p]
        if self.guidance and not (len(self.guidance) == 2 and 0 <= self.guidance[0] <= self.guidance[1]):
            raise ValueError(f"guidance must be a range (w_lo, w_hi) with 0 ≤ w_lo ≤ w_hi, got {self.guidance}")
        if self.relay_starts is not None and self.frame.sampling_schedule is None:
            raise ValueError("relay_starts is for a relay stage; a base stage starts from pure noise")

    @property
    def student_grid(self) -> tuple:
        return self.grid[::2]

    def __call__(self, denoise: Denoiser, images: torch.Tensor, labels: torch.Tensor | None = None,
                 generator: torch.Generator | SeededNoise | None = None, **net_kwargs) -> torch.Tensor:
        sch = self.frame.sampling_schedule
        check_image(images, sch.up_scale if sch is not None else 1, "images")
        draws = _Draws(generator, images.device)
        n = len(self.student_grid)
        step = (draws.rand(images.shape[0], torch.float64) * n).long().clamp_(max=n - 1).cpu()
        sigma_s = torch.tensor(self.student_grid, dtype=torch.float64)[step]
        states = self._states(images, step, sigma_s, draws)
        w = None
        if self.guidance:                        # Eq. D6: one scale per sample, drawn after the states
            if labels is None:
                raise ValueError("guidance distillation needs class labels")
            lo, hi = self.guidance
            w = (lo + (hi - lo) * draws.rand(images.shape[0], torch.float64)).to(images.device, images.dtype)
            net_kwargs = {**net_kwargs, "guidance": w}
        labels = drop_labels(labels, self.label_dropout, generator)
        if self.relay_starts is not None and bool((step == 0).any()):
            states = self._restart(states, images, step, labels, w, draws)
        targets = torch.empty_like(images)
        with torch.no_grad():
            for j in step.unique().tolist():
                rows = (step == j).nonzero().flatten().to(images.device)
                s, m = self.grid[2 * j], self.grid[2 * j + 1]
                t = self.grid[2 * j + 2] if 2 * j + 2 < len(self.grid) else 0.0
                lab = labels[rows] if labels is not None else None
                evaluate = self._teacher_at(lab, w[rows] if w is not None else None)
                x_t, _ = teacher_steps(self.frame, evaluate, states[rows], s, m, t)
                targets[rows] = distillation_target(self.frame, states[rows], x_t, s, t).to(images.dtype)
        pred = denoise(states, sigma_s.to(images.device, images.dtype), labels, **net_kwargs)
        return frequency_weighted_squares(self.frame, pred - targets, self._weights[step].to(images))   # Eq. D4

    def _teacher_at(self, labels, w):
        """evaluate(x, σ) of the teacher for these rows: plain, guided by classifier-free guidance at
        each row's w (one 2B batch), or given w as its input (a guidance-distilled teacher)."""
        teacher = self.teacher
        if w is not None and not self.teacher_takes_guidance:
            teacher = classifier_free_guidance(self.teacher, w)

        def evaluate(x, sigma):
            sig = torch.full((x.shape[0],), sigma, dtype=x.dtype, device=x.device)
            if w is not None and self.teacher_takes_guidance:
                return teacher(x, sig, labels, guidance=w).to(x.dtype)
            return teacher(x, sig, labels).to(x.dtype)
        return evaluate

    def _states(self, images, step, sigma_s, draws) -> torch.Tensor:
        """Each sample's student state at σ_{2j}: the forward process there, except the first step
        of a relay stage, which starts where sampling starts (docs/distillation.md §5)."""
        sch = self.frame.sampling_schedule
        sig = sigma_s.to(images.device, images.dtype).reshape(-1, 1, 1, 1)
        if sch is None:
            return images + sig * draws.randn_like(images)
        states = sch.corrupt(images, sigma_s.to(images.device), draws.randn_like)
        first = step == 0
        if first.any():
            rows = first.nonzero().flatten().to(images.device)
            low = torch.nn.functional.avg_pool2d(images[rows], sch.up_scale)
            noise = states[rows] - sch.blur(images[rows], self.grid[0])           # the same draws
            states[rows] = upsample_nearest(low, sch.up_scale) + noise
        return states

    def _restart(self, states, images, step, labels, w, draws) -> torch.Tensor:
        """The first-step states moved from the box-downsampled images to the starts that
        `relay_starts` makes for the same labels and w (the whole batch: per-sample draws stay
        independent of which samples are at step 0); the noise is kept."""
        sch = self.frame.sampling_schedule
        with torch.no_grad():
            starts = self.relay_starts(images.shape[0], labels, w, draws).to(images.dtype)
        want = (images.shape[0], images.shape[1], images.shape[2] // sch.up_scale, images.shape[3] // sch.up_scale)
        if tuple(starts.shape) != want:
            raise ValueError(f"relay_starts made {tuple(starts.shape)} low-res images, expected {want}")
        rows = (step == 0).nonzero().flatten().to(images.device)
        low = torch.nn.functional.avg_pool2d(images[rows], sch.up_scale)
        states = states.clone()
        states[rows] += upsample_nearest(starts[rows] - low, sch.up_scale)
        return states


class _GivenStart:
    """The noise source of a stage sampler whose initial noise is given: `randn` returns it, every
    later draw (churn, η) comes from the loss's draws."""

    def __init__(self, first: torch.Tensor, draws: _Draws):
        self.first, self.draws = first, draws

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        if tuple(shape) != tuple(self.first.shape[1:]):
            raise ValueError(f"the given start noise has shape {tuple(self.first.shape[1:])}, not {shape}")
        return self.first.to(dtype)

    def randn_like(self, x: torch.Tensor) -> torch.Tensor:
        return self.draws.randn_like(x)

    __call__ = randn_like


def sampled_starts(model, settings=None) -> Callable:
    """`relay_starts` from a base stage's samples (a `RelayModel` that starts from noise): its own
    sampler (a distilled stage's steps, else `settings` or its defaults), at the labels and w of
    each sample — w as its input if it was guidance-distilled, else classifier-free guidance."""
    if model.kind.continues:
        raise ValueError(f"relay starts must be sampled by a stage that starts from noise, not a {model.stage} stage")
    settings = settings if settings is not None else model.config.default_settings()
    c, r = model.channels, model.resolution

    def starts(n: int, labels, w, draws: _Draws) -> torch.Tensor:
        device, dtype = draws.device, torch.float32
        first = draws.randn_like(torch.empty(n, c, r, r, dtype=dtype, device=device))
        lab = labels if model.label_dim else None
        scale = w if w is not None else torch.full((n,), float(settings.cfg_scale), device=device)
        if model.config.guidance_range:
            def denoise(x, sigma, labels=None):
                return model.denoiser(x, sigma, labels, guidance=scale.to(x))
        elif model.label_dim:
            denoise = classifier_free_guidance(model.denoiser, scale)
        else:
            denoise = model.denoiser
        return model.kind.sample(denoise, None, lab, config=model.config, settings=settings,
                                 noise=_GivenStart(first, draws), dtype=dtype, callback=None)
    return starts
