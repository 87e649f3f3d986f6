"""The measurement plans of the distillation study (studies/distill.py, docs/distillation.md
"Study"), in the solver study's engine (studies/solvers.py): each point is a chain, a sampler
setting per stage, a seed set and a sample count, with a distilled model directory swapped in
for a stage where the point measures one (`stage_models`).

Selection points (1,000 selection seeds) choose: the best solver at each evaluation count per
stage (by FID and by RMSE to the stage's converged ODE) and the distilled chain of ≤ 4
evaluations that is bundled. Report points (10,000 report seeds; RMSE on the first 1,000) state
the results; every choice they apply was made on selection records (`protocol.check_disjoint`).
"""

from __future__ import annotations

import json
from pathlib import Path

from solvers_points import (BASE_GRIDS, CONVERGED_BASE, CONVERGED_RELAY, FIXED_RELAY, MIN_SIGMAS, MULTISTEP,
                            RELAY_GRIDS, REFERENCE_SAMPLES, SAMPLES_FULL, SAMPLES_QUICK, BEST_START,
                            chain_point, reference_name, relay)

from relay_diffusion.evaluation import protocol
from relay_diffusion.sampling.presets import chain_recipe_dicts

STEPS = (1, 2, 4, 8)                  # evaluations per stage of the distilled students
SOLVER_NFES = (2, 4, 8)               # the solvers' counts compared with them (1: the one-step denoise)
CHAIN_STEPS = [(b, r) for b in (1, 2, 4) for r in (1, 2, 4)]     # distilled chains (base, relay)
SMALL_CHAINS = [(b, r) for b, r in CHAIN_STEPS if b + r <= 4]    # the "≤ 4 evaluations"
CROSS_RELAY_STEPS = (1, 2)             # the fast base (12) under a distilled relay of these steps
CROSS_BASE_STEPS = (2,)                # a distilled base of these steps under the fast relay (8)
GUIDANCE = (1.5, 2.0, 3.0)            # w besides 1 (Eq. D6: distilled in the range [1, 3])
# the follow-up (docs/distillation.md §7): other students of a chain (distill.py DISTILLATIONS), each
# pair searched over SMALL_CHAINS like the first; points' name suffix → (chain, base, relay distillation)
VARIANTS = {"-from-b2": ("demo", "demo-base", "demo-relay-from-b2"),     # relay started from the base student's
                                                                          # samples (--relay-starts)
            "-plain": ("demo", "demo-base-plain", "demo-relay-plain")}    # no guidance as an input
CRITERIA = ("fid", "accuracy")

FAST_BASE, FAST_RELAY = chain_recipe_dicts("fast")
TEACHER_STEPS = {"base": 16, "relay": 8}          # the first teacher's grid (distill.py DISTILLATIONS)


def stage_dir(work: Path, distillation: str, steps: int) -> str:
    """The student with `steps` evaluations of a distillation (distill.py): the last snapshot of
    the round that made it (it need not exist yet: its points wait)."""
    from distill import student_dir

    return str(student_dir(work, distillation, steps))


def student_steps(stage: str) -> tuple:
    """The students' evaluation counts of a stage: below its first teacher's."""
    return tuple(s for s in STEPS if s < TEACHER_STEPS[stage])


def one_step_dir(work: Path, distillation: str) -> str:
    """The teacher as a one-evaluation sampler (distill.py one_step_teacher)."""
    return str(Path(work) / "one-step" / distillation)


# ---- the stages of a chain, each point kind -------------------------------------------------

def relay_point(chain: str, n: int, seeds: str, settings: dict, model: str | None = None) -> dict:
    """The relay stage on the chain's shared base samples (EDM Heun 18 steps), judged against the
    converged relay ODE on those samples."""
    pt = relay(chain, n, reference_name(chain, seeds) if settings.get("eta", 0.2) == 0 or model else None,
               seeds, **settings)
    return dict(pt, stage_models=[None, model]) if model else pt


def base_point(chain: str, n: int, seeds: str, settings: dict, model: str | None = None) -> dict:
    """The base stage under the fixed accurate relay (8 deterministic evaluations), judged against
    the converged base ODE under the same relay."""
    pt = chain_point(chain, n, settings, FIXED_RELAY, reference_name(chain, seeds, "base-reference"), seeds)
    return dict(pt, stage_models=[model, None]) if model else pt


def chain_point_of(chain: str, n: int, seeds: str, base: dict, relay_settings: dict | None,
                   models=(None, None)) -> dict:
    """A whole chain, judged against the chain's converged ODE (base and relay both converged)."""
    pt = chain_point(chain, n, base, relay_settings,
                     reference_name(chain, seeds, "chain-reference" if relay_settings is not None else "reference"),
                     seeds)
    return dict(pt, stage_models=list(models)) if any(models) else pt


