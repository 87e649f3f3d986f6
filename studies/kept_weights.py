"""Trained weights kept in the repository (studies/weights/<study>/<name>/), so that a study that
takes longer than one machine lasts resumes elsewhere on exactly the same weights, and anyone can
re-measure what the docs report.

A kept folder holds one plain model directory per kept model (config.json + the EMA weights as
model.safetensors, which is what every plan samples) and weights.json: each model's SHA-256, the
machine and the code's commit that made them, and the command that trains them again (without
machine paths). It is written in one atomic step, so a folder is whole or absent."""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from pathlib import Path

RECORD = "weights.json"
ROOT = Path(__file__).resolve().parent.parent


def weights_sha256(model_dir: Path) -> str:
    """SHA-256 of the weights a model directory samples with (its EMA where it has one): which
    training a result comes from; the same for a snapshot and its kept copy."""
    from relay_diffusion.files import sha256_file
    from relay_diffusion.weights import weights_path

    return sha256_file(weights_path(model_dir, "ema"))


def code_version() -> tuple[str | None, bool]:
    """The code's git commit and whether the tree has local changes (None, False outside git)."""
    def git(*args) -> str | None:
        r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else None

    return git("rev-parse", "HEAD"), bool(git("status", "--porcelain", "--untracked-files=no"))


def is_kept(folder: Path) -> bool:
    return (Path(folder) / RECORD).exists()


def keep_models(dest: Path, models: dict[str, Path], key: str, what: dict, made_by: dict,
                extra_files: dict[str, list[Path]] | None = None) -> Path:
    """Write `dest` once: each model of {name: model_dir} as dest/<name>/ (config.json + EMA
    weights), any extra files of a name beside them (e.g. its training status lines), and
    weights.json: `what` (what was trained), {key: {name: SHA-256}}, the date and machine, then
    `made_by` (commit, local_changes, command). A kept folder is never rewritten; returns it."""
    from relay_diffusion.files import atomic_directory
    from relay_diffusion.networks.runtime import cpu_model
    from relay_diffusion.weights import weights_path

    dest = Path(dest)
    if is_kept(dest):
        return dest
    record = {**what, key: {}, "exported": time.strftime("%Y-%m-%d"),
              "trained_on": {"cpu": cpu_model(), "machine": platform.machine()}, **made_by}
    with atomic_directory(dest) as tmp:
        for name, src in models.items():
            (tmp / name).mkdir()
            shutil.copyfile(Path(src) / "config.json", tmp / name / "config.json")
            shutil.copyfile(weights_path(src, "ema"), tmp / name / "model.safetensors")
            for f in (extra_files or {}).get(name, []):
                shutil.copyfile(f, tmp / name / Path(f).name)
            record[key][name] = weights_sha256(tmp / name)
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return dest


def read_checked(folder: Path, key: str) -> dict:
    """A kept folder's weights.json, after checking every model's weights against its SHA-256."""
    path = Path(folder) / RECORD
    record = json.loads(path.read_text())
    for name, sha in record[key].items():
        if weights_sha256(Path(folder) / name) != sha:
            raise SystemExit(f"{Path(folder) / name}: weights do not match the SHA-256 in {path}")
    return record
