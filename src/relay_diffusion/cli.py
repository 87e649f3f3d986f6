"""The `rdm` command line: a thin layer over the library API."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .analysis.cli import add_analyze_parser
from .cpu_allocator import tune_cpu_allocator
from .checkpoints.cli import add_import_parser
from .data.cli import add_dataset_parser
from .evaluation.cli import add_eval_parser
from .generate import add_sample_parser
from .training.cli import add_train_parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rdm", description="Relay Diffusion Models (Teng et al., ICLR 2024) in PyTorch.")
    parser.add_argument("--version", action="version", version=f"relay-diffusion {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    add_dataset_parser(verbs)
    add_train_parser(verbs)
    add_sample_parser(verbs)
    add_import_parser(verbs)
    add_eval_parser(verbs)
    add_analyze_parser(verbs)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        tune_cpu_allocator()                          # reuse freed activations (docs/speed.md)
        return args.func(args)
    except (ValueError, FileNotFoundError) as e:     # bad input / missing weights: no traceback
        print(f"rdm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:                # Ctrl-C: every writer leaves complete files only
        print("rdm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:                  # e.g. `rdm analyze schedule | head`
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
