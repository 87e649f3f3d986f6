"""Model test helpers: tiny random-weight models of either stage kind."""

from __future__ import annotations

import dataclasses

import torch

from relay_diffusion import EDMPrecond, RelaySchedule
from relay_diffusion.models import RelayModel
from relay_diffusion.networks import NetworkConfig


def tiny_model(stage, res, channels=1, label_dim=3, up=None, seed=0) -> RelayModel:
    cfg = NetworkConfig(img_resolution=res, in_channels=channels, out_channels=channels, label_dim=label_dim,
                        model_channels=16, channel_mult=(4,), num_blocks=1, attn_resolutions=(), dropout=0.0)
    torch.manual_seed(seed)
    net = cfg.build()
    with torch.no_grad():                    # random weights everywhere (EDM zero-inits the output)
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    schedule = RelaySchedule(up_scale=up) if stage == "relay" else None
    config = {"stage": stage, "resolution": res, "channels": channels, "label_dim": label_dim,
              "sigma_data": 0.5, "network": cfg.to_dict(),
              "schedule": dataclasses.asdict(schedule) if schedule else None}
    return RelayModel(EDMPrecond(net, 0.5, label_dim).eval(), config)