def references(chain: str, seeds: str) -> dict:
    """The converged ODEs (first 1,000 seeds) the RMSE of `chain`'s points is measured against."""
    n = REFERENCE_SAMPLES
    pts = {reference_name(chain, seeds): relay(chain, n, None, seeds, **CONVERGED_RELAY),
           reference_name(chain, seeds, "base-reference"): chain_point(chain, n, CONVERGED_BASE, FIXED_RELAY,
                                                                       None, seeds),
           reference_name(chain, seeds, "chain-reference"): chain_point(chain, n, CONVERGED_BASE,
                                                                        CONVERGED_RELAY, None, seeds)}
    return {k: dict(v, save=True) for k, v in pts.items()}


def single_reference(seeds: str) -> dict:
    return {reference_name("single", seeds): dict(chain_point("single", REFERENCE_SAMPLES, CONVERGED_BASE, None,
                                                              None, seeds), save=True)}


# ---- selection: the solvers' search and the distilled students, 1,000 selection seeds ---------

def solver_grid(stage: str) -> dict:
    return BASE_GRIDS if stage == "base" else RELAY_GRIDS


def solver_settings(stage: str, solver: str, grid: str, nfe: int) -> dict:
    extra = dict(eta=0.0, **BEST_START) if stage == "relay" else {}
    return dict(solver=solver, num_steps=nfe, **solver_grid(stage)[grid], **extra)


def stage_point(chain: str, stage: str, n: int, seeds: str, settings: dict, model: str | None = None) -> dict:
    if chain == "single":
        return chain_point_of("single", n, seeds, settings, None, (model,))
    return (base_point if stage == "base" else relay_point)(chain, n, seeds, settings, model)


# (chain, stage) → the distillation (distill.py DISTILLATIONS) that distils it
STAGES = {("demo", "base"): "demo-base", ("demo", "relay"): "demo-relay",
          ("rdm8", "base"): "rdm8-base", ("rdm8", "relay"): "rdm8-relay", ("single", "base"): "single"}


def selection_plan(work: Path, chains: tuple) -> dict:
    """Per stage: every multistep solver on both grids of its family at 2, 4, 8 evaluations, the
    distilled students at 1, 2, 4, 8 and the one-step teacher; per RDM chain, every distilled
    chain of CHAIN_STEPS; the converged references."""
    n, seeds, pts = SAMPLES_QUICK, "selection", {}
    for chain in chains:
        pts.update(single_reference(seeds) if chain == "single" else references(chain, seeds))
        for (c, stage), name in STAGES.items():
            if c != chain:
                continue
            for solver in MULTISTEP:
                for grid in solver_grid(stage):
                    for nfe in SOLVER_NFES:
                        if nfe >= MIN_SIGMAS[solver]:
                            pts[f"distill-sel-{name}-{solver}-{grid}-nfe{nfe}"] = stage_point(
                                chain, stage, n, seeds, solver_settings(stage, solver, grid, nfe))
            for steps in student_steps(stage):
                pts[f"distill-sel-{name}-distilled-nfe{steps}"] = stage_point(
                    chain, stage, n, seeds, {}, stage_dir(work, name, steps))
            pts[f"distill-sel-{name}-one-step-nfe1"] = stage_point(chain, stage, n, seeds, {},
                                                                   one_step_dir(work, name))
        if chain != "single":
            for b, r in CHAIN_STEPS:
                pts[f"distill-sel-{chain}-chain-b{b}r{r}"] = chain_point_of(
                    chain, n, seeds, {}, {}, (stage_dir(work, f"{chain}-base", b), stage_dir(work, f"{chain}-relay", r)))
        for suffix, (c, base, relay_name) in VARIANTS.items():     # the same search for the follow-up's
            if c == chain:
                for b, r in SMALL_CHAINS:
                    pts[f"distill-sel-{chain}-chain-b{b}r{r}{suffix}"] = chain_point_of(
                        chain, n, seeds, {}, {}, (stage_dir(work, base, b), stage_dir(work, relay_name, r)))
    return pts


# ---- choices, made on the selection records only ---------------------------------------------

def selection_records(points: Path, prefix: str) -> list[dict]:
    out = [json.loads(f.read_text()) for f in sorted(points.glob(f"{prefix}*.json"))]
    for r in out:
        if r.get("seeds") != "selection":
            raise ValueError(f"{r['name']}: a choice may only read selection-seed records, not {r.get('seeds')}")
    return out


