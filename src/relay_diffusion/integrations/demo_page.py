"""`rdm demo`: an interactive page that shows the relay (optional extra `relay-diffusion[demo]`,
Gradio). Pick a class, a seed, steps per stage, the relay solver and the guidance weight; see the
base sample, the relay stage's trajectory (the state x and the denoised x̂₀ at every step), the
final image, timing and network evaluations, a gallery of neighbouring seeds, and download PNGs
with the settings. The bundled demo chain by default; offline; localhost by default.

`render(chain, seed, …)` is the page's computation without Gradio (what the tests compare with
`rdm sample`); `page_chains` the chains offered (the bundled distilled chain first where
installed); `build_page(chains)` makes the Gradio Blocks.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
import zipfile

import torch

from ..generate import run_record, sample_images
from ..pixels import to_pil, to_uint8
from ..pipeline import RelayChain
from ..sampling import SOLVERS
from ..sampling.presets import FAST_RECIPE

DISPLAY_SIDE = 256                     # images are shown scaled to this many CSS pixels (pixelated)


@dataclasses.dataclass
class Rendering:
    base: object                       # PIL image of the base stage (None for a relay-only chain)
    trajectory: list                   # (PIL image, caption) per relay step: x, then x̂₀
    final: object                      # PIL image
    gallery: list                      # (PIL image, caption) per seed of the batch
    report: str                        # Markdown: timing and network evaluations
    settings: dict                     # what produced the images (for the download)


def page_chain(models, device="cpu") -> RelayChain:
    """The chain the page starts with: the fastest settings measured — a distilled stage's own
    steps, every other stage with `--preset fast` (docs/solvers-quality.md)."""
    from ..models import read_config
    from ..sampling.presets import chain_recipe

    configs = [read_config(m) for m in models]
    fast = chain_recipe("fast", [c.kind.settings for c in configs])
    settings = [c.default_settings() if c.distilled else f for c, f in zip(configs, fast)]
    return RelayChain.from_pretrained(models, settings, device=device)


def chain_label(chain: RelayChain) -> str:
    """How the page names a chain: its kind of sampling and its evaluations per image."""
    distilled = [bool(m.config.distilled) for m in chain.models]
    kind = "distilled" if all(distilled) else "distilled + fast" if any(distilled) else "--preset fast"
    return f"{kind}: {' + '.join(map(str, chain.nfe()))} evaluations per image"


def page_chains(models=None, device="cpu") -> dict[str, RelayChain]:
    """The chains the page offers, best first, by `chain_label`: the chain of `models`
    (page_chain); without models, the bundled distilled demo chain where installed, then the
    bundled demo chain with --preset fast."""
    from ..pipeline import bundled_demo_chain

    if models:
        options = [models]
    else:
        options = [bundled_demo_chain()]
        try:
            options.insert(0, bundled_demo_chain(distilled=True))
        except ValueError:                              # not installed: the fast chain only
            pass
    chains = [page_chain([str(m) for m in o], device) for o in options]
    return {chain_label(c): c for c in chains}


def chain_with(chain: RelayChain, base_steps: int, relay_steps: int, solver: str, guidance: float) -> RelayChain:
    """The chain with the page's settings: steps per stage, the relay solver, the guidance weight."""
    settings = []
    for m, s in zip(chain.models, chain.settings):
        if m.config.distilled:                          # its own steps; only guidance can change
            settings.append(s.with_overrides({"cfg_scale": float(guidance)}))
            continue
        over = {"num_steps": int(relay_steps if m.kind.continues else base_steps), "cfg_scale": float(guidance)}
        if m.kind.continues:
            over["solver"] = solver
            if solver != "heun":                        # the few-step grid of --preset fast
                fast = FAST_RECIPE[1]
                over.update(sigma_grid=fast.sigma_grid, rho=fast.rho)
        settings.append(s.with_overrides(over))
    return RelayChain(chain.models, settings)


def render(chain: RelayChain, seed: int, class_index: int | None = None, base_steps: int = 18,
           relay_steps: int = 18, solver: str = "heun", guidance: float = 1.0, batch: int = 8) -> Rendering:
    """Sample seed (and seed+1 … seed+batch−1 for the gallery) with the page's settings."""
    run = chain_with(chain, base_steps, relay_steps, solver, guidance)
    labels = "balanced" if class_index is None or class_index < 0 else int(class_index)
    base, steps = {}, []
    start = time.perf_counter()
    final = run([seed], labels, stage_callback=lambda i, x: base.setdefault(i, x) if i == 0 else None,
                step_callback=lambda i, info: steps.append(info) if i == len(run.models) - 1 else None)
    seconds = time.perf_counter() - start
    seeds = list(range(seed, seed + max(1, int(batch))))
    # the gallery starts with this seed's image; the others are sampled together (per-seed noise:
    # the same images as one by one)
    gallery = [to_uint8(final.cpu())] + ([sample_images(run, seeds[1:], labels, batch=len(seeds), keep=True).images]
                                         if len(seeds) > 1 else [])
    pil = lambda x: to_pil(to_uint8(x.cpu())[0])                               # noqa: E731
    trajectory = []
    for info in steps:
        trajectory += [(pil(info["x"]), f"x σ={info['sigma']:.3g}"),
                       (pil(info["denoised"]), f"x̂₀ σ={info['sigma']:.3g}")]
    nfe = run.nfe()
    names = chain.class_names
    label_text = f"{labels} ({names[labels]})" if names and isinstance(labels, int) else labels
    report = (f"**seed {seed}**, class {label_text}: {seconds:.2f} s on {next(chain.models[0].denoiser.parameters()).device}"
              f"; network evaluations per image: {' + '.join(map(str, nfe))} = {sum(nfe)}")
    settings = run_record(run, seed=seed, labels=labels)
    return Rendering(pil(base[0]) if not run.models[0].kind.continues and len(run.models) > 1 else None,
                     trajectory, pil(final), [(to_pil(u8), f"seed {s}") for s, u8 in
                                              zip(seeds, torch.cat(gallery))], report, settings)


