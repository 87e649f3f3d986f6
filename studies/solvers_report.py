"""Report of the solver study: docs/solvers-quality.md and its plots from <workdir>/points/*.json.
Tables are written from the records; the discussion comes from solvers_discussion.md."""

from __future__ import annotations

import json
from pathlib import Path

from solvers_points import PLANS

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "solvers-quality.md"
FIG = ROOT / "docs" / "solvers"
DISCUSSION = Path(__file__).resolve().parent / "solvers_discussion.md"
COLUMNS = ("FID ↓", "precision ↑", "recall ↑", "spectral ↓", "HF power (1 = real)", "RMSE to ODE ↓")
# every FID and RMSE here was measured on the seeds the samplers were chosen on, without intervals
EXPLORATORY = (
    "**Apart from the section \"On the report seeds\", all FID and RMSE numbers on this page are "
    "exploratory.** They were measured on the selection "
    "seeds 0…n−1, the seeds the samplers and their settings were chosen on, and none has a confidence "
    "interval except the paired FID differences of plan `runtime`. They guided the choices; they do not "
    "confirm them. The re-measurement on the disjoint report seeds (1,000,000 onwards) with "
    "paired-bootstrap 95 % intervals is in progress under issue 23; the protocol is described in "
    "[evaluation.md](evaluation.md#measurement-protocol) (\"Measurement protocol\").")
TABLE_NOTE = "Table (exploratory): FID and RMSE on the selection seeds 0…n−1, without intervals."


def load(work: Path) -> dict:
    """name → record, each tagged with its plan (from the plan tables, not the file). The records
    published with the last report (docs/solvers/points.json) come first, so a new workdir only
    has to hold the points it re-measures; its records replace the published ones by name."""
    plan_of = {name: plan for plan, make in PLANS.items() for name in make()}
    published = json.loads((FIG / "points.json").read_text()) if (FIG / "points.json").exists() else {}
    records = list(published.values()) + [json.loads(f.read_text())
                                          for f in sorted((work / "points").glob("*.json"))]
    out = {}
    for r in records:
        if r["name"] in plan_of:
            r["plan"] = plan_of[r["name"]]
            out[r["name"]] = r
    return out


def sampler_label(r: dict, stage: int) -> str:
    s = r["settings"][stage]
    shared = " (shared samples)" if stage == 0 and len(r["settings"]) > 1 and r.get("shared_base") else ""
    solver = s.get("solver", "heun")
    if solver == "heun" and "corrector" in s:                     # relay stage: which Heun corrector
        solver += " (official corr.)" if s["corrector"] == "noise" else f" ({s['corrector']} corr.)"
    if "truncation_sigma" in s:                                   # relay stage
        grid = s.get("sigma_grid", "truncated")
        if grid == "truncated":
            where = f"truncated {s['num_steps']}-step grid"
        elif grid == "rho":
            where = f"ρ = {s['rho']:g}"
        else:
            where = f"uniform λ, f = {s['lambda_frequency']:g}"
        extra = f", σ₀ {s['truncation_sigma']:g}" if s["truncation_sigma"] != 0.9 else ""
        extra += f", σ_min {s['sigma_min']:g}" if s["sigma_min"] != 0.008 else ""
        return f"{solver}, {where}{extra}, η {s.get('eta', s.get('s_noise')):g}"      # records before the renames
    method = f", η {s.get('eta', s.get('sde_scale')):g}" if s.get("method") == "sde" else ""
    return f"{solver}, ρ = {s['rho']:g}{method}{shared}"


def row(r: dict) -> str:
    nfe = " + ".join(map(str, r["nfe"]))
    stages = " / ".join(sampler_label(r, i) for i in range(len(r["settings"])))
    if r.get("runtime"):                                          # networks not in plain fp32
        from relay_diffusion.networks.runtime import RuntimeOptions
        stages += f" — networks in {RuntimeOptions(**r['runtime']).describe()}"
    rmse = f"{r['rmse']:.4f}" if "rmse" in r else "–"
    cost = f" ({r['gflop']:.2f} GFLOP)" if "gflop" in r else ""
    return (f"| {stages} | {nfe}{cost} | {r['n']:,} | {r['fid']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
            f"{r['spectral']:.3f} | {r['hf_power']:.2f} | {rmse} |")


