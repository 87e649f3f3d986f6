"""Trained models on disk: `RelayModel.from_pretrained(dir)` / `.save_pretrained(dir)`.

A model directory (written by `rdm train` snapshots, `rdm import` or `save_pretrained`) holds
`config.json` — stage ("base" or "relay"), resolution, channels, label_dim, sigma_data, the
network config and, for a relay stage, its forward schedule — and safetensors weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .io import atomic_directory, load_weights, read_model_config, save_model_dir, weight_shapes, weights_path
from .networks import NetworkConfig
from .networks.runtime import RuntimeOptions, check_device
from .precond import EDMPrecond
from .relay import RelaySchedule

STAGES = ("base", "relay")       # a chain's first stage may be a base model; every later one is a relay


@dataclasses.dataclass
class RelayModel:
    """A denoiser D(x, sigma, labels) and what it was trained for."""

    denoiser: EDMPrecond
    config: dict

    @property
    def stage(self) -> str:
        return self.config["stage"]

    @property
    def resolution(self) -> int:
        return int(self.config["resolution"])

    @property
    def channels(self) -> int:
        return int(self.config["channels"])

    @property
    def label_dim(self) -> int:
        return int(self.config.get("label_dim", 0))

    @property
    def schedule(self) -> RelaySchedule | None:
        s = self.config.get("schedule")
        return RelaySchedule(**s) if s else None

    @classmethod
    def from_pretrained(cls, directory: str | Path, which: str = "ema", device: str | torch.device = "cpu",
                        *, precision: str = "fp32", channels_last: bool = True,
                        compile: bool = False) -> "RelayModel":
        """Load a model directory; which="ema" (default; falls back to the raw weights) or "model".
        precision / channels_last / compile: how the network runs (networks/runtime.py,
        docs/speed.md); the stored weights stay float32. Channels-last is the default: the same
        images as the plain layout (to float32 rounding), faster convolutions."""
        runtime = RuntimeOptions(precision, channels_last, compile)
        device = check_device(device)
        runtime.check(device)
        directory = Path(directory)
        if not directory.is_dir():
            raise ValueError(f"model directory not found: {directory}")
        snapshots = sorted(directory.glob("snapshot-*/config.json"))
        if snapshots and not (directory / "model.safetensors").exists():
            raise ValueError(f"{directory} is a training run folder, not a model; give one of its snapshots, "
                             f"e.g. {snapshots[-1].parent} (the newest)")
        cfg = read_model_config(directory)
        for key in ("stage", "resolution", "channels", "network"):
            if key not in cfg:
                raise ValueError(f"{directory}/config.json lacks {key!r}")
        if cfg["stage"] not in STAGES:
            raise ValueError(f"{directory}: unknown stage {cfg['stage']!r}")
        if cfg["stage"] == "relay" and not cfg.get("schedule"):
            raise ValueError(f"{directory}: a relay model needs its schedule in config.json")
        if not isinstance(cfg["network"], dict):
            raise ValueError(f"{directory}/config.json: 'network' must be an object, got {cfg['network']!r}")
        network = NetworkConfig.from_dict(cfg["network"])
        check_weights_match(network, weights_path(directory, which))     # before allocating the network
        net = network.build()
        try:
            net.load_state_dict(load_weights(directory, which))
        except RuntimeError as e:
            raise ValueError(f"{directory}: weights do not match config.json: {e}") from None
        denoiser = EDMPrecond(net, cfg.get("sigma_data", 0.5), cfg.get("label_dim", 0))
        return cls(denoiser.to(device).eval().requires_grad_(False).configure(runtime), cfg)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors atomically."""
        cfg = {k: v for k, v in self.config.items() if k not in ("format", "version")}
        with atomic_directory(directory) as tmp:
            save_model_dir(tmp, cfg, self.denoiser.net)


def check_weights_match(network: NetworkConfig, path: Path) -> None:
    """Refuse weights whose names or shapes differ from what `network` builds, comparing the
    safetensors header with the network built on the meta device (no memory), so a wrong
    config.json (a huge model_channels, say) fails before anything large is allocated."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in network.build().state_dict().items()}
    stored = weight_shapes(path)
    problems = [f"missing {k}" for k in expected if k not in stored]
    problems += [f"unexpected {k}" for k in stored if k not in expected]
    problems += [f"{k}: stored {stored[k]}, config.json builds {expected[k]}"
                 for k in expected if k in stored and stored[k] != expected[k]]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(f"{path}: weights do not match config.json: {'; '.join(problems[:5])}{more}")
