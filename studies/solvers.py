"""Quality against network evaluations for the relay and base solvers (docs/solvers.md).

    python studies/solvers.py --workdir runs/solvers --points grid-search      # one plan
    python studies/solvers.py --workdir runs/solvers --points all              # every plan
    python studies/solvers.py --workdir runs/solvers --report                  # docs + plots

Every point samples a chain for the first n seeds of its seed set (balanced labels; the
measurement protocol of docs/evaluation.md: `seeds="selection"`, the default, for exploration and
for choosing settings; `seeds="report"` for every number stated as a result), measures
feature-net FID against the 60k Fashion-MNIST training images, precision/recall against the
first 10k, and the radial power spectrum (spectral distance, and the high-frequency power ratio:
generated over real power in the upper half of the radial frequencies) against 10k real images,
in every available feature space (the bundled "fmnist" and the independent "fmnist-b"), and
writes one JSON to <workdir>/points/ with the SHA-256 of every model's weights. Report points
also get KID and a 95 % paired-bootstrap interval for every metric (1,000 resamples of the seeds,
the same resamples for every point of the same n: their replicates, saved beside the JSON, give
the interval of any difference between two points). Relay points of one chain share their base
samples (made once with the reference base sampler and cached), so a relay row differs from
another only by its relay sampler. Re-running skips finished points; any number of processes
may run the same command at once, each taking the next point no other is measuring (give each
OMP_NUM_THREADS=1 and one core). The plans are in solvers_points.py.

The chains: the bundled demo (8×8 base + 8→32 relay), and the final models of the Fashion-MNIST
study (docs/study.md; `python studies/fmnist32.py --phase train` trains them).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from kept_weights import weights_sha256  # noqa: E402
from solvers_points import CHAINS, PLANS  # noqa: E402

from relay_diffusion.evaluation import protocol  # noqa: E402
from relay_diffusion.metrics.offline import high_frequency_power, spectral_distance  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def chain_dirs(name, study: Path) -> list[Path] | None:
    """Model directories of a chain, or None when a study snapshot is not trained yet."""
    from fmnist32 import snapshot_dir
    from relay_diffusion.pipeline import bundled_demo_chain

    if name == "demo":
        return bundled_demo_chain()
    runs = CHAINS[name] if isinstance(name, str) else name       # or [(run, images), …]
    dirs = [snapshot_dir(study, run, images) for run, images in runs]
    return None if None in dirs else dirs


FEATURE_SPACES = ("fmnist", "fmnist-b")      # the first is the primary: unsuffixed metric names


def seed_set(spec: dict) -> protocol.SeedSet:
    kind = spec.get("seeds", "selection")
    if kind not in ("selection", "report"):
        raise SystemExit(f"{spec.get('name', 'a point')}: seeds must be 'selection' or 'report', got {kind!r}")
    return protocol.SELECTION if kind == "selection" else protocol.REPORT


class Reference:
    """Per feature space: features of the real training images (FID: all 60k; P/R and KID: the
    first 10k); and 10k real images for the spectra."""

    def __init__(self, study: Path, work: Path, spaces=FEATURE_SPACES):
        from relay_diffusion.evaluation import FeatureSet, ImageSet, image_set_features, load_extractor

        data = study / "fmnist32-train.zip"
        if not data.exists():
            raise SystemExit(f"{data} is missing: run `python studies/fmnist32.py --phase data` first")
        self.spaces = {}
        for space in spaces:
            extractor = load_extractor(space)
            feats, images = image_set_features(ImageSet(data), extractor, batch=500, cache_dir=work / "cache",
                                               keep_images=10_000)
            first = feats.arrays["pool"][:10_000]                 # fewer in a toy dataset (tests)
            first10k = FeatureSet("train[:10k]", len(first), feats.extractor, {"pool": first})
            self.spaces[space] = (extractor, feats, first10k)
            self.images = images
        self.primary = spaces[0]
        # the primary space's full-set objects, under the names the older code reads
        _, self.features, self.first10k = self.spaces[self.primary]

    def features_of(self, images_u8: torch.Tensor, space: str | None = None):
        """The feature set of uint8 images in one feature space (batches of 500)."""
        from relay_diffusion.evaluation.evaluate import extract_features

        extractor = self.spaces[space or self.primary][0]
        feats, _ = extract_features([images_u8[i:i + 500] for i in range(0, len(images_u8), 500)],
                                    extractor, "samples")
        return feats

    @staticmethod
    def suffix(space: str, primary: str) -> str:
        return "" if space == primary else f"@{space}"

    def measure(self, images_u8: torch.Tensor) -> dict:
        """FID, precision/recall and the spectra of uint8 images, in every feature space.
        Exploratory values: no intervals."""
        from relay_diffusion.evaluation import compute_metrics

        out = {}
        for space, (_, ref, first10k) in self.spaces.items():
            f = self.features_of(images_u8, space)
            m = compute_metrics(f, first10k, ["pr"], allow_small=True)
            m["fid"] = compute_metrics(f, ref, ["fid"], allow_small=True)["fid"]
            out.update({k + self.suffix(space, self.primary): v for k, v in m.items() if k != "skipped"})
        out["spectral"] = spectral_distance(self.images, images_u8)
        out["hf_power"] = high_frequency_power(self.images, images_u8)
        return out

    def measure_with_intervals(self, images_u8: torch.Tensor, boot: protocol.Bootstrap) -> tuple[dict, dict]:
        """Every metric of `measure` plus KID, each with its 95 % paired-bootstrap interval:
        (record fields: metric → value and metric_ci95 → [lo, hi]; replicates: metric → [B])."""
        estimates = protocol.spectra(self.images, images_u8, boot)
        for space, (_, ref, first10k) in self.spaces.items():
            f = self.features_of(images_u8, space)
            est = protocol.measure(f.arrays["pool"], boot, first10k.arrays["pool"], ref.statistics("pool"))
            estimates.update({k + self.suffix(space, self.primary): v for k, v in est.items()})
        return summarise(estimates)

    def paired_fid_difference(self, feats, reference_u8: torch.Tensor, resamples: int = protocol.RESAMPLES,
                              seed: int = 0) -> dict:
        """FID(images) − FID(reference) for two image sets of the same seeds (`feats`: the images'
        features; the first len(reference_u8) seeds are compared), with its paired-bootstrap 95 %
        interval (both sets resampled with the same seeds). An interval that holds 0 means no
        measurable difference at this sample size."""
        b = np.asarray(self.features_of(reference_u8).arrays["pool"], dtype=np.float64)
        a = np.asarray(feats.arrays["pool"], dtype=np.float64)[:len(b)]          # the same seeds
        boot = protocol.Bootstrap(len(b), resamples, seed)
        stats = self.features.statistics("pool")
        diff = protocol.fid(a, *stats, boot) - protocol.fid(b, *stats, boot)
        return {"fid_difference": diff.value, "fid_difference_se": float(np.std(diff.replicates, ddof=1)),
                "fid_difference_95": list(diff.interval()), "resamples": resamples}


def summarise(estimates: dict) -> tuple[dict, dict]:
    """(record fields: metric → value, metric_ci95 → [lo, hi]; replicates: metric → [B] array)."""
    fields, replicates = {}, {}
    for k, e in estimates.items():
        fields[k] = float(e.value)
        fields[k + "_ci95"] = list(e.interval())
        replicates[k] = e.replicates
    return fields, replicates


def chain_name(chain) -> str:
    """A chain's name: a CHAINS key, "demo", or runs with snapshots [(run, images), …]."""
    return chain if isinstance(chain, str) else "+".join(f"{run}@{images // 1000}k" for run, images in chain)