def table(records: list) -> list[str]:
    head = "| sampler (base / relay) | NFE | samples | " + " | ".join(COLUMNS) + " |"
    return [head, "|" + "---|" * (3 + len(COLUMNS))] + [row(r) for r in records]


def curve_plot(groups: dict, x_key, y_key: str, path: Path, xlabel: str, ylabel: str, logy=False) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, recs in groups.items():
        recs = sorted(recs, key=x_key)
        ax.plot([x_key(r) for r in recs], [r[y_key] for r in recs], marker="o", ms=3, label=label)
    ax.set_xscale("log")
    from matplotlib.ticker import NullFormatter, ScalarFormatter
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    xs = sorted({x_key(r) for recs in groups.values() for r in recs})
    if xs and all(float(x).is_integer() for x in xs):                    # NFE axes
        ax.set_xticks([t for t in (2, 3, 4, 5, 6, 8, 10, 13, 16, 20, 25, 35, 50, 70, 100, 150)
                       if xs[0] <= t <= xs[-1]])
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def by(records, key) -> dict:
    out: dict = {}
    for r in records:
        out.setdefault(key(r), []).append(r)
    return out


def add_cost(recs: dict) -> None:
    """gflop: sampling cost per image, Σ over stages of NFE × the network's forward FLOPs (kept
    where a published record already has it, so its models need not be on this machine)."""
    from relay_diffusion.models import RelayModel, network_flops

    flops = {}
    for r in recs.values():
        if "gflop" in r:
            continue
        for d in r["models"]:
            if d not in flops:
                flops[d] = network_flops(RelayModel.from_pretrained(d))["forward"]
        r["gflop"] = sum(n * flops[d] for n, d in zip(r["nfe"], r["models"])) / 1e9


def write_report(work: Path) -> None:
    recs = load(work)
    add_cost(recs)
    plans = by(recs.values(), lambda r: r["plan"])
    lines = ["# Relay solvers: quality against network evaluations", "",
             "Generated by `python studies/solvers.py --report` from the measurement records "
             "(plans in `studies/solvers_points.py`); the method is in [solvers.md](solvers.md).", "",
             EXPLORATORY, ""]
    lines += report_seed_section(recs, work)
    lines += targets(recs)
    if DISCUSSION.exists():
        lines += [DISCUSSION.read_text().strip(), ""]
    for plan, make in PLANS.items():
        if plan not in plans:
            continue
        order = list(make())
        rows = sorted(plans[plan], key=lambda r: order.index(r["name"]))
        note = TABLE_NOTE + (" The FID differences in the second table carry paired-bootstrap 95 % intervals."
                             if any("fid_difference_95" in r for r in rows) else "")
        lines += [f"## Plan `{plan}`", "", (make.__doc__ or "").strip().replace("\n    ", "\n"), "", note, ""]
        lines += table(rows) + [""]
        for fig in FIGURES.get(plan, ()):
            fig(rows, lines, plans)
    DOC.write_text("\n".join(lines) + "\n")
    (FIG / "points.json").parent.mkdir(parents=True, exist_ok=True)
    (FIG / "points.json").write_text(json.dumps(recs, indent=1) + "\n")
    print(f"wrote {DOC} ({len(recs)} points)")


# the differences the report-seed section states: (a, b, metrics) read as "a − b"
REPORT_PAIRS = [("demo-report-dpmpp-2m-pc-nfe8", "demo-report-heun-noise-nfe35", ("rmse", "hf_power")),
                ("demo-report-chain-nfe20", "demo-report-official-trunc18",
                 ("fid", "fid@fmnist-b", "precision", "recall", "hf_power", "spectral"))]
REPORT_COLUMNS = (("fid", 3), ("fid@fmnist-b", 3), ("precision", 3), ("recall", 3), ("hf_power", 2), ("rmse", 4))
DIFFERENCES = FIG / "differences.json"


