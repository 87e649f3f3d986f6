"""Denoiser networks: the ADM U-Net (EDM's DhariwalUNet layout, docs/networks.md) and its presets."""

from .adm import ADMUNet
from .presets import NETWORK_PRESETS, NetworkConfig, count_parameters

__all__ = ["ADMUNet", "NetworkConfig", "NETWORK_PRESETS", "count_parameters"]