def base_cache_path(work: Path, chain, settings, seeds: list[int], runtime: dict | None = None) -> Path:
    import hashlib

    seed_key = [len(seeds)] if seeds[0] == 0 else [seeds[0], len(seeds)]     # older caches: seeds 0…n−1
    parts = [chain_name(chain), dataclasses.asdict(settings), *seed_key] + ([runtime] if runtime else [])
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return work / "base" / f"{chain_name(chain)}-{key}.pt"


def base_samples(work: Path, chain, models, settings, seeds: list[int], batch: int,
                 runtime: dict | None = None) -> torch.Tensor:
    """The base stage's samples for `seeds` (float, unquantised), cached per settings (and
    network runtime, when not plain fp32)."""
    from relay_diffusion.pipeline import RelayChain

    path = base_cache_path(work, chain, settings, seeds, runtime)
    if path.exists():
        return torch.load(path, weights_only=True)
    base = RelayChain(models[:1], [settings])
    out = torch.cat([base(seeds[i:i + batch], "balanced") for i in range(0, len(seeds), batch)])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return out


def settings_for(model, overrides: dict | None):
    from relay_diffusion.pipeline import default_settings

    return default_settings(model).with_overrides(overrides or {})      # official names accepted


def finished(out: Path, spec: dict) -> bool:
    """A point is done when its record has the count and the seed set its spec asks for, and a
    reference solution also its saved images (a record kept without them is sampled again)."""
    if not out.exists() or (spec.get("save") and not (out.parent.parent / "images" / f"{out.stem}.pt").exists()):
        return False
    record = json.loads(out.read_text())
    return record["n"] == spec["n"] and record.get("seeds", "selection") == spec.get("seeds", "selection")


