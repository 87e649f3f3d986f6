"""Report phase of the Fashion-MNIST study: compute accounting (network FLOPs × images), tables,
plots and docs/study.md from <workdir>/evals/*.json."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from fmnist32_evals import SAMPLES
from fmnist32_runs import RUNS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "study.md"
FIG = ROOT / "docs" / "study"
DISCUSSION = Path(__file__).resolve().parent / "fmnist32_discussion.md"


def network_flops(model) -> dict:
    """Forward and forward+backward FLOPs per image of a model's network (counted by
    torch.utils.flop_counter on one image: convolutions, matmuls, attention)."""
    from torch.utils.flop_counter import FlopCounterMode

    net = model.denoiser.net.train().requires_grad_(True)
    r, c = model.resolution, model.channels
    x = torch.randn(1, c, r, r)
    noise = torch.zeros(1)
    labels = torch.zeros(1, model.label_dim) if model.label_dim else None
    with FlopCounterMode(display=False) as fwd:
        net(x, noise, labels)
    with FlopCounterMode(display=False) as both:
        net(x, noise, labels).sum().backward()
    return {"forward": fwd.get_total_flops(), "train": both.get_total_flops()}


def stage_nfe(model, settings: dict) -> int:
    from relay_diffusion.sampling.settings import BaseSamplerSettings, RelaySamplerSettings

    if model.stage == "base":
        return BaseSamplerSettings.from_dict(settings).nfe()        # stored records may use official names
    return RelaySamplerSettings.from_dict(settings).nfe(model.schedule)


def accounting(results: dict) -> None:
    """Adds train_pflop (all stages' training up to the snapshots) and sample_gflop (per image) to
    every result. Each snapshot is loaded once; FLOPs are counted once per run. A record whose
    snapshots are no longer on disk keeps the numbers it was published with (docs/study/results.json)."""
    from relay_diffusion.models import RelayModel

    published = json.loads((FIG / "results.json").read_text()) if (FIG / "results.json").exists() else {}
    flops, models = dict(published.get("flops_per_image", {})), {}
    for r in results.values():
        if not all(Path(snap).exists() for snap in r["snapshots"]):
            if "train_pflop" not in r:
                raise SystemExit(f"{r['name']}: snapshots {r['snapshots']} are missing and were never accounted")
            continue
        r["train_pflop"], r["sample_gflop"], r["nfe"] = 0.0, 0.0, []
        for snap, settings in zip(r["snapshots"], r["settings"]):
            if snap not in models:
                models[snap] = RelayModel.from_pretrained(snap)
            run = Path(snap).parent.name
            if run not in flops:
                flops[run] = network_flops(models[snap])
            images = int(Path(snap).name.split("-")[1])
            nfe = stage_nfe(models[snap], settings)
            r["train_pflop"] += images * flops[run]["train"] / 1e15
            r["sample_gflop"] += nfe * flops[run]["forward"] / 1e9
            r["nfe"].append(nfe)
    results["_flops"] = flops


def spread(r: dict, key: str) -> float:
    a, b = (h[key] for h in r["halves"])
    return abs(a - b) / 2


def fmt(r: dict, key: str, digits: int = 3) -> str:
    return f"{r[key]:.{digits}f} ± {spread(r, key):.{digits}f}"


def table(results: dict, names: list) -> str:
    head = ("| run | samples | train PFLOP | sample GFLOP/img (NFE) | FID ↓ | precision ↑ | recall ↑ | "
            "KID×10³ ↓ | SWD ↓ | spectral ↓ | class IS ↑ |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    rows = []
    for n in names:
        if n not in results:
            rows.append(f"| {n} | not run yet | | | | | | | | | |")
            continue
        r = results[n]
        kid = f"{1e3 * r['kid']:.2f} ± {1e3 * spread(r, 'kid'):.2f}"
        cost = (f"{r['train_pflop']:.3f} | {r['sample_gflop']:.2f} ({' + '.join(map(str, r['nfe']))})"
                if r["nfe"] else "– | –")
        rows.append(f"| {n} | {r['n']:,} | {cost} | {fmt(r, 'fid')} | {fmt(r, 'precision')} | "
                    f"{fmt(r, 'recall')} | {kid} | {fmt(r, 'swd', 2)} | {fmt(r, 'spectral')} | {fmt(r, 'is', 2)} |")
    return head + "\n".join(rows) + "\n"


def plots(results: dict) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    FIG.mkdir(parents=True, exist_ok=True)
    made = []
    for key, label, fname, groups in (
            ("train_pflop", "training compute (PFLOP, network FLOPs × images)", "fid_vs_train.png",
             {"single-stage EDM 32×32": ["single@100k", "single@200k", "single@300k"],
              "RDM 8×8 → 32×32": ["rdm@50k", "rdm@100k", "rdm@150k"],
              "RDM 16×16 → 32×32": ["rdm16@50k", "rdm16@100k"],
              "single-stage, DPM-Solver++(2M) 10 NFE": ["single@100k-dpm10", "single@200k-dpm10",
                                                        "single@300k-dpm10"],
              "RDM 8×8 → 32×32, fast preset (12 + 8 NFE)": ["rdm@50k-dpm20", "rdm@100k-dpm20",
                                                             "rdm@150k-dpm20"],
              "RDM 8×8 → 32×32, DPM-Solver++(2M) 12 + 4 NFE": list(RDM_BEST_CURVE),
              "RDM 16×16 → 32×32, fast preset (12 + 8 NFE)": ["rdm16@50k-dpm20", "rdm16@100k-dpm20"],
              "RDM 16×16 → 32×32, DPM-Solver++(2M) 12 + 4 NFE": ["rdm16@50k-dpm16", "rdm16@100k-dpm16"]}),
            ("sample_gflop", "sampling cost (GFLOP per image, NFE × network FLOPs)", "fid_vs_sampling.png",
             {"single-stage EDM 32×32": ["single@300k-8steps", "single@300k"],
              "RDM 8×8 → 32×32": ["rdm@150k-fast", "rdm@150k"],
              "RDM 16×16 → 32×32": ["rdm16@100k-fast", "rdm16@100k"],
              "single-stage, DPM-Solver++(2M)": ["single@300k-dpm8", "single@300k-dpm10"],
              "RDM 8×8 → 32×32, DPM-Solver++(2M)": ["rdm@150k-dpm16", "rdm@150k-dpm20"],
              "RDM 16×16 → 32×32, DPM-Solver++(2M)": ["rdm16@100k-dpm16", "rdm16@100k-dpm20"]})):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for g, names in groups.items():
            pts = [(results[n][key], results[n]["fid"], spread(results[n], "fid")) for n in names if n in results]
            x, y, e = zip(*pts) if pts else ((), (), ())
            solver_sampled = "preset" in g or "Solver" in g             # dashed: the re-judged curves
            ax.errorbar(x, y, yerr=e, marker="s" if solver_sampled else "o", capsize=3, label=g,
                        linestyle="--" if solver_sampled else "-")
        ax.set_xlabel(label)
        ax.set_ylabel("feature-net FID vs train (↓)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(FIG / fname, dpi=110)
        plt.close(fig)
        made.append(fname)
    return made


def grids(work: Path) -> list:
    import numpy as np

    from relay_diffusion.io import save_image_grid

    made = []
    for name in ("single@300k", "rdm@150k", "rdm16@100k"):
        f = work / "evals" / f"{name}-first100.npz"
        out = f"samples_{name.replace('@', '_')}.png"
        if f.exists():
            images = torch.from_numpy(np.load(f)["images"]).float() / 127.5 - 1
            save_image_grid(images, FIG / out, ncol=10)
        if (FIG / out).exists():                        # made now, or kept from an earlier run
            made.append(out)
    return made


RDM_CURVE = ("rdm@50k", "rdm@100k", "rdm@150k")
RDM_SOLVER_CURVE = ("rdm@50k-dpm20", "rdm@100k-dpm20", "rdm@150k-dpm20")
RDM_BEST_CURVE = ("rdm@50k-dpm16", "rdm@100k-dpm16", "rdm@150k-dpm16")


def share(cross: str, total_pflop: float) -> str:
    """A crossing() value ("0.114" or "≤ 0.080") as a fraction of `total_pflop`."""
    return f"{float(cross.strip('≤ ')) / total_pflop:.0%}"


def crossing(results: dict, target: float, curve: tuple = RDM_CURVE) -> str:
    """Training compute at which an RDM curve first reaches `target` FID (linear interpolation)."""
    pts = sorted((results[n]["train_pflop"], results[n]["fid"]) for n in curve if n in results)
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if y0 > target >= y1:
            return f"{x0 + (x1 - x0) * (y0 - target) / (y0 - y1):.3f}"
    if pts and pts[0][1] <= target:
        return f"≤ {pts[0][0]:.3f}"
    return "not reached"


def phase_report(work: Path) -> None:
    results = {}
    for f in sorted((work / "evals").glob("*.json")):
        r = json.loads(f.read_text())
        results[r["name"]] = r
    accounting(results)
    flops = results.pop("_flops")
    figures = plots(results) + grids(work)
    (FIG / "results.json").write_text(json.dumps({"flops_per_image": flops, "results": results}, indent=2) + "\n")
    single, rdm = results.get("single@300k"), results.get("rdm@150k")
    summary = ""
    if single and rdm:
        summary = (f"With the official samplers, at the end of training RDM has FID {rdm['fid']:.3f} vs {single['fid']:.3f} for the "
                   f"single-stage model, using {rdm['train_pflop'] / single['train_pflop']:.0%} of its "
                   f"training compute and {rdm['sample_gflop'] / single['sample_gflop']:.0%} of its "
                   f"sampling cost per image. ")
        cross = crossing(results, single["fid"])
        summary += (f"Within the compute trained here (up to {rdm['train_pflop']:.3f} PFLOP) RDM does not "
                    f"reach the single-stage model's final FID." if cross == "not reached" else
                    f"RDM reaches the single-stage model's final FID at {cross} PFLOP of training "
                    f"(single-stage: {single['train_pflop']:.3f} PFLOP).")
        fast, best_single = results.get("rdm@150k-dpm20"), results.get("single@300k-dpm8")
        matched = results.get("single@300k-dpm10")
        if fast and matched:
            summary += (f" Re-judged with the solvers ([below](#re-judged-with-the-solvers)): RDM with "
                        f"{' + '.join(map(str, fast['nfe']))} evaluations has FID {fast['fid']:.3f} at "
                        f"{fast['sample_gflop']:.2f} GFLOP/image; the single-stage model at the same cost "
                        f"({'+'.join(map(str, matched['nfe']))} evaluations, {matched['sample_gflop']:.2f} GFLOP) "
                        f"has FID {matched['fid']:.3f}")
            if best_single:
                summary += f" and {best_single['fid']:.3f} at {best_single['nfe'][0]} evaluations"
            best_rdm = results.get("rdm@150k-dpm16")
            if best_rdm and best_single:
                cross = crossing(results, best_single["fid"], RDM_BEST_CURVE)
                summary += (f". With {' + '.join(map(str, best_rdm['nfe']))} evaluations "
                            f"({best_rdm['sample_gflop']:.2f} GFLOP, {best_rdm['sample_gflop'] / best_single['sample_gflop']:.0%}"
                            f" of the single-stage model's best sampler) RDM has FID {best_rdm['fid']:.3f}; on that "
                            f"curve it reaches the single-stage model's best FID at "
                            + ("no trained snapshot" if cross == "not reached" else
                               f"{cross} PFLOP of training ({share(cross, single['train_pflop'])})"))
            cross = crossing(results, matched["fid"], RDM_SOLVER_CURVE)
            summary += (". " + (f"The solver-sampled RDM curve does not reach the matched-cost single-stage "
                                f"FID within its training." if cross == "not reached" else
                                f"The solver-sampled RDM curve reaches the matched-cost single-stage FID at "
                                f"{cross} PFLOP of training ({share(cross, single['train_pflop'])} of the "
                                f"single-stage model's)."))
        rdm16 = results.get("rdm16@100k")
        if rdm16:
            summary += (f" With up-scale 2 (16×16 base) RDM has FID {rdm16['fid']:.3f} at "
                        f"{rdm16['train_pflop'] / single['train_pflop']:.0%} of the training compute and "
                        f"{rdm16['sample_gflop'] / single['sample_gflop']:.0%} of the sampling cost.")
    runs = "\n".join(f"| `{k}` | {v['preset']} | {v['duration']:,} | "
                     f"{', '.join(f'{a}={b}' for a, b in v.items() if a not in ('preset', 'duration', 'snapshot')) or '–'} |"
                     for k, v in RUNS.items())
    flop_rows = "\n".join(f"| `{k}` | {v['forward'] / 1e6:.1f} | {v['train'] / 1e6:.1f} |" for k, v in flops.items())
    discussion = DISCUSSION.read_text() if DISCUSSION.exists() else "_(not written yet)_\n"
    doc = f"""# Study: relay diffusion vs a single-stage model at equal compute (Fashion-MNIST 32×32)

Reproduce (≈ 3 hours on an idle 2-core CPU, ≈ 6 single-thread process-hours; resumes when
interrupted, and redoes only evaluations whose plan changed):

```bash
python studies/fmnist32.py --workdir runs/study-fmnist32
```

Generated by `studies/fmnist32_report.py` from the evaluation records; figures and the raw numbers
are in [`docs/study/`](study/) (`results.json`).

## Set-up

- **Data**: Fashion-MNIST train (60k) padded to 32×32, class-conditional (10 classes, 10 % label
  dropout), built with `rdm dataset --source fashion-mnist --resolution 32`.
- **Models** (the package's presets, tiny ADM U-Nets sized for CPU; `rdm train` defaults otherwise):

| run | preset | training images | changed |
|---|---|---|---|
{runs}

- **Compute** is counted in network FLOPs × images: FLOPs of one image's forward and forward +
  backward pass, counted by `torch.utils.flop_counter` (convolutions, matmuls, attention;
  element-wise work is not counted). Training compute of RDM = base + relay stage. Sampling cost
  per image = Σ over stages of NFE × forward FLOPs (the paper's FLOP-normalised NFE, paper Fig. 5).

| network (run) | forward MFLOP / image | train (fwd + bwd) MFLOP / image |
|---|---|---|
{flop_rows}

- **Metrics** (all offline; `rdm eval` library): FID, precision/recall (k = 3), KID in the
  feature space of the bundled Fashion-MNIST classifier (`--features fmnist`, 92.6 % test
  accuracy), SWD on 7×7 Laplacian-pyramid patches (16 per image, 512 directions, ×10³), radial power-spectrum distance, and the
  classifier's IS. Reference: the 60k training images for FID, the first 10k for P/R, KID, SWD
  and spectral. The row `real-test` (10k real test images) is what a perfect model would score.
- **Samples**: seeds 0…n−1, labels = seed mod 10, {SAMPLES:,} samples for every row. "±" is the half-difference of the metric on
  the two halves of the seeds (seed-to-seed spread at half the sample count).
- **Samplers**: single-stage and base: EDM Heun, 18 steps (35 NFE) unless stated; relay: 18-step
  Karras grid truncated below σ = 0.9 (7 steps, 13 NFE), η = 0.2, α = the model's, official
  corrector.

## Headline

{summary}

{table(results, ["real-test", "single@300k", "rdm@150k"])}
## Quality vs training compute

![FID vs training compute](study/fid_vs_train.png)

{table(results, ["single@100k", "single@200k", "single@300k", "rdm@50k", "rdm@100k", "rdm@150k"])}
## Quality vs sampling cost

![FID vs sampling cost](study/fid_vs_sampling.png)

{table(results, ["single@300k-8steps", "single@300k", "rdm@150k-fast", "rdm@150k"])}
`rdm@150k-fast`: base 10 steps, relay 10-step grid truncated at 0.9.

## Re-judged with the solvers

The same models sampled with the exponential-integrator solvers of [solvers.md](solvers.md)
(DPM-Solver++(2M) with its corrector in every stage): RDM with `rdm sample --preset fast` (base
12 evaluations on a ρ = 20 grid; relay 8 on a ρ = 2 grid from σ₀ = 0.9, η = 0),
and with 4 relay evaluations; the single-stage model at the same sampling cost as the fast preset
(10 evaluations, ρ = 20) and at 8. The sampler curves behind these choices (1,000 samples) are in
[solvers-quality.md](solvers-quality.md#plan-study-curves).

{table(results, ["single@300k", "single@300k-dpm8", "single@300k-dpm10", "rdm@150k", "rdm@150k-dpm16",
                 "rdm@150k-dpm20"])}
Against training compute, every model with the solvers:

{table(results, ["single@100k-dpm10", "single@200k-dpm10", "single@300k-dpm10", "rdm@50k-dpm20",
                 "rdm@100k-dpm20", "rdm@150k-dpm20", "rdm@50k-dpm16", "rdm@100k-dpm16", "rdm@150k-dpm16"])}
## Ablations (relay stage, final models)

Sampler stochasticity η (paper Table 3 shape), truncation σ, block noise (α = 0.15 vs 0, trained
and sampled), paper-normalised vs official noise mixture (trained and sampled):

{table(results, ["rdm@150k-eta0", "rdm@150k-eta0.1", "rdm@150k", "rdm@150k-eta0.3", "rdm@150k-trunc0.5",
                 "rdm@150k-trunc1.6"])}
Block noise and noise mixture (relay stages trained 100k images, both trained and sampled that way):

{table(results, ["rdm@100k", "rdm-alpha0@100k", "rdm-paper@100k"])}
## Up-scale 2: RDM 16×16 → 32×32

A 16×16 base (`base16`, tiny-16) and a 16→32 relay (`relay16to32`, 2×2 patches and blocks), sized
to the 8→32 RDM's final training compute; the single-stage and 8→32 rows repeated for comparison.
`rdm16@100k-fast`: base 10 steps, relay 10-step grid truncated at 0.9.

{table(results, ["single@300k", "rdm@150k", "rdm16@50k", "rdm16@100k", "rdm16@100k-fast"])}
With the solvers (the fast preset, and 12 + 4 evaluations), against the single-stage model's best
solver setting:

{table(results, ["single@300k-dpm8", "rdm@150k-dpm16", "rdm16@50k-dpm20", "rdm16@100k-dpm20",
                 "rdm16@50k-dpm16", "rdm16@100k-dpm16"])}
## Samples (seeds 0–99, one class per column)

{" ".join(f"![{f}](study/{f})" for f in figures if f.startswith("samples_"))}

## Discussion

{discussion}"""
    DOC.write_text(doc)
    print(f"wrote {DOC} ({len(results)} evaluations)")


