"""`rdm import-diffusers FOLDER OUT_DIR...`: a diffusers export back as model directories."""

from __future__ import annotations

from ..files import check_output_dir


def add_parser(subparsers, help_text: str) -> None:
    p = subparsers.add_parser(
        "import-diffusers", help=help_text,
        description="Write the stages of a folder made by `rdm export-diffusers` as model directories "
                    "(config.json + model.safetensors; the exported weights, bit for bit): one OUT_DIR "
                    "per stage, base first. Needs the extra relay-diffusion[diffusers].")
    p.add_argument("folder", metavar="FOLDER", help="a diffusers folder with model_index.json")
    p.add_argument("outdirs", nargs="+", metavar="OUT_DIR", help="one new model directory per stage")
    p.set_defaults(func=run)


def run(args) -> int:
    for d in args.outdirs:
        if check_output_dir(d).exists():
            raise ValueError(f"{d} already exists; give new folders")
    from ..integrations.diffusers import import_diffusers

    for d in import_diffusers(args.folder, args.outdirs):
        print(f"wrote {d}")
    return 0