def point_files(points: Path, name: str) -> list[Path]:
    """A point's record and, for a report point, its bootstrap replicates."""
    return [p for p in (points / f"{name}.json", points / f"{name}-replicates.npz") if p.exists()]


def _copy_atomically(src: Path, dest: Path) -> None:
    import shutil

    from relay_diffusion.files import atomic_write

    atomic_write(dest, lambda tmp: shutil.copyfile(src, tmp))


def keep_point(work: Path, name: str, keep: Path) -> None:
    """Copy a finished point's files into `keep` (e.g. the repository's studies/results/…), so the
    study's measurements outlive the machine they were made on."""
    keep.mkdir(parents=True, exist_ok=True)
    for f in point_files(work / "points", name):
        _copy_atomically(f, keep / f.name)


def import_kept_points(work: Path, keep: Path) -> int:
    """Bring kept points that the workdir lacks into <work>/points (a reference solution's images
    are not kept: it is sampled again when a point needs it); returns how many."""
    from relay_diffusion.files import TMP_MARK

    count = 0
    for record in sorted(keep.glob("*.json")):
        if TMP_MARK in record.name or (work / "points" / record.name).exists():
            continue
        (work / "points").mkdir(parents=True, exist_ok=True)
        for f in point_files(keep, record.stem):
            _copy_atomically(f, work / "points" / f.name)
        count += 1
    return count


