"""The `rdm dataset` verb: convert a source into EDM-format zips."""

from __future__ import annotations

import argparse
import sys
import warnings

from ..data.builtin import FASHION_MNIST_ENV
from ..data.convert import convert_dataset
from ..data.errors import DatasetError, SkippedImageWarning
from ..data.images import RESIZE_FILTERS, TRANSFORMS
from ..progress import Progress
from .common import add_quiet_flag, positive_list, print_warning


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    """Add the `dataset` verb to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "dataset", help=help_text,
        description="Convert a folder, zip, .npz or a built-in source into uncompressed zips of "
                    "PNGs (00000/img00000000.png, ...) with a dataset.json of labels, as EDM's "
                    "dataset_tool writes them. Several resolutions write OUT-<res>.zip each.")
    p.add_argument("--source", required=True, metavar="SRC",
                   help="a folder of images (labels from sub-folders or its dataset.json), a .zip, "
                        "an .npz (arrays 'images'/'x'/'X'/'arr_0' and 'labels'/'y'/'Y'/'arr_1'), "
                        "'fashion-mnist' or 'twemoji'")
    p.add_argument("--dest", required=True, metavar="OUT.zip",
                   help="output zip; with several resolutions OUT-<res>.zip is written per resolution")
    p.add_argument("--resolution", type=positive_list(int), metavar="RES[,RES...]",
                   help="output side(s) in pixels, e.g. 32 or 8,32 (default: the native size, "
                        "which must then be the same for every image)")
    p.add_argument("--transform", choices=TRANSFORMS, default="center-crop",
                   help="center-crop: largest centred square, then resize (EDM); "
                        "center-crop-dhariwal: ADM's BOX halvings + BICUBIC + crop; none: square "
                        "images only, resized (default: center-crop)")
    p.add_argument("--resize-filter", choices=sorted(RESIZE_FILTERS), default="lanczos",
                   help="resampling filter of center-crop and none (default: lanczos)")
    p.add_argument("--max-images", type=int, metavar="N",
                   help="use only the first N source images, sorted by name")
    p.add_argument("--skip-bad", action="store_true",
                   help="skip unreadable or unsuitable images with a warning instead of stopping "
                        "(a malformed dataset.json is still an error)")
    p.add_argument("--split", choices=("train", "test"), default="train",
                   help="Fashion-MNIST split (default: train)")
    p.add_argument("--fashion-mnist-dir", metavar="DIR",
                   help=f"folder with Fashion-MNIST's idx-gz files (default: ${FASHION_MNIST_ENV} "
                        f"or /usr/share/datasets/fashion-mnist)")
    add_quiet_flag(p)
    p.set_defaults(func=run_dataset)
    return p


def run_dataset(args: argparse.Namespace) -> int:
    """Run `rdm dataset` with parsed arguments; returns the exit code (0, or 2 on an error)."""
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(total, "converting", quiet=args.quiet)
        bar.update_to(done)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always", SkippedImageWarning)
            warnings.showwarning = print_warning      # restored by catch_warnings
            result = convert_dataset(
                args.source, args.dest, args.resolution, transform=args.transform,
                resize_filter=args.resize_filter, max_images=args.max_images,
                skip_bad=args.skip_bad, split=args.split, fashion_mnist_dir=args.fashion_mnist_dir,
                progress=progress)
    except DatasetError as e:
        if bar is not None:
            bar.close()
        print(f"rdm: error: {e}", file=sys.stderr)
        return 2
    if bar is not None:
        bar.close()
    channels = "1 channel (grey)" if result.num_channels == 1 else "3 channels (RGB)"
    labels = (f"labels: yes ({result.label_dim} classes)" if result.has_labels else "labels: no")
    for path, res in zip(result.paths, result.resolutions):
        print(f"wrote {path}: {result.num_images} images, {res}x{res}, {channels}, {labels}")
    if result.label_names:
        print("classes: " + ", ".join(f"{i}={n}" for i, n in enumerate(result.label_names)))
    print(f"skipped {result.skipped} bad image{'s' if result.skipped != 1 else ''}")
    return 0
