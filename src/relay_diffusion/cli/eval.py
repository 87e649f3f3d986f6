"""`rdm eval`: FID, sFID, IS, precision/recall, KID (and the weight-free SWD / spectral distance)
between two image sets, or between a model chain's samples and a reference, plus
`rdm eval train-features`."""

from __future__ import annotations

from pathlib import Path

import torch

from ..distributed import resolve_device
from ..evaluation.evaluate import (FEATURE_METRICS, METRICS, chain_features, check_count, compute_metrics,
                                   default_cache_dir, format_metrics, image_set_features, log_stderr,
                                   open_reference)
from ..evaluation.extractors import INCEPTION, load_extractor
from ..evaluation.sets import ImageSet, is_feature_file, load_feature_file
from ..generate import run_record
from ..metrics.classifier import BUNDLED_FEATURE_NETS
from ..seeds import parse_seeds
from .chain_flags import add_chain_arguments, build_chain, chain_labels
from .common import add_json_flag, emit_json
from .eval_train_features import add_train_features_parser, run_train_features


def add_parser(subparsers, help_text: str) -> None:
    p = subparsers.add_parser(
        "eval", help=help_text,
        description="Compare samples (--samples: folder, EDM zip, image .npz or feature .npz) or a "
                    "model chain (--model DIR per stage, --seeds; nothing is written to disk) with a "
                    "reference (--ref: images, our feature .npz, or published μ/Σ statistics). "
                    "Features come from the FID Inception-v3 (weights by --inception, $RDM_INCEPTION "
                    "or the cache dir; never downloaded) or an offline feature net (--features "
                    f"{' | '.join(BUNDLED_FEATURE_NETS)} | DIR). Activations are cached by content, "
                    "so re-runs are fast.")
    what = p.add_subparsers(dest="eval_what", metavar="[train-features]")
    add_train_features_parser(what)
    p.add_argument("--samples", metavar="PATH", help="the image set to judge (or a feature .npz)")
    p.add_argument("--ref", metavar="PATH", help="reference: images, feature .npz or statistics .npz")
    p.add_argument("--features", default=INCEPTION, metavar="NET",
                   help=f"'{INCEPTION}' (default), {' or '.join(map(repr, BUNDLED_FEATURE_NETS))} "
                        f"(bundled Fashion-MNIST feature nets: two independent feature spaces) or a "
                        f"feature-net directory")
    p.add_argument("--inception", metavar="PTH", help="pt_inception-2015-12-05-6726825d.pth")
    p.add_argument("--inception-sha256", metavar="PREFIX",
                   help="expected SHA-256 prefix of the Inception file (default: the published "
                        "file's 6726825d; give the prefix of a converted .safetensors, or 'none')")
    p.add_argument("--metrics", default=",".join(FEATURE_METRICS),
                   help=f"comma list from {','.join(METRICS)} (default {','.join(FEATURE_METRICS)})")
    p.add_argument("--num-samples", type=int, metavar="N", help="use the first N images of --samples")
    p.add_argument("--num-ref", type=int, metavar="N", help="use the first N images of --ref")
    p.add_argument("--allow-small", action="store_true",
                   help="evaluate sets smaller than the protocol's 10,000 images")
    p.add_argument("--cache-dir", metavar="DIR", help="activation cache (default $RDM_CACHE/features "
                                                      "or ~/.cache/relay_diffusion/features)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    p.add_argument("--save-features", metavar="NPZ", help="write the samples' activations and μ/Σ here")
    p.add_argument("--save-ref-features", metavar="NPZ", help="write the reference's activations and μ/Σ here")
    add_json_flag(p, "the results")
    add_chain_arguments(p, default_seeds="0-49999")
    p.set_defaults(func=run_eval)


def run_eval(args) -> int:
    if getattr(args, "eval_what", None) == "train-features":
        return run_train_features(args)
    if bool(args.samples) == bool(args.models):
        raise ValueError("give either --samples PATH or a model chain (--model DIR per stage)")
    if not (args.ref or args.save_features):
        raise ValueError("nothing to do: give --ref (to compare) and/or --save-features")
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()]
    bad = sorted(set(metrics) - set(METRICS))
    if bad:
        raise ValueError(f"unknown metric(s) {', '.join(bad)}; choose from {', '.join(METRICS)}")
    for flag, path in (("--samples", args.samples), ("--ref", args.ref)):
        if path and not Path(path).exists():                    # before loading any network
            raise ValueError(f"{flag} {path}: no such file or folder")
    if args.ref and not args.allow_small:                      # a small set: refused before any work
        if args.samples and not is_feature_file(args.samples):
            check_count(len(ImageSet(args.samples, args.num_samples)), "samples", args.samples, False)
        elif args.models:
            check_count(len(parse_seeds(args.seeds)), "samples", f"seeds {args.seeds}", False)
    log = None if args.quiet else log_stderr                    # progress on stderr
    keep = 10_000 if {"swd", "spectral"} & set(metrics) else 0
    cache = None if args.no_cache else Path(args.cache_dir) if args.cache_dir else default_cache_dir()
    device = resolve_device(args.device)
    extractor = None
    if not (args.samples and is_feature_file(args.samples)) or (args.ref and not is_feature_file(args.ref)):
        check = True if args.inception_sha256 is None else (
            False if args.inception_sha256.lower() == "none" else args.inception_sha256)
        extractor = load_extractor(args.features, args.inception, device=device, inception_hash=check)

    if args.samples and is_feature_file(args.samples):
        samples, sample_images = load_feature_file(args.samples), None
    elif args.samples:
        samples, sample_images = image_set_features(ImageSet(args.samples, args.num_samples), extractor,
                                                    args.batch, cache, keep, log)
    else:
        chain, models = build_chain(args, device)
        if chain.models[0].kind.continues:
            raise ValueError("the chain must start with a base model (SR inputs: sample them first)")
        seeds = parse_seeds(args.seeds)
        samples, sample_images = chain_features(
            chain, seeds, chain_labels(args), extractor, args.batch,
            dtype=torch.float64 if args.float64 else torch.float32, device=device, cache_dir=cache,
            keep_images=keep, log=log, description=f"chain {' → '.join(models)}")
    if args.save_features:
        samples.save(args.save_features)
    if not args.ref:
        print(f"wrote {args.save_features}: {samples.count} images, {samples.extractor}")
        return 0
    ref, ref_images = open_reference(args.ref, extractor, args.batch, cache, keep, args.num_ref, log)
    if args.save_ref_features:
        ref.save(args.save_ref_features)
    result = compute_metrics(samples, ref, metrics, allow_small=args.allow_small,
                             sample_images=sample_images, reference_images=ref_images)
    result["num_samples"], result["num_ref"] = samples.count, ref.count
    if args.models:
        record = run_record(chain, models)
        result.update({k: record[k] for k in ("stages", "nfe", "runtime")})
    result["features"] = samples.extractor or ref.extractor
    if emit_json(args, result):
        return 0
    print(f"{samples.count} samples vs {ref.count or 'unknown number of'} reference images "
          f"({result['features']})")
    if args.models:
        print(f"network evaluations per image: {' + '.join(map(str, chain.nfe()))}")
    print(format_metrics(result))
    return 0
