"""Quality against network evaluations for the relay and base solvers (docs/solvers.md).

    python studies/solvers.py --workdir runs/solvers --points grid-search      # one plan
    python studies/solvers.py --workdir runs/solvers --points all              # every plan
    python studies/solvers.py --workdir runs/solvers --report                  # docs + plots

Every point samples a chain for seeds 0…n−1 (balanced labels), measures feature-net FID against
the 60k Fashion-MNIST training images, precision/recall against the first 10k, and the radial
power spectrum (spectral distance, and the high-frequency power ratio: generated over real power
in the upper half of the radial frequencies) against 10k real images, and writes one JSON to
<workdir>/points/. Relay points of one chain share their base samples (made once with the
reference base sampler and cached), so a relay row differs from another only by its relay
sampler. Re-running skips finished points; the plans are in solvers_points.py.

The chains: the bundled demo (8×8 base + 8→32 relay), and the final models of the Fashion-MNIST
study (docs/study.md; `python studies/fmnist32.py --phase train` trains them).
"""

from __future__ import annotations

import argparse
import dataclasses
import fnmatch
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from solvers_points import CHAINS, PLANS  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def log(msg: str) -> None:
    print(time.strftime("%H:%M:%S"), msg, flush=True)


def chain_dirs(name: str, study: Path) -> list[Path] | None:
    """Model directories of a chain, or None when a study snapshot is not trained yet."""
    from fmnist32 import snapshot_dir
    from relay_diffusion.pipeline import bundled_demo_chain

    if name == "demo":
        return bundled_demo_chain()
    dirs = [snapshot_dir(study, run, images) for run, images in CHAINS[name]]
    return None if None in dirs else dirs


