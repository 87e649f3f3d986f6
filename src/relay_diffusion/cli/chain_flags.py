"""The flags that choose a chain, its per-stage sampler settings, seeds and labels: shared by
`rdm sample` and `rdm eval --model`."""

from __future__ import annotations

import argparse
import dataclasses

from ..models import read_config
from ..networks.runtime import PRECISIONS
from ..pipeline import LABEL_MODES, RelayChain, bundled_demo_chain
from ..sampling.presets import CHAIN_PRESETS, DISTILLED_PRESET, chain_recipe
from .common import add_quiet_flag, setting_flags

# flag → (settings field, type, help, aliases); a value list has 1 entry (all stages) or one per
# stage ("-" = keep); a stage without the field ignores a single value
STAGE_FLAGS = setting_flags()


def stage_settings(configs, preset: str | None, args) -> list:
    """Per-stage sampler settings for the stages' `ModelConfig`s: each stage's defaults (a
    distilled stage's own steps) or the preset, then the flags."""
    kinds = [c.kind for c in configs]
    if preset == DISTILLED_PRESET:
        plain = [i for i, c in enumerate(configs) if not c.distilled]
        if plain:
            raise ValueError(f"--preset {DISTILLED_PRESET} runs distilled stages on their own steps, but stage "
                             f"{plain[0]} ({kinds[plain[0]].name}) is not distilled (rdm distill makes one)")
        preset = None
    out = chain_recipe(preset, [k.settings for k in kinds]) if preset else [c.default_settings() for c in configs]
    n = len(out)
    for flag, (field, typ, _, _) in STAGE_FLAGS.items():
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
                    raise ValueError(f"--{flag.replace('_', '-')} does not apply to stage {i} ({kinds[i].name})")
                continue
            try:
                value = typ(v)
            except ValueError:
                kind = {int: "a whole number", float: "a number"}.get(typ, typ.__name__)
                raise ValueError(f"--{flag.replace('_', '-')} takes {kind} per stage, got {v!r}") from None
            out[i] = dataclasses.replace(out[i], **{field: value})
    return out


def add_model_flag(p) -> None:
    """--model DIR, repeated per stage (`rdm sample`, `rdm eval`, `rdm demo`)."""
    p.add_argument("--model", action="append", dest="models", metavar="DIR",
                   help="model directory of a stage (repeat for a chain; default: the bundled demo chain)")


def add_chain_arguments(p, default_seeds: str) -> None:
    """The flags that choose a chain, its sampler settings, seeds and labels (`rdm sample` and
    `rdm eval --model`)."""
    add_model_flag(p)
    p.add_argument("--seeds", default=default_seeds, help=f"seed list, e.g. 0-63,100 (default {default_seeds})")
    p.add_argument("--batch", type=int, default=32, help="images per batch and process")
    p.add_argument("--class", dest="class_idx", type=int, help="class index for every image")
    p.add_argument("--labels", choices=LABEL_MODES, default="balanced",
                   help="class labels without --class: seed mod classes (official class balance) or random per seed")
    p.add_argument("--preset", choices=CHAIN_PRESETS,
                   help="sampler recipes: the official imagenet256 / celebahq256 ones, fast (few-step "
                        "solvers, docs/solvers-quality.md), or distilled (distilled stages on their own "
                        "steps; without --model the bundled distilled demo chain, docs/distillation.md); "
                        "flags override them")
    for flag, (_, _, help_text, aliases) in STAGE_FLAGS.items():
        names = ["--" + flag.replace("_", "-"), *aliases]
        p.add_argument(*names, dest=flag, metavar="V[,V…]", help=help_text)
    p.add_argument("--float64", action="store_true", help="sample in float64 (default float32)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32",
                   help="network math: fp32, bf16 / fp16 (CUDA) autocast around the networks only, or auto "
                        "(bf16 where the hardware has it: CUDA, CPUs with avx512_bf16 or AMX; else fp32). The "
                        "samplers' arithmetic is unchanged. bf16 costs a little FID (+0.028 on the demo chain) "
                        "and is several times slower on CPUs without native bf16 (a warning says so; "
                        "docs/speed.md)")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True,
                   help="NHWC memory layout for the networks (default): the same images, faster "
                        "convolutions (docs/speed.md)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the networks: slow first batch, faster after (docs/speed.md)")
    p.add_argument("--weights", choices=("ema", "model"), default="ema", help="which weights of each model dir")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, …")
    add_quiet_flag(p)


def build_chain(args, device) -> tuple[RelayChain, list]:
    """(chain with its per-stage settings, model paths) from `add_chain_arguments` flags."""
    if args.batch < 1:
        raise ValueError("--batch must be >= 1")
    models = args.models or [str(p) for p in bundled_demo_chain(distilled=args.preset == DISTILLED_PRESET)]
    configs = [read_config(m) for m in models]                  # every check before any weights load
    settings = stage_settings(configs, args.preset, args)
    for i, (c, s) in enumerate(zip(configs, settings)):
        try:
            c.check_settings(s)
        except ValueError as e:
            raise ValueError(f"stage {i} ({models[i]}): {e}") from None
    chain = RelayChain.from_pretrained(models, settings, which=args.weights, device=device, precision=args.precision,
                                       channels_last=args.channels_last, compile=args.compile)
    return chain, models


def chain_labels(args):
    """The `labels` argument of RelayChain.__call__: a fixed class or a labelling mode."""
    return args.class_idx if args.class_idx is not None else args.labels