def report_seed_section(recs: dict, work: Path) -> list[str]:
    """The report-seed points (plan demo-report) with their 95 % intervals, and the paired
    differences the claims rest on (recomputed from the workdir's replicates when present, else
    read from the published docs/solvers/differences.json)."""
    from fmnist32_report import Records

    from relay_diffusion.evaluation.protocol import describe_difference

    rows = [r for r in recs.values() if r.get("seeds") == "report"]
    if not rows:
        return []
    replicates = Records(work / "points")
    published = json.loads(DIFFERENCES.read_text()) if DIFFERENCES.exists() else {}
    diffs = {}
    for a, b, metrics in REPORT_PAIRS:
        for m in metrics:
            key = f"{a} − {b}: {m}"
            ea, eb = replicates.estimate(a, m), replicates.estimate(b, m)
            diffs[key] = describe_difference(ea - eb, 4 if m == "rmse" else 3) if ea and eb else published.get(key)
    diffs = {k: v for k, v in diffs.items() if v}
    DIFFERENCES.write_text(json.dumps(diffs, indent=1, ensure_ascii=False) + "\n")

    def cell(r, key, digits):
        if key not in r:
            return "–"
        lo, hi = r.get(f"{key}_ci95", (None, None))
        return f"{r[key]:.{digits}f}" + (f" [{lo:.{digits}f}, {hi:.{digits}f}]" if lo is not None else "")

    out = ["## On the report seeds (95 % intervals)", "",
           "Measured on the report seeds 1,000,000 onwards, disjoint from the selection seeds every setting "
           "was chosen on (n samples; RMSE on the first 1,000 against the converged relay ODE solved on the "
           "same seeds, `demo-reference-report`). `v [lo, hi]`: value and 95 % paired-bootstrap interval "
           "(1,000 resamples of the seeds). FID in the bundled feature space and in the independent second "
           "one (`fmnist-b`).", "",
           "| point | sampler (base / relay) | NFE | samples | FID ↓ | FID, 2nd space ↓ | precision ↑ | "
           "recall ↑ | HF power | RMSE to ODE ↓ |", "|" + "---|" * 10]
    for r in sorted(rows, key=lambda r: r["name"]):
        stages = " / ".join(sampler_label(r, i) for i in range(len(r["settings"])))
        out.append(f"| `{r['name']}` | {stages} | {' + '.join(map(str, r['nfe']))} | {r['n']:,} | "
                   + " | ".join(cell(r, k, d) for k, d in REPORT_COLUMNS) + " |")
    out += ["", "Paired differences (a − b, 95 % interval):", ""]
    out += [f"- {k}: {v}" for k, v in diffs.items()] + [""]
    return out


def targets(recs: dict) -> list[str]:
    """The issue's targets on the demo chain, from the 10,000-sample points (plans demo-full and
    demo-full-official); a target whose points are not measured yet is listed as such."""
    full = {k: v for k, v in recs.items() if v["n"] >= 10_000 and v["chain"] == "demo" and v.get("seeds") != "report"}
    g = full.get
    rows = []

    def add(what, ours, ref, ok, goal):
        if ours is None or ref is None:
            rows.append(f"| {what} | not measured yet | | | |")
            return
        rows.append(f"| {what} | {ours['fid']:.3f} ({' + '.join(map(str, ours['nfe']))} NFE) | "
                    f"{ref['fid']:.3f} ({' + '.join(map(str, ref['nfe']))} NFE) | {goal} | "
                    f"{'met' if ok(ours['fid'], ref['fid']) else 'not met'} |")

    add("relay stage, ≤ 8 evaluations vs the official Heun on the 100-step grid", g("demo-full-relay-nfe8"),
        g("demo-full-official-trunc100"), lambda a, b: a <= b, "FID ≤ reference")
    add("base stage, ≤ 10 evaluations vs EDM Heun with 35", g("demo-full-base-nfe10"),
        g("demo-full-base-heun-nfe35"), lambda a, b: a <= 1.05 * b, "within 5 %")
    best = min((r for r in full.values() if r["name"] != "demo-full-chain-nfe20" and r["plan"] != "runtime"),
               key=lambda r: r["fid"],
               default=None)
    add("whole chain, ≤ 20 evaluations (`--preset fast`) vs the best FID at any cost"
        + (f" (`{best['name']}`)" if best else ""), g("demo-full-chain-nfe20"), best,
        lambda a, b: a <= 1.10 * b, "within 10 %")
    return (["## Targets (demo chain, 10,000 samples; exploratory)", "",
             "| target | ours: FID (NFE) | reference: FID (NFE) | goal | |", "|---|---|---|---|---|"]
            + rows + ["", "Point estimates on the selection seeds 0…9,999; \"met\" compares them without an "
                          "interval, so it is provisional until the re-measurement on the report seeds.", ""])