def score(r: dict, criterion: str) -> float:
    return r["rmse"] if criterion == "accuracy" else r["fid"]


def best_solver(points: Path, name: str, stage: str, nfe: int, criterion: str) -> dict | None:
    """The selection record of the best solver setting for stage `name` at `nfe` evaluations;
    None until that count's search is complete."""
    recs = [r for r in selection_records(points, f"distill-sel-{name}-")
            if r["name"].endswith(f"-nfe{nfe}") and "-distilled-" not in r["name"] and "-one-step-" not in r["name"]]
    if len(recs) < len(solver_grid(stage)) * sum(nfe >= MIN_SIGMAS[s] for s in MULTISTEP):
        return None
    return min(recs, key=lambda r: score(r, criterion))


def chosen_chain(points: Path, chain: str, suffix: str = "") -> tuple[int, int] | None:
    """The distilled chain of ≤ 4 evaluations with the lowest FID on the selection seeds (the one
    bundled for the demo chain); `suffix`: among a follow-up variant's chains (VARIANTS)."""
    recs = {(b, r): points / f"distill-sel-{chain}-chain-b{b}r{r}{suffix}.json" for b, r in SMALL_CHAINS}
    if not all(p.exists() for p in recs.values()):
        return None
    fids = {k: json.loads(p.read_text()) for k, p in recs.items()}
    for r in fids.values():
        if r["seeds"] != "selection":
            raise ValueError(f"{r['name']} is not a selection record")
    return min(fids, key=lambda k: fids[k]["fid"])


def chain_selection_fid(points: Path, chain: str, steps: tuple[int, int], suffix: str = "") -> float:
    """FID of a distilled chain's selection record (base, relay steps): a choice's evidence."""
    return json.loads((points / f"distill-sel-{chain}-chain-b{steps[0]}r{steps[1]}{suffix}.json").read_text())["fid"]


def bundled_chain(points: Path, chain: str = "demo") -> tuple[tuple[int, int], str, str, str] | None:
    """The students bundled for `chain`: among the first students' chosen chain and each follow-up
    variant's (VARIANTS; one whose selection is not complete yet does not compete), the lowest
    selection FID. Returns ((base steps, relay steps), suffix, base and relay distillation); None
    until the first students' selection is complete."""
    candidates = [("", f"{chain}-base", f"{chain}-relay")]
    candidates += [(suffix, *students) for suffix, (c, *students) in VARIANTS.items() if c == chain]
    best = None
    for suffix, *students in candidates:
        pick = chosen_chain(points, chain, suffix)
        if pick is None:
            if not suffix:
                return None
            continue
        fid = chain_selection_fid(points, chain, pick, suffix)
        if best is None or fid < best[0]:
            best = (fid, (pick, suffix, *students))
    return best[1]


def stage_settings_of(record: dict, stage_index: int) -> dict:
    """The sampler settings of one stage of a selection record, as point overrides."""
    return record["settings"][stage_index]


# ---- report: 10,000 report seeds --------------------------------------------------------------

