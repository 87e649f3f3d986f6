"""docs/distillation-study.md from the distillation study's records (studies/distill.py): tables
per stage and chain with 95 % paired-bootstrap intervals, the issue's targets as met / not met /
not measurable, the single-stage comparison and the compute accounting. Rows not measured yet say
so; nothing here is typed in by hand."""

from __future__ import annotations

import time
from pathlib import Path

from distill_points import (CHAIN_STEPS, CROSS_BASE_STEPS, CROSS_RELAY_STEPS, GUIDANCE, SMALL_CHAINS, SOLVER_NFES,
                            STAGES, TEACHER_STEPS, VARIANTS, base_with_fast_relay, chain_selection_fid, chosen_chain,
                            student_steps)
from fmnist32_report import COLUMNS, SPACES, Records, cell
from fmnist32_report import difference as paired_difference

from relay_diffusion.evaluation import protocol


def relative(recs: Records, a: str, b: str, metric: str = "fid") -> protocol.Estimate | None:
    """a / b − 1 with its paired-bootstrap replicates (both on the same seeds and resamples)."""
    ea, eb = recs.estimate(a, metric), recs.estimate(b, metric)
    if ea is None or eb is None:
        return None
    if ea.bootstrap != eb.bootstrap:
        raise ValueError(f"{a} and {b} were not measured on the same seeds")
    return protocol.Estimate(ea.value / eb.value - 1, ea.replicates / eb.replicates - 1, ea.bootstrap)


def percent(e: protocol.Estimate | None) -> str:
    if e is None:
        return "not measured yet"
    lo, hi = e.interval()
    return f"{100 * e.value:+.1f} % [{100 * lo:+.1f}, {100 * hi:+.1f}]"


def target(e: protocol.Estimate | None, limit: float = 0.05) -> str:
    """'met' when the interval's upper end is at most +limit, 'not met' when its lower end is
    above it, else 'not measurable'."""
    if e is None:
        return "not measured yet"
    lo, hi = e.interval()
    return "met" if hi <= limit else "not met" if lo > limit else "not measurable"


def against(recs: Records, a: str, b: str, verdict: bool = True) -> str:
    """a relative to b in FID, in each feature space, each with the target's verdict when `verdict`,
    then the overall word: a target is met only where both spaces say so (docs/evaluation.md)."""
    parts, words = [], []
    for space in SPACES:
        e = relative(recs, a, b, "fid" + space)
        words.append(target(e))
        parts.append(("2nd space: " if space else "") + percent(e) + (f" — {words[-1]}" if verdict and e is not None else ""))
    text = "; ".join(parts)
    if verdict and "not measured yet" not in words:
        overall = words[0] if len(set(words)) == 1 else "the feature spaces disagree: not claimed as met"
        text += f" ⇒ **{overall}**"
    return text


def difference(recs: Records, *pairs: tuple[str, str]) -> str:
    """FID of a − b for one pair (a, b), of (a − b) − (c − d) for two, paired, in each feature space
    (a ranking is stated in both, docs/evaluation.md)."""
    texts = []
    for space in SPACES:
        diffs = [paired_difference(recs, a, b, "fid" + space) for a, b in pairs]
        if None in diffs:
            text = "not measured yet"
        else:
            text = protocol.describe_difference(diffs[0] if len(diffs) == 1 else diffs[0] - diffs[1])
        texts.append(("2nd space: " if space else "") + text)
    return "; ".join(texts)


def rows(recs: Records, names: list[tuple[str, str]], stage_gflop: dict | None = None) -> str:
    """A table of report rows; with stage_gflop (row name → each stage's forward GFLOP) a column of
    GFLOP per image from the record's evaluations per stage."""
    extra = ["GFLOP / image"] if stage_gflop is not None else []
    head = ("| row | NFE | " + " | ".join(extra + [c[1] for c in COLUMNS]) + " |\n|"
            + "---|" * (2 + len(extra) + len(COLUMNS)) + "\n")
    out = []
    for name, label in names:
        if name not in recs:
            out.append(f"| {label} | not measured yet |" + " |" * (len(extra) + len(COLUMNS)))
            continue
        r = recs[name]
        cells = [cell(r, c[0], c[2], c[3]) for c in COLUMNS]
        if stage_gflop is not None:
            per_stage = stage_gflop.get(name)
            cells.insert(0, f"{sum(n * g for n, g in zip(r['nfe'], per_stage)):.2f}" if per_stage else "–")
        out.append(f"| {label} | {' + '.join(map(str, r['nfe']))} | " + " | ".join(cells) + " |")
    return head + "\n".join(out) + "\n"


