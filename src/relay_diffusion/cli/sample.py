"""`rdm sample`: run a chain of model directories for a list of seeds and write PNGs (EDM's
layout), an optional grid and .npz, and a JSON record of every setting used."""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path

import torch

from ..data.images import image_files
from ..distributed import init_distributed, shutdown_distributed
from ..generate import run_record, sample_images
from ..files import atomic_write, check_output_dir, write_json
from ..pixels import COLOUR_EDITS, read_images, save_image_grid
from ..pipeline import RelayChain
from ..progress import Progress
from ..seeds import parse_seeds, seed_from_name
from .chain_flags import add_chain_arguments, build_chain, chain_labels


def add_parser(subparsers, help_text: str) -> None:
    p = subparsers.add_parser(
        "sample", help=help_text,
        description="Run a base model and any relay stages (each --model DIR is one stage, lowest "
                    "resolution first) for the given seeds. Per-stage flags take one value for every "
                    "stage or a comma list with one value per stage ('-' keeps the default). Under "
                    "torchrun the seeds are split over the processes; the images are the same.")
    add_chain_arguments(p, default_seeds="0-63")
    p.add_argument("--from-images", metavar="DIR", help="super-resolution: run only the relay stages on these images")
    p.add_argument("--outdir", help="write PNGs as OUTDIR/<seed//1000*1000:06d>/<seed:06d>.png")
    p.add_argument("--grid", metavar="PNG", help="also write one grid image")
    p.add_argument("--npz", metavar="FILE", help="also write uint8 images, seeds and labels to an .npz")
    p.add_argument("--settings", metavar="JSON", help="where to record the settings (default OUTDIR/settings.json)")
    for name in COLOUR_EDITS:
        p.add_argument("--" + name, type=float, help=f"PIL ImageEnhance.{name.capitalize()} factor (off by default)")
    p.set_defaults(func=run_sample)


def run_sample(args) -> int:
    d, device = init_distributed(args.device)
    try:
        return _run(args, d, device)
    finally:
        shutdown_distributed()


def _input_images(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ValueError(f"--from-images {directory} is not a folder")
    files = image_files(directory)
    if not files:
        raise ValueError(f"--from-images {directory}: no image files in it")
    return files


def _npz_path(path: str) -> Path:
    """Where np.savez writes `path` (it appends .npz when the name lacks it)."""
    return Path(path if path.endswith(".npz") else path + ".npz")


def check_outputs(args, inputs: list[Path] | None) -> None:
    """Refuse, before any sampling, outputs that cannot be written or would destroy inputs:
    --outdir that is a file or the --from-images folder, a file output that is a folder or one of
    the input images; create the folders of the file outputs."""
    if args.outdir:
        out = check_output_dir(args.outdir)
        if args.from_images and out.resolve() == Path(args.from_images).resolve():
            raise ValueError(f"--outdir {out} is the --from-images folder: the results would overwrite or mix "
                             "with the input images; choose another folder")
    protected = {p.resolve() for p in inputs or []}
    files = {"--grid": args.grid and Path(args.grid), "--npz": args.npz and _npz_path(args.npz),
             "--settings": args.settings and Path(args.settings)}
    for flag, path in files.items():
        if not path:
            continue
        if path.is_dir():
            raise ValueError(f"{flag} {path} is a folder; give a file name")
        if path.resolve() in protected:
            raise ValueError(f"{flag} {path} is one of the --from-images inputs; it would be overwritten")
        if path.parent.exists() and not path.parent.is_dir():
            raise ValueError(f"{flag} {path}: {path.parent} is not a folder")
        path.parent.mkdir(parents=True, exist_ok=True)


# images kept in memory for --grid / --npz may use at most this share of the machine's memory
KEPT_IMAGES_MEMORY_SHARE = 0.5


def check_kept_images(n: int, chain: RelayChain) -> None:
    """--grid/--npz keep every image in memory: refuse counts that would not fit."""
    need = n * chain.models[-1].channels * chain.resolution ** 2
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):    # not POSIX: no check
        return
    if need > KEPT_IMAGES_MEMORY_SHARE * total:
        raise ValueError(f"--grid/--npz keep all {n:,} images in memory ({need / 2 ** 30:,.1f} GiB), more than half "
                         f"of this machine's {total / 2 ** 30:,.1f} GiB; sample fewer seeds or write only --outdir")


