"""Write a source as EDM-format dataset zips, one per resolution.

The zip is uncompressed (ZIP_STORED) and holds PNGs named as EDM's dataset_tool names them,
`00000/img00000000.png`, ..., plus `dataset.json` = {"labels": [[name, int], ...]} or
{"labels": null}. Every output of one call holds the same images in the same order.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np

from .builtin import open_fashion_mnist, open_twemoji
from .errors import DatasetError, SkippedImageWarning
from .images import RESIZE_FILTERS, TRANSFORMS, encode_png, transform_image
from .labels import DATASET_JSON
from .sources import FolderSource, ImageSource, ZipSource, open_npz

BUILTIN_SOURCES = ("fashion-mnist", "twemoji")


@dataclasses.dataclass(frozen=True)
class ConversionResult:
    """What `convert_dataset` wrote.

    paths: the zips, in the order of `resolutions`. resolutions: their image sides.
    num_images: images in each zip. num_channels: 1 (grey) or 3 (RGB). label_dim: number of
    classes (the number of class names, or max label + 1), 0 without labels. label_names: class names when the source has
    them. skipped_files: the bad images left out (skip_bad=True)."""

    paths: list[Path]
    resolutions: list[int]
    num_images: int
    num_channels: int
    label_dim: int
    label_names: list[str] | None
    skipped_files: list[str]

    @property
    def has_labels(self) -> bool:
        return self.label_dim > 0

    @property
    def skipped(self) -> int:
        return len(self.skipped_files)


def open_source(source: str | os.PathLike, *, split: str = "train",
                fashion_mnist_dir: str | os.PathLike | None = None) -> ImageSource:
    """Open a source by name: "fashion-mnist" or "twemoji" (these names win over a folder of
    the same name: write ./twemoji for the folder), a folder, a .zip or an .npz.
    split: Fashion-MNIST's "train" or "test". fashion_mnist_dir: where its idx-gz files are."""
    if str(source) == "fashion-mnist":
        return open_fashion_mnist(split, fashion_mnist_dir)
    if str(source) == "twemoji":
        return open_twemoji()
    path = Path(source)
    if path.is_dir():
        return FolderSource(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder (sources: a folder, a .zip, an .npz, "
                           f"{' or '.join(BUILTIN_SOURCES)})", path=str(path))
    if path.suffix.lower() == ".zip":
        return ZipSource(path)
    if path.suffix.lower() == ".npz":
        return open_npz(path)
    raise DatasetError(f"{path}: unknown kind of source (use a folder, a .zip or an .npz)",
                       path=str(path))


# the largest image side `convert_dataset` writes (an RGB image of 16384² is 0.75 GiB in memory)
MAX_RESOLUTION = 16384


def output_paths(dest: str | os.PathLike, resolutions: Sequence[int | None]) -> list[Path]:
    """One resolution writes exactly `dest`; several write OUT-<res>.zip beside it for OUT.zip
    (e.g. data.zip with [8, 32] -> data-8.zip, data-32.zip)."""
    dest = Path(dest)
    if dest.suffix.lower() != ".zip":
        raise DatasetError(f"{dest}: the destination must be a .zip file", path=str(dest))
    if len(resolutions) == 1:
        return [dest]
    return [dest.with_name(f"{dest.stem}-{r}{dest.suffix}") for r in resolutions]


def _check_options(resolutions, transform, resize_filter, max_images, png_compress_level
                   ) -> list[int | None]:
    if png_compress_level not in range(10):
        raise DatasetError(f"png_compress_level must be 0-9, got {png_compress_level!r}")
    if transform not in TRANSFORMS:
        raise DatasetError(f"unknown transform {transform!r}; choose one of {', '.join(TRANSFORMS)}")
    if resize_filter not in RESIZE_FILTERS:
        raise DatasetError(f"unknown resize filter {resize_filter!r}; choose one of "
                           f"{', '.join(RESIZE_FILTERS)}")
    if max_images is not None and (isinstance(max_images, bool) or not isinstance(max_images, int)
                                   or max_images < 1):
        raise DatasetError(f"max_images must be a positive integer, got {max_images!r}")
    if resolutions is None:
        return [None]
    if isinstance(resolutions, int):
        resolutions = [resolutions]
    resolutions = list(resolutions)
    if not resolutions or any(isinstance(r, bool) or not isinstance(r, int) or r < 1
                              for r in resolutions):
        raise DatasetError(f"resolutions must be positive integers, got {resolutions}")
    if len(set(resolutions)) != len(resolutions):
        raise DatasetError(f"resolutions repeat a value: {resolutions}")
    too_big = [r for r in resolutions if r > MAX_RESOLUTION]
    if too_big:
        raise DatasetError(f"resolution {too_big[0]:,} is above the {MAX_RESOLUTION:,} this tool writes: one RGB "
                           f"image would take {3 * too_big[0] ** 2 / 2 ** 30:,.1f} GiB in memory")
    return resolutions


class _Skipper:
    """Raise a bad image's DatasetError, or (skip_bad) warn and remember it."""

    def __init__(self, skip_bad: bool):
        self.skip_bad, self.files = skip_bad, []

    def __call__(self, error: DatasetError, name: str) -> None:
        if not self.skip_bad:
            raise error
        self.files.append(name)
        warnings.warn(f"skipping bad image: {error}", SkippedImageWarning, stacklevel=3)


def _output_channels(src: ImageSource, indices: list[int], skipper: _Skipper) -> tuple[int, set]:
    """Channels of the output (3 if any image is colour) and the images whose header is bad."""
    if src.num_channels is not None:
        return src.num_channels, set()
    channels, bad = 1, set()
    for i in indices:
        try:
            channels = max(channels, src.peek_channels(i))
        except DatasetError as e:
            skipper(e, src.describe(i))
            bad.add(i)
    return channels, bad


def convert_dataset(source: str | os.PathLike | ImageSource, dest: str | os.PathLike,
                    resolutions: int | Sequence[int] | None = None, *,
                    transform: str = "center-crop", resize_filter: str = "lanczos",
                    max_images: int | None = None, skip_bad: bool = False, split: str = "train",
                    fashion_mnist_dir: str | os.PathLike | None = None,
                    png_compress_level: int = 0, progress=None) -> ConversionResult:
    """Convert `source` into EDM-format zips.

    source: a folder, .zip, .npz, "fashion-mnist", "twemoji" (see `open_source`) or an opened
      ImageSource. dest: OUT.zip; see `output_paths` for several resolutions.
    resolutions: an int or a list of output sides; None keeps the native size (then every image
      must come out the same size as the first).
    transform: "center-crop" (EDM: largest centred square, then resize), "center-crop-dhariwal"
      (ADM's BOX halvings + BICUBIC + crop) or "none" (square images only, resize only).
    resize_filter: "lanczos" (default) or "box".
    max_images: use only the first N source images (sorted by name; bad ones count too).
    skip_bad: leave out bad images with a SkippedImageWarning each instead of raising. A
      malformed dataset.json or a missing source is always an error.
    split, fashion_mnist_dir: for "fashion-mnist".
    png_compress_level: 0 (EDM's, fastest to read) to 9.
    progress: called as progress(done, total) after every source image (e.g. Progress.update_to).
    Grey images stay 1 channel unless any image of the source is colour: then all are RGB.
    Zips are written to temporary files and renamed at the end, so a failure leaves none."""
    resolutions = _check_options(resolutions, transform, resize_filter, max_images,
                                 png_compress_level)
    paths = output_paths(dest, resolutions)
    if not isinstance(source, ImageSource) and Path(source).exists():
        clash = [p for p in paths if p.resolve() == Path(source).resolve()]
        if clash:
            raise DatasetError(f"{clash[0]} is the source: writing it would replace the images being read; "
                               "choose another destination", path=str(source))
    src = source if isinstance(source, ImageSource) else open_source(
        source, split=split, fashion_mnist_dir=fashion_mnist_dir)
    try:
        if len(src) == 0:
            raise DatasetError(f"{src.description}: no images found", path=src.description)
        indices = list(range(len(src) if max_images is None else min(len(src), max_images)))
        skipper = _Skipper(skip_bad)
        channels, bad = _output_channels(src, indices, skipper)
        written = _write_zips(src, [i for i in indices if i not in bad], paths, resolutions,
                              channels, transform, resize_filter, png_compress_level, skipper, progress)
    finally:
        if not isinstance(source, ImageSource):
            src.close()
    labels = [] if src.labels is None else [src.labels[i] for i in written.indices]
    names = src.label_names if src.labels is not None else None
    label_dim = max(max(labels, default=-1) + 1, len(names or []))
    return ConversionResult(paths=paths, resolutions=written.sizes, num_images=len(written.indices),
                            num_channels=channels, label_dim=label_dim, label_names=names,
                            skipped_files=skipper.files)


@dataclasses.dataclass
class _Written:
    indices: list[int]
    sizes: list[int]


def _write_zips(src: ImageSource, indices: list[int], paths: list[Path],
                resolutions: list[int | None], channels: int, transform: str, resize_filter: str,
                compress_level: int, skipper: _Skipper, progress=None) -> _Written:
    written = _Written(indices=[], sizes=[r for r in resolutions if r is not None])
    temps, zips = [], []
    try:
        for path in paths:
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.{os.getpid()}.partial")   # renamed when complete
            temps.append(temp)
            zips.append(zipfile.ZipFile(temp, "w", compression=zipfile.ZIP_STORED))
        for k, i in enumerate(indices):
            if progress is not None:
                progress(k, len(indices))
            name = src.describe(i)
            try:
                outs = _prepare(src.load(i), resolutions, channels, transform, resize_filter, name,
                                written.sizes)
            except DatasetError as e:
                skipper(e, name)
                continue
            idx = f"{len(written.indices):08d}"
            for zf, img in zip(zips, outs):
                zf.writestr(f"{idx[:5]}/img{idx}.png", encode_png(img, compress_level))
            written.indices.append(i)
        if not written.indices:
            raise DatasetError(f"{src.description}: none of its {len(indices)} images could be "
                               f"used", path=src.description)
        names = [f"{k:08d}" for k in range(len(written.indices))]
        meta = {"labels": None if src.labels is None else
                [[f"{n[:5]}/img{n}.png", src.labels[i]] for n, i in zip(names, written.indices)]}
        if progress is not None:
            progress(len(indices), len(indices))
        for zf in zips:
            zf.writestr(DATASET_JSON, json.dumps(meta))
            zf.close()
        for temp, path in zip(temps, paths):
            os.replace(temp, path)
        temps = []
        return written
    finally:
        for zf in zips:
            zf.close()                               # a no-op for those already closed
        for temp in temps:
            if os.path.exists(temp):
                os.remove(temp)


def _prepare(img: np.ndarray, resolutions: list[int | None], channels: int, transform: str,
             resize_filter: str, name: str, sizes: list[int]) -> list[np.ndarray]:
    """Transform one decoded image for every output; fixes the native size on first use."""
    if img.shape[2] != channels:
        if img.shape[2] == 1:
            img = np.repeat(img, 3, axis=2)          # grey in a colour dataset
        else:
            raise DatasetError(f"{name}: colour image in a dataset found to be grey", path=name)
    outs = [transform_image(img, r, transform, resize_filter, name) for r in resolutions]
    if resolutions == [None]:
        h, w = outs[0].shape[:2]
        if not sizes:
            if h != w:
                raise DatasetError(f"{name}: comes out {w}x{h}, not square", path=name)
            sizes.append(h)
        elif (h, w) != (sizes[0], sizes[0]):
            raise DatasetError(f"{name}: comes out {w}x{h}, but the dataset is "
                               f"{sizes[0]}x{sizes[0]} (give a resolution to resize)", path=name)
    return outs
