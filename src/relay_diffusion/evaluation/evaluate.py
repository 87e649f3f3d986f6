"""The library API behind `rdm eval`: features of an image set or a model chain (cached), and
the metrics between two feature sets, following the ADM/RDM protocol (docs/evaluation.md#what-is-compared):

- FID on the pool features, sFID on the spatial features (Inception only), μ and Σ in float64;
- IS on the logits, 10 splits; improved precision/recall on the pool features, k = 3;
- KID (unbiased MMD², cubic kernel) on the pool features;
- weight-free image metrics: SWD on Laplacian-pyramid patches, radial power-spectrum distance.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np
import torch

from ..files import cache_dir
from ..progress import Progress
from ..networks.runtime import RuntimeOptions
from ..metrics import (frechet_distance, inception_score, kernel_inception_distance, precision_recall,
                       sliced_wasserstein_distance, spectral_distance)
from .extractors import Extractor
from .sets import FeatureSet, ImageSet, load_feature_file

FEATURE_METRICS = ("fid", "sfid", "is", "pr", "kid")
IMAGE_METRICS = ("swd", "spectral")
METRICS = FEATURE_METRICS + IMAGE_METRICS
# FID is biased upward roughly ∝ 1/n and needs n ≫ d for a usable covariance; ADM/RDM evaluate
# 50k samples (30k on CelebA-HQ). 10k is the smallest protocol anyone reports ("FID-10k").
MIN_IMAGES = 10_000
IS_SPLITS = 10
PR_NEIGHBOURS = 3


def default_cache_dir() -> Path:
    return cache_dir() / "features"


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def extract_features(batches: Iterable[torch.Tensor], extractor: Extractor, description: str,
                     keep_images: int = 0, progress: Optional[Callable[[int], None]] = None
                     ) -> tuple[FeatureSet, Optional[torch.Tensor]]:
    """Run the extractor over uint8 batches. Returns the feature set and, when keep_images > 0,
    the first keep_images images (uint8) for the image metrics."""
    parts: dict = {}
    kept, count = [], 0
    for images in batches:
        for k, v in extractor(images).items():
            parts.setdefault(k, []).append(v)
        if keep_images and count < keep_images:
            kept.append(images[:keep_images - count].cpu())
        count += len(images)
        if progress:
            progress(count)
    if count == 0:
        raise ValueError(f"{description}: no images")
    arrays = {k: np.concatenate(v) for k, v in parts.items()}
    return FeatureSet(description, count, extractor.name, arrays), (torch.cat(kept) if kept else None)


def cached(cache_dir: Optional[Path], key: str, compute: Callable[[], FeatureSet],
           description: str) -> FeatureSet:
    """Features from `cache_dir/<key>.npz` when present, else computed and stored there."""
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"{key}.npz"
    if path.is_file():
        features = load_feature_file(path)
        features.description = description
        return features
    features = compute()
    features.save(path)
    return features


def image_set_features(images: ImageSet, extractor: Extractor, batch: int = 100,
                       cache_dir: Optional[Path] = None, keep_images: int = 0, log=None
                       ) -> tuple[FeatureSet, Optional[torch.Tensor]]:
    """Features of an image set (cached by the set's and the extractor's fingerprints)."""
    kept = {}

    def compute():
        f, kept["images"] = extract_features(images.batches(batch), extractor, str(images.path),
                                             keep_images, _progress(log, str(images.path), len(images)))
        return f
    features = cached(cache_dir, _key("images", images.fingerprint(), extractor.fingerprint), compute,
                      str(images.path))
    if keep_images and "images" not in kept:      # cache hit: the image metrics still need pixels
        kept["images"] = torch.cat(list(ImageSet(images.path, keep_images).batches(batch)))
    return features, kept.get("images")


def chain_features(chain, seeds: list, labels, extractor: Extractor, batch: int = 100,
                   dtype=torch.float32, device="cpu", cache_dir: Optional[Path] = None,
                   keep_images: int = 0, log=None, description: str = "model chain"
                   ) -> tuple[FeatureSet, Optional[torch.Tensor]]:
    """Features of a chain's samples for `seeds`, without writing images (cached by the models'
    weights and runtime options, every sampler setting, the seeds, labels and dtype)."""
    from ..generate import sample_batches

    def batches():
        for _, images in sample_batches(chain, seeds, labels, batch=batch, dtype=dtype, device=device):
            yield images

    # how the networks ran is part of the key when it is not plain float32 (bf16 changes images)
    models = [(m.config.to_dict(), weights_digest(m.denoiser)) + runtime_key(m.denoiser.runtime) for m in chain.models]
    key = _key("chain", models, [dataclasses.asdict(s) for s in chain.settings], [int(s) for s in seeds], labels,
               str(dtype), extractor.fingerprint)
    kept = {}

    def compute():
        f, kept["images"] = extract_features(batches(), extractor, description, keep_images,
                                             _progress(log, description, len(seeds)))
        return f
    features = cached(cache_dir if not keep_images else None, key, compute, description)
    return features, kept.get("images")


def runtime_key(runtime: RuntimeOptions) -> tuple:
    """What of the network runtime keys cached features: the precision only, since the memory
    layout and compilation give the same images to float32 rounding (tests/test_runtime.py)."""
    return () if runtime.precision == "fp32" else ({"precision": runtime.precision},)


def weights_digest(module: torch.nn.Module) -> str:
    """SHA-256 of a module's tensors: the cache key follows the weights, not file names."""
    h = hashlib.sha256()
    for name, t in sorted(module.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()[:16]


def _progress(log, what: str, total: int):
    """A done-count reporter: a Progress bar/lines on stderr for log_stderr, lines at every tenth
    through any other `log`; None for no log."""
    if log is None:
        return None
    bar = Progress(total, what) if log is log_stderr else Progress(total, what, write=log)

    def report(done: int):
        bar.update_to(done)
        if done >= total:
            bar.close()
    return report


def check_count(count: int, role: str, description: str, allow_small: bool) -> None:
    """Refuse a set below the protocol's size unless allow_small (also called before any
    feature is extracted, when the count is known from the file list or the seeds)."""
    if count and count < MIN_IMAGES and not allow_small:
        raise ValueError(
            f"{role} ({description}) has {count} images; the protocol needs at least "
            f"{MIN_IMAGES:,}: FID/sFID/KID are biased upward roughly in proportion to 1/n and the "
            f"feature covariance needs n well above its dimension (ADM/RDM use 50k samples, "
            f"30k on CelebA-HQ). Pass --allow-small to compute anyway; such numbers are not "
            f"comparable with published ones.")


def check_counts(samples: FeatureSet, reference: FeatureSet, metrics, allow_small: bool) -> None:
    """Refuse sets below the protocol's size unless allow_small; always refuse what cannot be
    computed at all."""
    for fs, role in ((samples, "samples"), (reference, "reference")):
        check_count(fs.count, role, fs.description, allow_small)
    need = {"is": IS_SPLITS, "pr": PR_NEIGHBOURS + 1, "fid": 2, "sfid": 2, "kid": 2}
    for m in metrics:
        for fs in (samples, reference) if m != "is" else (samples,):
            if m in need and fs.count and fs.count < need[m]:
                raise ValueError(f"{m} needs at least {need[m]} images; {fs.description} has {fs.count}")


def compute_metrics(samples: FeatureSet, reference: FeatureSet, metrics=FEATURE_METRICS, *,
                    allow_small: bool = False, sample_images: Optional[torch.Tensor] = None,
                    reference_images: Optional[torch.Tensor] = None) -> dict:
    """{"fid": …, "sfid": …, "is": …, "is_std": …, "precision": …, "recall": …, "kid": …,
    "kid_std": …, "swd": …, "spectral": …} for the requested metrics; a metric the inputs cannot
    give (e.g. sFID with a feature net, P/R against statistics only) is listed under "skipped"
    with the reason."""
    if isinstance(metrics, str):                       # "fid" or "fid,pr": not a sequence of letters
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if not metrics:
        raise ValueError(f"no metrics asked for; choose from {', '.join(METRICS)}")
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metric(s) {', '.join(unknown)}; choose from {', '.join(METRICS)}")
    if samples.extractor and reference.extractor and samples.extractor != reference.extractor:
        raise ValueError(f"the sets were measured with different networks: samples {samples.extractor}, "
                         f"reference {reference.extractor} ({reference.description})")
    check_counts(samples, reference, metrics, allow_small)
    out, skipped = {}, {}

    def fd(kind):
        a, b = samples.statistics(kind), reference.statistics(kind)
        if a is None or b is None:
            missing = samples if a is None else reference
            return None, f"no {kind} features in {missing.description}"
        if a[0].shape != b[0].shape:
            raise ValueError(f"{kind} feature sizes differ: {a[0].shape[0]} (samples) vs {b[0].shape[0]} "
                             f"({reference.description}); was it made with another network?")
        return frechet_distance(a[0], a[1], b[0], b[1]), None

    for m in metrics:
        why = None
        if m in ("fid", "sfid"):
            value, why = fd("pool" if m == "fid" else "spatial")
            if why is None:
                out[m] = value
        elif m == "is":
            if "logits" not in samples.arrays:
                why = "no logits for the samples"
            else:
                out["is"], out["is_std"] = inception_score(samples.arrays["logits"], splits=IS_SPLITS)
        elif m in ("pr", "kid"):
            if "pool" not in samples.arrays or "pool" not in reference.arrays:
                why = f"{m} needs activations of both sets (the reference has statistics only)"
            elif m == "pr":
                out["precision"], out["recall"] = precision_recall(
                    reference.arrays["pool"], samples.arrays["pool"], k=PR_NEIGHBOURS)
            else:
                n = min(len(samples.arrays["pool"]), len(reference.arrays["pool"]))
                out["kid"], out["kid_std"] = kernel_inception_distance(
                    reference.arrays["pool"], samples.arrays["pool"], subset_size=min(1000, n))
        else:
            if sample_images is None or reference_images is None:
                why = f"{m} needs the images of both sets (the reference is a feature file)"
            elif m == "swd":
                n = min(len(sample_images), len(reference_images))
                out["swd"] = sliced_wasserstein_distance(reference_images[:n], sample_images[:n])["mean"]
            else:
                out["spectral"] = spectral_distance(reference_images, sample_images)
        if why:
            skipped[m] = why
    out = {k: float(v) for k, v in out.items()}
    if skipped:
        out["skipped"] = skipped
    return out


def open_reference(path: str | os.PathLike, extractor: Extractor, batch: int, cache_dir, keep_images: int,
                   limit: Optional[int] = None, log=None):
    """A reference given as a feature/statistics .npz, as images (folder, zip, image .npz), or as
    both — ADM's reference batches hold images (`arr_0`) and the published μ, Σ: then FID/sFID use
    the published statistics and P/R/KID the images' activations, as ADM's evaluator does."""
    from .sets import is_feature_file, npz_has_images

    if not is_feature_file(path):
        return image_set_features(ImageSet(path, limit), extractor, batch, cache_dir, keep_images, log)
    published = load_feature_file(path)
    if not npz_has_images(path):
        return published, None
    features, images = image_set_features(ImageSet(path, limit), extractor, batch, cache_dir, keep_images, log)
    features.stats.update(published.stats)
    return features, images


def format_metrics(result: dict) -> str:
    names = {"fid": "FID", "sfid": "sFID", "is": "IS", "precision": "precision", "recall": "recall",
             "kid": "KID", "swd": "SWD", "spectral": "spectral"}
    lines = []
    for k, label in names.items():
        if k in result:
            v = result[k]
            spread = result.get(f"{k}_std")
            lines.append(f"{label:>10}: {v:.6g}" + (f" ± {spread:.3g}" if spread is not None else ""))
    for k, why in result.get("skipped", {}).items():
        lines.append(f"{k:>10}: skipped ({why})")
    return "\n".join(lines)


def log_stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


__all__ = ["compute_metrics", "extract_features", "image_set_features", "chain_features",
           "open_reference", "check_count", "check_counts", "format_metrics", "MIN_IMAGES", "METRICS"]
