"""`rdm distill`: progressive distillation of a trained base or relay stage (docs/distillation.md)."""

from __future__ import annotations

import dataclasses

from ..networks.runtime import PRECISIONS
from ..sampling.presets import CHAIN_RECIPES
from ..training.config import parse_images
from .common import field_help


def add_parser(subparsers, help_text: str) -> None:
    from ..distillation.run import DistillConfig

    p = subparsers.add_parser(
        "distill", help=help_text,
        description="Distil a trained stage (base or relay) by progressive distillation: each round "
                    "trains a student, initialised from its teacher, to take one ddim step where the "
                    "teacher takes two (per patch-DCT frequency, docs/distillation.md), halving the "
                    "steps from --teacher-steps down to --steps. The result, OUT/model, is a model "
                    "directory that rdm sample runs with its own steps. Re-running the same command "
                    "resumes. Image counts accept suffixes: 20k, 1.5M.")
    helps = field_help(DistillConfig)
    defaults = {f.name: f.default for f in dataclasses.fields(DistillConfig)}
    images = {"round_images", "ema_halflife", "status_every", "snapshot_every"}
    flags = {"ema_halflife": "ema", "status_every": "status", "snapshot_every": "snapshot"}
    for f in dataclasses.fields(DistillConfig):
        kw = dict(dest=f.name, default=defaults[f.name], help=f"{helps.get(f.name, '')} [default: {defaults[f.name]}]")
        if f.name in images:
            kw.update(type=parse_images, metavar="IMAGES")
        elif f.name == "preset":
            kw["choices"] = sorted(CHAIN_RECIPES)
        elif f.name == "precision":
            kw["choices"] = PRECISIONS
        elif f.name == "guidance_range":
            kw.update(type=_scale_range, metavar="W_LO,W_HI")
        else:
            kw["type"] = type(defaults[f.name])
        if f.name in ("teacher", "data", "outdir", "relay_starts"):
            kw["metavar"] = {"teacher": "MODEL_DIR", "data": "ZIP|DIR", "outdir": "DIR", "relay_starts": "BASE_DIR"}[f.name]
        p.add_argument("--" + flags.get(f.name, f.name).replace("_", "-"), **kw)
    p.set_defaults(func=run_distill)


def run_distill(args) -> int:
    from ..distillation.run import DistillConfig, distill

    cfg = DistillConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(DistillConfig)})
    distill(cfg)
    return 0


def _scale_range(text: str) -> tuple:
    import argparse

    try:
        lo, hi = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two guidance scales W_LO,W_HI, e.g. 1,3; got {text!r}") from None
    return (lo, hi)
