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
from fmnist32_evals import EVALS  # noqa: E402
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


def snapshot_dir(work: Path, run: str, images: int) -> Path | None:
    """The run's snapshot nearest to `images` (snapshots land on batch multiples), if written."""
    snaps = sorted((work / "runs" / run).glob("snapshot-*"))
    best = min(snaps, key=lambda p: abs(int(p.name.split("-")[1]) - images), default=None)
    if best is None or abs(int(best.name.split("-")[1]) - images) > 1000 or ".tmp" in best.name:
        return None
    return best


def finished(work: Path, name: str) -> bool:
    """An evaluation is done when its JSON exists with the sample count its entry asks for; a
    record of another count (the plan changed) is moved to evals/superseded/ and redone."""
    import json

    out = work / "evals" / f"{name}.json"
    if not out.exists():
        return False
    if json.loads(out.read_text())["n"] == EVALS[name]["n"]:
        return True
    old = work / "evals" / "superseded"
    old.mkdir(exist_ok=True)
    for f in (out, out.with_name(f"{name}-first100.npz")):
        try:
            f.replace(old / f.name)
        except FileNotFoundError:                   # another worker moved it first
            pass
    return False


def reference(work: Path, extractor):
    """Features of the real training set (all 60k for FID; P/R and KID use the first 10k) and the
    first 10k real images for SWD / spectral distance."""
    from relay_diffusion.evaluation import ImageSet, image_set_features
    feats, images = image_set_features(ImageSet(work / "fmnist32-train.zip"), extractor, batch=500,
                                       cache_dir=work / "cache", keep_images=10_000)
    return feats, images


def run_eval(work: Path, name: str, spec: dict, extractor, ref, ref_images) -> bool:
    """Sample spec["n"] images (seeds 0…n−1, balanced labels), write metrics for all of them and
    for the two halves (seed spread). False when a snapshot does not exist yet."""
    import dataclasses
    import json

    import numpy as np

    from relay_diffusion.evaluation import FeatureSet, ImageSet, chain_features, compute_metrics, image_set_features
    from relay_diffusion.metrics import sliced_wasserstein_distance
    from relay_diffusion.models import RelayModel
    from relay_diffusion.pipeline import RelayChain, default_settings

    out = work / "evals" / f"{name}.json"
    if finished(work, name):
        return True
    n, t = spec["n"], time.perf_counter()
    if "real" in spec:                        # real held-out images: the floor of every metric
        dirs, settings = [], []
        feats, images = image_set_features(ImageSet(work / spec["real"], n), extractor, batch=500, keep_images=n)
    else:
        dirs = [snapshot_dir(work, run, images) for run, images, _ in spec["stages"]]
        if None in dirs:
            return False
        models = [RelayModel.from_pretrained(d) for d in dirs]
        settings = [default_settings(m).with_overrides(over) for m, (_, _, over) in zip(models, spec["stages"])]
        feats, images = chain_features(RelayChain(models, settings), list(range(n)), "balanced", extractor,
                                       batch=250, keep_images=n)
    seconds = time.perf_counter() - t
    ref10k = FeatureSet("train[:10k]", 10_000, ref.extractor, {"pool": ref.arrays["pool"][:10_000]})
    result = {"name": name, "snapshots": [str(d) for d in dirs], "n": n, "sampling_seconds": seconds,
              "settings": [dataclasses.asdict(s) for s in settings], "halves": []}
    def measure(part: slice) -> dict:
        fs = FeatureSet(name, len(range(n)[part]), feats.extractor, {k: v[part] for k, v in feats.arrays.items()})
        m = compute_metrics(fs, ref10k, ["pr", "kid", "spectral", "is"], allow_small=True,
                            sample_images=images[part], reference_images=ref_images)
        m["fid"] = compute_metrics(fs, ref, ["fid"], allow_small=True)["fid"]   # vs all 60k
        # SWD with 16 instead of ProGAN's 64 patches per image: 4× cheaper on one CPU core
        m["swd"] = sliced_wasserstein_distance(ref_images, images[part], patches_per_image=16)["mean"]
        return m
    result.update(measure(slice(0, n)))
    result["halves"] = [measure(slice(0, n // 2)), measure(slice(n // 2, n))]
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(work / "evals" / f"{name}-first100.npz", images=images[:100].numpy())
    tmp = out.with_suffix(".json.tmp")                  # other workers read these: write atomically
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(out)
    log(f"eval {name}: FID {result['fid']:.3f} P {result['precision']:.3f} R {result['recall']:.3f} "
        f"({n} samples, {seconds:.0f} s sampling)")
    return True


def claim(work: Path, name: str) -> bool:
    """Take an evaluation for this process (a claim file holding its pid); a claim whose
    process has died is taken over, so killed workers can simply be restarted."""
    path = work / "evals" / f"{name}.claim"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(path.read_text() or 0), 0)
            return int(path.read_text()) == os.getpid()
        except (ProcessLookupError, ValueError):
            path.unlink(missing_ok=True)
            return claim(work, name)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    return True


def phase_eval(work: Path, wait_hours: float = 4.0) -> None:
    """Evaluations in table order, each by whichever worker claims it first; finished ones are
    skipped, one whose snapshots are not written yet waits (training may still run beside it)."""
    import torch

    from relay_diffusion.evaluation import load_extractor

    torch.set_num_threads(1)
    extractor = load_extractor("fmnist")
    ref, ref_images = reference(work, extractor)
    deadline = time.time() + 3600 * wait_hours
    while True:
        todo = [n for n in EVALS if not finished(work, n)]
        waiting = []
        for name in todo:
            if not claim(work, name):
                continue
            done = run_eval(work, name, EVALS[name], extractor, ref, ref_images)
            (work / "evals" / f"{name}.claim").unlink(missing_ok=True)
            if done:
                break                                   # re-scan: earlier items may be ready now
            waiting.append(name)
        else:
            if not waiting:
                return
            if time.time() > deadline:
                raise SystemExit(f"gave up waiting for snapshots of {', '.join(waiting)}")
            log(f"pid {os.getpid()}: waiting for snapshots of {', '.join(waiting)}")
            time.sleep(60)


def phase_eval_parallel(work: Path, workers: int = 2) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    procs = [subprocess.Popen([sys.executable, __file__, "--workdir", str(work), "--phase", "eval-worker"],
                              env=env) for _ in range(workers)]
    if any(p.wait() for p in procs):
        raise SystemExit("an evaluation worker failed")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="runs/study-fmnist32", help="runs, samples, metrics")
    ap.add_argument("--phase", choices=("data", "train", "eval", "eval-worker", "report", "all"), default="all",
                    help="eval runs two eval-worker processes (one thread each); more may be added")
    args = ap.parse_args(argv)
    work = Path(args.workdir)
    work.mkdir(parents=True, exist_ok=True)
    if args.phase == "eval-worker":
        phase_eval(work)
        return 0
    from fmnist32_report import phase_report

    for name, fn in (("data", phase_data), ("train", phase_train), ("eval", phase_eval_parallel),
                     ("report", phase_report)):
        if args.phase in (name, "all"):
            fn(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