def report_plan(work: Path, points: Path, chains: tuple) -> dict:
    """Every student and every chosen solver on the report seeds, the targets' reference rows
    (the fast preset's stages, the fast chain), the guidance scales, the references."""
    n, seeds, pts = SAMPLES_FULL, "report", {}
    chosen_seeds = protocol.SELECTION.seeds(SAMPLES_QUICK)
    protocol.check_disjoint(chosen_seeds, protocol.REPORT.seeds(n), "the distillation study's choices")
    for chain in chains:
        pts.update(single_reference(seeds) if chain == "single" else references(chain, seeds))
        for (c, stage), name in STAGES.items():
            if c != chain:
                continue
            index = 1 if stage == "relay" else 0
            for steps in student_steps(stage):
                pts[f"distill-rep-{name}-distilled-nfe{steps}"] = stage_point(
                    chain, stage, n, seeds, {}, stage_dir(work, name, steps))
            pts[f"distill-rep-{name}-one-step-nfe1"] = stage_point(chain, stage, n, seeds, {},
                                                                   one_step_dir(work, name))
            for nfe in SOLVER_NFES:
                for criterion in CRITERIA:
                    r = best_solver(points, name, stage, nfe, criterion)
                    if r is not None:                     # named after its selection record: chosen twice, run once
                        pts[r["name"].replace("distill-sel-", "distill-rep-")] = stage_point(
                            chain, stage, n, seeds, stage_settings_of(r, index if chain != "single" else 0))
            # the teacher's own sampler: the first round's teacher on its grid
            teacher = dict(FAST_RELAY if stage == "relay" else FAST_BASE, num_steps=TEACHER_STEPS[stage])
            pts[f"distill-rep-{name}-teacher-nfe{TEACHER_STEPS[stage]}"] = stage_point(chain, stage, n, seeds, teacher)
        if chain == "single":
            continue
        # the targets: relay at 1 vs the fast relay (8), base at 4 vs the fast base (12)
        pts[f"distill-rep-{chain}-relay-fast-nfe8"] = relay_point(chain, n, seeds, FAST_RELAY)
        pts[f"distill-rep-{chain}-base-fast-nfe12"] = base_point(chain, n, seeds, FAST_BASE)
        pts[f"distill-rep-{chain}-chain-fast"] = chain_point_of(chain, n, seeds, FAST_BASE, FAST_RELAY)
        pts[f"distill-rep-{chain}-chain-teacher"] = chain_point_of(
            chain, n, seeds, dict(FAST_BASE, num_steps=TEACHER_STEPS["base"]),
            dict(FAST_RELAY, num_steps=TEACHER_STEPS["relay"]))
        # which student costs a distilled chain its quality: each student with the other stage's fast sampler
        for r in CROSS_RELAY_STEPS:
            pts[f"distill-rep-{chain}-chain-fastbase-r{r}"] = chain_point_of(
                chain, n, seeds, FAST_BASE, {}, (None, stage_dir(work, f"{chain}-relay", r)))
        for b in CROSS_BASE_STEPS:
            pts[f"distill-rep-{chain}-chain-b{b}-fastrelay"] = chain_point_of(
                chain, n, seeds, {}, FAST_RELAY, (stage_dir(work, f"{chain}-base", b), None))
        pick = chosen_chain(points, chain)
        for b, r in CHAIN_STEPS:
            pts[f"distill-rep-{chain}-chain-b{b}r{r}"] = chain_point_of(
                chain, n, seeds, {}, {}, (stage_dir(work, f"{chain}-base", b), stage_dir(work, f"{chain}-relay", r)))
        if pick is not None:                                # guidance (Eq. D6) on the chosen chain, and CFG on fast
            b, r = pick
            for w in GUIDANCE:
                pts[f"distill-rep-{chain}-chain-b{b}r{r}-w{w:g}"] = chain_point_of(
                    chain, n, seeds, {"cfg_scale": w}, {"cfg_scale": w},
                    (stage_dir(work, f"{chain}-base", b), stage_dir(work, f"{chain}-relay", r)))
                pts[f"distill-rep-{chain}-chain-fast-w{w:g}"] = chain_point_of(
                    chain, n, seeds, dict(FAST_BASE, cfg_scale=w), dict(FAST_RELAY, cfg_scale=w))
        for suffix, (c, _, _) in VARIANTS.items():      # the follow-up: chains of ≤ 4, cross rows, guidance
            if c == chain:
                pts.update(variant_report(work, points, suffix, n, seeds))
    return pts


def base_with_fast_relay(suffix: str, b: int) -> str:
    """The report row of a variant's base student b under the fast relay (the first students' row
    where the variant keeps their base)."""
    chain, base, _ = VARIANTS[suffix]
    return f"distill-rep-{chain}-chain-b{b}-fastrelay" + ("" if base == f"{chain}-base" else suffix)


def variant_report(work: Path, points: Path, suffix: str, n: int, seeds: str) -> dict:
    chain, base, relay_name = VARIANTS[suffix]
    pts = {}
    for b, r in SMALL_CHAINS:
        pts[f"distill-rep-{chain}-chain-b{b}r{r}{suffix}"] = chain_point_of(
            chain, n, seeds, {}, {}, (stage_dir(work, base, b), stage_dir(work, relay_name, r)))
    for r in CROSS_RELAY_STEPS:
        pts[f"distill-rep-{chain}-chain-fastbase-r{r}{suffix}"] = chain_point_of(
            chain, n, seeds, FAST_BASE, {}, (None, stage_dir(work, relay_name, r)))
    for b in CROSS_BASE_STEPS:
        pts[base_with_fast_relay(suffix, b)] = chain_point_of(chain, n, seeds, {}, FAST_RELAY,
                                                              (stage_dir(work, base, b), None))
    if (pick := chosen_chain(points, chain, suffix)) is not None:
        b, r = pick
        for w in GUIDANCE:
            pts[f"distill-rep-{chain}-chain-b{b}r{r}{suffix}-w{w:g}"] = chain_point_of(
                chain, n, seeds, {"cfg_scale": w}, {"cfg_scale": w},
                (stage_dir(work, base, b), stage_dir(work, relay_name, r)))
    return pts
