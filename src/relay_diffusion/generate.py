"""`rdm sample`: run a chain of model directories for a list of seeds and write PNGs (EDM's
layout), an optional grid and .npz, and a JSON record of every setting used."""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import sys
import zlib
from pathlib import Path

import torch

from . import __version__
from .data.images import read_image
from .io import atomic_write, check_output_dir, save_image_grid, to_pil, to_uint8, write_json
from .networks.runtime import PRECISIONS
from .pipeline import LABEL_MODES, RelayChain, class_labels
from .progress import Progress
from .sampling.presets import CHAIN_RECIPES, chain_recipe
from .sampling.seeds import SEED_LIMIT, parse_seeds
from .sampling.solvers import SOLVERS

POSTPROCESS = ("brightness", "contrast", "color")   # PIL ImageEnhance, applied in this order

# flag → (settings field, type); a value list has 1 entry (all stages) or one per stage ("-" = keep)
STAGE_FLAGS = {
    "steps": ("num_steps", int), "sigma_min": ("sigma_min", float), "sigma_max": ("sigma_max", float),
    "rho": ("rho", float), "cfg": ("cfg_scale", float),
    "method": ("method", str), "churn": ("S_churn", float), "churn_min": ("S_min", float),
    "churn_max": ("S_max", float), "churn_noise": ("S_noise", float), "sde_scale": ("sde_scale", float),
    "truncation_sigma": ("truncation_sigma", float), "truncation_t": ("truncation_t", float),
    "s_noise": ("s_noise", float), "s_block": ("s_block", float), "corrector": ("corrector", str),
    "solver": ("solver", str), "sigma_grid": ("sigma_grid", str),
    "lambda_frequency": ("lambda_frequency", float),
}
STAGE_FLAG_HELP = {
    "steps": "nominal σ-grid size (relay: before truncation)", "sigma_min": "smallest σ",
    "sigma_max": "largest σ of the grid", "rho": "grid exponent ρ", "cfg": "classifier-free guidance weight",
    "method": "base: edm (Heun + churn) or sde (DDIM-η Heun)", "churn": "base/edm: S_churn",
    "churn_min": "base/edm: S_min", "churn_max": "base/edm: S_max", "churn_noise": "base/edm: S_noise",
    "sde_scale": "base/sde: η", "truncation_sigma": "relay: start below this σ",
    "truncation_t": "relay: L of the sampler's u(σ)", "s_noise": "relay: η (fresh-noise fraction)",
    "s_block": "relay: α of the injected block noise", "corrector": "relay/heun: noise (official) or denoised",
    "solver": f"{', '.join(SOLVERS)} (heun = official; docs/solvers.md)",
    "sigma_grid": "relay: truncated (official), rho or lambda (--steps σ's from --truncation-sigma down)",
    "lambda_frequency": "relay, --sigma-grid lambda: patch-DCT frequency radius whose λ is uniform (0 = DC)",
}


def seed_from_name(name: str) -> int:
    """Seed of an input file in super-resolution mode: the number in names like 000123.png (when
    below 2³²), else a CRC32 of the name — stable across runs and machines."""
    stem = Path(name).stem
    return int(stem) if stem.isdigit() and int(stem) < SEED_LIMIT else zlib.crc32(stem.encode())


def stage_settings(chain_models, preset: str | None, args) -> list:
    """Per-stage sampler settings: defaults or the preset, then the flags."""
    out = chain_recipe(preset, [m.stage for m in chain_models])
    n = len(out)
    for flag, (field, typ) in STAGE_FLAGS.items():
        raw = getattr(args, flag, None)
        if raw is None:
            continue
        values = str(raw).split(",")
        if len(values) not in (1, n):
            raise ValueError(f"--{flag.replace('_', '-')} takes 1 value or {n} (one per stage), got {raw!r}")
        for i in range(n):
            v = values[0] if len(values) == 1 else values[i]
            if v == "-" or field not in {f.name for f in dataclasses.fields(out[i])}:
                if len(values) == n and v != "-":
                    raise ValueError(f"--{flag.replace('_', '-')} does not apply to stage {i} ({chain_models[i].stage})")
                continue
            try:
                value = typ(v)
            except ValueError:
                kind = {int: "a whole number", float: "a number"}.get(typ, typ.__name__)
                raise ValueError(f"--{flag.replace('_', '-')} takes {kind} per stage, got {v!r}") from None
            out[i] = dataclasses.replace(out[i], **{field: value})
    return out


def postprocess(images_u8: torch.Tensor, edits: dict):
    """Explicit PIL colour edits (the official reproduction scripts' brightness/contrast/colour)."""
    from PIL import ImageEnhance

    pil = []
    for u8 in images_u8:
        im = to_pil(u8)
        for name in POSTPROCESS:
            if edits.get(name) is not None:
                im = getattr(ImageEnhance, name.capitalize())(im).enhance(edits[name])
        pil.append(im)
    return pil


IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def _image_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise ValueError(f"--from-images {directory} is not a folder")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {directory}")
    return files


def _read_low_res(files: list[Path], channels: int, size: int) -> torch.Tensor:
    images = [torch.tensor(read_image(f, channels, size, "this chain's first relay stage")) for f in files]
    return torch.stack(images).permute(0, 3, 1, 2).float() / 127.5 - 1


def add_sample_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "sample", help="generate images with a chain of models (or super-resolve low-res images)",
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
    for name in POSTPROCESS:
        p.add_argument("--" + name, type=float, help=f"PIL ImageEnhance.{name.capitalize()} factor (off by default)")
    p.set_defaults(func=run_sample)


def add_chain_arguments(p, default_seeds: str) -> None:
    """The flags that choose a chain, its sampler settings, seeds and labels (`rdm sample` and
    `rdm eval --model`)."""
    p.add_argument("--model", action="append", dest="models", metavar="DIR",
                   help="model directory of a stage (repeat for a chain; default: the bundled demo chain)")
    p.add_argument("--seeds", default=default_seeds, help=f"seed list, e.g. 0-63,100 (default {default_seeds})")
    p.add_argument("--batch", type=int, default=32, help="images per batch and process")
    p.add_argument("--class", dest="class_idx", type=int, help="class index for every image")
    p.add_argument("--labels", choices=LABEL_MODES, default="balanced",
                   help="class labels without --class: seed mod classes (official class balance) or random per seed")
    p.add_argument("--preset", choices=sorted(CHAIN_RECIPES),
                   help="sampler recipes: the official imagenet256 / celebahq256 ones, or fast (few-step "
                        "solvers, docs/solvers-quality.md); flags override them")
    for flag, help_text in STAGE_FLAG_HELP.items():
        p.add_argument("--" + flag.replace("_", "-"), dest=flag, metavar="V[,V…]", help=help_text)
    p.add_argument("--float64", action="store_true", help="sample in float64 (default float32)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="network math: fp32, or bf16 / fp16 (CUDA) autocast around the networks only; "
                        "the samplers' arithmetic is unchanged. bf16 is faster and costs a little FID "
                        "(+0.028 on the demo chain; docs/speed.md)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="NHWC memory layout for the networks (default): the same images, faster "
                        "convolutions (docs/speed.md)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks: slow first batch, faster after (docs/speed.md)")
    p.add_argument("--weights", choices=("ema", "model"), default="ema", help="which weights of each model dir")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, …")
    p.add_argument("--quiet", action="store_true",
                   help="no progress on stderr (a bar on a terminal, else a line per tenth of the images)")


def build_chain(args, device) -> tuple[RelayChain, list]:
    """(chain with its per-stage settings, model paths) from `add_chain_arguments` flags."""
    if args.batch < 1:
        raise ValueError("--batch must be >= 1")
    models = args.models or [str(p) for p in bundled_demo_chain()]
    chain = RelayChain.from_pretrained(models, which=args.weights, device=device, precision=args.precision,
                                       channels_last=args.channels_last, compile=args.compile)
    chain.settings = stage_settings(chain.models, args.preset, args)
    return chain, models


def runtime_record(chain: RelayChain) -> dict:
    """How the networks ran (the same for every stage): for settings.json and eval results."""
    return dataclasses.asdict(chain.models[0].denoiser.runtime)


def chain_labels(args):
    """The `labels` argument of RelayChain.__call__: a fixed class or a labelling mode."""
    return args.class_idx if args.class_idx is not None else args.labels


