"""Sampler choices of the Fashion-MNIST study (docs/study.md), made on the selection seeds only.

The search (plan study-search of solvers_points.py) measured every solver × grid × evaluation
count for the single-stage model and for RDM's base and relay stages, each against its own
converged ODE. Here, for two criteria:

- "accuracy": the setting with the smallest RMSE to the converged ODE;
- "fid": the setting with the smallest feature FID;

each stage gets its choice at every evaluation count (`stage_choices`); RDM chains are the base
and relay choices combined (`chain_candidates`, measured whole by plan study-chains); and every
model gets, at each sampling budget in GFLOP per image, its chosen sampler within the budget
(`budget_choices`), which the report seeds then measure (fmnist32_evals.py). Everything here
reads selection-seed records and refuses any other (protocol.check_disjoint).
"""

from __future__ import annotations

import json
from pathlib import Path

from relay_diffusion.evaluation import protocol

SEARCH_DIR: Path | None = None       # <study>/search, set by the driver (solvers.py --workdir)
CRITERIA = ("accuracy", "fid")
# forward FLOPs of one image's network evaluation (torch.utils.flop_counter; docs/study.md)
FORWARD_GFLOP = {"single": 0.23331, "base": 0.03756, "relay": 0.23331}
BASE_NFES_FOR_CHAINS = (6, 8, 12, 16, 35)
RELAY_NFES_FOR_CHAINS = (3, 4, 6, 8, 12, 16)
# the sampling budgets of the verdicts: the single-stage model's cost at each searched count
BUDGET_NFES = (3, 4, 6, 8, 12, 16, 24, 35)


def records(prefix: str, work: Path | None = None) -> list[dict]:
    """The search records whose names start with `prefix`, all on the selection seeds."""
    work = work or SEARCH_DIR
    if work is None or not (work / "points").exists():
        return []
    out = [json.loads(f.read_text()) for f in sorted((work / "points").glob(f"{prefix}*.json"))]
    for r in out:
        if r.get("seeds", "selection") != "selection":
            raise ValueError(f"{r['name']}: a choice may only read selection-seed records, not {r['seeds']}")
    return out


def score(r: dict, criterion: str) -> float:
    return r["rmse"] if criterion == "accuracy" else r["fid"]


def stage_choices(prefix: str, criterion: str, stage: int, work: Path | None = None) -> dict[int, dict]:
    """Evaluation count → the best record (by `criterion`) among those with at most that many
    evaluations in the searched stage (`stage`: its index in the record's chain)."""
    recs = records(prefix, work)
    out = {}
    for n in sorted({r["nfe"][stage] for r in recs}):
        within = [r for r in recs if r["nfe"][stage] <= n]
        out[n] = min(within, key=lambda r: score(r, criterion))
    return out


def chain_candidates(work: Path | None = None) -> dict[str, tuple[dict, dict]]:
    """name → (base settings, relay settings): for each criterion, the chosen base setting at each
    count of BASE_NFES_FOR_CHAINS with the chosen relay setting at each of RELAY_NFES_FOR_CHAINS.
    A combination two criteria share is measured once."""
    out, seen = {}, {}
    for criterion in CRITERIA:
        base = stage_choices("rdm8-base-search-", criterion, 0, work)
        relay = stage_choices("rdm8-relay-search-", criterion, 1, work)
        for nb in BASE_NFES_FOR_CHAINS:
            for nr in RELAY_NFES_FOR_CHAINS:
                if nb not in base or nr not in relay:
                    continue
                pair = (base[nb]["name"], relay[nr]["name"])
                if pair in seen:
                    continue
                name = f"rdm8-chain-{criterion}-b{base[nb]['nfe'][0]}-r{relay[nr]['nfe'][1]}"
                seen[pair] = name
                out[name] = (stage_settings(base[nb], 0), stage_settings(relay[nr], 1))
    return out


SETTING_KEYS = ("solver", "num_steps", "rho", "sigma_grid", "lambda_frequency", "corrector", "eta",
                "truncation_sigma", "sigma_min")


def stage_settings(record: dict, stage: int) -> dict:
    """The overrides that rebuild a record's stage settings (only the searched fields)."""
    s = record["settings"][stage]
    return {k: s[k] for k in SETTING_KEYS if k in s}


def cost_gflop(record: dict) -> float:
    """Sampling cost per image: Σ over stages of evaluations × forward FLOPs."""
    kinds = ("single",) if record["chain"] == "single" else ("base", "relay")
    return sum(n * FORWARD_GFLOP[k] for n, k in zip(record["nfe"], kinds))


def budget(nfe: int) -> float:
    """The sampling budget, GFLOP per image, of `nfe` evaluations of the single-stage model."""
    return round(nfe * FORWARD_GFLOP["single"], 2)


def budget_choices(criterion: str, work: Path | None = None) -> dict[str, dict[float, dict]]:
    """model → {budget GFLOP → the record chosen within it}, for the single-stage model (its
    search points) and RDM (its measured chains)."""
    budgets = [budget(n) for n in BUDGET_NFES]
    # RDM's pool: the chains plan study-chains measured (rdm8-chain-<criterion>-…), not the
    # converged references that share the prefix rdm8-chain- (the report one is report seeds)
    pools = {"single": records("single-search-", work),
             "rdm8": [r for c in CRITERIA for r in records(f"rdm8-chain-{c}-", work)]}
    out = {}
    for model, recs in pools.items():
        out[model] = {}
        for b in budgets:
            within = [r for r in recs if cost_gflop(r) <= b + 1e-9]
            if within:
                out[model][b] = min(within, key=lambda r: score(r, criterion))
    return out


def check_choices_unseen(chosen: list[dict], report_n: int) -> None:
    """Every chosen record was measured on selection seeds disjoint from the report seeds."""
    for r in chosen:
        lo, hi = r.get("seed_range", [0, r["n"] - 1])
        protocol.check_disjoint(range(lo, hi + 1), protocol.REPORT.seeds(report_n), r["name"])


# the snapshot at which the training half of the paper's claim is judged: base8@400k + relay32@75k
# = 0.0975 PFLOP, 46 % of the single-stage model's 0.210 (the last relay snapshot ≤ 50 %)
HALF_TRAINING_CHAIN = [("base8", 400_000), ("relay32", 75_000)]


def claim_choices(criterion: str, work: Path | None = None) -> dict | None:
    """The paper's "single-stage quality at ≤ 50 % of the cost", under one criterion:
    "single": the single-stage model's best setting (by accuracy: its most accurate sampler at
    the largest budget; by FID: the budget choice with the lowest selection FID), at cost C;
    "rdm_half_cost": RDM's choice within C / 2; "rdm_same_cost": RDM's choice within C (measured
    also at HALF_TRAINING_CHAIN for the training half). None until the chains are measured."""
    chosen = budget_choices(criterion, work)
    single, rdm = chosen.get("single"), chosen.get("rdm8")
    if not single or not rdm:
        return None
    if criterion == "accuracy":
        best = single[max(single)]
    else:
        best = min(single.values(), key=lambda r: r["fid"])
    # C is the budget the single-stage setting sits in, so RDM's choice at that very budget counts as
    # "the same cost" (budgets are rounded to 0.01 GFLOP; the exact cost, e.g. 1.3999, is below its budget)
    c = budget(best["nfe"][0])
    half = [b for b in rdm if b <= c / 2 + 1e-9]
    same = [b for b in rdm if b <= c + 1e-9]
    return {"cost": c, "single": best,
            "rdm_half_cost": rdm[max(half)] if half else None,
            "rdm_same_cost": rdm[max(same)] if same else None}
