"""`rdm demo`: the interactive page (docs/demo.md)."""

from __future__ import annotations

from .chain_flags import add_model_flag


def add_parser(subparsers, help_text: str) -> None:
    p = subparsers.add_parser(
        "demo", help=help_text,
        description="Serve an interactive page (Gradio; extra relay-diffusion[demo]) that samples a chain and "
                    "shows the base sample, the relay stage's trajectory step by step, the final image, timing "
                    "and network evaluations, and a gallery; PNGs and settings download as a zip. It starts "
                    "with the fastest settings we measured (distilled stages' own steps, else --preset fast); "
                    "without --model it offers the bundled distilled demo chain first, then the demo chain "
                    "with --preset fast. "
                    "Works offline; binds to localhost unless --host says otherwise.")
    add_model_flag(p)
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port (default 7860)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, …")
    p.set_defaults(func=run)


def run(args) -> int:
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1…65535, got {args.port}")
    import importlib.util

    if importlib.util.find_spec("gradio") is None:
        raise ValueError("rdm demo needs Gradio: pip install 'relay-diffusion[demo]'")
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")             # offline: no usage pings
    from ..distributed import resolve_device
    from ..integrations.demo_page import build_page, page_chains

    page = build_page(page_chains(args.models, resolve_device(args.device)))
    print(f"rdm demo: http://{args.host}:{args.port} (Ctrl-C stops)")
    page.launch(server_name=args.host, server_port=args.port, show_error=True, **page.rdm_launch_options)
    return 0
