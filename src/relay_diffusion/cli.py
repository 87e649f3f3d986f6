"""The `rdm` command line: a thin layer over the library API."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from . import __version__
from .relay import RelaySchedule
from .checkpoints.cli import add_import_parser
from .data.cli import add_dataset_parser
from .generate import add_sample_parser
from .sampling.presets import RELAY_RECIPES, RelaySamplerSettings, relay_step_table
from .training.cli import add_train_parser


def _add_schedule_parser(sub) -> None:
    p = sub.add_parser(
        "schedule", help="print the σ grid, blur level and NFE of a relay stage",
        description="Show what a relay stage does step by step: the kept σ's of the truncated grid, "
                    "the sampler's u(σ) and blur σ_B, the lowest AC blur factors, the start σ₀ and "
                    "the number of network evaluations. Flags override the preset.")
    p.add_argument("--preset", choices=sorted(RELAY_RECIPES), default="default",
                   help="official recipe to start from (default: generate.py defaults)")
    p.add_argument("--steps", dest="num_steps", type=int, help="nominal grid size before truncation")
    p.add_argument("--sigma-min", type=float, help="smallest σ (the sampler returns D at it)")
    p.add_argument("--sigma-max", type=float, help="largest σ of the nominal grid")
    p.add_argument("--rho", type=float, help="grid exponent ρ")
    p.add_argument("--truncation-sigma", type=float, help="keep only σ below this")
    p.add_argument("--truncation-t", type=float, help="L used by the sampler's u(σ)")
    p.add_argument("--cfg-scale", type=float, help="guidance weight (doubles the NFE when ≠ 1)")
    p.add_argument("--up-scale", type=int, help="patch size / upsampling factor of the model")
    p.add_argument("--blur-sigma-max", type=float, help="σ_B,max of the model")
    p.add_argument("--prob-length", type=float, help="training L of the model")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=_run_schedule)


def _overrides(args, cls) -> dict:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def _run_schedule(args) -> int:
    recipe = RELAY_RECIPES[args.preset]
    schedule = dataclasses.replace(recipe.schedule, **_overrides(args, RelaySchedule))
    settings = dataclasses.replace(recipe.sampler, **_overrides(args, RelaySamplerSettings))
    table = relay_step_table(schedule, settings)
    if args.json:
        print(json.dumps(table, indent=2))
        return 0
    print(f"preset {args.preset}: {recipe.note}")
    print(f"model: up_scale={schedule.up_scale} blur_sigma_max={schedule.blur_sigma_max} "
          f"prob_length={schedule.prob_length} (sigma_top={table['sigma_top']:.5f})")
    print(f"steps kept: {table['steps_kept']} of {settings.num_steps}   start sigma: "
          f"{table['sigma_start']:.5f}   NFE: {table['nfe']}"
          + (f" ({table['nfe_with_guidance']} with guidance {settings.cfg_scale})"
             if settings.cfg_scale != 1 else ""))
    print(f"{'step':>4} {'sigma':>10} {'u':>8} {'blur_sigma':>10} {'alpha01':>8} {'alpha11':>8}")
    for r in table["steps"]:
        print(f"{r['step']:>4} {r['sigma']:>10.5f} {r['u']:>8.4f} {r['blur_sigma']:>10.4f} "
              f"{r['alpha_01']:>8.4f} {r['alpha_11']:>8.4f}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rdm", description="Relay Diffusion Models (Teng et al., ICLR 2024) in PyTorch.")
    parser.add_argument("--version", action="version", version=f"relay-diffusion {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    add_dataset_parser(verbs)
    add_train_parser(verbs)
    add_sample_parser(verbs)
    add_import_parser(verbs)
    analyze = verbs.add_parser("analyze", help="inspect noise and blur schedules",
                               description="Inspect noise and blur schedules.")
    what = analyze.add_subparsers(dest="what", metavar="WHAT")
    _add_schedule_parser(what)
    analyze.set_defaults(func=lambda a: (analyze.print_help(), 2)[1])
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return args.func(args)
    except ValueError as e:
        print(f"rdm: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:                  # e.g. `rdm analyze schedule | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