def _curves(rows, lines, plans, stage: int, what: str) -> None:
    """FID, RMSE to the reference ODE solution, recall, spectral distance and high-frequency power
    against the NFE of `stage`, one line per solver (with its Heun corrector); the relay plots add
    the official sampler's curve (truncated grids, η = 0.2; plan official)."""
    groups = by(rows, lambda r: sampler_label(r, stage).split(",")[0])
    if stage == 1:
        official = [r for r in plans.get("official", []) if r["name"].startswith("demo-heun-noise")]
        if official:
            groups["heun, official (truncated grids, η 0.2)"] = official
    nfe = lambda r: r["nfe"][stage]                                    # noqa: E731
    for key, ylabel, logy in (("rmse", "RMSE to the converged ODE solution", True), ("fid", "feature FID", True),
                              ("recall", "recall", False),
                              ("spectral", "radial power-spectrum distance", True),
                              ("hf_power", "high-frequency power (generated / real)", False)):
        have = {k: [r for r in v if key in r] for k, v in groups.items()}
        have = {k: v for k, v in have.items() if v}
        if not have:
            continue
        name = f"{what}_{key}.png"
        curve_plot(have, nfe, key, FIG / name, f"{what} network evaluations per image", ylabel, logy)
        lines += [f"![{ylabel} against {what} NFE (exploratory)](solvers/{name})", ""]


def _study_cost(rows, lines, plans) -> None:
    """FID against sampling GFLOP per image for the study's final models."""
    groups = by(rows, lambda r: r["chain"] + (" official" if r["name"].endswith("official") else ""))
    curve_plot(groups, lambda r: r["gflop"], "fid", FIG / "study_fid_vs_gflop.png",
               "sampling cost (GFLOP per image)", "feature FID (1,000 samples)", True)
    lines += ["![FID against sampling cost (exploratory)](solvers/study_fid_vs_gflop.png)", ""]


def _runtime_table(rows, lines, plans) -> None:
    """The runtimes against plain fp32: FID difference with its paired-bootstrap interval."""
    from relay_diffusion.networks.runtime import RuntimeOptions

    out = ["| network runtime | FID ↓ | FID − fp32 FID (95 % paired bootstrap) | RMSE to fp32 images (uint8 levels) |",
           "|---|---|---|---|"]
    for r in rows:
        what = RuntimeOptions(**(r.get("runtime") or {})).describe()
        if "fid_difference" in r:
            lo, hi = r["fid_difference_95"]
            delta = f"{r['fid_difference']:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        else:
            delta = "reference" if "rmse" not in r else "–"
        rmse = f"{r['rmse']:.4f} ({r['rmse'] * 127.5:.2f})" if "rmse" in r else "–"
        out.append(f"| {what} | {r['fid']:.3f} | {delta} | {rmse} |")
    lines += out + [""]


FIGURES = {"relay-curves": (lambda rows, lines, plans: _curves(rows, lines, plans, 1, "relay"),),
           "base-curves": (lambda rows, lines, plans: _curves(rows, lines, plans, 0, "base"),),
           "study-curves": (_study_cost,),
           "runtime": (_runtime_table,)}
