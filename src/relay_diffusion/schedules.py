"""The published relay forward processes (paper §3.3, Table 5; the official README's L): the
`RelaySchedule` each official second-stage model was trained with. Training presets, the
checkpoint importer and the sampler recipes (sampling/presets.py) all take them from here."""

from __future__ import annotations

from .relay import RelaySchedule

PUBLISHED_SCHEDULES = {
    # ImageNet 64→256: σ_B,max 3.0, L = 0.93
    "imagenet256": RelaySchedule(up_scale=4, blur_sigma_max=3.0, prob_length=0.93),
    # CelebA-HQ 64→256: σ_B,max 2.0, L = 0.89
    "celebahq256": RelaySchedule(up_scale=4, blur_sigma_max=2.0, prob_length=0.89),
    # the RelaySchedule defaults (= ImageNet's), which generate.py's defaults assume
    "default": RelaySchedule(),
}
