"""What `rdm eval` compares: image sets (folder, EDM zip, image .npz) read in uint8 batches, and
feature sets (activations and/or μ, Σ) kept in memory and saved as .npz.

Feature .npz layout (ours): `pool` [N, D] (FID, P/R, KID), optional `spatial` [N, 2023] (sFID)
and `logits` [N, K] (IS), `extractor` (a string naming the network). Also read: statistics-only
files with `mu`, `sigma` (+ `mu_s`, `sigma_s`), as the ADM and RDM authors publish them, and
activation files whose only 2-D float array is `arr_0` or `activations` (taken as pool features).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import zipfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np
import torch

from ..data import ArraySource, DatasetError, FolderSource, ZipSource
from ..data.sources import NPZ_IMAGE_KEYS
from ..files import atomic_write
from ..metrics.features import feature_statistics

FEATURE_KEYS = ("pool", "spatial", "logits")
STAT_KEYS = {"pool": ("mu", "sigma"), "spatial": ("mu_s", "sigma_s")}


class ImageSet:
    """A folder (recursive), EDM zip or .npz of images, read in batches of uint8 [B, C, H, W].
    All images must share one size (the extractors resize, but a batch is one tensor)."""

    def __init__(self, path: str | os.PathLike, limit: Optional[int] = None):
        self.path = Path(path)
        if self.path.is_dir():
            self.source = FolderSource(self.path)
        elif self.path.suffix.lower() == ".zip" and self.path.is_file():
            self.source = ZipSource(self.path)
        elif self.path.suffix.lower() == ".npz" and self.path.is_file():
            self.source = _npz_images(self.path)
        else:
            raise ValueError(f"{self.path}: not an image folder, .zip or .npz")
        self.count = len(self.source.names) if limit is None else min(limit, len(self.source.names))
        if self.count == 0:
            raise ValueError(f"{self.path}: no images")

    def __len__(self) -> int:
        return self.count

    def batches(self, batch: int) -> Iterator[torch.Tensor]:
        shape = None
        for start in range(0, self.count, batch):
            images = []
            for i in range(start, min(start + batch, self.count)):
                img = self.source.load(i)
                if shape is None:
                    shape = img.shape
                elif img.shape != shape:
                    raise DatasetError(f"{self.source.describe(i)}: {img.shape[1]}×{img.shape[0]}×"
                                       f"{img.shape[2]}, but the set's first image is {shape[1]}×"
                                       f"{shape[0]}×{shape[2]}", path=self.source.describe(i))
                images.append(torch.from_numpy(np.array(img)).permute(2, 0, 1))   # a writable copy
            yield torch.stack(images)

    def fingerprint(self) -> str:
        """Changes when any file of the set changes (names, sizes, modification times)."""
        h = hashlib.sha256(f"{self.path.resolve()}|{self.count}".encode())
        files = [self.path] if self.path.is_file() else [self.path / n for n in self.source.names[:self.count]]
        for f in files:
            h.update(file_stamp(f).encode())
        return h.hexdigest()[:16]


def file_stamp(path: Path) -> str:
    """What identifies a file's version for the activation cache: path, size, modification time."""
    st = path.stat()
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def npz_has_images(path: str | os.PathLike) -> bool:
    """An .npz with an image array ([N, H, W(, C)]) under one of the usual keys."""
    with np.load(path, allow_pickle=False) as npz:
        return any(k in npz.files and npz[k].ndim >= 3 for k in NPZ_IMAGE_KEYS)


def _npz_images(path: Path) -> ArraySource:
    with np.load(path, allow_pickle=False) as npz:
        key = next((k for k in NPZ_IMAGE_KEYS if k in npz.files and npz[k].ndim >= 3), None)
        if key is None:
            raise ValueError(f"{path}: no image array (uint8 [N, H, W, C] under one of "
                             f"{', '.join(NPZ_IMAGE_KEYS)})")
        return ArraySource(npz[key], None, str(path), item_name=key)


