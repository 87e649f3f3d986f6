"""The measurement plans of the solver study (studies/solvers.py): which chain, which sampler
settings per stage, how many samples. Plans run in order; later plans use what the earlier ones
found (the constants under "chosen by measurement", each with the plan that chose it)."""

from __future__ import annotations

from relay_diffusion.sampling.presets import chain_recipe_dicts

SAMPLES_QUICK = 1_000      # exploration (grids, start σ, curves) on the selection seeds; comparisons at equal n only
SAMPLES_FULL = 10_000      # the points that conclusions rest on (on the report seeds since issue 23)

# study chains: (run, training images of the snapshot) per stage (docs/study.md)
CHAINS = {
    "rdm8": [("base8", 400_000), ("relay32", 150_000)],
    "rdm16": [("base16", 200_000), ("relay16to32", 100_000)],
    "single": [("single32", 300_000)],
}

# the base sampler of every relay point: generate.py's default, EDM Heun with 18 steps (35 NFE)
REF_BASE = dict(num_steps=18)
MULTISTEP = ("ddim", "dpmpp-2m", "dpmpp-3m", "ddim-pc", "dpmpp-2m-pc", "dpmpp-3m-pc")
MIN_SIGMAS = {"ddim": 2, "dpmpp-2m": 3, "dpmpp-3m": 4, "ddim-pc": 2, "dpmpp-2m-pc": 3, "dpmpp-3m-pc": 4}

# ---- chosen by measurement ----------------------------------------------------------------
BEST_RELAY_GRID = dict(sigma_grid="lambda", lambda_frequency=2.0)   # plan grid-search (RMSE)
BEST_START = dict(truncation_sigma=0.9, sigma_min=0.008)  # plan start-search
BEST_RELAY_SOLVER = "dpmpp-2m-pc"                        # plan relay-curves
BEST_BASE_RHO = 20.0                                     # plan base-grid (RMSE)
BEST_BASE = dict(solver="dpmpp-2m-pc", rho=BEST_BASE_RHO)  # plan base-curves


def reference_name(chain: str, seeds: str, what: str = "reference") -> str:
    """The saved converged solution a point of `chain` on `seeds` is compared with."""
    return f"{chain}-{what}" + ("-report" if seeds == "report" else "")


def relay(chain: str, n: int, reference: str | None = "auto", seeds: str = "selection", **relay_settings) -> dict:
    """A relay point on `chain` with the shared base samples; deterministic (η = 0) points are
    compared sample by sample with the chain's reference ODE solution (RMSE)."""
    if reference == "auto":
        reference = reference_name(chain, seeds) if relay_settings.get("eta", 0.2) == 0 else None
    return dict(chain=chain, n=n, stages=[REF_BASE, relay_settings], reference=reference, seeds=seeds)


REFERENCE_SAMPLES = SAMPLES_QUICK


def plan_reference() -> dict:
    """The relay stage's deterministic relay ODE (docs/solvers.md §1; with block noise not the
    probability-flow ODE, but with the same marginals) solved to convergence on the first 1,000
    seeds (η = 0), by two independent solvers: `dpmpp-3m-pc` with 150 ρ-spaced σ's (saved: the
    reference of every deterministic point's RMSE) and the official Heun step with the
    second-order corrector and 100 σ's (199 NFE), which must agree with it."""
    return {
        "demo-reference": dict(relay("demo", REFERENCE_SAMPLES, None, solver="dpmpp-3m-pc", sigma_grid="rho",
                                     rho=3.0, num_steps=150, eta=0.0), save=True),
        "demo-reference-check": relay("demo", REFERENCE_SAMPLES, solver="heun", corrector="denoised",
                                      sigma_grid="rho", rho=3.0, num_steps=100, eta=0.0),
        # the same on the first 1,000 report seeds: the reference of the report points' RMSE
        "demo-reference-report": dict(relay("demo", REFERENCE_SAMPLES, None, "report", solver="dpmpp-3m-pc",
                                            sigma_grid="rho", rho=3.0, num_steps=150, eta=0.0), save=True),
    }


def official_truncated(nominal: int, **kw) -> dict:
    """The official relay grid: `nominal` EDM steps truncated below 0.9 (Heun, η = 0.2)."""
    return dict(num_steps=nominal, **kw)


