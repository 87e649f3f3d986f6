"""`rdm train`: every `TrainConfig` field is a flag; flags override the preset."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from pathlib import Path

from ..networks import NETWORK_PRESETS
from ..networks.runtime import PRECISIONS
from ..stages import STAGES
from ..training.config import OPTIMIZERS, SCHEDULE_FIELDS, TrainConfig, parse_images
from ..training.presets import TRAIN_PRESETS
from .common import add_schedule_flags, field_help

IMAGE_COUNTS = {"duration", "lr_rampup", "ema_halflife", "status_every", "snapshot_every", "sample_every"}
FLAG_NAMES = {"ema_halflife": "ema", "status_every": "status", "snapshot_every": "snapshot",
              "keep_snapshots": "keep"}
FLAG_ALIASES = {"train_sigma_min": ("--truncate-sigma",)}           # the official names


def add_parser(subparsers, help_text: str) -> None:
    p = subparsers.add_parser(
        "train", help=help_text,
        description="Train a base stage (EDM loss) or a relay stage (blur + block-noise loss) on CPU, "
                    "one GPU, or many processes (torchrun --nproc_per_node=N $(which rdm) train ...). "
                    "Re-running the same command resumes from the newest snapshot in --outdir. "
                    "Image counts accept suffixes: 200k, 1.5M, 64Ki. Flags override --config; "
                    "[default] is the value without one.")
    p.add_argument("--config", metavar="NAME|FILE.json",
                   help=f"start from a named training configuration ({', '.join(sorted(TRAIN_PRESETS))}) or "
                        "a run's config.json")
    p.add_argument("--preset", dest="old_preset", help=argparse.SUPPRESS)      # the flag's earlier name
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and parameter count, then exit")
    helps = field_help(TrainConfig)
    hints = typing.get_type_hints(TrainConfig)
    choices = {"stage": STAGES, "precision": PRECISIONS, "optimizer": OPTIMIZERS,
               "network": sorted(NETWORK_PRESETS)}
    for f in dataclasses.fields(TrainConfig):
        if f.name == "schedule":                         # its fields are flags of their own
            add_schedule_flags(p, SCHEDULE_FIELDS, prefix="relay: ", show_defaults=True)
            continue
        flag = ["--" + FLAG_NAMES.get(f.name, f.name).replace("_", "-"), *FLAG_ALIASES.get(f.name, ())]
        default = f.default if f.default is not dataclasses.MISSING else None
        kw = dict(dest=f.name, default=None, help=f"{helps.get(f.name, '')} [default: {default}]")
        if f.name in choices:
            kw["choices"] = choices[f.name]
        hint = hints[f.name]
        if hint is bool:
            p.add_argument(*flag, action=argparse.BooleanOptionalAction, **kw)
        elif f.name in IMAGE_COUNTS:
            p.add_argument(*flag, type=parse_images, metavar="IMAGES", **kw)
        elif f.name == "betas":
            p.add_argument(*flag, type=lambda s: tuple(float(v) for v in s.split(",")), metavar="B1,B2", **kw)
        else:
            base = typing.get_args(hint)[0] if typing.get_origin(hint) is typing.Union else hint
            p.add_argument(*flag, type=base, **kw)
    p.set_defaults(func=run_train)


def base_config(name: str | None) -> dict:
    """The values of --config: a TRAIN_PRESETS name or a run directory's config.json."""
    if name is None:
        return {}
    if name in TRAIN_PRESETS:
        return dict(TRAIN_PRESETS[name])
    if name.endswith(".json"):
        from ..files import read_json

        if not Path(name).is_file():
            raise ValueError(f"--config {name}: no such file")
        return read_json(Path(name), "training config")
    raise ValueError(f"--config {name!r}: not a training configuration ({', '.join(sorted(TRAIN_PRESETS))}) "
                     "nor a config.json file")


def resolve_config(args) -> TrainConfig:
    if getattr(args, "old_preset", None):
        print("rdm train: --preset is now --config", file=sys.stderr)
        args.config = args.config or args.old_preset
    values = base_config(args.config)
    given = {name: getattr(args, name) for name in (*(f.name for f in dataclasses.fields(TrainConfig)),
                                                      *SCHEDULE_FIELDS)
             if getattr(args, name, None) is not None}          # schedule fields: merged by from_dict
    if given.get("cond") is False and values.get("label_dropout") and "label_dropout" not in given:
        # label dropout (for guidance) only exists for a conditional model: --no-cond implies none
        print(f"rdm train: --no-cond: label dropout off (the config's {values['label_dropout']} needs "
              "class labels)", file=sys.stderr)
        values["label_dropout"] = 0.0
    values.update(given)
    return TrainConfig.from_dict(values).validate()


def run_train(args) -> int:
    cfg = resolve_config(args)
    if args.dry_run:
        from ..networks import count_parameters
        from ..training.loop import prepare

        setup = prepare(cfg)
        import torch
        with torch.device("meta"):
            n = count_parameters(setup.network_config.build())
        print(cfg.to_json())
        print(f"network {cfg.network} at {setup.resolution}×{setup.resolution}×{setup.channels}, "
              f"label_dim {setup.label_dim}: {n:,} parameters ({n / 1e6:.2f} M)")
        return 0
    from ..training.loop import TrainingError, train

    try:
        train(cfg)
    except TrainingError as e:
        print(f"rdm: training stopped: {e}", file=sys.stderr)
        return 3
    return 0
