"""The measurement plans of the solver study (studies/solvers.py): which chain, which sampler
settings per stage, how many samples. Plans run in order; later plans use what the earlier ones
found (the constants under "chosen by measurement", each with the plan that chose it)."""

from __future__ import annotations

from relay_diffusion.sampling.presets import chain_recipe_dicts

SAMPLES_QUICK = 1_000      # exploration (grids, start σ, curves); comparisons at equal n only
SAMPLES_FULL = 10_000      # the points that conclusions rest on

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


def relay(chain: str, n: int, reference: str | None = "auto", **relay_settings) -> dict:
    """A relay point on `chain` with the shared base samples; deterministic (η = 0) points are
    compared sample by sample with the chain's reference ODE solution (RMSE)."""
    if reference == "auto":
        reference = f"{chain}-reference" if relay_settings.get("eta", 0.2) == 0 else None
    return dict(chain=chain, n=n, stages=[REF_BASE, relay_settings], reference=reference)


REFERENCE_SAMPLES = SAMPLES_QUICK


def plan_reference() -> dict:
    """The relay stage's probability-flow ODE solved to convergence on the first 1,000 seeds
    (η = 0), by two independent solvers: `dpmpp-3m-pc` with 150 ρ-spaced σ's (saved: the
    reference of every deterministic point's RMSE) and the official Heun step with the
    second-order corrector and 100 σ's (199 NFE), which must agree with it."""
    return {
        "demo-reference": dict(relay("demo", REFERENCE_SAMPLES, None, solver="dpmpp-3m-pc", sigma_grid="rho",
                                     rho=3.0, num_steps=150, eta=0.0), save=True),
        "demo-reference-check": relay("demo", REFERENCE_SAMPLES, solver="heun", corrector="denoised",
                                      sigma_grid="rho", rho=3.0, num_steps=100, eta=0.0),
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


def chain_point(chain: str, n: int, base: dict, relay_settings: dict | None, reference: str | None) -> dict:
    stages = [base] + ([relay_settings] if relay_settings is not None else [])
    return dict(chain=chain, n=n, stages=stages, shared_base=False, reference=reference)


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
         "study-curves": plan_study_curves, "runtime": plan_runtime}