def run_sample(args) -> int:
    from .training.distributed import init_distributed, shutdown_distributed

    d, device = init_distributed(args.device)
    try:
        return _run(args, d, device)
    finally:
        shutdown_distributed()


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
    import torch.distributed as dist

    if not (args.outdir or args.grid or args.npz):
        raise ValueError("nothing to write: give --outdir, --grid and/or --npz")
    files = None
    if args.from_images:
        files = _image_files(Path(args.from_images))
    else:
        parse_seeds(args.seeds)                                          # a bad list fails before loading
    if d.is_main:
        check_outputs(args, files)
    chain, models = build_chain(args, device)
    names = None
    if args.from_images:
        if chain.models[0].stage != "relay":
            raise ValueError("--from-images needs a chain of relay stages (drop the base model)")
        low = _read_low_res(files, chain.models[0].channels, chain.input_resolution)
        seeds, names = [seed_from_name(f.name) for f in files], [f.stem for f in files]
    else:
        if chain.models[0].stage != "base":
            raise ValueError("this chain starts with a relay stage: give --from-images DIR")
        seeds, low = parse_seeds(args.seeds), None
    keep = bool(args.grid or args.npz)                                   # else images go to disk only
    if keep:
        check_kept_images(len(seeds), chain)
    labels = chain_labels(args)
    class_labels(seeds[:1], chain.label_dim, labels)                     # a bad --class fails now
    dtype = torch.float64 if args.float64 else torch.float32
    edits = {k: getattr(args, k) for k in POSTPROCESS if getattr(args, k) is not None}
    for name, factor in edits.items():
        if not 0 <= factor < math.inf:
            raise ValueError(f"--{name} must be a finite factor >= 0 (1 = unchanged), got {factor}")

    mine = range(d.rank, len(seeds), d.world_size)                       # this process's images
    results, written = {}, 0
    n_batches = -(-len(mine) // args.batch)
    bar = Progress(len(mine), "sampling", quiet=args.quiet or not d.is_main)
    try:
        for b in range(n_batches):
            idx = mine[b * args.batch:(b + 1) * args.batch]
            out = chain([seeds[i] for i in idx], labels, low_res=low[list(idx)] if low is not None else None,
                        dtype=dtype, device=device)
            u8 = to_uint8(out.cpu())
            pil = postprocess(u8, edits) if edits else None
            for j, i in enumerate(idx):
                image = pil[j] if pil else u8[j]
                if keep:
                    results[i] = image
                if args.outdir:
                    _save_png(image, Path(args.outdir), seeds[i], names[i] if names else None)
                    written += 1
            bar.update(len(idx))
    except KeyboardInterrupt:
        bar.close()
        where = f" to {args.outdir}" if args.outdir else ""
        print(f"interrupted: {written} complete images written{where}" + (", no grid/npz" if keep else ""),
              file=sys.stderr, flush=True)
        return 130
    bar.close()
    if d.world_size > 1 and keep:
        gathered = [None] * d.world_size
        dist.all_gather_object(gathered, {i: _as_u8(v) for i, v in results.items()})
        results = {k: v for part in gathered for k, v in part.items()}
    if not d.is_main:
        return 0
    idx_labels = None
    if keep:
        all_u8 = torch.stack([_as_u8(results[i]) for i in range(len(seeds))])
        idx_labels = class_labels(list(seeds), chain.label_dim, labels)
    if args.grid:
        ncol = max(1, int(math.ceil(math.sqrt(len(seeds)))))
        if idx_labels is not None and args.class_idx is None and args.labels == "balanced":
            ncol = min(chain.label_dim, len(seeds))
        save_image_grid(all_u8.float() / 127.5 - 1, args.grid, ncol=ncol)
    npz = _npz_path(args.npz) if args.npz else None
    if npz:
        import numpy as np
        atomic_write(npz, lambda tmp: np.savez(
            tmp, images=all_u8.permute(0, 2, 3, 1).numpy(), seeds=np.array(list(seeds), dtype=np.int64),
            labels=idx_labels.numpy() if idx_labels is not None else np.full(len(seeds), -1)))
    record = {"relay_diffusion": __version__, "models": [str(Path(m).resolve()) for m in models],
              "stages": [{"stage": m.stage, "resolution": m.resolution, "label_dim": m.label_dim,
                          "schedule": m.config.get("schedule"), "sampler": dataclasses.asdict(s), "nfe": n}
                         for m, s, n in zip(chain.models, chain.settings, chain.nfe())],
              "nfe": sum(chain.nfe()),
              "seeds": args.seeds if not args.from_images else None, "num_images": len(seeds),
              "labels": labels, "dtype": str(dtype), "runtime": runtime_record(chain),
              "weights": args.weights, "postprocess": edits, "from_images": args.from_images,
              "processes": d.world_size, "outdir": args.outdir, "grid": args.grid, "npz": npz and str(npz)}
    settings = args.settings or (str(Path(args.outdir) / "settings.json") if args.outdir else None)
    if settings:
        Path(settings).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(settings), record)
    print(f"wrote {len(seeds)} images" + (f" to {args.outdir}" if args.outdir else "")
          + (f", grid {args.grid}" if args.grid else "") + (f", {npz}" if npz else ""))
    return 0


def _as_u8(v) -> torch.Tensor:
    if torch.is_tensor(v):
        return v
    import numpy as np
    a = torch.from_numpy(np.asarray(v).copy())
    return a[None] if a.dim() == 2 else a.permute(2, 0, 1)


def _save_png(image, outdir: Path, seed: int, name: str | None) -> None:
    """Write one PNG atomically: an interrupted run leaves complete images only."""
    if name is not None:
        path = outdir / f"{name}.png"
    else:
        path = outdir / f"{seed - seed % 1000:06d}" / f"{seed:06d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = to_pil(image) if torch.is_tensor(image) else image
    atomic_write(path, lambda tmp: pil.save(tmp, format="PNG"))


def bundled_demo_chain() -> list[Path]:
    """The Fashion-MNIST demo chain shipped with the package (8×8 base + 8→32 relay)."""
    root = Path(__file__).resolve().parent / "demo"
    dirs = [root / "fmnist-base-8", root / "fmnist-relay-8to32"]
    if not all((p / "config.json").exists() for p in dirs):
        raise ValueError("this installation has no bundled demo model; pass --model DIR (repeat per stage)")
    return dirs