def _run(args, d, device) -> int:
    if not (args.outdir or args.grid or args.npz):
        raise ValueError("nothing to write: give --outdir, --grid and/or --npz")
    files = seeds = None
    if args.from_images:
        files = _input_images(Path(args.from_images))
    else:
        seeds = parse_seeds(args.seeds)                                  # a bad list fails before loading
    if d.is_main:
        check_outputs(args, files)
    chain, models = build_chain(args, device)
    names = None
    if args.from_images:
        if not chain.models[0].kind.continues:
            raise ValueError(f"--from-images needs a chain of relay stages (drop the {chain.models[0].stage} model)")
        low = read_images(files, chain.models[0].channels, chain.input_resolution, "this chain's first relay stage")
        seeds, names = [seed_from_name(f.name) for f in files], [f.stem for f in files]
    else:
        if chain.models[0].kind.continues:
            raise ValueError(f"this chain starts with a {chain.models[0].stage} stage: give --from-images DIR")
        low = None
    keep = bool(args.grid or args.npz)                                   # else images go to disk only
    if keep:
        check_kept_images(len(seeds), chain)
    labels = chain_labels(args)
    dtype = torch.float64 if args.float64 else torch.float32
    edits = {k: getattr(args, k) for k in COLOUR_EDITS if getattr(args, k) is not None}
    for name, factor in edits.items():
        if not 0 <= factor < math.inf:
            raise ValueError(f"--{name} must be a finite factor >= 0 (1 = unchanged), got {factor}")

    bar = Progress(-(-(len(seeds) - d.rank) // d.world_size), "sampling", quiet=args.quiet or not d.is_main)
    run = sample_images(chain, seeds, labels, out=args.outdir, names=names, low_res=low, batch=args.batch, keep=keep,
                        edits=edits, dtype=dtype, device=device, dist=d, on_batch=lambda idx, _: bar.update(len(idx)))
    bar.close()
    if run.interrupted:
        where = f" to {args.outdir}" if args.outdir else ""
        print(f"interrupted: {run.written} complete images written{where}" + (", no grid/npz" if keep else ""),
              file=sys.stderr, flush=True)
        return 130
    if not d.is_main:
        return 0
    if args.grid:
        ncol = max(1, int(math.ceil(math.sqrt(len(seeds)))))
        if run.labels is not None and args.class_idx is None and args.labels == "balanced":
            ncol = min(chain.label_dim, len(seeds))
        save_image_grid(run.images.float() / 127.5 - 1, args.grid, ncol=ncol)
    npz = _npz_path(args.npz) if args.npz else None
    if npz:
        import numpy as np
        atomic_write(npz, lambda tmp: np.savez(
            tmp, images=run.images.permute(0, 2, 3, 1).numpy(), seeds=np.array(list(seeds), dtype=np.int64),
            labels=run.labels.numpy() if run.labels is not None else np.full(len(seeds), -1)))
    record = run_record(chain, models, seeds=args.seeds if not args.from_images else None, num_images=len(seeds),
                        labels=labels, dtype=str(dtype), weights=args.weights, postprocess=edits,
                        from_images=args.from_images, processes=d.world_size, outdir=args.outdir, grid=args.grid,
                        npz=npz and str(npz))
    settings = args.settings or (str(Path(args.outdir) / "settings.json") if args.outdir else None)
    if settings:
        Path(settings).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(settings), record)
    print(f"wrote {len(seeds)} images" + (f" to {args.outdir}" if args.outdir else "")
          + (f", grid {args.grid}" if args.grid else "") + (f", {npz}" if npz else ""))
    return 0

