"""The `rdm` command line: one thin module per verb over the library API.

Only the verb on the command line is imported (with torch and the library behind it): `rdm
--help` and `rdm --version` start in a fraction of a second.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .. import __version__

# verb → (module under relay_diffusion.cli, one-line help); each module has add_parser(subparsers, help)
VERBS = {
    "dataset": ("dataset", "convert images into EDM-format dataset zips"),
    "train": ("train", "train a base or relay stage (resumes automatically)"),
    "distill": ("distill", "distil a trained stage into 1–8 network evaluations per image (resumes)"),
    "sample": ("sample", "generate images with a chain of models (or super-resolve low-res images)"),
    "import": ("import_checkpoint", "convert a published RDM .pt / EDM .pkl checkpoint into a model directory"),
    "eval": ("eval", "FID/sFID/IS/precision/recall/KID of samples or a model chain vs a reference"),
    "analyze": ("analyze", "inspect noise and blur schedules"),
    "demo": ("demo", "serve an interactive page that shows the relay step by step"),
    "export-diffusers": ("export_diffusers", "write model directories as a diffusers pipeline folder"),
    "import-diffusers": ("import_diffusers", "write a diffusers pipeline folder back as model directories"),
}


def _verb_in(argv: list[str]) -> str | None:
    """The verb of a command line: its first word that is not an option (the top-level options
    take no values)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The `rdm` parser; only `verb`'s module is imported and given its full flags (every verb
    when `verb` is "all"), the others are listed by name and help."""
    parser = argparse.ArgumentParser(
        prog="rdm", description="Relay Diffusion Models (Teng et al., ICLR 2024) in PyTorch.")
    parser.add_argument("--version", action="version", version=f"relay-diffusion {__version__}")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    for name, (module, help_text) in VERBS.items():
        if verb in (name, "all"):
            importlib.import_module(f"{__name__}.{module}").add_parser(verbs, help_text)
        else:
            verbs.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_verb_in(argv))
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    import warnings

    from ..cpu_allocator import tune_cpu_allocator

    def show(message, category, *_, **__):           # the package's warnings as one plain line
        print(f"rdm: warning: {message}", file=sys.stderr)

    try:
        tune_cpu_allocator()                          # reuse freed activations (docs/speed.md)
        with warnings.catch_warnings():
            warnings.showwarning = show
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
