"""Report phase of the Fashion-MNIST study: compute accounting (network FLOPs × images), tables
with 95 % paired-bootstrap intervals, the two verdicts, plots, docs/study.md and
docs/study/results.json, from the records in <workdir>/search/points/ (the measurement protocol
of docs/evaluation.md: settings chosen on the selection seeds, every number on the report seeds).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fmnist32_choose import CRITERIA, budget, budget_choices, claim_choices, cost_gflop
from fmnist32_evals import EVALS

from relay_diffusion.evaluation import protocol

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "study.md"
FIG = ROOT / "docs" / "study"
SPACES = ("", "@fmnist-b")          # metric-name suffix of each feature space (solvers.FEATURE_SPACES)
COLUMNS = (("fid", "FID ↓", 3, 1), ("fid@fmnist-b", "FID, 2nd space ↓", 3, 1), ("precision", "precision ↑", 3, 1),
           ("recall", "recall ↑", 3, 1), ("kid", "KID×10³ ↓", 2, 1e3), ("spectral", "spectral ↓", 3, 1),
           ("hf_power", "HF power (1 = real)", 2, 1), ("rmse", "RMSE to ODE ↓", 4, 1))


class Records:
    """Point records (name → dict) of one folder or several (a name found twice: the first folder's),
    with their bootstrap replicates (NAME-replicates.npz beside NAME.json, written by
    solvers.run_point for report-seed points) loaded on demand."""

    def __init__(self, points_dirs: Path | list[Path]):
        self.all, self._dir = {}, {}
        for folder in [points_dirs] if isinstance(points_dirs, Path) else points_dirs:
            for f in sorted(folder.glob("*.json")):
                r = json.loads(f.read_text())
                if r["name"] not in self.all:
                    self.all[r["name"]], self._dir[r["name"]] = r, folder
        self._reps = {}

    def __contains__(self, name):
        return name in self.all

    def __getitem__(self, name):
        return self.all[name]

    def estimate(self, name: str, metric: str) -> protocol.Estimate | None:
        r = self.all.get(name)
        if r is None or metric not in r or f"{metric}_ci95" not in r:
            return None
        if name not in self._reps:
            self._reps[name] = dict(np.load(self._dir[name] / f"{name}-replicates.npz"))
        reps = self._reps[name]
        key = json.loads(str(reps["bootstrap"])) if "bootstrap" in reps else {"n": r["n"]}
        n = r["rmse_seeds"] if metric == "rmse" else key["n"]   # RMSE: the first seeds, as many as the reference
        boot = protocol.Bootstrap(n, key.get("resamples", protocol.RESAMPLES), key.get("seed", 0))
        return protocol.Estimate(r[metric], reps[metric], boot)


def accounting(recs: Records) -> dict:
    """train_pflop (every stage's training up to its snapshot) and sample_gflop (per image) on
    every model record; returns the FLOPs per image of each run's network."""
    from relay_diffusion.models import RelayModel, network_flops

    flops = {}
    for r in recs.all.values():
        if "models" not in r:
            continue
        r["train_pflop"], r["sample_gflop"] = 0.0, 0.0
        for snap, nfe in zip(r["models"], r["nfe"]):
            snap = Path(snap)
            if not snap.exists() and snap.name.startswith("snapshot-"):   # measured on another machine
                from fmnist32_weights import STORE
                snap = STORE / snap.parent.name / snap.name
            run = snap.parent.name if snap.name.startswith("snapshot-") else snap.name
            if run not in flops:
                flops[run] = network_flops(RelayModel.from_pretrained(snap))
            images = int(snap.name.split("-")[1]) if snap.name.startswith("snapshot-") else float("nan")
            r["train_pflop"] += images * flops[run]["train"] / 1e15      # unknown outside a training run
            r["sample_gflop"] += nfe * flops[run]["forward"] / 1e9
    return flops


def cell(r: dict, key: str, digits: int, scale: float) -> str:
    if key not in r:
        return "–"
    v = r[key] * scale
    if f"{key}_ci95" not in r:
        return f"{v:.{digits}f}*"                            # exploratory: no interval
    lo, hi = (x * scale for x in r[f"{key}_ci95"])
    return f"{v:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def table(recs: Records, names: list, labels: dict | None = None) -> str:
    head = ("| row | train PFLOP | sample GFLOP/img (NFE) | " + " | ".join(c[1] for c in COLUMNS) + " |\n|"
            + "---|" * (3 + len(COLUMNS)) + "\n")
    rows = []
    for n in names:
        label = (labels or {}).get(n, n)
        if n not in recs:
            rows.append(f"| {label} | not measured yet |" + " |" * (1 + len(COLUMNS)))
            continue
        r = recs[n]
        train = f"{r['train_pflop']:.3f}" if np.isfinite(r.get("train_pflop", np.nan)) else "–"
        cost = f"{train} | {r['sample_gflop']:.2f} ({' + '.join(map(str, r['nfe']))})" if "nfe" in r else "– | –"
        rows.append(f"| {label} | {cost} | " + " | ".join(cell(r, *c[0:1], *c[2:]) for c in COLUMNS) + " |")
    return head + "\n".join(rows) + "\n"


def difference(recs: Records, a: str, b: str, metric: str = "fid") -> protocol.Estimate | None:
    ea, eb = recs.estimate(a, metric), recs.estimate(b, metric)
    return None if ea is None or eb is None else ea - eb


def compare(recs: Records, a: str, b: str) -> str:
    """'a − b' in FID in both feature spaces (with the paired intervals) and whether they agree."""
    diffs = [difference(recs, a, b, "fid" + s) for s in SPACES]
    if None in diffs:
        return f"| {a} − {b} | not measured yet | | |"
    same = diffs[0].measurable() == diffs[1].measurable() and np.sign(diffs[0].value) == np.sign(diffs[1].value)
    return (f"| {a} − {b} | {protocol.describe_difference(diffs[0])} | {protocol.describe_difference(diffs[1])} | "
            f"{'agree' if same else '**disagree**'} |")


# the differences the study's statements rest on: (a, b) read as "a − b"
PAIRS = [("rdm@150k", "single@300k"), ("rdm-seed1@150k", "single-seed1@300k"),
         ("single-seed1@300k", "single@300k"), ("rdm-seed1@150k", "rdm@150k"),
         ("rdm-alpha0@100k", "rdm@100k"), ("rdm-paper@100k", "rdm@100k"),
         ("rdm@150k-eta0", "rdm@150k"), ("rdm@150k-eta0.1", "rdm@150k"), ("rdm@150k-eta0.3", "rdm@150k"),
         ("rdm@150k-trunc0.5", "rdm@150k"), ("rdm@150k-trunc1.6", "rdm@150k"),
         ("rdm16@100k", "rdm@150k")]


def claim_verdict(diffs: list[protocol.Estimate | None]) -> str:
    """RDM − single-stage FID, one estimate per feature space (SPACES): met (RDM measurably no
    worse: the interval's upper end ≤ 0), not met (measurably worse), not measurable (the interval
    covers 0). The claim is stated only where both spaces give the same word (docs/evaluation.md)."""
    if not diffs or None in diffs:
        return "not measured yet"

    def word(d):
        lo, hi = d.interval()
        return "met" if hi <= 0 else "not met" if lo > 0 else "no measurable difference"

    words = [word(d) for d in diffs]
    shown = "; ".join(f"{space.lstrip('@') or 'fmnist'} {protocol.describe_difference(d)}"
                      for space, d in zip(SPACES, diffs))
    if len(set(words)) > 1:
        verdict = f"not measurable (the feature spaces disagree: {', '.join(words)})"
    else:
        verdict = words[0] if words[0] != "no measurable difference" else f"not measurable ({words[0]})"
    return f"{verdict}: RDM − single-stage FID {shown}"


def seed1_rows(recs: Records, chosen: dict, budgets: list) -> list[str]:
    """At the budgets measured on both training seeds (solvers_points.TWIN_BUDGET_NFES): the same
    chosen samplers on the second seed's models, so training-seed spread stands beside the verdict."""
    from solvers_points import TWIN_BUDGET_NFES

    twins = {budget(n) for n in TWIN_BUDGET_NFES}
    both = [b for b in budgets if b in twins and all(b in chosen.get(m, {}) for m in ("single", "rdm8"))]
    if not both:
        return []
    out = ["", "The same samplers with the second training seed's models (single32-seed1; base8-seed1 + "
               "relay32-seed1):", "",
           "| budget GFLOP/img | FID single, seed 1 | FID RDM, seed 1 | RDM − single FID, seed 1 | same, 2nd space |",
           "|---|---|---|---|---|"]
    for b in both:
        sn, rn = (f"report-seed1-{chosen[m][b]['name']}" for m in ("single", "rdm8"))
        cells = [f"{b:.2f}"] + [cell(recs[n], "fid", 3, 1) if n in recs else "not measured yet" for n in (sn, rn)]
        for suffix in SPACES:
            d = difference(recs, rn, sn, "fid" + suffix)
            cells.append(protocol.describe_difference(d) if d else "not measured yet")
        out.append("| " + " | ".join(cells) + " |")
    return out


def verdict_section(recs: Records, work: Path, criterion: str) -> list[str]:
    search = work / "search"
    what = {"accuracy": "each model with its most accurate sampler within the budget (smallest RMSE to its "
                        "converged ODE on the selection seeds)",
            "fid": "each model with its sampler of lowest FID within the budget (selection seeds)"}[criterion]
    out = [f"### Verdict at matched {'accuracy' if criterion == 'accuracy' else 'FID-selected sampler'}", "",
           what[0].upper() + what[1:] + "; every number below on the report seeds.", ""]
    chosen = budget_choices(criterion, search)
    budgets = sorted(set(chosen.get("single", {})) | set(chosen.get("rdm8", {})))
    out += ["| budget GFLOP/img | single-stage sampler (NFE) | RDM sampler (NFE) | FID single | FID RDM | "
            "RDM − single FID | same, 2nd space | RMSE single | RMSE RDM |", "|" + "---|" * 9]

    def shown(name, metric, digits):                   # "–": no sampler within the budget
        return "–" if name is None else cell(recs[name], metric, digits, 1) if name in recs else "not measured yet"

    for b in budgets:
        s, r = chosen.get("single", {}).get(b), chosen.get("rdm8", {}).get(b)
        sn, rn = (f"report-{x['name']}" if x else None for x in (s, r))
        cells = [f"{b:.2f}", f"{s['name']} ({'+'.join(map(str, s['nfe']))})" if s else "–",
                 f"{r['name']} ({'+'.join(map(str, r['nfe']))})" if r else "–"]
        cells += [shown(name, "fid", 3) for name in (sn, rn)]
        for suffix in SPACES:
            d = difference(recs, rn, sn, "fid" + suffix) if sn and rn else None
            cells.append(protocol.describe_difference(d) if d else "–" if not (sn and rn) else "not measured yet")
        cells += [shown(name, "rmse", 4) for name in (sn, rn)]
        out.append("| " + " | ".join(cells) + " |")
    out += seed1_rows(recs, chosen, budgets)
    claim = claim_choices(criterion, search)
    out.append("")
    if claim is None:
        return out + ["The paper's claim: not measured yet (the search has not finished).", ""]
    single = f"report-{claim['single']['name']}"
    half = claim["rdm_half_cost"]
    same = claim["rdm_same_cost"]
    cheapest = min(chosen["rdm8"].values(), key=cost_gflop)

    def versus(rdm_name):
        return claim_verdict([difference(recs, rdm_name, single, "fid" + s) for s in SPACES])

    out.append(f"The single-stage model's best setting under this criterion: `{claim['single']['name']}` "
               f"({claim['cost']:.2f} GFLOP/img).")
    out.append(f"- **Sampling cost ≤ 50 %**: RDM within {claim['cost'] / 2:.3f} GFLOP/img"
               + (f" (`{half['name']}`): " + versus(f"report-{half['name']}") if half else
                  f": not measurable — no RDM chain that cheap was searched (the cheapest, `{cheapest['name']}`, "
                  f"costs {cost_gflop(cheapest):.2f} GFLOP/img: the search starts at 3 evaluations per stage)."))
    out.append("- **Training compute ≤ 50 %**: RDM with 75k relay images (46 % of the single-stage model's "
               "training compute), at the same sampling cost "
               + (f"(`{same['name']}`): "
                  + versus(f"report-half-training-{same['name']}")
                  if same else ": no RDM chain within that cost — not measurable."))
    return out + [""]


def code_versions(work: Path) -> list:
    """The distinct (commit, dirty) pairs the study's phases ran from, in first-use order."""
    seen = []
    log = work / "provenance.jsonl"
    for line in (log.read_text().splitlines() if log.exists() else []):
        e = json.loads(line)
        key = [e["commit"] or "unknown", e["dirty"]]
        if key not in seen:
            seen.append(key)
    return seen


def write_report(work: Path, doc: Path = DOC, fig: Path = FIG) -> None:
    recs = Records(work / "search" / "points")
    flops = accounting(recs)
    fig.mkdir(parents=True, exist_ok=True)
    code = code_versions(work)
    (fig / "results.json").write_text(json.dumps({"flops_per_image": flops, "code_versions": code,
                                                  "results": recs.all}, indent=1) + "\n")
    made = plots(recs, fig, work / "search")
    names = list(EVALS)                      # real-test first: what a perfect model scores
    seed_rows = ["single@300k", "single-seed1@300k", "rdm@150k", "rdm-seed1@150k"]
    lines = [
        "# Study: relay diffusion vs a single-stage model at equal compute (Fashion-MNIST 32×32)", "",
        "Reproduce from scratch (resumable; hours on 2 CPU cores, see the driver's docstring):", "",
        "```bash", "python studies/fmnist32.py --workdir runs/study-fmnist32", "```", "",
        "Generated by `studies/fmnist32_report.py` from the records; raw numbers, weight SHA-256s and "
        "settings in [`docs/study/results.json`](study/results.json).", "",
        "## Protocol", "",
        "- Every sampler setting was chosen on the **selection seeds** (0–999) by the same search for every "
        "model: every solver × two grids of its family × 3 … 35 evaluations (solvers_points.py, plan "
        "study-search). Every number below is measured on the disjoint **report seeds** "
        "(1,000,000–1,009,999; RMSE on the first 1,000) — see docs/evaluation.md, \"Measurement protocol\".",
        "- `v [lo, hi]`: value and 95 % paired-bootstrap interval (1,000 resamples of the seeds, the reference "
        "set fixed). Differences are paired (same seeds, same resamples); one whose interval covers 0 is "
        "reported as \"no measurable difference\". Recall's intervals are conservative.",
        "- Two independent feature spaces: the bundled Fashion-MNIST classifier (`fmnist`) and a differently "
        "built and seeded one (`fmnist-b`). A ranking is stated only where both agree.",
        "- RMSE: to the same seed's image from the model's converged ODE (pixels in [−1, 1]); defined for "
        "deterministic samplers of the final single-stage and 8→32 models.",
        "- Each row names its training run; the weights' SHA-256 is in results.json.",
        "- Code: " + (", ".join(f"`{c[:12]}`" + (" (local changes)" if d else "") for c, d in code)
                      or "not recorded") + " (git commits the phases ran from; studies/fmnist32.py records them).", ""]
    lines += ["## All rows", "", table(recs, names)]
    lines += ["## Training-seed spread (headline models, official samplers)", "", table(recs, seed_rows)]
    lines += ["## Differences the statements rest on", "",
              "| a − b (FID) | feature space fmnist | feature space fmnist-b | spaces |", "|---|---|---|---|"]
    lines += [compare(recs, a, b) for a, b in PAIRS] + [""]
    lines += ["## Verdicts", ""]
    for criterion in CRITERIA:
        lines += verdict_section(recs, work, criterion)
    lines += ["## Plots", ""] + [f"![{m}]({fig.name}/{m})" for m in made] + [""]
    doc.write_text("\n".join(lines))


def chosen_series(search: Path) -> dict[str, list[str]]:
    """Each model's chosen samplers under each criterion, as report-seed point names in budget
    order (a sampler chosen at several budgets once): the curves of FID against sampling cost."""
    out = {}
    for criterion in CRITERIA:
        for model, label in (("single", "single-stage"), ("rdm8", "RDM 8→32")):
            names = [f"report-{r['name']}" for _, r in sorted(budget_choices(criterion, search).get(model, {}).items())]
            out[f"{label}, chosen by {'accuracy' if criterion == 'accuracy' else 'FID'}"] = list(dict.fromkeys(names))
    return out


def plots(recs: Records, fig_dir: Path, search: Path) -> list:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made = []
    for key, label, fname, groups in (
            ("train_pflop", "training compute (PFLOP, network FLOPs × images)", "fid_vs_train.png",
             {"single-stage, EDM Heun 35 NFE": ["single@100k", "single@200k", "single@300k"],
              "RDM 8→32, official samplers": ["rdm@50k", "rdm@100k", "rdm@150k"],
              "RDM 16→32, official samplers": ["rdm16@50k", "rdm16@100k"]}),
            ("sample_gflop", "sampling cost (GFLOP per image)", "fid_vs_sampling.png", chosen_series(search))):
        fig, ax = plt.subplots(figsize=(5.5, 3.6))
        for g, names in groups.items():
            pts = sorted((recs[n][key], recs[n]["fid"], *recs[n]["fid_ci95"]) for n in names if n in recs)
            if not pts:
                continue
            x, y, lo, hi = (np.array(v) for v in zip(*pts))
            style = dict(color="C1" if g.startswith("RDM") else "C0", ls="--") if "chosen by FID" in g else {}
            ax.errorbar(x, y, yerr=[y - lo, hi - y], marker="o", capsize=3, label=g, **style)
        ax.set_xlabel(label)
        ax.set_ylabel("feature FID, report seeds (↓)")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(fig_dir / fname, dpi=110)
        plt.close(fig)
        made.append(fname)
    return made


def phase_report(work: Path) -> None:
    write_report(work)
