"""Progressive distillation of relay and base stages (docs/distillation.md): the closed-form
targets that make one student step reproduce two teacher steps, per patch-DCT frequency."""

from .targets import StepFrame, ddim_step, distillation_target, snr_weights, teacher_steps, weighted_error

__all__ = ["StepFrame", "ddim_step", "distillation_target", "snr_weights", "teacher_steps", "weighted_error"]
