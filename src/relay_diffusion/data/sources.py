"""Image sources for conversion: a folder, a zip, or an in-memory array (an .npz, Fashion-MNIST).

Each source lists its images up front (`names`, `labels`) and decodes one image at a time with
`load(i)` into uint8 [H, W, 1|3], so a million-image folder never sits in memory. `describe(i)`
is how image i is named in errors: the file's path, "archive.zip: dir/file.png" or
"data.npz: images[5]".
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np

from .errors import DatasetError
from .images import composite_on_white, decode_image, is_image_name, peek_channels
from .labels import DATASET_JSON, resolve_labels

# Keys tried, in this order, for the arrays of an .npz source.
NPZ_IMAGE_KEYS = ("images", "x", "X", "arr_0")
NPZ_LABEL_KEYS = ("labels", "y", "Y", "arr_1")


class ImageSource:
    """Base class. Attributes: description (str), names (list of str), labels (list of int or
    None), label_names (list of str or None), num_channels (1 or 3 when known without reading
    the files, else None)."""

    description: str
    names: list[str]
    labels: list[int] | None = None
    label_names: list[str] | None = None
    num_channels: int | None = None

    def __len__(self) -> int:
        return len(self.names)

    def describe(self, index: int) -> str:
        return self.names[index]

    def peek_channels(self, index: int) -> int:
        """Channels of image `index` after decoding, read from its header only."""
        raise NotImplementedError

    def load(self, index: int) -> np.ndarray:
        """Decode image `index` into uint8 [H, W, 1|3]; DatasetError names the file."""
        raise NotImplementedError

    def close(self) -> None:
        pass


def list_folder_images(root: Path) -> list[str]:
    """Relative "/" paths of the image files under `root` (recursive), sorted."""
    names = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).as_posix()
        for f in filenames:
            name = f if rel == "." else f"{rel}/{f}"
            if is_image_name(name):
                names.append(name)
    return sorted(names)


def list_zip_images(zf: zipfile.ZipFile) -> list[str]:
    """Member names of the image files in a zip, sorted."""
    return sorted(n for n in zf.namelist() if not n.endswith("/") and is_image_name(n))


class FolderSource(ImageSource):
    """All images under a folder, recursively; labels by the rules of `labels.py`."""

    def __init__(self, root: str | os.PathLike):
        """root: the folder."""
        self.root = Path(root)
        self.description = str(self.root)
        self.names = list_folder_images(self.root)
        meta_path = self.root / DATASET_JSON
        meta = meta_path.read_bytes() if meta_path.is_file() else None
        self.labels, self.label_names = resolve_labels(self.names, meta, str(meta_path))

    def describe(self, index: int) -> str:
        return str(self.root / self.names[index])

    def peek_channels(self, index: int) -> int:
        name = self.describe(index)
        try:
            with open(name, "rb") as f:
                return peek_channels(f, name)
        except OSError as e:
            raise DatasetError(f"{name}: cannot read ({e})", path=name) from e

    def load(self, index: int) -> np.ndarray:
        name = self.describe(index)
        try:
            data = Path(name).read_bytes()
        except OSError as e:
            raise DatasetError(f"{name}: cannot read ({e})", path=name) from e
        return decode_image(data, name)


class ZipSource(ImageSource):
    """All images in a zip (EDM's format or any zip of images); labels by `labels.py`."""

    def __init__(self, path: str | os.PathLike):
        """path: the zip file."""
        self.path = Path(path)
        self.description = str(self.path)
        try:
            self.zip = zipfile.ZipFile(self.path)
        except (OSError, zipfile.BadZipFile) as e:
            raise DatasetError(f"{self.path}: cannot open as a zip ({e})", path=str(self.path)) from e
        try:
            self.names = list_zip_images(self.zip)
            meta = self._read(DATASET_JSON) if DATASET_JSON in self.zip.namelist() else None
            self.labels, self.label_names = resolve_labels(self.names, meta,
                                                           f"{self.path}: {DATASET_JSON}")
        except DatasetError:
            self.zip.close()
            raise

    def describe(self, index: int) -> str:
        return f"{self.path}: {self.names[index]}"

    def _read(self, member: str) -> bytes:
        try:
            return self.zip.read(member)
        except (OSError, zipfile.BadZipFile, EOFError) as e:   # e.g. a bad CRC
            name = f"{self.path}: {member}"
            raise DatasetError(f"{name}: cannot read from the zip ({e})", path=name) from e

    def peek_channels(self, index: int) -> int:
        name = self.describe(index)
        try:
            with self.zip.open(self.names[index]) as f:
                return peek_channels(f, name)
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            raise DatasetError(f"{name}: cannot read from the zip ({e})", path=name) from e

    def load(self, index: int) -> np.ndarray:
        return decode_image(self._read(self.names[index]), self.describe(index))

    def close(self) -> None:
        self.zip.close()


class ArraySource(ImageSource):
    """Images held in a uint8 array [N, H, W], [N, H, W, 1], [N, H, W, 3] or [N, H, W, 4]
    (RGBA, composited on white)."""

    def __init__(self, images: np.ndarray, labels: np.ndarray | None, description: str,
                 item_name: str = "images", label_names: list[str] | None = None):
        """images: the array. labels: integer array [N] (>= 0) or None. description: the
        source's name in messages; image i is called "<description>: <item_name>[i]".
        label_names: optional class names."""
        self.description, self.item_name = description, item_name
        if images.dtype != np.uint8:
            raise DatasetError(f"{description}: {item_name} must be uint8, got {images.dtype}",
                               path=description)
        if images.ndim == 3:
            images = images[..., None]
        if images.ndim != 4 or images.shape[3] not in (1, 3, 4):
            hint = (" (it looks channels-first: transpose it to [N, H, W, C])"
                    if images.ndim == 4 and images.shape[1] in (1, 3, 4) else "")
            raise DatasetError(f"{description}: {item_name} must be [N, H, W] or [N, H, W, C] with "
                               f"C in 1, 3, 4, got shape {images.shape}{hint}", path=description)
        self.images = images
        self.names = [f"{item_name}[{i}]" for i in range(len(images))]
        self.num_channels = 1 if images.shape[3] == 1 else 3
        self.label_names = label_names
        self.labels = None if labels is None else self._check_labels(labels)

    def _check_labels(self, labels: np.ndarray) -> list[int]:
        if labels.ndim != 1 or len(labels) != len(self.images):
            raise DatasetError(f"{self.description}: labels must be a 1-D array of {len(self.images)} "
                               f"integers, got shape {labels.shape}", path=self.description)
        if not np.issubdtype(labels.dtype, np.integer) or (labels < 0).any():
            raise DatasetError(f"{self.description}: labels must be non-negative integers, "
                               f"got dtype {labels.dtype}", path=self.description)
        return [int(v) for v in labels]

    def describe(self, index: int) -> str:
        return f"{self.description}: {self.names[index]}"

    def peek_channels(self, index: int) -> int:
        return self.num_channels

    def load(self, index: int) -> np.ndarray:
        img = self.images[index]
        if img.shape[2] == 4:
            return composite_on_white(img[..., :3], img[..., 3])
        return np.ascontiguousarray(img)


def open_npz(path: str | os.PathLike) -> ArraySource:
    """An .npz source: the images are the first of NPZ_IMAGE_KEYS present ("images", "x", "X",
    "arr_0"), the labels the first of NPZ_LABEL_KEYS ("labels", "y", "Y", "arr_1"), if any.
    Loaded with allow_pickle=False: object arrays are refused, never unpickled."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.keys())
            image_key = next((k for k in NPZ_IMAGE_KEYS if k in keys), None)
            if image_key is None:
                raise DatasetError(f"{path}: no images array; expected one of the keys "
                                   f"{', '.join(NPZ_IMAGE_KEYS)}, found {', '.join(keys) or 'none'}",
                                   path=str(path))
            label_key = next((k for k in NPZ_LABEL_KEYS if k in keys and k != image_key), None)
            images = npz[image_key]
            labels = None if label_key is None else npz[label_key]
    except DatasetError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DatasetError(f"{path}: cannot read as .npz ({e})", path=str(path)) from e
    return ArraySource(images, labels, str(path), item_name=image_key)
