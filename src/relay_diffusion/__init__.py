"""relay-diffusion: Relay Diffusion Models (Teng et al., ICLR 2024) in PyTorch.

The names below load on first use (PEP 562), so `rdm --help` starts without importing torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# public name → module that defines it
_EXPORTS = {
    **dict.fromkeys(("EDMLoss", "RelayLoss", "drop_labels"), ".losses"),
    **dict.fromkeys(("EDMPrecond", "edm_coefficients", "edm_loss_weight"), ".precond"),
    **dict.fromkeys(("RelaySchedule", "blur", "blur_factors", "block_noise", "block_noise_covariance", "patch_dct",
                     "patch_idct", "relay_noise", "upsample_nearest"), ".relay"),
    **dict.fromkeys(("RELAY_RECIPES", "RELAY_GRIDS", "relay_grid", "SOLVERS", "BaseSamplerSettings", "RelaySamplerSettings",
                     "classifier_free_guidance", "edm_sampler", "karras_sigmas", "relay_sampler", "relay_sigmas",
                     "relay_stage", "sde_heun_sampler", "truncate_sigmas"), ".sampling"),
    **dict.fromkeys(("RelayChain", "bundled_demo_chain"), ".pipeline"),
    **dict.fromkeys(("SeededNoise",), ".seeds"),
    **dict.fromkeys(("PUBLISHED_SCHEDULES",), ".schedules"),
    **dict.fromkeys(("RelayModel", "ModelConfig"), ".models"),
    **dict.fromkeys(("STAGE_KINDS", "StageKind"), ".stages"),
    **dict.fromkeys(("sample_images", "run_record"), ".generate"),
}

__all__ = [*_EXPORTS, "__version__"]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
        globals()[name] = value                        # later look-ups skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
