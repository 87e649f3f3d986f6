"""Snapshots of a training run: a model directory (config.json, model/ema safetensors) plus the
training state (optimizer tensors as safetensors, the rest as JSON). Written atomically; the
newest k are kept; a run resumes from the newest complete one."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..files import TMP_MARK, atomic_directory, read_json, save_tensors, write_json

from ..weights import save_model_dir

SNAPSHOT_RE = re.compile(r"snapshot-(\d{12})")


def _flatten_optimizer(state: dict) -> tuple[dict, dict]:
    tensors, meta = {}, {"state": {}, "param_groups": state["param_groups"]}
    for idx, entries in state["state"].items():
        meta["state"][str(idx)] = {}
        for key, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"state/{idx}/{key}"] = value.detach().to("cpu").contiguous()
                meta["state"][str(idx)][key] = "<tensor>"
            else:
                meta["state"][str(idx)][key] = value
    return tensors, meta


def _unflatten_optimizer(tensors: dict, meta: dict, device) -> dict:
    state = {}
    for idx, entries in meta["state"].items():
        state[int(idx)] = {k: (tensors[f"state/{idx}/{k}"].to(device) if v == "<tensor>" else v)
                           for k, v in entries.items()}
    return {"state": state, "param_groups": meta["param_groups"]}


def snapshot_path(outdir: Path, nimg: int) -> Path:
    return Path(outdir) / f"snapshot-{nimg:012d}"


def list_snapshots(outdir: Path) -> list[Path]:
    """Complete snapshots, oldest first (a crash mid-write leaves only a *.tmp-* directory)."""
    out = []
    for p in Path(outdir).glob("snapshot-*"):
        if SNAPSHOT_RE.fullmatch(p.name) and (p / "training-state.json").exists():
            out.append(p)
    return sorted(out)


def save_snapshot(outdir: Path, nimg: int, model_config: dict, net, ema, optimizer,
                  scaler_state: dict | None, keep: int) -> Path:
    final = snapshot_path(outdir, nimg)
    tensors, meta = _flatten_optimizer(optimizer.state_dict())
    with atomic_directory(final) as tmp:
        save_model_dir(tmp, model_config, net, ema)
        save_tensors(tensors, tmp / "training-state.safetensors")
        write_json(tmp / "training-state.json", {"nimg": nimg, "optimizer": meta, "grad_scaler": scaler_state})
    for old in list_snapshots(outdir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    for stale in Path(outdir).glob(f"snapshot-*{TMP_MARK}*"):       # left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    return final


def load_snapshot(path: Path, net, ema, optimizer, device) -> dict:
    """Restore weights, EMA and optimizer in place; returns the JSON training state."""
    path = Path(path)
    state = read_json(path / "training-state.json", "training state")
    net.load_state_dict(load_file(str(path / "model.safetensors"), device=str(device)))
    ema.load_state_dict(load_file(str(path / "ema.safetensors"), device=str(device)))
    tensors = load_file(str(path / "training-state.safetensors"))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, state["optimizer"], device))
    return state