def run_point(work: Path, study: Path, name: str, spec: dict, ref: Reference, batch: int,
              keep: Path | None = None) -> bool:
    """Sample and measure one point; False when its chain is not trained yet."""
    from relay_diffusion.pixels import to_uint8
    from relay_diffusion.models import RelayModel
    from relay_diffusion.pipeline import RelayChain

    out = work / "points" / f"{name}.json"
    if finished(out, spec):
        return True
    dirs = chain_dirs(spec["chain"], study)
    if dirs is None:
        return False
    # stage_models: a model directory in place of a stage of the chain (e.g. a distilled stage,
    # studies/distill.py); None keeps the chain's. Not there yet = not ready.
    swapped = [i for i, m in enumerate(spec.get("stage_models") or []) if m is not None]
    for i in swapped:
        if not (Path(spec["stage_models"][i]) / "config.json").exists():
            return False
        dirs = dirs[:i] + [Path(spec["stage_models"][i])] + dirs[i + 1:]
    runtime = spec.get("runtime") or {}                   # how the networks run (networks/runtime.py)
    models = [RelayModel.from_pretrained(d, **runtime) for d in dirs]
    settings = [settings_for(m, o) for m, o in zip(models, spec["stages"])]
    n, t = spec["n"], time.perf_counter()
    seeds_from = seed_set(spec)
    seeds = seeds_from.seeds(n)
    # a base point whose base settings are those of cached shared samples reuses them (per-seed noise:
    # the same images as sampling the chain whole)
    if len(models) > 1 and 0 not in swapped and (
            spec.get("shared_base", True) or base_cache_path(work, spec["chain"], settings[0], seeds, runtime).exists()):
        low = base_samples(work, spec["chain"], models, settings[0], seeds, batch, runtime)
        chain = RelayChain(models[1:], settings[1:])
        floats = torch.cat([chain(seeds[i:i + batch], "balanced", low_res=low[i:i + batch]).cpu()
                            for i in range(0, n, batch)])
    else:
        chain = RelayChain(models, settings)
        floats = torch.cat([chain(seeds[i:i + batch], "balanced").cpu() for i in range(0, n, batch)])
    seconds = time.perf_counter() - t
    images = to_uint8(floats)
    report = spec.get("seeds") == "report"
    extra, replicates = {}, {}
    if spec.get("save"):                                 # a reference solution for others' RMSE
        (work / "images").mkdir(exist_ok=True)
        torch.save(floats, work / "images" / f"{name}.pt")
    if spec.get("reference"):
        ref_path = work / "images" / f"{spec['reference']}.pt"
        ref_out = work / "points" / f"{spec['reference']}.json"
        if not ref_path.exists() or not ref_out.exists():
            raise SystemExit(f"{name} needs the reference solution {spec['reference']} (run its plan first)")
        if json.loads(ref_out.read_text()).get("seeds", "selection") != spec.get("seeds", "selection"):
            raise SystemExit(f"{name} and its reference {spec['reference']} were sampled on different seed sets")
        target = torch.load(ref_path, weights_only=True)
        k = min(n, len(target))                          # the first k seeds: same base samples
        extra["reference"] = spec["reference"]
        err = protocol.rmse(floats[:k], target[:k], protocol.Bootstrap(k))
        extra["rmse"], extra["rmse_seeds"] = float(err.value), k
        if report:
            extra["rmse_ci95"], replicates["rmse"] = list(err.interval()), err.replicates
        if spec.get("paired_fid"):
            extra.update(ref.paired_fid_difference(ref.features_of(images), to_uint8(target[:k])))
    if report:
        boot = protocol.Bootstrap(n)
        metrics, reps = ref.measure_with_intervals(images, boot)
        replicates.update(reps)
        out.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(work / "points" / f"{name}-replicates.npz", **replicates,
                            bootstrap=np.array(json.dumps(boot.key())))
    else:
        metrics = ref.measure(images)
    record = {"name": name, "plan": spec["plan"], "chain": chain_name(spec["chain"]),
              "models": [str(d) for d in dirs], "weights_sha256": [weights_sha256(d) for d in dirs],
              "seeds": seeds_from.name, "seed_range": [seeds[0], seeds[-1]], "n": n,
              "sampling_seconds": seconds, "shared_base": len(models) > 1 and 0 not in swapped and spec.get("shared_base", True),
              "settings": [dataclasses.asdict(s) for s in settings], "runtime": runtime,
              "nfe": RelayChain(models, settings).nfe(), **extra, **metrics}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".tmp").write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".tmp").replace(out)
    if keep is not None:
        keep_point(work, name, keep)
    log(f"{name}: FID {record['fid']:.3f} R {record['recall']:.3f} HF {record['hf_power']:.2f} "
        + (f"RMSE {record['rmse']:.4f} " if "rmse" in record else "")
        + (f"ΔFID {record['fid_difference']:+.3f} ± {record['fid_difference_se']:.3f} "
           if "fid_difference" in record else "") +
        f"NFE {'+'.join(map(str, record['nfe']))} ({seeds_from.describe(n)}, {seconds:.0f} s)")
    return True


