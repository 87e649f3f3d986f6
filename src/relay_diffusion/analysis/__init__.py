"""Analyses behind relay diffusion: the per-frequency SNR of Fig. 2 (`snr`) and the state of a
relay stage's schedule at the sampler's start σ (`schedule`). Plots live in `plots` and import
matplotlib only when drawn."""

from __future__ import annotations

from .images import first_image_shape, image_batches
from .schedule import (patch_spectrum, relay_step_table, schedule_curves, start_report, start_sigma,
                       surviving_energy)
from .snr import (NOISE_KINDS, band_mask, block_power_stationary,
                  match_sigma, match_table, noise_power, noise_power_1d, signal_spectra, snr_rows,
                  upsample_gain)

__all__ = [
    "image_batches", "first_image_shape",
    "NOISE_KINDS", "band_mask", "block_power_stationary", "match_sigma",
    "match_table", "noise_power", "noise_power_1d", "signal_spectra", "snr_rows", "upsample_gain",
    "patch_spectrum", "relay_step_table", "schedule_curves", "start_report", "start_sigma", "surviving_energy",
]
