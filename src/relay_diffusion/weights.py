"""Model directories on disk: `config.json` (what to build: models.ModelConfig) and
`model.safetensors` (+ `ema.safetensors`). Nothing is ever unpickled."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from .files import read_json, save_tensors, write_json

MODEL_FORMAT = "relay-diffusion-model"
MODEL_FORMAT_VERSION = 1


def state_dict_cpu(module: torch.nn.Module) -> dict:
    """Contiguous CPU copies of a module's tensors (safetensors refuses shared storage)."""
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in module.state_dict().items()}


def save_model_dir(directory: Path, config: dict, model: torch.nn.Module,
                   ema: torch.nn.Module | None = None) -> None:
    """Write config.json + model.safetensors (+ ema.safetensors) into an existing directory."""
    directory = Path(directory)
    write_json(directory / "config.json", {"format": MODEL_FORMAT, "version": MODEL_FORMAT_VERSION, **config})
    save_tensors(state_dict_cpu(model), directory / "model.safetensors")
    if ema is not None:
        save_tensors(state_dict_cpu(ema), directory / "ema.safetensors")


def read_model_config(directory: Path) -> dict:
    cfg = read_json(Path(directory) / "config.json", "model config")
    if cfg.get("format") != MODEL_FORMAT:
        raise ValueError(f"{directory} is not a relay-diffusion model directory (config.json format "
                         f"{cfg.get('format')!r})")
    if cfg.get("version", 0) > MODEL_FORMAT_VERSION:
        raise ValueError(f"{directory} was written by a newer relay-diffusion (format version "
                         f"{cfg['version']}); please upgrade")
    return cfg


def weights_path(directory: Path, which: str = "ema") -> Path:
    """`ema.safetensors` (which="ema", falling back to the raw weights when the directory has no
    EMA) or `model.safetensors` (which="model")."""
    if which not in ("ema", "model"):
        raise ValueError(f"which must be 'ema' or 'model', got {which!r}")
    directory = Path(directory)
    path = directory / ("ema.safetensors" if which == "ema" else "model.safetensors")
    if which == "ema" and not path.exists():
        path = directory / "model.safetensors"
    if not path.exists():
        raise ValueError(f"no weights in {directory} (expected {path.name})")
    return path


def weight_shapes(path: Path) -> dict:
    """{name: shape} from a safetensors file's header, without reading the tensors."""
    from safetensors import SafetensorError, safe_open
    try:
        with safe_open(str(path), "pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); it may be truncated or empty") from None


def load_weights(directory: Path, which: str = "ema", device: str | torch.device = "cpu") -> dict:
    """State dict of a model directory's weights (weights_path)."""
    from safetensors import SafetensorError
    path = weights_path(directory, which)
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as e:
        raise ValueError(f"{path} is not a readable safetensors file ({e}); it may be truncated or empty") from None