@contextlib.contextmanager
def point_claim(work: Path, name: str, wait: bool = False):
    """True while this process holds point `name` (an flock on <work>/claims/<name>.lock, which
    the kernel drops when the process ends, even killed), False while another process does (with
    `wait`: blocks until it is free instead). So any number of workers run the same plans and each
    takes the next point no one has: they stay balanced whatever the points cost (a fixed split
    left one core idle). Without flock (Windows) every worker takes every point."""
    try:
        import fcntl
    except ImportError:
        yield True
        return
    (work / "claims").mkdir(parents=True, exist_ok=True)
    with open(work / "claims" / f"{name}.lock", "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True                                       # closing the file drops the lock


def wait_for(work: Path, name: str) -> None:
    """Return once no worker is measuring point `name` (at once when none is)."""
    with point_claim(work, name, wait=True):
        pass


def reference_ready(work: Path, spec: dict) -> bool:
    """Whether the reference solution a point is judged against is there (none needed: True),
    after waiting for a worker that is making it."""
    ref = spec.get("reference")
    if not ref:
        return True

    def done() -> bool:
        return (work / "images" / f"{ref}.pt").exists() and (work / "points" / f"{ref}.json").exists()

    if not done():
        wait_for(work, ref)
    return done()


def measure_points(work: Path, study: Path, points, ref: "Reference", batch: int,
                   keep: Path | None = None) -> list[str]:
    """Measure each (name, spec) of `points` not finished yet, shared with every other process
    running the same list (point_claim). Returns the names that cannot run yet: their reference,
    student or study snapshot is not there."""
    waiting = []
    for name, spec in points:
        if not reference_ready(work, spec):
            waiting.append(name)
            continue
        with point_claim(work, name) as mine:           # another worker is measuring it: next one
            if mine and not run_point(work, study, name, spec, ref, batch, keep):
                waiting.append(name)
    return waiting


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="runs/solvers", help="points, cached base samples, features")
    ap.add_argument("--study", default="runs/study-fmnist32", help="the Fashion-MNIST study's workdir")
    ap.add_argument("--points", default="all", help=f"plans to run: all or a comma list of {', '.join(PLANS)}")
    ap.add_argument("--only", help="run only these points of the plans (comma list of shell patterns)")
    ap.add_argument("--batch", type=int, default=500, help="images per sampling batch")
    ap.add_argument("--report", action="store_true", help="write docs/solvers-quality.md and its plots")
    ap.add_argument("--keep", help="also copy every finished point's record here, and start from the "
                                   "records found here (the study keeps them in studies/results/)")
    args = ap.parse_args(argv)
    work, study = Path(args.workdir), Path(args.study)
    keep = Path(args.keep) if args.keep else None
    if args.report:
        from solvers_report import write_report
        write_report(work)
        return 0
    plans = list(PLANS) if args.points == "all" else args.points.split(",")
    unknown = sorted(set(plans) - set(PLANS))
    if unknown:
        raise SystemExit(f"unknown plan(s) {unknown}; choose from {list(PLANS)}")
    import fmnist32_choose
    fmnist32_choose.SEARCH_DIR = work                    # the study's choices read this workdir's records
    if keep is not None and (count := import_kept_points(work, keep)):
        log(f"{count} finished points taken from {keep}")
    ref = Reference(study, work)
    waiting = []
    for plan in plans:
        points = [(name, dict(spec, plan=plan)) for name, spec in PLANS[plan]().items()
                  if not args.only or any(fnmatch.fnmatch(name, pat) for pat in args.only.split(","))]
        waiting += measure_points(work, study, points, ref, args.batch, keep)
        # the next plan may be built from these records (study-chains from study-search's)
        for name, _ in points:
            wait_for(work, name)
    if waiting:
        log(f"not run (their study snapshots are not trained yet): {', '.join(waiting)}")
    return 0


if __name__ == "__main__":
    from relay_diffusion.cpu_allocator import tune_cpu_allocator

    tune_cpu_allocator()     # reuse freed activations, as `rdm` does (docs/speed.md): same numbers, faster
    sys.exit(main())
