"""The Fashion-MNIST 32×32 study: single-stage EDM vs relay diffusion at equal compute.

    python studies/fmnist32.py --workdir runs/study-fmnist32          # everything, resumable

It takes ≈ 28 single-thread process-hours, ≈ 14 hours on an idle 2-core machine (measured on a
2-core AMD EPYC Zen 4 with AVX-512, December 2026: training 4.9 h in two lanes, the search
8.5 process-hours, the report-seed evaluations and their bootstrap 8.9). Run it under `nice`; kill it
at any time and run the same command again.

Phases (each skips what is already done, so re-running resumes): `data` (EDM zips of the train
and test split), `train` (the runs of fmnist32_runs.py in two single-thread lanes; runs kept in
studies/weights/fmnist32/ are imported, not retrained, and each run trained here is added there:
fmnist32_weights.py), `search` (the
same sampler search for every model on the selection seeds, and the choices it makes:
solvers_points.py plans study-reference, study-search, study-chains; fmnist32_choose.py), `eval`
(every table row and every chosen sampler on the disjoint report seeds, with paired-bootstrap
intervals: plans study-evals, study-verdicts) and `report` (docs/study.md + plots). Every
finished point's record is also kept in studies/results/fmnist32/ and taken from there when the
workdir lacks it, so the study resumes on another machine. The measurement protocol is
docs/evaluation.md's. The report's figures need matplotlib (`pip install -e ".[plot]"`); a run
that would end in the report is refused up front without it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fmnist32_runs import LANES, RUNS, SNAPSHOT  # noqa: E402
from fmnist32_weights import STORE, export_run, import_runs, run_complete, stored  # noqa: E402
from kept_weights import code_version  # noqa: E402

RDM = [sys.executable, "-m", "relay_diffusion"]
# every finished measurement's record (search and report points) is kept in the repository too
RESULTS = Path(__file__).resolve().parent / "results" / "fmnist32"


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def record_code_version(work: Path, phase: str) -> None:
    """Append the code's git commit (and whether the tree had local changes) to
    <workdir>/provenance.jsonl, so a study resumed across sessions shows which code made it."""
    import json

    commit, dirty = code_version()
    entry = {"time": time.strftime("%Y-%m-%dT%H:%M:%S"), "phase": phase, "commit": commit, "dirty": dirty}
    with open(work / "provenance.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")


def phase_data(work: Path) -> None:
    for split in ("train", "test"):
        dest = work / f"fmnist32-{split}.zip"
        if not dest.exists():
            log(f"data: writing {dest}")
            subprocess.run(RDM + ["dataset", "--source", "fashion-mnist", "--split", split,
                                  "--dest", str(dest), "--resolution", "32"], check=True)


def train_command(name: str, work: Path) -> list[str]:
    spec = dict(RUNS[name])
    cmd = RDM + ["train", "--config", spec.pop("preset"), "--data", str(work / "fmnist32-train.zip"),
                 "--outdir", str(work / "runs" / name), "--duration", str(spec.pop("duration")),
                 "--snapshot", str(spec.pop("snapshot", SNAPSHOT)), "--keep", "100",
                 "--sample-every", "0"]
    for key, value in spec.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    return cmd


def training_command_line(run: str) -> str:
    """How `run` is trained, as a shell line without this machine's paths (kept with its weights)."""
    cmd = train_command(run, Path("WORKDIR"))
    return " ".join(["rdm", *cmd[len(RDM):]])