@dataclasses.dataclass
class FeatureSet:
    """Activations ([N, D] float arrays) and/or precomputed statistics of one image set."""
    description: str
    count: int
    extractor: Optional[str] = None
    arrays: dict = dataclasses.field(default_factory=dict)     # "pool" | "spatial" | "logits" → [N, D]
    stats: dict = dataclasses.field(default_factory=dict)      # "pool" | "spatial" → (mu, sigma)

    def __post_init__(self):
        if isinstance(self.count, bool) or not isinstance(self.count, (int, np.integer)) or self.count < 0:
            raise ValueError(f"count must be a whole number >= 0, got {self.count!r}")
        if not isinstance(self.arrays, dict) or not isinstance(self.stats, dict):
            raise TypeError("arrays and stats must be dicts (kind → [N, D] array; kind → (mu, sigma))")
        for kind, a in self.arrays.items():
            shape = np.shape(a)
            if len(shape) != 2 or (self.count and shape[0] != self.count):
                raise ValueError(f"{self.description}: '{kind}' activations must be [count = {self.count}, D], "
                                 f"got shape {shape}")
        for kind, st in self.stats.items():
            if len(st) != 2 or np.ndim(st[0]) != 1 or np.shape(st[1]) != (len(st[0]),) * 2:
                raise ValueError(f"{self.description}: '{kind}' statistics must be (mu [D], sigma [D, D])")

    def statistics(self, kind: str):
        """(μ, Σ) of `kind` features, from the activations or the stored statistics; None if neither."""
        if kind not in self.stats and kind in self.arrays:
            self.stats[kind] = feature_statistics(self.arrays[kind])
        return self.stats.get(kind)

    def save(self, path: str | os.PathLike) -> None:
        """Activations and statistics in one .npz (written atomically)."""
        out = {k: np.asarray(v, dtype=np.float32) for k, v in self.arrays.items()}
        for kind, (mu_key, sigma_key) in STAT_KEYS.items():
            st = self.statistics(kind)
            if st is not None:
                out[mu_key], out[sigma_key] = st
        out["count"] = np.array(self.count)
        out["extractor"] = np.array(self.extractor or "unknown")
        out["description"] = np.array(self.description)
        path = Path(path)
        if path.is_dir():
            raise ValueError(f"{path} is a folder; give the feature file's name (….npz)")
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp):
            with open(tmp, "wb") as f:                    # a file object: savez adds no suffix
                np.savez(f, **out)
        atomic_write(path, write)


def is_feature_file(path: str | os.PathLike) -> bool:
    """An .npz holding activations or statistics (rather than images)."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as npz:
            return any(k in npz.files for k in (*FEATURE_KEYS, "mu", "activations")) or (
                "arr_0" in npz.files and npz["arr_0"].ndim == 2)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"{path}: cannot read as .npz ({e})") from None


def load_feature_file(path: str | os.PathLike) -> FeatureSet:
    """Read our feature files, ADM/RDM statistics files and bare activation files."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as npz:
        files = set(npz.files)
        arrays = {k: npz[k].astype(np.float64) for k in FEATURE_KEYS if k in files}
        if not arrays:
            bare = next((k for k in ("activations", "arr_0") if k in files and npz[k].ndim == 2), None)
            if bare:
                arrays["pool"] = npz[bare].astype(np.float64)
        stats = {kind: (npz[m].astype(np.float64), npz[s].astype(np.float64))
                 for kind, (m, s) in STAT_KEYS.items() if m in files and s in files}
        if "mu" in files and "sigma" not in files:
            raise ValueError(f"{path}: has 'mu' but no 'sigma'")
        extractor = str(npz["extractor"]) if "extractor" in files else None
        count = int(npz["count"]) if "count" in files else (
            len(next(iter(arrays.values()))) if arrays else 0)
    if not arrays and not stats:
        raise ValueError(f"{path}: no activations (pool/spatial/logits, activations, arr_0 [N, D]) "
                         f"or statistics (mu, sigma)")
    for k, a in arrays.items():
        if a.ndim != 2 or not np.isfinite(a).all():
            raise ValueError(f"{path}: '{k}' must be a finite [N, D] array, got shape {a.shape}")
    return FeatureSet(str(path), count, extractor, arrays, stats)
