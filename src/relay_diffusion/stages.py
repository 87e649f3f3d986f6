"""The kinds of stage a relay chain is made of, in one table (docs/method.md §5.7).

A *base* stage samples an image from pure noise (EDM; paper §3.1). A *relay* stage continues the
diffusion of a lower-resolution image: it nearest-upsamples it (every s×s patch constant = fully
blurred) and runs the low-noise part of the blurring diffusion (§3.2, Algorithm 1). What depends
on the kind — its sampler settings and sampler, its training loss, whether its config carries a
forward process, where it may stand in a chain — is read from `STAGE_KINDS`; nothing else in the
package compares stage names.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

from .losses import EDMLoss, RelayLoss
from .relay import RelaySchedule, upsample_nearest
from .sampling.samplers import edm_sampler, relay_sampler, sde_heun_sampler
from .sampling.settings import BaseSamplerSettings, RelaySamplerSettings


@dataclasses.dataclass(frozen=True)
class StageKind:
    """One kind of stage. `continues`: the stage continues a lower-resolution image and its
    config carries the `RelaySchedule` that says how (up_scale, blur, block noise); otherwise it
    starts from pure noise and has no schedule. `sample` and `loss` are the kind's sampler and
    training objective, with the signatures of `_sample_base` and `_loss_base` below."""

    name: str                    # config.json's "stage"
    settings: type               # its sampler settings class (sampling/settings.py)
    continues: bool              # continues a lower-resolution image (carries a RelaySchedule)
    sample: Callable             # (denoise, previous, labels, *, config, settings, noise, dtype, callback)
    loss: Callable               # (train config, schedule) → a loss (losses.py)

    def input_resolution(self, resolution: int, schedule: RelaySchedule | None) -> int:
        """Side of the images the stage takes in (its own side when it starts from noise)."""
        return resolution // schedule.up_scale if self.continues else resolution


def _sample_base(denoise, previous, labels, *, config, settings, noise, dtype, callback):
    """From pure noise: EDM's Heun (method "edm") or the DDIM-η Heun (method "sde") sampler, on
    the settings' grid or a distilled stage's own. `noise` is a `SeededNoise`; `previous` is None."""
    x = noise.randn(config.channels, config.resolution, config.resolution, dtype=dtype)
    sampler = edm_sampler if settings.method == "edm" else sde_heun_sampler
    return sampler(denoise, x, labels, settings=settings, sigmas=config.distilled_grid, randn_like=noise,
                   dtype=dtype, callback=callback)


def _sample_relay(denoise, previous, labels, *, config, settings, noise, dtype, callback):
    """Continue `previous` (the lower-resolution images): nearest-upsample, then the relay sampler."""
    x_up = upsample_nearest(previous, config.schedule.up_scale)
    return relay_sampler(denoise, x_up, labels, schedule=config.schedule, settings=settings,
                         sigmas=config.distilled_grid, randn_like=noise, dtype=dtype, callback=callback)


def _loss_base(cfg, schedule: RelaySchedule | None) -> EDMLoss:
    return EDMLoss(P_mean=cfg.P_mean, P_std=cfg.P_std, sigma_data=cfg.sigma_data, label_dropout=cfg.label_dropout)


def _loss_relay(cfg, schedule: RelaySchedule) -> RelayLoss:
    return RelayLoss(schedule, sigma_data=cfg.sigma_data, train_sigma_min=cfg.train_sigma_min,
                     label_dropout=cfg.label_dropout)


STAGE_KINDS = {kind.name: kind for kind in (
    StageKind("base", BaseSamplerSettings, False, _sample_base, _loss_base),
    StageKind("relay", RelaySamplerSettings, True, _sample_relay, _loss_relay),
)}
STAGES = tuple(STAGE_KINDS)


def stage_kind(name: str) -> StageKind:
    """The kind called `name`; a ValueError naming the kinds otherwise."""
    if name not in STAGE_KINDS:
        raise ValueError(f"unknown stage {name!r}; stages: {', '.join(STAGES)}")
    return STAGE_KINDS[name]


def settings_kind(settings) -> StageKind:
    """The kind whose sampler settings `settings` are."""
    for kind in STAGE_KINDS.values():
        if isinstance(settings, kind.settings):
            return kind
    raise TypeError(f"not the sampler settings of any stage: {type(settings).__name__}")