def phase_train(work: Path, store: Path | None = STORE) -> None:
    """Both lanes at once, one thread each. Runs whose sampled snapshots are in the weights store
    (fmnist32_weights.py) are imported instead of trained; every run that finishes here is
    exported to it. `rdm train` resumes a run from its last snapshot."""
    import threading

    if store is not None:
        for run in import_runs(work, store):
            log(f"train: {run} imported from {store}")
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    failed = []

    def lane(i: int, runs: tuple) -> None:
        with open(work / f"train-lane{i}.log", "a") as out:
            for run in runs:
                if not run_complete(work, run) and subprocess.run(
                        train_command(run, work), env=env, stdout=out, stderr=subprocess.STDOUT).returncode:
                    failed.append(run)
                    return
                if store is not None and not stored(run, store) and export_run(
                        work, run, store, *code_version(), command=training_command_line(run)):
                    log(f"train: {run} finished, weights kept in {store / run}")   # also one trained before

    threads = [threading.Thread(target=lane, args=(i, runs)) for i, runs in enumerate(LANES)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failed:
        raise SystemExit(f"training of {', '.join(failed)} failed; see {work}/train-lane*.log")


def snapshot_dir(work: Path, run: str, images: int) -> Path | None:
    """The run's snapshot nearest to `images` (snapshots land on batch multiples), if written."""
    snaps = sorted((work / "runs" / run).glob("snapshot-*"))
    best = min(snaps, key=lambda p: abs(int(p.name.split("-")[1]) - images), default=None)
    if best is None or abs(int(best.name.split("-")[1]) - images) > 1000 or ".tmp" in best.name:
        return None
    return best


def solver_plans(work: Path, plans: str, workers: int = 2, keep: Path | None = None) -> None:
    """Run plans of the solver study's engine (studies/solvers.py) on this study's models, into
    <workdir>/search, in `workers` single-thread processes that share the points (each takes the
    next one no other is measuring: solvers.point_claim); every finished point's record is also
    kept in `keep`, and points kept there are not measured again."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    cmd = [sys.executable, str(Path(__file__).with_name("solvers.py")), "--workdir", str(work / "search"),
           "--study", str(work), "--points", plans] + (["--keep", str(keep)] if keep is not None else [])
    procs = [subprocess.Popen(cmd, env=env) for _ in range(workers)]
    if any(p.wait() for p in procs):
        raise SystemExit(f"a worker of plans {plans} failed")


def phase_search(work: Path, keep: Path | None = None) -> None:
    """The sampler search on the selection seeds: converged references (selection and report
    seeds), every solver × grid × count for each stage, then RDM's chosen chains."""
    for plans in ("study-reference", "study-search", "study-chains"):
        log(f"search: {plans}")
        solver_plans(work, plans, keep=keep)


def phase_eval(work: Path, keep: Path | None = None) -> None:
    """Every table row and every verdict point on the report seeds, with intervals."""
    real_test(work, keep)
    log("eval: study-evals, study-verdicts")
    solver_plans(work, "study-evals,study-verdicts", keep=keep)


def real_test(work: Path, keep: Path | None = None) -> None:
    """The 10k real test images measured like a model's samples: what a perfect model scores."""
    import json

    import numpy as np
    import torch
    from solvers import Reference

    from relay_diffusion.evaluation import ImageSet, protocol

    out = work / "search" / "points" / "real-test.json"
    if keep is not None:
        from solvers import import_kept_points
        import_kept_points(work / "search", keep)
    if out.exists():
        return
    ref = Reference(work, work / "search")
    images = ImageSet(work / "fmnist32-test.zip", 10_000)
    u8 = torch.cat(list(images.batches(500)))
    metrics, replicates = ref.measure_with_intervals(u8, protocol.Bootstrap(len(u8)))
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out.with_name("real-test-replicates.npz"), **replicates)
    out.write_text(json.dumps({"name": "real-test", "n": len(u8), "seeds": "real", **metrics}, indent=2) + "\n")
    if keep is not None:
        from solvers import keep_point
        keep_point(work / "search", "real-test", keep)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="runs/study-fmnist32", help="runs, samples, metrics")
    ap.add_argument("--phase", choices=("data", "train", "search", "eval", "report", "all"), default="all",
                    help="search and eval run two single-thread worker processes")
    ap.add_argument("--results", default=str(RESULTS),
                    help="where every finished measurement's record is kept, and taken from when the "
                         "workdir lacks it ('none': keep nothing)")
    ap.add_argument("--weights", default=str(STORE),
                    help="store of the study's trained weights: runs found there are imported, not "
                         "retrained; runs trained here are added to it ('none': train everything, keep nothing)")
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    store = None if args.weights == "none" else Path(args.weights)
    keep = None if args.results == "none" else Path(args.results)
    if args.phase in ("report", "all") and importlib.util.find_spec("matplotlib") is None:
        # refused now rather than after hours of sampling: the report draws its plots with it
        raise SystemExit("the report phase needs matplotlib: pip install -e '.[plot]'")
    work.mkdir(parents=True, exist_ok=True)
    from fmnist32_report import phase_report

    for name, fn in (("data", phase_data), ("train", lambda w: phase_train(w, store)),
                     ("search", lambda w: phase_search(w, keep)), ("eval", lambda w: phase_eval(w, keep)),
                     ("report", phase_report)):
        if args.phase in (name, "all"):
            record_code_version(work, name)
            fn(work)
    return 0


if __name__ == "__main__":
    from relay_diffusion.cpu_allocator import tune_cpu_allocator

    tune_cpu_allocator()     # reuse freed activations, as `rdm` does (docs/speed.md): same numbers, faster
    sys.exit(main())
