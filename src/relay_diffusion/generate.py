"""Many images from a chain: `sample_images`, the library behind `rdm sample`, `rdm eval --model`
and the demo page (EDM2's `generate_images`, for relay chains).

    run = sample_images(chain, seeds=range(1000), out="samples/", batch=64, keep=True)
    run.images            # uint8 [1000, C, H, W] in seed order; PNGs in samples/000000/000123.png …

Images depend only on their seed and label (one `SeededNoise` stream per image), so splitting the
seeds over processes (`dist`) or into batches changes nothing but the speed.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Callable, Iterator, Sequence

import torch

from . import __version__
from .files import atomic_write
from .pixels import enhance, to_pil, to_uint8
from .pipeline import RelayChain, class_labels
from .seeds import check_seeds


@dataclasses.dataclass
class SampleRun:
    """What `sample_images` did."""

    images: torch.Tensor | None     # uint8 [N, C, H, W] in seed order (keep=True; None otherwise)
    labels: torch.Tensor | None     # the class of every image (None: unconditional chain)
    written: int                    # complete PNGs this process wrote
    interrupted: bool               # stopped by Ctrl-C: images/labels are None, only whole PNGs exist


def image_path(out: Path, seed: int, name: str | None = None) -> Path:
    """Where an image goes: OUT/<name>.png for named inputs (super-resolution), else EDM's layout
    OUT/<seed − seed mod 1000:06d>/<seed:06d>.png."""
    if name is not None:
        return Path(out) / f"{name}.png"
    return Path(out) / f"{seed - seed % 1000:06d}" / f"{seed:06d}.png"


def sample_batches(chain: RelayChain, seeds: Sequence[int], labels="balanced", *, indices=None,
                   low_res: torch.Tensor | None = None, batch: int = 32, dtype: torch.dtype = torch.float32,
                   device=None) -> Iterator[tuple[list[int], torch.Tensor]]:
    """(indices, uint8 images [b, C, H, W] on the CPU) per batch of `batch` images, for the seeds
    at `indices` (default: all, in order). `labels` as `RelayChain.__call__`; `low_res` [N, C, h, w]
    feeds a chain that starts with a relay stage (row i for seed i)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    seeds = check_seeds(seeds)
    indices = list(range(len(seeds))) if indices is None else list(indices)
    fixed = None if isinstance(labels, (str, int)) else class_labels(seeds, chain.label_dim, labels)
    for start in range(0, len(indices), batch):
        idx = indices[start:start + batch]
        lab = labels if fixed is None else fixed[idx]
        out = chain([seeds[i] for i in idx], lab, low_res=low_res[idx] if low_res is not None else None,
                    dtype=dtype, device=device)
        yield idx, to_uint8(out.cpu())


def sample_images(chain: RelayChain, seeds: Sequence[int], labels="balanced", *, out: str | Path | None = None,
                  names: Sequence[str] | None = None, low_res: torch.Tensor | None = None, batch: int = 32,
                  keep: bool = False, edits: dict | None = None, dtype: torch.dtype = torch.float32, device=None,
                  dist=None, on_batch: Callable[[list[int], torch.Tensor], None] | None = None) -> SampleRun:
    """Sample `seeds` with `chain`; write each image as a PNG under `out` (atomically: an
    interrupted run leaves complete images only) and/or keep them all in memory (`keep`).

    labels: "balanced" (seed mod classes), "random", a class, or one class per seed. names: file
    stems instead of EDM's seed layout (one per seed). low_res: inputs of a chain that starts with a
    relay stage. edits: colour edits of pixels.COLOUR_EDITS (applied to written and kept images).
    dist: a `distributed.Dist`; process r samples seeds r, r + P, … and, with `keep`, every process
    receives all images. on_batch(indices, uint8 images) after every batch (progress, previews).
    Ctrl-C stops after the image being written and returns `interrupted=True`."""
    seeds = check_seeds(seeds)
    if names is not None and len(names) != len(seeds):
        raise ValueError(f"{len(names)} names for {len(seeds)} seeds")
    all_labels = class_labels(seeds, chain.label_dim, labels)          # a bad label fails before sampling
    rank, world = (dist.rank, dist.world_size) if dist is not None else (0, 1)
    kept, written = {}, 0
    try:
        for idx, u8 in sample_batches(chain, seeds, labels if all_labels is None else all_labels,
                                      indices=range(rank, len(seeds), world), low_res=low_res, batch=batch,
                                      dtype=dtype, device=device):
            pil = enhance(u8, edits) if edits else None
            if pil is not None and keep:
                u8 = torch.stack([_pil_to_u8(im) for im in pil])
            for j, i in enumerate(idx):
                if out is not None:
                    path = image_path(Path(out), seeds[i], names[i] if names is not None else None)
                    path.parent.mkdir(parents=True, exist_ok=True)
                    image = pil[j] if pil is not None else to_pil(u8[j])
                    atomic_write(path, lambda tmp, image=image: image.save(tmp, format="PNG"))
                    written += 1
                if keep:
                    kept[i] = u8[j]
            if on_batch is not None:
                on_batch(idx, u8)
    except KeyboardInterrupt:
        return SampleRun(None, None, written, True)
    images = None
    if keep:
        if world > 1:
            import torch.distributed as torch_dist

            parts = [None] * world
            torch_dist.all_gather_object(parts, kept)
            kept = {i: image for part in parts for i, image in part.items()}
        images = torch.stack([kept[i] for i in range(len(seeds))])
    return SampleRun(images, all_labels, written, False)


def _pil_to_u8(image) -> torch.Tensor:
    import numpy as np

    a = torch.from_numpy(np.asarray(image).copy())
    return a[None] if a.dim() == 2 else a.permute(2, 0, 1)


def run_record(chain: RelayChain, models: Sequence[str | Path] | None = None, **fields) -> dict:
    """What produced a set of images, for settings.json, eval results and the demo's download:
    the package version, every stage (model directory, stage, resolution, classes, schedule,
    sampler settings, network evaluations), the total evaluations, how the networks ran, and
    `fields`."""
    paths = [str(Path(m).resolve()) for m in models] if models is not None else [None] * len(chain.models)
    stages = [{"model": p, "stage": m.stage, "resolution": m.resolution, "label_dim": m.label_dim,
               "schedule": m.config.to_dict()["schedule"], "sampler": dataclasses.asdict(s), "nfe": n}
              for p, m, s, n in zip(paths, chain.models, chain.settings, chain.nfe())]
    return {"relay_diffusion": __version__, "models": paths if models is not None else None, "stages": stages,
            "nfe": sum(chain.nfe()), "runtime": dataclasses.asdict(chain.models[0].denoiser.runtime), **fields}
