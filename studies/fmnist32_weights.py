"""The study's trained weights, kept in the repository (studies/weights/fmnist32/<run>/): the search
and the evaluations can then resume on another machine without retraining, and anyone can re-run
them on exactly the weights that docs/study.md reports (their SHA-256 is in results.json).

Only the snapshots that some plan samples are kept, as plain model directories (config.json + the
EMA weights as model.safetensors, ≈ 3.3 MB each), and a run is kept whole or not at all, so a table
never mixes two trainings of one run (issue 23, point 4). weights.json in each run's folder names
its snapshots with their SHA-256 and says where and from which code they were trained."""

from __future__ import annotations

import json
import platform
import shutil
import time
from pathlib import Path

STORE = Path(__file__).resolve().parent / "weights" / "fmnist32"
RECORD = "weights.json"


def used_snapshots() -> dict[str, list[int]]:
    """{run: training images of each of its snapshots that a plan samples}: the study's chains, the
    second training seeds, the half-training-compute chain and every evaluation's stages."""
    from fmnist32_choose import HALF_TRAINING_CHAIN
    from fmnist32_evals import EVALS
    from solvers_points import CHAINS, SEED_TWINS

    pairs = {tuple(stage) for chain in [*CHAINS.values(), *SEED_TWINS.values(), HALF_TRAINING_CHAIN]
             for stage in chain}
    pairs |= {(run, images) for spec in EVALS.values() for run, images, _ in spec.get("stages", [])}
    out: dict[str, list[int]] = {}
    for run, images in sorted(pairs):
        out.setdefault(run, []).append(images)
    return out


def weights_sha256(model_dir: Path) -> str:
    """SHA-256 of the weights a model directory samples with (its EMA where it has one): which
    training a result comes from; the same for a snapshot and its copy in the store."""
    from relay_diffusion.files import sha256_file
    from relay_diffusion.weights import weights_path

    return sha256_file(weights_path(model_dir, "ema"))


def _run_snapshots(work: Path, run: str) -> list[Path] | None:
    """The workdir's snapshots of `run` that plans sample, or None while one is missing."""
    from fmnist32 import snapshot_dir

    snaps = [snapshot_dir(work, run, images) for images in used_snapshots().get(run, [])]
    return None if not snaps or None in snaps else snaps


def run_complete(work: Path, run: str) -> bool:
    """Whether the workdir has every snapshot of `run` that plans sample (trained or imported)."""
    return _run_snapshots(work, run) is not None


def stored(run: str, store: Path = STORE) -> bool:
    """Whether the store holds `run` (all its sampled snapshots, written as one)."""
    return (Path(store) / run / RECORD).exists()


def export_run(work: Path, run: str, store: Path = STORE, commit: str | None = None,
               dirty: bool = False, command: str | None = None) -> Path | None:
    """Copy a finished run's sampled snapshots into the store (EMA weights + config.json each, and
    weights.json). A run already in the store is left as it is. Returns the run's store folder, or
    None while the workdir lacks one of its snapshots."""
    from relay_diffusion.files import atomic_directory
    from relay_diffusion.networks.runtime import cpu_model
    from relay_diffusion.weights import weights_path

    snaps = _run_snapshots(work, run)
    if snaps is None:
        return None
    dest = Path(store) / run
    if stored(run, store):
        return dest
    record = {"run": run, "snapshots": {}, "exported": time.strftime("%Y-%m-%d"),
              "trained_on": {"cpu": cpu_model(), "machine": platform.machine()},
              "commit": commit, "local_changes": dirty, "command": command}
    with atomic_directory(dest) as tmp:
        for snap in snaps:
            (tmp / snap.name).mkdir()
            shutil.copyfile(snap / "config.json", tmp / snap.name / "config.json")
            shutil.copyfile(weights_path(snap, "ema"), tmp / snap.name / "model.safetensors")
            record["snapshots"][snap.name] = weights_sha256(tmp / snap.name)
        (tmp / RECORD).write_text(json.dumps(record, indent=2) + "\n")
    return dest


def import_runs(work: Path, store: Path = STORE) -> list[str]:
    """Bring every stored run into <work>/runs/<run>/ unless the workdir has the same weights
    already; returns the runs imported. The stored weights are checked against their SHA-256. A
    workdir's own different or partial training of a stored run is moved aside to
    <run>.replaced-<time>, never deleted, so one run's snapshots all come from one training."""
    from relay_diffusion.files import TMP_MARK

    imported = []
    for record_path in sorted(Path(store).glob(f"*/{RECORD}")):
        if TMP_MARK in record_path.parent.name:            # an export cut short
            continue
        record = json.loads(record_path.read_text())
        run, snaps = record["run"], record["snapshots"]
        for name, sha in snaps.items():
            if weights_sha256(record_path.parent / name) != sha:
                raise SystemExit(f"{record_path.parent / name}: weights do not match the SHA-256 in {record_path}")
        run_dir = Path(work) / "runs" / run
        have = {name: run_dir / name for name in snaps if (run_dir / name / "config.json").exists()}
        if len(have) == len(snaps) and all(weights_sha256(p) == snaps[n] for n, p in have.items()):
            continue
        if run_dir.exists():
            run_dir.rename(run_dir.with_name(f"{run}.replaced-{time.strftime('%Y%m%d-%H%M%S')}"))
        for name in snaps:
            shutil.copytree(record_path.parent / name, run_dir / name)
        imported.append(run)
    return imported