def plan_official() -> dict:
    """The issue's table on the demo chain, and the official sampler's curve (truncated grids)."""
    pts = {}
    for nominal in (10, 18, 24, 40, 60, 100):
        pts[f"demo-heun-noise-trunc{nominal}"] = relay("demo", SAMPLES_QUICK, **official_truncated(nominal))
    for nominal in (18, 40):
        pts[f"demo-heun-denoised-trunc{nominal}"] = relay("demo", SAMPLES_QUICK, **official_truncated(
            nominal, corrector="denoised"))
    return pts


def plan_grid_search() -> dict:
    """Few-step grids for the multistep solvers (η = 0): ρ-spaced and uniform in λ of one
    frequency, from σ₀ = 0.9 to 0.008, at 4 and 8 evaluations."""
    grids = {f"rho{r:g}": dict(sigma_grid="rho", rho=r) for r in (1.0, 2.0, 3.0, 5.0, 7.0)}
    grids.update({f"lam{f:g}": dict(sigma_grid="lambda", lambda_frequency=f) for f in (0.0, 1.0, 2.0, 3.0)})
    pts = {}
    for solver in ("dpmpp-2m", "dpmpp-2m-pc", "dpmpp-3m-pc"):
        for nfe in (4, 8):
            for gname, g in grids.items():
                pts[f"demo-{solver}-{gname}-nfe{nfe}"] = relay("demo", SAMPLES_QUICK, solver=solver, num_steps=nfe,
                                                              eta=0.0, **g)
    return pts


def plan_start_search() -> dict:
    """The start σ₀ (truncation_sigma; trained up to σ_top = 1.77) and the last σ (sigma_min) on
    the best grid, at 4 and 8 evaluations (η = 0). Points that start elsewhere than 0.9 solve
    another ODE and have no RMSE."""
    pts = {}
    for nfe in (4, 8):
        for start in (0.6, 1.2, 1.7):
            pts[f"demo-{BEST_RELAY_SOLVER}-start{start:g}-nfe{nfe}"] = relay(
                "demo", SAMPLES_QUICK, None, solver=BEST_RELAY_SOLVER, num_steps=nfe, eta=0.0,
                truncation_sigma=start, **BEST_RELAY_GRID)
        for last in (0.02, 0.05):
            pts[f"demo-{BEST_RELAY_SOLVER}-last{last:g}-nfe{nfe}"] = relay(
                "demo", SAMPLES_QUICK, solver=BEST_RELAY_SOLVER, num_steps=nfe, eta=0.0, sigma_min=last,
                **BEST_RELAY_GRID)
    return pts


RELAY_NFES = (2, 3, 4, 6, 8, 12, 16, 24, 34)


def plan_relay_curves() -> dict:
    """Every solver on the best grid from 2 to 35 relay evaluations (η = 0; Heun at 2n − 1)."""
    pts = {}
    for solver in MULTISTEP:
        for nfe in RELAY_NFES:
            if nfe >= MIN_SIGMAS[solver]:
                pts[f"demo-curve-{solver}-nfe{nfe}"] = relay("demo", SAMPLES_QUICK, solver=solver, num_steps=nfe,
                                                             eta=0.0, **BEST_RELAY_GRID, **BEST_START)
    for n in (2, 3, 4, 6, 9, 13, 18):
        for corrector in ("noise", "denoised"):
            pts[f"demo-curve-heun-{corrector}-nfe{2 * n - 1}"] = relay(
                "demo", SAMPLES_QUICK, solver="heun", corrector=corrector, num_steps=n, eta=0.0,
                **BEST_RELAY_GRID, **BEST_START)
    return pts


def plan_relay_eta() -> dict:
    """The stochastic variant: the best solver with η = 0.1 … 0.5 (official per-step meaning, fresh
    relay noise of std ησ_{i+1} per step) at 4, 8 and 16 evaluations."""
    pts = {}
    for eta in (0.1, 0.2, 0.3, 0.5):
        for nfe in (4, 8, 16):
            pts[f"demo-{BEST_RELAY_SOLVER}-eta{eta:g}-nfe{nfe}"] = relay(
                "demo", SAMPLES_QUICK, solver=BEST_RELAY_SOLVER, num_steps=nfe, eta=eta,
                **BEST_RELAY_GRID, **BEST_START)
    return pts