def solver_rows(recs: Records, name: str, nfe: int) -> list[tuple[str, str]]:
    """The report rows of the solvers chosen at `nfe` (by FID and by RMSE) for stage `name`."""
    prefix = f"distill-rep-{name}-"
    found = sorted(n for n in recs.all if n.startswith(prefix) and n.endswith(f"-nfe{nfe}")
                   and "-distilled-" not in n and "-one-step-" not in n and "-teacher-" not in n
                   and "-fast-" not in n)
    return [(n, f"best solver: {n[len(prefix):]}") for n in found]


def stage_section(recs: Records, chain: str, stage: str, name: str) -> list[str]:
    out = [f"### {name}: the {stage} stage of {chain}", ""]
    names = [(f"distill-rep-{name}-one-step-nfe1", "teacher, one denoise (1)")]
    for steps in student_steps(stage):
        names.append((f"distill-rep-{name}-distilled-nfe{steps}", f"distilled, {steps}"))
        if steps in SOLVER_NFES:
            names += solver_rows(recs, name, steps)
    names.append((f"distill-rep-{name}-teacher-nfe{TEACHER_STEPS[stage]}", "teacher's sampler (round 1)"))
    if chain != "single":
        fast = f"distill-rep-{chain}-{stage}-fast-nfe{8 if stage == 'relay' else 12}"
        names.append((fast, "--preset fast's stage"))
    out += [rows(recs, names), "Distilled − best solver at the same evaluations (FID, paired):", ""]
    for steps in student_steps(stage):
        for sname, label in solver_rows(recs, name, steps):
            text = difference(recs, (f"distill-rep-{name}-distilled-nfe{steps}", sname))
            out.append(f"- {steps} evaluations, vs {label[len('best solver: '):]}: {text}")
    return out + [""]


def chain_section(recs: Records, chain: str, points: Path) -> list[str]:
    """The distilled chains of `chain`, the targets (demo) and the guidance scales; `points`: the
    solver-study folder holding this chain's selection records."""
    fast = f"distill-rep-{chain}-chain-fast"
    names = [(f"distill-rep-{chain}-chain-b{b}r{r}", f"distilled {b} + {r}") for b, r in CHAIN_STEPS]
    names += [(f"distill-rep-{chain}-chain-teacher", "teachers' samplers (16 + 8)"), (fast, "--preset fast (12 + 8)")]
    out = [f"### {chain}: whole chains", "", rows(recs, names)]
    pick = chosen_chain(points / "points", chain)
    if chain == "demo":
        out += ["Targets (relative FID difference in each feature space, paired 95 % interval; "
                "met = upper end ≤ +5 %):", ""]
        out.append("- relay stage at 1 evaluation vs the 8-evaluation dpmpp-2m-pc (same base samples): "
                   + against(recs, "distill-rep-demo-relay-distilled-nfe1", "distill-rep-demo-relay-fast-nfe8"))
        out.append("- base stage at 4 evaluations vs the 12-evaluation fast base (same relay): "
                   + against(recs, "distill-rep-demo-base-distilled-nfe4", "distill-rep-demo-base-fast-nfe12"))
        if pick:
            out.append(f"- whole chain at {sum(pick)} evaluations ({pick[0]} + {pick[1]}, chosen on the selection "
                       f"seeds among the chains of ≤ 4) vs --preset fast (20): "
                       + against(recs, f"distill-rep-demo-chain-b{pick[0]}r{pick[1]}", fast))
        out.append("- the 2-evaluation chain (1 + 1) vs --preset fast: "
                   + against(recs, "distill-rep-demo-chain-b1r1", fast, verdict=False))
        if pick:                                            # what the FID spaces weigh differently
            out += diversity(recs, f"distill-rep-demo-chain-b{pick[0]}r{pick[1]}", fast, "chosen chain ")
        out.append("")
    out += cross_section(recs, chain, fast)
    if pick:
        b, r = pick
        gnames = []
        for w in GUIDANCE:
            gnames += [(f"distill-rep-{chain}-chain-b{b}r{r}-w{w:g}", f"distilled {b} + {r}, w = {w:g}"),
                       (f"distill-rep-{chain}-chain-fast-w{w:g}", f"--preset fast with CFG, w = {w:g}")]
        out += ["Guidance (distilled as an input, Eq. D6; fast: classifier-free, two evaluations per step):", "",
                rows(recs, gnames)]
    return out


