"""The Fashion-MNIST 32×32 study: single-stage EDM vs relay diffusion at equal compute.

    python studies/fmnist32.py --workdir runs/study-fmnist32          # everything, resumable

Phases (each skips what is already done, so re-running resumes): `data` (EDM zips of the train
and test split), `train` (the runs of fmnist32_runs.py in two single-thread lanes), `eval`
(sampling + offline metrics, one JSON per evaluation) and `report` (docs/study.md + plots).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fmnist32_runs import LANES, RUNS, SNAPSHOT  # noqa: E402

RDM = [sys.executable, "-m", "relay_diffusion"]


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def phase_data(work: Path) -> None:
    for split in ("train", "test"):
        dest = work / f"fmnist32-{split}.zip"
        if not dest.exists():
            log(f"data: writing {dest}")
            subprocess.run(RDM + ["dataset", "--source", "fashion-mnist", "--split", split,
                                  "--dest", str(dest), "--resolution", "32"], check=True)


def train_command(name: str, work: Path) -> list[str]:
    spec = dict(RUNS[name])
    cmd = RDM + ["train", "--preset", spec.pop("preset"), "--data", str(work / "fmnist32-train.zip"),
                 "--outdir", str(work / "runs" / name), "--duration", str(spec.pop("duration")),
                 "--snapshot", str(spec.pop("snapshot", SNAPSHOT)), "--keep", "100",
                 "--sample-every", "0"]
    for key, value in spec.items():
        cmd += ["--" + key.replace("_", "-"), str(value)]
    return cmd


def phase_train(work: Path) -> None:
    """Both lanes at once, one thread each; `rdm train` resumes a run and exits at once when it
    has reached its duration."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    script = [" && ".join(" ".join(train_command(n, work)) for n in lane) for lane in LANES]
    procs = []
    for i, s in enumerate(script):
        out = open(work / f"train-lane{i}.log", "a")
        procs.append(subprocess.Popen(["bash", "-c", s], env=env, stdout=out, stderr=subprocess.STDOUT))
    codes = [p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"training failed (lane exit codes {codes}); see {work}/train-lane*.log")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="runs/study-fmnist32", help="runs, samples, metrics")
    ap.add_argument("--phase", choices=("data", "train", "eval", "report", "all"), default="all")
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    for name, fn in (("data", phase_data), ("train", phase_train)):
        if args.phase in (name, "all"):
            fn(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
