"""The study's trained weights, kept in the repository (studies/weights/fmnist32/<run>/): the search
and the evaluations can then resume on another machine without retraining, and anyone can re-run
them on exactly the weights that docs/study.md reports (their SHA-256 is in results.json).

Only the snapshots that some plan samples are kept (as kept_weights.py keeps models: config.json +
EMA weights, ≈ 3.3 MB each, and weights.json with their SHA-256, machine, commit and command), and a
run is kept whole or not at all, so a table never mixes two trainings of one run (issue 23,
point 4)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from kept_weights import RECORD, is_kept, keep_models, read_checked, weights_sha256

STORE = Path(__file__).resolve().parent / "weights" / "fmnist32"


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
    return is_kept(Path(store) / run)


def export_run(work: Path, run: str, store: Path = STORE, commit: str | None = None,
               dirty: bool = False, command: str | None = None) -> Path | None:
    """Copy a finished run's sampled snapshots into the store (EMA weights + config.json each, and
    weights.json). A run already in the store is left as it is. Returns the run's store folder, or
    None while the workdir lacks one of its snapshots."""
    snaps = _run_snapshots(work, run)
    if snaps is None:
        return None
    return keep_models(Path(store) / run, {snap.name: snap for snap in snaps}, "snapshots", {"run": run},
                       {"commit": commit, "local_changes": dirty, "command": command})


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
        record = read_checked(record_path.parent, "snapshots")
        run, snaps = record["run"], record["snapshots"]
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