def diversity(recs: Records, a: str, fast: str, label: str = "") -> list[str]:
    """Recall and precision of chain a − --preset fast, paired (measured rows only)."""
    out = []
    for metric in ("recall", "precision"):
        ea, eb = recs.estimate(a, metric), recs.estimate(fast, metric)
        if ea is not None and eb is not None:
            out.append(f"- {metric}, {label}− --preset fast: {protocol.describe_difference(ea - eb)}")
    return out


def cross_section(recs: Records, chain: str, fast: str) -> list[str]:
    """Which student costs a distilled chain its quality: each stage's student under the other
    stage's fast sampler, against --preset fast (the same seeds: paired)."""
    names = [(f"distill-rep-{chain}-chain-fastbase-r{r}", f"fast base (12) + distilled relay {r}")
             for r in CROSS_RELAY_STEPS]
    names += [(f"distill-rep-{chain}-chain-b{b}-fastrelay", f"distilled base {b} + fast relay (8)")
              for b in CROSS_BASE_STEPS]
    out = ["", "Each student under the other stage's fast sampler (which student costs the chain its quality):", "",
           rows(recs, names + [(fast, "--preset fast (12 + 8)")]), ""]
    for name, label in names:
        out.append(f"- {label} − --preset fast, FID: {difference(recs, (name, fast))}")
    # the interaction: what the relay student does to the distilled base's samples, minus what it
    # does to the fast base's (0 if the two students' effects simply add up)
    for b in CROSS_BASE_STEPS:
        for r in CROSS_RELAY_STEPS:
            both, base_only = f"distill-rep-{chain}-chain-b{b}r{r}", f"distill-rep-{chain}-chain-b{b}-fastrelay"
            relay_only = f"distill-rep-{chain}-chain-fastbase-r{r}"
            out.append(f"- interaction, distilled relay {r} on the distilled base {b} against on the fast base "
                       f"((distilled {b} + {r} − distilled base {b} + fast relay) − (fast base + distilled relay {r} "
                       f"− fast)), FID: {difference(recs, (both, base_only), (relay_only, fast))}")
    return out + [""]


# what each follow-up variant (distill_points.VARIANTS) changes, and its rows' label
VARIANT_TEXT = {
    "-from-b2": ("the relay distilled from the base student's samples",
                 "The relay stage distilled again, its first step starting from the 2-step base student's samples "
                 "(`rdm distill --relay-starts`, docs/distillation.md §5) instead of downsampled training images; "
                 "the same teacher, base student, rounds and images.", "relay from the base's samples"),
    "-plain": ("both students distilled without guidance as an input",
               "Both stages distilled again without `--guidance-range` (as the study's models' students, which "
               "compose); the same teachers, rounds and images. Guidance is then classifier-free, two evaluations "
               "per step at w ≠ 1.", "no guidance input"),
}


def variant_section(recs: Records, suffix: str, points: Path) -> list[str]:
    """A follow-up variant (VARIANTS): its chains of ≤ 4 evaluations, the one chosen on the selection
    seeds against --preset fast (the target restated) and against the first students' chosen
    chain, each student under the other stage's fast sampler, the interaction, guidance."""
    chain, _, relay_name = VARIANTS[suffix]
    title, what, label = VARIANT_TEXT[suffix]
    fast = f"distill-rep-{chain}-chain-fast"
    names = [(f"distill-rep-{chain}-chain-b{b}r{r}{suffix}", f"distilled {b} + {r}, {label}") for b, r in SMALL_CHAINS]
    first, pick = chosen_chain(points / "points", chain), chosen_chain(points / "points", chain, suffix)
    if first:
        names.append((f"distill-rep-{chain}-chain-b{first[0]}r{first[1]}",
                      f"distilled {first[0]} + {first[1]} (the first students' chosen chain)"))
    cross = [(f"distill-rep-{chain}-chain-fastbase-r{r}{suffix}", f"fast base (12) + this relay {r}")
             for r in CROSS_RELAY_STEPS]
    cross += [(base_with_fast_relay(suffix, b), f"this base {b} + fast relay (8)") for b in CROSS_BASE_STEPS]
    names += cross + [(fast, "--preset fast (12 + 8)")]
    out = [f"### {chain}: {title} ({suffix[1:]})", "", what + " Its chain of ≤ 4 evaluations is chosen on the "
           "selection seeds as before.", "", rows(recs, names), ""]
    if pick:
        a = f"distill-rep-{chain}-chain-b{pick[0]}r{pick[1]}{suffix}"
        line = (f"- chosen on the selection seeds: {pick[0]} + {pick[1]} (selection FID "
                f"{chain_selection_fid(points / 'points', chain, pick, suffix):.3f}")
        if first:
            line += (f"; the first students' {first[0]} + {first[1]}: "
                     f"{chain_selection_fid(points / 'points', chain, first):.3f}")
        out.append(line + ")")
        out.append(f"- whole chain at {sum(pick)} evaluations vs --preset fast (20): " + against(recs, a, fast))
        if first:
            out.append(f"- against the first students' chosen chain, FID: "
                       f"{difference(recs, (a, f'distill-rep-{chain}-chain-b{first[0]}r{first[1]}'))}")
        out += diversity(recs, a, fast)
    out.append("- the 2-evaluation chain (1 + 1) vs --preset fast: "
               + against(recs, f"distill-rep-{chain}-chain-b1r1{suffix}", fast, verdict=False))
    for name, text in cross:
        out.append(f"- {text} − --preset fast, FID: {difference(recs, (name, fast))}")
    for b in CROSS_BASE_STEPS:
        for r in CROSS_RELAY_STEPS:
            both, relay_only = f"distill-rep-{chain}-chain-b{b}r{r}{suffix}", f"distill-rep-{chain}-chain-fastbase-r{r}{suffix}"
            out.append(f"- interaction, this relay {r} on this base {b} against on the fast base, FID: "
                       f"{difference(recs, (both, base_with_fast_relay(suffix, b)), (relay_only, fast))}")
    if pick:
        b, r = pick
        out += ["", rows(recs, [(f"distill-rep-{chain}-chain-b{b}r{r}{suffix}-w{w:g}",
                                 f"distilled {b} + {r}, {label}, w = {w:g}") for w in GUIDANCE])]
    return out + [""]


