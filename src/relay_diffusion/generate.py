"""`rdm sample`: run a chain of model directories for a list of seeds and write PNGs (EDM's
layout), an optional grid and .npz, and a JSON record of every setting used."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import re
import sys
import zlib
from pathlib import Path

import torch

from . import __version__
from .io import save_image_grid, to_pil, to_uint8
from .networks.runtime import PRECISIONS
from .pipeline import LABEL_MODES, RelayChain
from .sampling.presets import CHAIN_RECIPES, chain_recipe
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


def parse_seeds(text: str) -> list[int]:
    """'0-63,100,200-202' → [0, …, 63, 100, 200, 201, 202]."""
    seeds = []
    for part in str(text).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"bad seed list {text!r}: use e.g. 0-63,100")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if hi < lo:
            raise ValueError(f"bad seed range {part!r}")
        seeds.extend(range(lo, hi + 1))
    return seeds


def seed_from_name(name: str) -> int:
    """Seed of an input file in super-resolution mode: the number in names like 000123.png, else
    a CRC32 of the name — stable across runs and machines."""
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else zlib.crc32(stem.encode())


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
            out[i] = dataclasses.replace(out[i], **{field: typ(v)})
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


def _read_low_res(directory: Path, channels: int, size: int):
    from PIL import Image

    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp", ".webp"))
    if not files:
        raise ValueError(f"no images in {directory}")
    images = []
    for f in files:
        try:
            im = Image.open(f)
            im.load()
        except Exception as e:
            raise ValueError(f"cannot read image {f}: {e}") from None
        if im.size != (size, size):
            raise ValueError(f"{f} is {im.size[0]}×{im.size[1]}; this chain's first relay stage takes {size}×{size}")
        im = im.convert("L" if channels == 1 else "RGB")
        t = torch.frombuffer(bytearray(im.tobytes()), dtype=torch.uint8).reshape(size, size, channels)
        images.append(t.permute(2, 0, 1).float() / 127.5 - 1)
    return files, torch.stack(images)


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


def _run(args, d, device) -> int:
    import torch.distributed as dist

    if not (args.outdir or args.grid or args.npz):
        raise ValueError("nothing to write: give --outdir, --grid and/or --npz")
    chain, models = build_chain(args, device)
    names = None
    if args.from_images:
        if chain.models[0].stage != "relay":
            raise ValueError("--from-images needs a chain of relay stages (drop the base model)")
        files, low = _read_low_res(Path(args.from_images), chain.models[0].channels, chain.input_resolution)
        seeds, names = [seed_from_name(f.name) for f in files], [f.stem for f in files]
    else:
        if chain.models[0].stage != "base":
            raise ValueError("this chain starts with a relay stage: give --from-images DIR")
        seeds, low = parse_seeds(args.seeds), None
    labels = chain_labels(args)
    dtype = torch.float64 if args.float64 else torch.float32
    edits = {k: getattr(args, k) for k in POSTPROCESS if getattr(args, k) is not None}

    mine = list(range(d.rank, len(seeds), d.world_size))                  # this process's images
    results = {}
    batches = [mine[i:i + args.batch] for i in range(0, len(mine), args.batch)]
    for b, idx in enumerate(batches):
        out = chain([seeds[i] for i in idx], labels, low_res=low[idx] if low is not None else None,
                    dtype=dtype, device=device)
        u8 = to_uint8(out.cpu())
        pil = postprocess(u8, edits) if edits else None
        for j, i in enumerate(idx):
            results[i] = pil[j] if pil else u8[j]
            if args.outdir:
                _save_png(results[i], Path(args.outdir), seeds[i], names[i] if names else None)
        if d.is_main:
            print(f"batch {b + 1}/{len(batches)}: {len(idx)} images", file=sys.stderr, flush=True)
    if d.world_size > 1:
        gathered = [None] * d.world_size
        dist.all_gather_object(gathered, {i: _as_u8(v) for i, v in results.items()})
        results = {k: v for part in gathered for k, v in part.items()}
    if not d.is_main:
        return 0
    from .pipeline import class_labels
    all_u8 = torch.stack([_as_u8(results[i]) for i in range(len(seeds))])
    idx_labels = class_labels(seeds, chain.label_dim, labels)
    if args.grid:
        ncol = max(1, int(math.ceil(math.sqrt(len(seeds)))))
        if idx_labels is not None and args.class_idx is None and args.labels == "balanced":
            ncol = min(chain.label_dim, len(seeds))
        save_image_grid(all_u8.float() / 127.5 - 1, args.grid, ncol=ncol)
    if args.npz:
        import numpy as np
        np.savez(args.npz, images=all_u8.permute(0, 2, 3, 1).numpy(), seeds=np.array(seeds),
                 labels=idx_labels.numpy() if idx_labels is not None else np.full(len(seeds), -1))
    record = {"relay_diffusion": __version__, "models": [str(Path(m).resolve()) for m in models],
              "stages": [{"stage": m.stage, "resolution": m.resolution, "label_dim": m.label_dim,
                          "schedule": m.config.get("schedule"), "sampler": dataclasses.asdict(s), "nfe": n}
                         for m, s, n in zip(chain.models, chain.settings, chain.nfe())],
              "nfe": sum(chain.nfe()),
              "seeds": args.seeds if not args.from_images else None, "num_images": len(seeds),
              "labels": labels, "dtype": str(dtype), "runtime": runtime_record(chain),
              "weights": args.weights, "postprocess": edits, "from_images": args.from_images,
              "processes": d.world_size, "outdir": args.outdir, "grid": args.grid, "npz": args.npz}
    settings = args.settings or (str(Path(args.outdir) / "settings.json") if args.outdir else None)
    if settings:
        Path(settings).parent.mkdir(parents=True, exist_ok=True)
        Path(settings).write_text(json.dumps(record, indent=2) + "\n")
    print(f"wrote {len(seeds)} images" + (f" to {args.outdir}" if args.outdir else "")
          + (f", grid {args.grid}" if args.grid else "") + (f", {args.npz}" if args.npz else ""))
    return 0


def _as_u8(v) -> torch.Tensor:
    if torch.is_tensor(v):
        return v
    import numpy as np
    a = torch.from_numpy(np.asarray(v).copy())
    return a[None] if a.dim() == 2 else a.permute(2, 0, 1)


def _save_png(image, outdir: Path, seed: int, name: str | None) -> None:
    if name is not None:
        path = outdir / f"{name}.png"
    else:
        path = outdir / f"{seed - seed % 1000:06d}" / f"{seed:06d}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    (to_pil(image) if torch.is_tensor(image) else image).save(path)


def bundled_demo_chain() -> list[Path]:
    """The Fashion-MNIST demo chain shipped with the package (8×8 base + 8→32 relay)."""
    root = Path(__file__).resolve().parent / "demo"
    dirs = [root / "fmnist-base-8", root / "fmnist-relay-8to32"]
    if not all((p / "config.json").exists() for p in dirs):
        raise ValueError("this installation has no bundled demo model; pass --model DIR (repeat per stage)")
    return dirs