# the relay stage under every base point (8 evaluations): the same deterministic map for all, so the
# RMSE to the base reference is the base stage's own error carried through it
FIXED_RELAY = dict(solver=BEST_RELAY_SOLVER, num_steps=8, eta=0.0, **BEST_RELAY_GRID, **BEST_START)
BASE_NFES = (5, 6, 8, 10, 13, 16, 20, 35)
HEUN_NFES = (5, 7, 9, 13, 19, 35)


def chain_point(chain: str, n: int, base: dict, relay_settings: dict | None, reference: str | None,
                seeds: str = "selection") -> dict:
    stages = [base] + ([relay_settings] if relay_settings is not None else [])
    return dict(chain=chain, n=n, stages=stages, shared_base=False, reference=reference, seeds=seeds)


def base_grid(solver: str, nfe: int, **kw) -> dict:
    """Base settings for `nfe` evaluations: n σ's (multistep) or n = (NFE + 1)/2 Heun steps."""
    return dict(solver=solver, num_steps=(nfe + 1) // 2 if solver == "heun" else nfe, **kw)


def plan_base_reference() -> dict:
    """The base ODE solved to convergence (dpmpp-3m-pc, 100 σ's) under the fixed relay: the
    reference of the base points' RMSE (the relay stage is deterministic and the same)."""
    return {"demo-base-reference": dict(chain_point("demo", SAMPLES_QUICK, base_grid("dpmpp-3m-pc", 100),
                                                    FIXED_RELAY, None), save=True)}


def plan_base_grid() -> dict:
    """ρ of the base stage's EDM grid for the multistep solvers, at 8 evaluations."""
    return {f"demo-base-{solver}-rho{rho:g}-nfe8": chain_point(
        "demo", SAMPLES_QUICK, base_grid(solver, 8, rho=rho), FIXED_RELAY, "demo-base-reference")
        for solver in ("dpmpp-2m", "dpmpp-2m-pc") for rho in (3.0, 5.0, 7.0, 10.0, 20.0, 40.0)}


def plan_base_curves() -> dict:
    """Every base solver from 5 to 35 evaluations under the fixed relay (Heun: 2n − 1)."""
    pts = {f"demo-base-curve-heun-nfe{nfe}": chain_point(
        "demo", SAMPLES_QUICK, base_grid("heun", nfe), FIXED_RELAY, "demo-base-reference") for nfe in HEUN_NFES}
    for solver in MULTISTEP:
        for nfe in BASE_NFES:
            pts[f"demo-base-curve-{solver}-nfe{nfe}"] = chain_point(
                "demo", SAMPLES_QUICK, base_grid(solver, nfe, rho=BEST_BASE_RHO), FIXED_RELAY, "demo-base-reference")
    return pts


# ---- 10,000-sample points: the targets of issue 11 on the demo chain ------------------------
# (chosen by measurement: the best relay setting at each budget, plan relay-curves / relay-eta)
BEST_RELAY_AT = {4: dict(solver="dpmpp-2m-pc", **BEST_RELAY_GRID),
                 8: dict(solver="dpmpp-2m-pc", sigma_grid="rho", rho=2.0)}   # = the fast preset
# the smallest RMSE at 8 evaluations (plan grid-search), measured at 10k as well
MOST_ACCURATE_AT_8 = dict(solver="dpmpp-3m-pc", sigma_grid="rho", rho=2.0)


def plan_demo_full_official() -> dict:
    """The official relay sampler at 10,000 samples: the default 18-step grid truncated at 0.9
    (13 NFE) and the 100-step grid (69 NFE), η = 0.2, on the shared base samples."""
    return {"demo-full-official-trunc18": relay("demo", SAMPLES_FULL, **official_truncated(18)),
            "demo-full-official-trunc100": relay("demo", SAMPLES_FULL, **official_truncated(100))}


def plan_demo_full() -> dict:
    """The points the conclusions rest on (10,000 samples): the best relay settings at 4, 8 and
    16 evaluations on the same shared base samples as `demo-full-official`; the base stage against
    EDM Heun with 35 evaluations (fixed relay); the whole chain at ≤ 20 evaluations."""
    n = SAMPLES_FULL
    pts = {}
    for nfe, best in BEST_RELAY_AT.items():
        pts[f"demo-full-relay-nfe{nfe}"] = relay("demo", n, num_steps=nfe, eta=0.0, **best, **BEST_START)
    pts["demo-full-relay-nfe16"] = relay("demo", n, solver="dpmpp-3m-pc", num_steps=16, eta=0.0,
                                         **BEST_RELAY_GRID, **BEST_START)
    pts["demo-full-base-heun-nfe35"] = chain_point("demo", n, base_grid("heun", 35), FIXED_RELAY, None)
    pts["demo-full-base-nfe10"] = chain_point("demo", n, base_grid(nfe=10, **BEST_BASE), FIXED_RELAY, None)
    pts["demo-full-chain-nfe20"] = chain_point("demo", n, *chain_recipe_dicts("fast"), None)
    pts["demo-full-relay-nfe8-3m"] = relay("demo", n, num_steps=8, eta=0.0, **MOST_ACCURATE_AT_8,
                                           **BEST_START)
    return pts


# ---- the study's models (docs/study.md), re-judged with the solvers --------------------------

def study_chain(chain: str, n: int, base: dict, relay_settings: dict | None = None) -> dict:
    return chain_point(chain, n, base, relay_settings, None)


def plan_study_curves() -> dict:
    """The study's final models at few evaluations (1,000 samples): the single-stage model with
    EDM Heun and DPM-Solver++(2M) + corrector from 8 to 35 evaluations; RDM 8→32 with the fast
    preset's base sampler and relay solver from 3 to 16 relay evaluations. (RDM 16→32 is judged on
    its 10,000-sample rows in study.md; its curve was not measured.)"""
    pts = {}
    for nfe in (13, 19, 35):
        pts[f"single-heun-nfe{nfe}"] = study_chain("single", SAMPLES_QUICK, base_grid("heun", nfe))
    for nfe in (8, 10, 13, 16, 20):
        pts[f"single-dpmpp-2m-pc-nfe{nfe}"] = study_chain("single", SAMPLES_QUICK, base_grid(
            "dpmpp-2m-pc", nfe, rho=BEST_BASE_RHO))
    fast_base, fast_relay = chain_recipe_dicts("fast")
    for chain in ("rdm8",):
        pts[f"{chain}-official"] = study_chain(chain, SAMPLES_QUICK, REF_BASE, {})
        for nfe in (3, 4, 6, 8, 12, 16):
            pts[f"{chain}-relay-nfe{nfe}"] = study_chain(chain, SAMPLES_QUICK, fast_base,
                                                         dict(fast_relay, num_steps=nfe))
    return pts


def plan_demo_report() -> dict:
    """The demo chain's claims on the report seeds, with 95 % paired-bootstrap intervals: the
    accuracy claim (first 1,000 seeds, RMSE to the converged relay ODE `demo-reference-report`) —
    DPM-Solver++(2M) + corrector with 8 relay evaluations against the official Heun step run
    deterministically with 35, both on the λ grid chosen on the selection seeds (plans
    grid-search, relay-curves) — and the `--preset fast` chain (12 + 8 evaluations) against the
    official samplers (35 + 13, relay η = 0.2) on 10,000 seeds."""
    return {"demo-report-dpmpp-2m-pc-nfe8": relay("demo", REFERENCE_SAMPLES, seeds="report", solver="dpmpp-2m-pc",
                                                  num_steps=8, eta=0.0, **BEST_RELAY_GRID, **BEST_START),
            "demo-report-heun-noise-nfe35": relay("demo", REFERENCE_SAMPLES, seeds="report", solver="heun",
                                                  corrector="noise", num_steps=18, eta=0.0, **BEST_RELAY_GRID,
                                                  **BEST_START),
            "demo-report-chain-nfe20": chain_point("demo", SAMPLES_FULL, *chain_recipe_dicts("fast"), None, "report"),
            "demo-report-official-trunc18": relay("demo", SAMPLES_FULL, seeds="report", **official_truncated(18))}


# ---- the study's models: one sampler search, the same for every model (issue 23) --------------
# Every stage that samples from noise (the single-stage model, RDM's base) and the relay stage get
# the same search: every solver × two grids of their family × the same evaluation counts, on the
# selection seeds, each point judged by RMSE to its own converged ODE and by FID. Chains of RDM
# are then the base and relay settings chosen at each count (plan study-chains, fmnist32_choose.py).
SEARCH_NFES = (3, 4, 6, 8, 12, 16, 24, 35)
BASE_GRIDS = {"rho7": dict(rho=7.0), "rho20": dict(rho=20.0)}            # EDM ρ grids (ρ = 7: EDM's)
RELAY_GRIDS = {"rho2": dict(sigma_grid="rho", rho=2.0), "lam2": dict(sigma_grid="lambda", lambda_frequency=2.0)}
RELAY_SOLVERS = {"heun-noise": dict(solver="heun", corrector="noise"),       # the official step
                 "heun-denoised": dict(solver="heun", corrector="denoised"),
                 **{s: dict(solver=s) for s in MULTISTEP}}
CONVERGED_BASE = base_grid("dpmpp-3m-pc", 100)                             # the ODE to convergence
CONVERGED_RELAY = dict(solver="dpmpp-3m-pc", sigma_grid="rho", rho=3.0, num_steps=150, eta=0.0)
STUDY_FIXED_RELAY = FIXED_RELAY                                                # 8 evaluations, deterministic


def search_nfes(solver: str) -> dict[int, int]:
    """NFE → num_steps for a solver over SEARCH_NFES (Heun: 2n − 1 evaluations, so the odd count
    at or below each; multistep: at least MIN_SIGMAS σ's)."""
    if solver == "heun":
        return {2 * ((n + 1) // 2) - 1: (n + 1) // 2 for n in SEARCH_NFES}
    return {n: n for n in SEARCH_NFES if n >= MIN_SIGMAS[solver]}


def study_references(seeds: str) -> dict:
    """The converged ODE of each searched stage on the first 1,000 seeds of `seeds`: the
    single-stage model; RDM's base under a fixed accurate relay; RDM's relay on the shared base
    samples; and the whole RDM chain (both converged)."""
    n, pts = REFERENCE_SAMPLES, {}
    pts[reference_name("single", seeds)] = chain_point("single", n, CONVERGED_BASE, None, None, seeds)
    pts[reference_name("rdm8", seeds, "base-reference")] = chain_point("rdm8", n, CONVERGED_BASE,
                                                                        STUDY_FIXED_RELAY, None, seeds)
    pts[reference_name("rdm8", seeds)] = relay("rdm8", n, None, seeds, **CONVERGED_RELAY)
    pts[reference_name("rdm8", seeds, "chain-reference")] = chain_point("rdm8", n, CONVERGED_BASE,
                                                                         CONVERGED_RELAY, None, seeds)
    return {k: dict(v, save=True) for k, v in pts.items()}


def plan_study_reference() -> dict:
    return {**study_references("selection"), **study_references("report")}


def plan_study_search() -> dict:
    """The equal search (selection seeds, 1,000 samples): the single-stage model and RDM's base
    stage over every solver × ρ ∈ {7, 20} × SEARCH_NFES; RDM's relay stage over every solver
    (both Heun correctors) × {ρ = 2, uniform λ} × SEARCH_NFES."""
    n, pts = SAMPLES_QUICK, {}
    for gname, grid in BASE_GRIDS.items():
        for solver in ("heun",) + MULTISTEP:
            for nfe, steps in search_nfes(solver).items():
                settings = dict(solver=solver, num_steps=steps, **grid)
                pts[f"single-search-{solver}-{gname}-nfe{nfe}"] = chain_point(
                    "single", n, settings, None, reference_name("single", "selection"))
                pts[f"rdm8-base-search-{solver}-{gname}-nfe{nfe}"] = chain_point(
                    "rdm8", n, settings, STUDY_FIXED_RELAY, reference_name("rdm8", "selection", "base-reference"))
    for gname, grid in RELAY_GRIDS.items():
        for sname, solver in RELAY_SOLVERS.items():
            for nfe, steps in search_nfes(solver["solver"]).items():
                pts[f"rdm8-relay-search-{sname}-{gname}-nfe{nfe}"] = relay(
                    "rdm8", n, seeds="selection", num_steps=steps, eta=0.0, **solver, **grid, **BEST_START)
    return pts


def plan_study_chains() -> dict:
    """RDM chains of the settings chosen per stage and evaluation count (by RMSE and by FID, on
    the selection seeds; fmnist32_choose.py), judged whole against the converged chain. Empty
    until plan study-search has run (the choice reads its records)."""
    from fmnist32_choose import chain_candidates

    return {name: chain_point("rdm8", SAMPLES_QUICK, base, relay_settings,
                              reference_name("rdm8", "selection", "chain-reference"))
            for name, (base, relay_settings) in chain_candidates().items()}


def plan_study_evals() -> dict:
    """The study's tables (studies/fmnist32_evals.py: curves, ablations, up-scale 2, second
    training seed) on the report seeds, 10,000 samples each."""
    from fmnist32_evals import EVALS, as_point

    return {name: as_point(name, spec) for name, spec in EVALS.items() if "real" not in spec}


SEED_TWINS = {"single": [("single32-seed1", 300_000)],
              "rdm8": [("base8-seed1", 400_000), ("relay32-seed1", 150_000)]}
TWIN_BUDGET_NFES = (8, 35)            # budgets (as the single-stage model's NFE) measured on both seeds


def plan_study_verdicts() -> dict:
    """Each model's sampler chosen on the selection seeds at every budget, by accuracy and by
    FID (fmnist32_choose.budget_choices), measured on the report seeds (10,000 samples; RMSE on
    the first 1,000 against the converged ODE); at two budgets also on the second training seed.
    A setting chosen more than once is measured once (named after its selection record)."""
    from fmnist32_choose import (CRITERIA, HALF_TRAINING_CHAIN, budget, budget_choices, check_choices_unseen,
                                 claim_choices, stage_settings)

    pts = {}
    twin_budgets = {budget(n) for n in TWIN_BUDGET_NFES}
    for criterion in CRITERIA:
        for model, chosen in budget_choices(criterion).items():
            check_choices_unseen(list(chosen.values()), SAMPLES_FULL)
            what = "chain-reference" if model == "rdm8" else "reference"
            for gflop, r in chosen.items():
                stages = [stage_settings(r, i) for i in range(len(r["settings"]))]
                base, relay_settings = stages[0], (stages[1] if len(stages) > 1 else None)
                pts[f"report-{r['name']}"] = chain_point(model, SAMPLES_FULL, base, relay_settings,
                                                         reference_name(model, "report", what), "report")
                if gflop in twin_budgets:
                    pts[f"report-seed1-{r['name']}"] = chain_point(SEED_TWINS[model], SAMPLES_FULL, base,
                                                                   relay_settings, None, "report")
        claim = claim_choices(criterion)
        if claim and claim["rdm_same_cost"]:                 # the training half: RDM at 46 % of the compute
            r = claim["rdm_same_cost"]
            pts[f"report-half-training-{r['name']}"] = chain_point(
                HALF_TRAINING_CHAIN, SAMPLES_FULL, stage_settings(r, 0), stage_settings(r, 1), None, "report")
    return pts


def plan_runtime() -> dict:
    """The fast chain (10,000 samples) with each network runtime (networks/runtime.py): bf16
    autocast and channels-last against plain fp32, by FID, by per-image RMSE to the fp32 images
    (the RMSE column) and by the FID difference to fp32 with a paired bootstrap over the seeds."""
    base, relay = chain_recipe_dicts("fast")
    plain = dict(channels_last=False)                     # loading defaults to channels-last: say so
    pts = {"demo-full-runtime-fp32": dict(chain_point("demo", SAMPLES_FULL, base, relay, None), save=True,
                                          runtime=plain)}
    for name, runtime in (("fp32-channels-last", dict(channels_last=True)),
                          ("bf16", dict(precision="bf16", **plain)),
                          ("bf16-channels-last", dict(precision="bf16", channels_last=True))):
        pts[f"demo-full-runtime-{name}"] = dict(chain_point("demo", SAMPLES_FULL, base, relay,
                                                            "demo-full-runtime-fp32"), runtime=runtime,
                                                paired_fid=True)
    return pts


PLANS = {"reference": plan_reference, "grid-search": plan_grid_search, "official": plan_official,
         "start-search": plan_start_search, "relay-curves": plan_relay_curves, "relay-eta": plan_relay_eta,
         "base-reference": plan_base_reference, "base-grid": plan_base_grid, "base-curves": plan_base_curves,
         "demo-full-official": plan_demo_full_official, "demo-full": plan_demo_full,
         "demo-report": plan_demo_report,
         "study-curves": plan_study_curves, "runtime": plan_runtime,
         "study-reference": plan_study_reference, "study-search": plan_study_search,
         "study-chains": plan_study_chains, "study-evals": plan_study_evals,
         "study-verdicts": plan_study_verdicts}