def single_section(recs: Records, acc: dict) -> list[str]:
    """Does a relay stage distil more easily? The distilled single-stage model (same distillation
    FLOPs as base + relay) against the distilled RDM chain at equal total evaluations and at about
    equal FLOPs per image (1 + s against s: the 8×8 base evaluation is the difference), and each
    against its own teacher's sampler. acc: distill.accounting (each network's forward GFLOP)."""
    single = [(f"distill-rep-single-distilled-nfe{s}", f"single, distilled {s}") for s in (1, 2, 4)]
    single.append(("distill-rep-single-teacher-nfe16", "single, teacher's sampler"))
    rdm = [(f"distill-rep-rdm8-chain-b{b}r{r}", f"RDM 8→32, distilled {b} + {r}")
           for b, r in ((1, 1), (1, 2), (2, 2), (1, 4), (4, 1))]
    rdm.append(("distill-rep-rdm8-chain-teacher", "RDM 8→32, teachers' samplers"))
    forward = {name: a["forward_gflop"] for name, a in acc.items()}
    gflop = {}
    if {"single", "rdm8-base", "rdm8-relay"} <= set(forward):
        gflop = {**{n: [forward["single"]] for n, _ in single},
                 **{n: [forward["rdm8-base"], forward["rdm8-relay"]] for n, _ in rdm}}
    out = ["### Does a relay chain distil more easily than a single-stage model?", "",
           rows(recs, single + rdm, gflop), ""]

    def compare(a: str, b: str, what: str) -> None:
        out.append(f"- RDM − single-stage FID {what}: {difference(recs, (a, b))}")
    for r, s in ((1, 2), (2, 4)):
        compare(f"distill-rep-rdm8-chain-b{r}r{r}", f"distill-rep-single-distilled-nfe{s}",
                f"at {s} evaluations ({r} + {r} against {s})")
    for s in (1, 2, 4):
        compare(f"distill-rep-rdm8-chain-b1r{s}", f"distill-rep-single-distilled-nfe{s}",
                f"at about equal FLOPs (1 + {s} against {s}; RDM adds one 8×8 evaluation)")
    loss = difference(recs, ("distill-rep-rdm8-chain-b2r2", "distill-rep-rdm8-chain-teacher"),
                      ("distill-rep-single-distilled-nfe4", "distill-rep-single-teacher-nfe16"))
    out.append(f"- loss to distillation at 4 evaluations, RDM (distilled − teacher) minus single-stage "
               f"(distilled − teacher): {loss}")
    return out + [""]


# the distillations that make each distilled RDM chain (distill.py DISTILLATIONS)
CHAIN_PARTS = {"demo": ("demo-base", "demo-relay"), "rdm8": ("rdm8-base", "rdm8-relay")}


