"""`rdm import SRC DEST_DIR`: convert a published RDM/EDM checkpoint into a model directory."""

from __future__ import annotations

import argparse
import sys

from ..schedules import PUBLISHED_SCHEDULES
from ..checkpoints.official import OFFICIAL_STAGES, import_checkpoint
from .common import add_json_flag, add_schedule_flags, emit_json

SCHEDULE_FLAGS = ("up_scale", "blur_sigma_max", "prob_length", "block_scale", "min_scale", "noise_mixture")


def add_parser(subparsers, help_text: str) -> argparse.ArgumentParser:
    """Add the `import` verb to an argparse subparsers object; returns its parser."""
    p = subparsers.add_parser(
        "import", help=help_text,
        description="Convert an RDM .pt (torch.save) or EDM .pkl (pickle) checkpoint into a model "
                    "directory (config.json + model.safetensors). The file is read with a restricted "
                    "unpickler: nothing in it is executed, and anything but tensors, plain data and "
                    "EDM/RDM network classes is refused. RDM checkpoints do not record their stage: "
                    "second-stage models need --stage relay and the schedule they were trained with "
                    "(--recipe or the schedule flags).")
    p.add_argument("src", metavar="SRC", help="checkpoint file, e.g. celebahq_first_stage.pt or "
                                              "imagenet_first_stage.pkl")
    p.add_argument("dest", metavar="DEST_DIR", help="model directory to write (must not exist unless --force)")
    p.add_argument("--stage", choices=tuple(OFFICIAL_STAGES.values()),
                   help="base (EDM, first stage) or relay (second stage) [default: base, or relay when "
                        "--recipe/schedule flags are given or the file holds RDM's BlurLoss]")
    p.add_argument("--recipe", choices=sorted(k for k in PUBLISHED_SCHEDULES if k != "default"),
                   help="official relay schedule the model was trained with: imagenet256 "
                        "(imagenet_second_stage.pt) or celebahq256 (celebahq_second_stage.pt); implies --stage relay")
    p.add_argument("--key", default="ema",
                   help="checkpoint entry holding the network [default: ema; RDM .pt files also have 'net']")
    add_schedule_flags(p, SCHEDULE_FLAGS, prefix="relay: ")
    p.add_argument("--force", action="store_true", help="replace DEST_DIR if it is a model directory (or empty)")
    add_json_flag(p, "the written config")
    p.set_defaults(func=run_import)
    return p


def run_import(args: argparse.Namespace) -> int:
    """Run `rdm import` with parsed arguments; returns the exit code (0, or 2 on an error)."""
    overrides = {name: getattr(args, name) for name in SCHEDULE_FLAGS}
    try:
        result = import_checkpoint(args.src, args.dest, stage=args.stage, recipe=args.recipe, key=args.key,
                                   schedule_overrides=overrides, overwrite=args.force)
    except (ValueError, OSError) as e:
        print(f"rdm: error: {e}", file=sys.stderr)
        return 2
    for w in result["warnings"]:
        print(f"rdm: warning: {w}", file=sys.stderr)
    cfg = result["config"]
    if emit_json(args, cfg):
        return 0
    net, src = cfg["network"], cfg["source"]
    print(f"imported {src['file']} ({src['format']}, {src['precond_class'] or 'bare'}/{src['network_class']}, "
          f"{result['parameters']:,} parameters) -> {result['dest']}")
    print(f"stage: {cfg['stage']}  resolution: {cfg['resolution']}  channels: {cfg['channels']}  "
          f"classes: {cfg['label_dim']}  augment_dim: {net['augment_dim']}  sigma_data: {cfg['sigma_data']}")
    if cfg["schedule"]:
        s = cfg["schedule"]
        print(f"relay schedule: up_scale={s['up_scale']} blur_sigma_max={s['blur_sigma_max']} "
              f"prob_length={s['prob_length']} block_scale={s['block_scale']} noise_mixture={s['noise_mixture']}")
    print(f"sha256: {src['sha256']}")
    return 0