def download(rendering: Rendering, path) -> str:
    """A zip with final.png, base.png, the gallery's PNGs and settings.json."""
    with zipfile.ZipFile(path, "w") as z:
        for name, image in [("final", rendering.final), ("base", rendering.base)] + [
                (caption.replace(" ", "-"), im) for im, caption in rendering.gallery]:
            if image is not None:
                buf = io.BytesIO()
                image.save(buf, format="PNG")
                z.writestr(f"{name}.png", buf.getvalue())
        z.writestr("settings.json", json.dumps(rendering.settings, indent=2))
    return str(path)


def build_page(chains: RelayChain | dict[str, RelayChain]):
    """The Gradio page for one chain, or for several (label → chain, the first shown first: a
    choice of chain above the settings; steps and solver apply to stages that are not distilled)."""
    import tempfile

    import gradio as gr

    chains = chains if isinstance(chains, dict) else {chain_label(chains): chains}
    first = next(iter(chains.values()))
    classes, names = first.label_dim, first.class_names
    stages = [(m, s) for c in chains.values() for m, s in zip(c.models, c.settings) if not m.config.distilled]
    relay = [s for m, s in stages if m.kind.continues]
    base = [s for m, s in stages if not m.kind.continues]
    class_help = (", ".join(f"{i} {n}" for i, n in enumerate(names)) if names else f"0–{classes - 1}")
    css = ("img { image-rendering: pixelated; } "                          # small images, sharp pixels
           "#rdm-base img, #rdm-final img { width: 100%; height: 100%; object-fit: contain; }")
    theme = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                              font_mono=["ui-monospace", "monospace"])      # no web fonts: works offline
    with gr.Blocks(title="relay-diffusion") as page:
        gr.Markdown("# Relay diffusion\nA base model makes a low-resolution image; the relay stage continues the "
                    "same diffusion at the higher resolution from its blurred, noised upsampling.")
        choice = gr.Radio(list(chains), value=next(iter(chains)), label="chain", visible=len(chains) > 1,
                          elem_id="rdm-chain")
        with gr.Row():
            seed = gr.Number(value=0, precision=0, minimum=0, label="seed", elem_id="rdm-seed")
            klass = gr.Number(value=-1, precision=0, minimum=-1, maximum=max(classes - 1, -1),
                              label=f"class (−1 = seed mod {classes}): {class_help}" if classes else
                              "class (unconditional model)", interactive=bool(classes), elem_id="rdm-class")
            batch = gr.Slider(1, 16, value=8, step=1, label="gallery: seeds from seed on", elem_id="rdm-batch")
        with gr.Row():
            base_steps = gr.Slider(2, 64, value=base[0].num_steps if base else 18, step=1,
                                   label="base steps", visible=bool(base), elem_id="rdm-base-steps")
            relay_steps = gr.Slider(2, 64, value=relay[0].num_steps if relay else 18, step=1, visible=bool(relay),
                                    label="relay steps (heun: nominal grid; others: σ's)", elem_id="rdm-relay-steps")
            solver = gr.Dropdown(list(SOLVERS), value=relay[0].solver if relay else "heun", label="relay solver",
                                 visible=bool(relay), elem_id="rdm-solver")
            guidance = gr.Slider(1.0, 5.0, value=1.0, step=0.1, label="guidance", visible=bool(classes),
                                 elem_id="rdm-guidance")
        run = gr.Button("Generate", variant="primary", elem_id="rdm-run")
        report = gr.Markdown(elem_id="rdm-report")
        with gr.Row():
            base_image = gr.Image(label="base sample", height=DISPLAY_SIDE, elem_id="rdm-base", format="png")
            final_image = gr.Image(label="final image", height=DISPLAY_SIDE, elem_id="rdm-final", format="png")
        trajectory = gr.Gallery(label="relay trajectory: x and x̂₀ per step", columns=8, elem_id="rdm-trajectory")
        gallery = gr.Gallery(label="seeds", columns=8, elem_id="rdm-gallery")
        files = gr.File(label="download PNGs + settings.json", elem_id="rdm-download")

        def on_run(chain_value, seed_value, class_value, batch_value, base_value, relay_value, solver_value,
                   guidance_value):
            chain = chains.get(chain_value, first)
            r = render(chain, int(seed_value or 0), None if class_value is None else int(class_value),
                       int(base_value), int(relay_value), solver_value, float(guidance_value), int(batch_value))
            path = download(r, tempfile.NamedTemporaryFile(suffix=".zip", delete=False).name)
            return r.report, r.base, r.final, r.trajectory, r.gallery, path

        run.click(on_run, [choice, seed, klass, batch, base_steps, relay_steps, solver, guidance],
                  [report, base_image, final_image, trajectory, gallery, files])
    page.rdm_launch_options = {"theme": theme, "css": css}
    return page