def chain_compute(acc: dict) -> list[str]:
    """Per RDM chain: its stages' distillation FLOPs and CPU hours against its teachers' training
    FLOPs (the issue's target for the demo chain: ≤ 50 %), and the single-stage model's FLOPs
    against RDM 8→32's (matched by its round images). Counts, not estimates: no intervals."""
    out = []
    for chain, parts in CHAIN_PARTS.items():
        if not all(acc.get(p, {}).get("teacher_train_pflop") for p in parts):
            continue
        distil = sum(acc[p]["distill_pflop"] for p in parts)
        trained = sum(acc[p]["teacher_train_pflop"] for p in parts)
        line = (f"- {chain} chain (base + relay): {distil:.3f} PFLOP, {sum(acc[p]['cpu_hours'] for p in parts):.2f} "
                f"CPU h, against {trained:.3f} PFLOP of its teachers' training: {100 * distil / trained:.0f} %")
        if chain == "demo":
            line += f" — target ≤ 50 %: {'met' if distil <= 0.5 * trained else 'not met'}"
        out.append(line)
    if "single" in acc and all(p in acc for p in CHAIN_PARTS["rdm8"]):
        rdm = sum(acc[p]["distill_pflop"] for p in CHAIN_PARTS["rdm8"])
        out.append(f"- single-stage 32×32: {acc['single']['distill_pflop']:.3f} PFLOP against RDM 8→32's {rdm:.3f} "
                   "(its round images are chosen for equal FLOPs)")
    return out


def accounting_section(acc: dict) -> list[str]:
    out = ["## Compute", "",
           "FLOPs counted per network evaluation (torch.utils.flop_counter: convolutions, matmuls, attention); "
           "a round image costs the student's forward + backward and the teacher's evaluations for two steps "
           "(twice in round 1 where guidance is distilled too: the demo students; the study's are distilled "
           "without guidance, docs/distillation.md §6). CPU hours from the rounds' status lines; the "
           "training loss of each round at its start → half → end (a loss still falling in the second half "
           "says the round's images did not suffice).", "",
           "| distillation | rounds × images | teacher evaluations / image per round | distill PFLOP | "
           "teacher training PFLOP (images) | fraction | CPU h | loss per round |", "|---|---|---|---|---|---|---|---|"]
    for name, a in acc.items():
        teacher = (f"{a['teacher_train_pflop']:.3f} ({a['teacher_images']:,})" if a["teacher_train_pflop"]
                   else "unknown")
        frac = f"{100 * a['fraction_of_teacher']:.0f} %" if "fraction_of_teacher" in a else "–"
        out.append(f"| {name} | {a['rounds']} × {a['round_images']:,} | "
                   f"{', '.join(f'{e:g}' for e in a['teacher_evaluations_per_image'])} | {a['distill_pflop']:.3f} | "
                   f"{teacher} | {frac} | {a['cpu_hours']:.2f} | "
                   f"{'; '.join(' → '.join(f'{v:.2g}' for v in r) for r in a.get('round_losses', [])) or '–'} |")
    return out + [""] + chain_compute(acc) + [""]


def write_report(points_dirs: dict[str, Path], doc: Path, acc: dict) -> None:
    """points_dirs: chain (demo, rdm8, single) → the solver-study folder of its points."""
    recs = Records([d / "points" for d in dict.fromkeys(points_dirs.values()) if (d / "points").exists()])
    lines = ["# Distillation study (generated)", "",
             f"Written by `python studies/distill.py --write-docs` on {time.strftime('%Y-%m-%d')} from "
             f"{', '.join(map(str, dict.fromkeys(points_dirs.values())))}; the method is docs/distillation.md. Settings were chosen on the selection seeds "
             f"({protocol.SELECTION.describe(1000)}); every row here is on the report seeds "
             f"({protocol.REPORT.describe(10_000)}; RMSE on the first 1,000 against the stage's converged ODE). "
             "Each value is followed by its 95 % bootstrap interval; differences are paired over the same seeds.",
             "", "## Stages", ""]
    for (chain, stage), name in STAGES.items():
        if any(n.startswith(f"distill-rep-{name}-") for n in recs.all):
            lines += stage_section(recs, chain, stage, name)
    lines += ["## Chains", ""]
    for chain in ("demo", "rdm8"):
        if any(n.startswith(f"distill-rep-{chain}-chain") for n in recs.all):
            lines += chain_section(recs, chain, points_dirs[chain])
        for suffix, (c, _, _) in VARIANTS.items():
            if c == chain and any(n.startswith(f"distill-rep-{chain}-chain-b") and n.endswith(suffix) for n in recs.all):
                lines += variant_section(recs, suffix, points_dirs[chain])
    if any(n.startswith("distill-rep-single-") for n in recs.all):
        lines += single_section(recs, acc)
    lines += accounting_section(acc)
    doc.write_text("\n".join(lines).rstrip() + "\n")
    print(f"wrote {doc}")

