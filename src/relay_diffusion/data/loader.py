"""Read an EDM-format zip (or a plain folder of images) as a torch Dataset."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import torch

from .errors import DatasetError
from .images import decode_image
from .labels import DATASET_JSON, resolve_labels
from .sources import list_folder_images, list_zip_images


class ImageDataset(torch.utils.data.Dataset):
    """Images of an EDM-format zip or a folder (labels by the rules of `labels.py`).

    Item i is (image: torch.uint8 [C, H, W], label: int, -1 without labels). Opening reads the
    file list, the labels and the first image only (which fixes `resolution` and
    `num_channels`); an image that then fails to decode or has another shape raises a
    DatasetError naming it when it is read. The zip is opened lazily in each process, so the
    dataset works in DataLoader workers."""

    def __init__(self, path: str | os.PathLike, *, xflip: bool = False,
                 max_size: int | None = None, random_seed: int = 0, use_labels: bool = True):
        """path: a .zip or a folder. xflip: double the dataset as EDM does; item i + N is item
        i mirrored left-right. max_size: keep a random subset of this many images (EDM's rule:
        shuffled with `random_seed`, then sorted). use_labels: False ignores the labels."""
        self._path = Path(path)
        self._zipfile: zipfile.ZipFile | None = None
        self._zip_pid: int | None = None
        if self._path.is_dir():
            self._type = "dir"
            self._names = list_folder_images(self._path)
            meta_path = self._path / DATASET_JSON
            meta = meta_path.read_bytes() if meta_path.is_file() else None
            where = str(meta_path)
        elif self._path.is_file() and self._path.suffix.lower() == ".zip":
            self._type = "zip"
            zf = self._zip()
            self._names = list_zip_images(zf)
            meta = zf.read(DATASET_JSON) if DATASET_JSON in zf.namelist() else None
            where = f"{self._path}: {DATASET_JSON}"
        else:
            raise DatasetError(f"{self._path}: not a folder or a .zip file", path=str(self._path))
        if not self._names:
            raise DatasetError(f"{self._path}: no images found", path=str(self._path))
        labels, self.label_names = resolve_labels(self._names, meta, where)
        if not use_labels:
            labels, self.label_names = None, None
        self._labels = None if labels is None else np.asarray(labels, dtype=np.int64)

        first = self._load_raw(0)
        if first.shape[1] != first.shape[2]:
            raise DatasetError(f"{self._describe(0)}: image is {first.shape[2]}x{first.shape[1]}, "
                               f"not square", path=self._describe(0))
        self._shape = tuple(first.shape)

        raw_idx = np.arange(len(self._names), dtype=np.int64)
        if max_size is not None and len(raw_idx) > max_size:
            np.random.RandomState(random_seed % (1 << 31)).shuffle(raw_idx)
            raw_idx = np.sort(raw_idx[:max_size])
        self._xflip = np.zeros(len(raw_idx), dtype=bool)
        if xflip:
            raw_idx = np.tile(raw_idx, 2)
            self._xflip = np.concatenate([self._xflip, ~self._xflip])
        self._raw_idx = raw_idx

    def _zip(self) -> zipfile.ZipFile:
        # One handle per process: a handle inherited through fork shares its file offset.
        if self._zipfile is None or self._zip_pid != os.getpid():
            try:
                self._zipfile = zipfile.ZipFile(self._path)
            except (OSError, zipfile.BadZipFile) as e:
                raise DatasetError(f"{self._path}: cannot open as a zip ({e})",
                                   path=str(self._path)) from e
            self._zip_pid = os.getpid()
        return self._zipfile

    def _describe(self, raw: int) -> str:
        if self._type == "zip":
            return f"{self._path}: {self._names[raw]}"
        return str(self._path / self._names[raw])

    def _load_raw(self, raw: int) -> np.ndarray:
        """Image `raw` of the file list as uint8 [C, H, W]."""
        name = self._describe(raw)
        try:
            data = (self._zip().read(self._names[raw]) if self._type == "zip"
                    else (self._path / self._names[raw]).read_bytes())
        except (OSError, zipfile.BadZipFile, EOFError) as e:
            raise DatasetError(f"{name}: cannot read ({e})", path=name) from e
        return decode_image(data, name).transpose(2, 0, 1)

    def __getstate__(self):
        return dict(self.__dict__, _zipfile=None, _zip_pid=None)

    def close(self) -> None:
        if self._zipfile is not None:
            self._zipfile.close()
        self._zipfile = None

    def __len__(self) -> int:
        return len(self._raw_idx)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        raw = int(self._raw_idx[index])
        image = self._load_raw(raw)
        if image.shape != self._shape:
            name = self._describe(raw)
            raise DatasetError(f"{name}: image is {'x'.join(map(str, image.shape))} (CxHxW), but "
                               f"the dataset is {'x'.join(map(str, self._shape))}", path=name)
        if self._xflip[index]:
            image = image[:, :, ::-1]
        image = np.ascontiguousarray(image)
        if not image.flags.writeable:            # Pillow's buffers are read-only; torch wants to own one
            image = image.copy()
        return torch.from_numpy(image), self.get_label(index)

    def get_label(self, index: int) -> int:
        """Label of item `index` (-1 without labels), without reading the image."""
        return -1 if self._labels is None else int(self._labels[self._raw_idx[index]])

    @property
    def name(self) -> str:
        """The file or folder name without extension, as EDM names datasets."""
        return self._path.stem if self._type == "zip" else self._path.name

    @property
    def resolution(self) -> int:
        return self._shape[1]

    @property
    def num_channels(self) -> int:
        return self._shape[0]

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return self._shape

    @property
    def has_labels(self) -> bool:
        return self._labels is not None

    @property
    def label_dim(self) -> int:
        """Number of classes, max label + 1 over the whole file list; 0 without labels."""
        return 0 if self._labels is None else int(self._labels.max()) + 1

    @property
    def labels(self) -> np.ndarray:
        """int64 [len(self)]: every item's label, -1 without labels."""
        if self._labels is None:
            return np.full(len(self), -1, dtype=np.int64)
        return self._labels[self._raw_idx]


def load_images(path: str | os.PathLike, max_images: int | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Read a whole (small) EDM zip or folder: (images uint8 [N, C, H, W], labels int64 [N],
    -1 without labels). max_images: read only the first N."""
    ds = ImageDataset(path)
    try:
        n = len(ds) if max_images is None else min(len(ds), max_images)
        items = [ds[i] for i in range(n)]
    finally:
        ds.close()
    images = torch.stack([img for img, _ in items])
    return images, torch.tensor([label for _, label in items], dtype=torch.int64)
