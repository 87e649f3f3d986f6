"""The dataset layer: convert image sources into EDM-format zips and read them back.

- `convert_dataset(source, dest, resolutions, ...)`: a folder, zip, .npz, "fashion-mnist" or
  "twemoji" to uncompressed zips of PNGs plus dataset.json (EDM's dataset_tool format).
- `ImageDataset(path, xflip=..., max_size=...)`: a torch Dataset over such a zip or a folder.
- `DatasetError`: every bad input, naming the offending file.
"""

from __future__ import annotations

from .builtin import (FASHION_MNIST_CLASSES, FASHION_MNIST_ENV, FASHION_MNIST_INSTALL,
                      TWEMOJI_INSTALL, fashion_mnist_arrays, open_fashion_mnist, open_twemoji,
                      read_idx_gz, twemoji_assets_dir)
from .convert import BUILTIN_SOURCES, ConversionResult, convert_dataset, open_source, output_paths
from .errors import DatasetError, SkippedImageWarning
from .images import (IMAGE_EXTENSIONS, RESIZE_FILTERS, TRANSFORMS, center_crop,
                     center_crop_dhariwal, decode_image, transform_image)
from .labels import parse_dataset_json, resolve_labels
from .loader import ImageDataset, load_images
from .sources import (NPZ_IMAGE_KEYS, NPZ_LABEL_KEYS, ArraySource, FolderSource, ImageSource,
                      ZipSource, open_npz)

__all__ = [
    "convert_dataset", "ConversionResult", "open_source", "output_paths", "BUILTIN_SOURCES",
    "ImageDataset", "load_images", "DatasetError", "SkippedImageWarning",
    "ImageSource", "FolderSource", "ZipSource", "ArraySource", "open_npz",
    "NPZ_IMAGE_KEYS", "NPZ_LABEL_KEYS", "open_fashion_mnist", "fashion_mnist_arrays",
    "read_idx_gz", "open_twemoji", "twemoji_assets_dir", "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ENV", "FASHION_MNIST_INSTALL", "TWEMOJI_INSTALL", "TRANSFORMS",
    "RESIZE_FILTERS", "IMAGE_EXTENSIONS", "center_crop", "center_crop_dhariwal",
    "transform_image", "decode_image", "parse_dataset_json", "resolve_labels",
]
