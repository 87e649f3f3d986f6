"""`rdm export-diffusers MODEL_DIR... OUT_DIR`: a chain as a diffusers pipeline folder (docs/diffusers.md)."""

from __future__ import annotations

from pathlib import Path

from ..files import check_replaceable_dir
from ..models import read_config
from ..sampling.presets import CHAIN_RECIPES


def add_parser(subparsers, help_text: str) -> None:
    p = subparsers.add_parser(
        "export-diffusers", help=help_text,
        description="Write a relay model directory, or a base and a relay one, as a diffusers folder "
                    "(model_index.json, one subfolder per component, pipeline.py) that "
                    "RelayDiffusionPipeline.from_pretrained(OUT_DIR) and DiffusionPipeline.from_pretrained"
                    "(OUT_DIR, custom_pipeline=OUT_DIR, trust_remote_code=True) load. Needs the extra "
                    "relay-diffusion[diffusers]. The schedulers carry the official default sampler "
                    "settings (Heun) or a --preset recipe; nothing is written unless all of it is.")
    p.add_argument("paths", nargs="+", metavar="PATH", help="[BASE_DIR] RELAY_DIR OUT_DIR")
    p.add_argument("--weights", choices=("ema", "model"), default="ema", help="which weights of each model dir")
    p.add_argument("--preset", choices=sorted(CHAIN_RECIPES),
                   help="sampler recipe the schedulers carry, as rdm sample --preset (default: the official "
                        "generate.py defaults); guidance is the pipeline's guidance_scale")
    p.add_argument("--force", action="store_true", help="replace OUT_DIR if it is an earlier export")
    p.set_defaults(func=run)


def run(args) -> int:
    if len(args.paths) not in (2, 3):
        raise ValueError("give [BASE_DIR] RELAY_DIR OUT_DIR")
    *models, out = args.paths
    out = check_replaceable_dir(out, args.force, lambda d: (d / "model_index.json").is_file(), "diffusers export",
                                flag="OUT_DIR")
    from ..integrations.diffusers import export_diffusers
    from ..sampling.presets import chain_recipe

    settings = None
    if args.preset:
        settings = chain_recipe(args.preset, [read_config(m).kind.settings for m in models])
    export_diffusers(models, out, which=args.weights, settings=settings)
    print(f"wrote {out}: {' + '.join(Path(m).name for m in models)}")
    return 0