def high_frequency_power(real: torch.Tensor, fake: torch.Tensor) -> float:
    """Σ P_fake(r) / Σ P_real(r) over the upper half of the radial frequencies (1 = real)."""
    from relay_diffusion.metrics.offline import radial_power_spectrum

    pr, pf = radial_power_spectrum(real), radial_power_spectrum(fake)
    upper = slice(len(pr) // 2 + 1, None)
    return float(pf[upper].sum() / pr[upper].sum())


class Reference:
    """Features of the real training images (FID: all 60k; P/R: the first 10k) and 10k real
    images for the spectra."""

    def __init__(self, study: Path, work: Path):
        from relay_diffusion.evaluation import FeatureSet, ImageSet, image_set_features, load_extractor

        self.extractor = load_extractor("fmnist")
        data = study / "fmnist32-train.zip"
        if not data.exists():
            raise SystemExit(f"{data} is missing: run `python studies/fmnist32.py --phase data` first")
        self.features, self.images = image_set_features(ImageSet(data), self.extractor, batch=500,
                                                        cache_dir=work / "cache", keep_images=10_000)
        self.first10k = FeatureSet("train[:10k]", 10_000, self.features.extractor,
                                   {"pool": self.features.arrays["pool"][:10_000]})

    def features_of(self, images_u8: torch.Tensor):
        """The feature set of uint8 images (batches of 500)."""
        from relay_diffusion.evaluation.evaluate import extract_features

        feats, _ = extract_features([images_u8[i:i + 500] for i in range(0, len(images_u8), 500)],
                                    self.extractor, "samples")
        return feats

    def measure(self, images_u8: torch.Tensor, feats=None) -> dict:
        """FID, precision/recall and the spectra of uint8 images (`feats`: their features, if known)."""
        from relay_diffusion.evaluation import compute_metrics

        feats = feats if feats is not None else self.features_of(images_u8)
        out = compute_metrics(feats, self.first10k, ["pr", "spectral"], allow_small=True,
                              sample_images=images_u8, reference_images=self.images)
        out["fid"] = compute_metrics(feats, self.features, ["fid"], allow_small=True)["fid"]
        out["hf_power"] = high_frequency_power(self.images, images_u8)
        return {k: v for k, v in out.items() if k != "skipped"}


    def paired_fid_difference(self, feats, reference_u8: torch.Tensor, resamples: int = 200,
                              seed: int = 0) -> dict:
        """FID(images) − FID(reference) for two image sets of the same seeds (`feats`: the images'
        features; the first len(reference_u8) seeds are compared), and a paired
        bootstrap of it (both sets resampled with the same seeds): its standard error and 95 %
        interval. An interval that holds 0 means no measurable difference at this sample size."""
        from relay_diffusion.metrics.features import feature_statistics, frechet_distance

        real = feature_statistics(np.asarray(self.features.arrays["pool"], dtype=np.float64))
        b = np.asarray(self.features_of(reference_u8).arrays["pool"], dtype=np.float64)
        a = np.asarray(feats.arrays["pool"], dtype=np.float64)[:len(b)]          # the same seeds

        def fid(f):
            return frechet_distance(*feature_statistics(f), *real)

        rng = np.random.default_rng(seed)
        boot = []
        for _ in range(resamples):
            idx = rng.integers(0, len(a), len(a))
            boot.append(fid(a[idx]) - fid(b[idx]))
        lo, hi = np.percentile(boot, [2.5, 97.5])
        return {"fid_difference": fid(a) - fid(b), "fid_difference_se": float(np.std(boot, ddof=1)),
                "fid_difference_95": [float(lo), float(hi)], "resamples": resamples}


def base_cache_path(work: Path, chain_name: str, settings, n: int, runtime: dict | None = None) -> Path:
    import hashlib

    parts = [chain_name, dataclasses.asdict(settings), n] + ([runtime] if runtime else [])
    key = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
    return work / "base" / f"{chain_name}-{key}.pt"


def base_samples(work: Path, chain_name: str, models, settings, n: int, batch: int,
                 runtime: dict | None = None) -> torch.Tensor:
    """The base stage's samples for seeds 0…n−1 (float, unquantised), cached per settings (and
    network runtime, when not plain fp32)."""
    from relay_diffusion.pipeline import RelayChain

    path = base_cache_path(work, chain_name, settings, n, runtime)
    if path.exists():
        return torch.load(path, weights_only=True)
    chain = RelayChain(models[:1], [settings])
    out = torch.cat([chain(list(range(i, min(i + batch, n))), "balanced") for i in range(0, n, batch)])
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(out, path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return out


def settings_for(model, overrides: dict | None):
    from relay_diffusion.pipeline import default_settings

    return default_settings(model).with_overrides(overrides or {})      # official names accepted


def run_point(work: Path, study: Path, name: str, spec: dict, ref: Reference, batch: int) -> bool:
    """Sample and measure one point; False when its chain is not trained yet."""
    from relay_diffusion.io import to_uint8
    from relay_diffusion.models import RelayModel
    from relay_diffusion.pipeline import RelayChain

    out = work / "points" / f"{name}.json"
    if out.exists() and json.loads(out.read_text())["n"] == spec["n"]:
        return True
    dirs = chain_dirs(spec["chain"], study)
    if dirs is None:
        return False
    runtime = spec.get("runtime") or {}                   # how the networks run (networks/runtime.py)
    models = [RelayModel.from_pretrained(d, **runtime) for d in dirs]
    settings = [settings_for(m, o) for m, o in zip(models, spec["stages"])]
    n, t = spec["n"], time.perf_counter()
    seeds = list(range(n))
    # a base point whose base settings are those of cached shared samples reuses them (per-seed noise:
    # the same images as sampling the chain whole)
    if len(models) > 1 and (spec.get("shared_base", True)
                            or base_cache_path(work, spec["chain"], settings[0], n, runtime).exists()):
        low = base_samples(work, spec["chain"], models, settings[0], n, batch, runtime)
        chain = RelayChain(models[1:], settings[1:])
        floats = torch.cat([chain(seeds[i:i + batch], "balanced", low_res=low[i:i + batch]).cpu()
                            for i in range(0, n, batch)])
    else:
        chain = RelayChain(models, settings)
        floats = torch.cat([chain(seeds[i:i + batch], "balanced").cpu() for i in range(0, n, batch)])
    seconds = time.perf_counter() - t
    images = to_uint8(floats)
    feats = ref.features_of(images)
    extra = {}
    if spec.get("save"):                                 # a reference solution for others' RMSE
        (work / "images").mkdir(exist_ok=True)
        torch.save(floats, work / "images" / f"{name}.pt")
    if spec.get("reference"):
        ref_path = work / "images" / f"{spec['reference']}.pt"
        if not ref_path.exists():
            raise SystemExit(f"{name} needs the reference solution {spec['reference']} (run its plan first)")
        target = torch.load(ref_path, weights_only=True)
        k = min(n, len(target))                          # the first k seeds: same base samples
        extra["reference"] = spec["reference"]
        extra["rmse"] = float((floats[:k] - target[:k]).pow(2).mean().sqrt())
        if spec.get("paired_fid"):
            extra.update(ref.paired_fid_difference(feats, to_uint8(target[:k])))
    record = {"name": name, "plan": spec["plan"], "chain": spec["chain"], "models": [str(d) for d in dirs], "n": n,
              "sampling_seconds": seconds, "shared_base": len(models) > 1 and spec.get("shared_base", True),
              "settings": [dataclasses.asdict(s) for s in settings], "runtime": runtime,
              "nfe": RelayChain(models, settings).nfe(), **extra, **ref.measure(images, feats)}
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".tmp").write_text(json.dumps(record, indent=2) + "\n")
    out.with_suffix(".tmp").replace(out)
    log(f"{name}: FID {record['fid']:.3f} R {record['recall']:.3f} HF {record['hf_power']:.2f} "
        + (f"RMSE {record['rmse']:.4f} " if "rmse" in record else "")
        + (f"ΔFID {record['fid_difference']:+.3f} ± {record['fid_difference_se']:.3f} "
           if "fid_difference" in record else "") +
        f"NFE {'+'.join(map(str, record['nfe']))} ({seconds:.0f} s)")
    return True


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", default="runs/solvers", help="points, cached base samples, features")
    ap.add_argument("--study", default="runs/study-fmnist32", help="the Fashion-MNIST study's workdir")
    ap.add_argument("--points", default="all", help=f"plans to run: all or a comma list of {', '.join(PLANS)}")
    ap.add_argument("--only", help="run only these points of the plans (comma list of shell patterns), "
                                   "e.g. to split one plan between two workers")
    ap.add_argument("--batch", type=int, default=500, help="images per sampling batch")
    ap.add_argument("--report", action="store_true", help="write docs/solvers-quality.md and its plots")
    args = ap.parse_args(argv)
    work, study = Path(args.workdir), Path(args.study)
    if args.report:
        from solvers_report import write_report
        write_report(work)
        return 0
    plans = list(PLANS) if args.points == "all" else args.points.split(",")
    unknown = sorted(set(plans) - set(PLANS))
    if unknown:
        raise SystemExit(f"unknown plan(s) {unknown}; choose from {list(PLANS)}")
    ref = Reference(study, work)
    waiting = []
    for plan in plans:
        for name, spec in PLANS[plan]().items():
            if args.only and not any(fnmatch.fnmatch(name, pat) for pat in args.only.split(",")):
                continue
            if not run_point(work, study, name, dict(spec, plan=plan), ref, args.batch):
                waiting.append(name)
    if waiting:
        log(f"not run (their study snapshots are not trained yet): {', '.join(waiting)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
