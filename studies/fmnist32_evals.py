"""Evaluations of the Fashion-MNIST 32×32 study: which chain, which snapshot, which sampler
settings, how many samples. Every entry is measured on the report seeds (the measurement protocol,
docs/evaluation.md) with 95 % paired-bootstrap intervals, by the solver study's engine
(studies/solvers.py; plan study-evals), one JSON per entry in <workdir>/search/points/."""

from __future__ import annotations

from relay_diffusion.sampling.presets import chain_recipe_dicts

SAMPLES = 10_000       # samples of every evaluation (FID's 1/n bias makes points with different
                       # counts incomparable, so all use the same); report seeds 1,000,000 + i

# stage = (run name, training images of the snapshot, sampler settings overrides)
SINGLE = "single32"


def single(images, steps=18, run=SINGLE, **settings):
    return dict(stages=[(run, images, dict(num_steps=steps, **settings))], n=SAMPLES)


def rdm(relay_images=150_000, relay="relay32", base=("base8", 400_000), base_steps=18, base_settings=None,
        **relay_settings):
    base_settings = dict(num_steps=base_steps) if base_settings is None else base_settings
    return dict(stages=[(*base, base_settings), (relay, relay_images, relay_settings)], n=SAMPLES)


# re-judged with the exponential-integrator solvers (docs/solvers.md): every stage with
# DPM-Solver++(2M) + corrector. RDM with the `--preset fast` chain (12 base + 8 relay evaluations,
# 2.3 GFLOP/image) and with 4 relay evaluations; the single-stage model at the same sampling cost
# (10 evaluations) and at 8 (the best FID of the solver study's curves, docs/solvers-quality.md).
FAST_BASE, FAST_RELAY = chain_recipe_dicts("fast")


def single_dpm(images, nfe):
    return single(images, steps=nfe, solver="dpmpp-2m-pc", rho=20.0)


def rdm_fast(relay_images=150_000, relay_nfe=8, **chain):
    return rdm(relay_images, base_settings=FAST_BASE, **chain, **dict(FAST_RELAY, num_steps=relay_nfe))


# RDM 16×16 → 32×32 (up-scale 2): the base16 run's final snapshot and the relay16to32 run
RDM16 = dict(relay="relay16to32", base=("base16", 200_000))


def rdm16(relay_images=100_000, **kw):
    return rdm(relay_images, **RDM16, **kw)


def rdm16_fast(relay_images=100_000, relay_nfe=8):
    return rdm_fast(relay_images, relay_nfe, **RDM16)


EVALS = {
    # real held-out images (Fashion-MNIST test set): what a perfect model would score
    "real-test": dict(real="fmnist32-test.zip", n=SAMPLES),
    # headline: final models at their default samplers (EDM Heun 18 steps; relay 18-step grid
    # truncated below σ = 0.9, η = 0.2)
    "single@300k": single(300_000),
    "rdm@150k": rdm(),
    # quality vs training compute
    "single@100k": single(100_000),
    "single@200k": single(200_000),
    "rdm@50k": rdm(50_000),
    "rdm@100k": rdm(100_000),
    # quality vs sampling cost
    "single@300k-8steps": single(300_000, steps=8),
    "rdm@150k-fast": rdm(base_steps=10, num_steps=10),
    # ablations of the relay stage (final models)
    "rdm@150k-eta0": rdm(eta=0.0),
    "rdm@150k-eta0.1": rdm(eta=0.1),
    "rdm@150k-eta0.3": rdm(eta=0.3),
    "rdm@150k-trunc0.5": rdm(truncation_sigma=0.5),
    "rdm@150k-trunc1.6": rdm(truncation_sigma=1.6),   # grid: … 2.59, 1.56, 0.90, 0.49 …
    "rdm-alpha0@100k": rdm(100_000, relay="relay32-alpha0"),
    "rdm-paper@100k": rdm(100_000, relay="relay32-paper"),
    # up-scale 2 (16 → 32): curve points and a cheaper base sampler
    "rdm16@50k": rdm16(50_000),
    "rdm16@100k": rdm16(),
    "rdm16@100k-fast": rdm16(base_steps=10, num_steps=10),
    # every model with the solvers: matched sampling cost and matched training compute
    "single@300k-dpm10": single_dpm(300_000, 10),
    "rdm@150k-dpm20": rdm_fast(),
    "rdm@150k-dpm16": rdm_fast(relay_nfe=4),
    "single@300k-dpm8": single_dpm(300_000, 8),
    "single@100k-dpm10": single_dpm(100_000, 10),
    "single@200k-dpm10": single_dpm(200_000, 10),
    "rdm@50k-dpm20": rdm_fast(50_000),
    "rdm@100k-dpm20": rdm_fast(100_000),
    "rdm@50k-dpm16": rdm_fast(50_000, relay_nfe=4),
    "rdm@100k-dpm16": rdm_fast(100_000, relay_nfe=4),
    "rdm16@50k-dpm20": rdm16_fast(50_000),
    "rdm16@100k-dpm20": rdm16_fast(),
    "rdm16@50k-dpm16": rdm16_fast(50_000, relay_nfe=4),
    "rdm16@100k-dpm16": rdm16_fast(relay_nfe=4),
    # the headline models' second training seed (training-seed spread beside sampling spread)
    "single-seed1@300k": single(300_000, run="single32-seed1"),
    "rdm-seed1@150k": rdm(relay="relay32-seed1", base=("base8-seed1", 400_000)),
}


def deterministic(overrides: dict, relay: bool) -> bool:
    """Whether a stage's sampler draws no noise after its start (its RMSE to the converged ODE
    is then defined): no churn, no "sde" method, η = 0 (the relay sampler's default η is 0.2)."""
    eta = overrides.get("eta", 0.2 if relay else 0.0)
    return not overrides.get("S_churn") and overrides.get("method") != "sde" and (not relay or eta == 0)


def as_point(name: str, spec: dict) -> dict:
    """An entry as a point of the solver study's engine (studies/solvers.py), on the report seeds.
    A deterministic sampler of the final single-stage or 8→32 models is compared with their
    converged ODE on the first 1,000 report seeds (RMSE)."""
    from solvers_points import CHAINS, reference_name

    chain = [(run, images) for run, images, _ in spec["stages"]]
    stages = [over for _, _, over in spec["stages"]]
    reference = None
    if deterministic(stages[0], False) and all(deterministic(o, True) for o in stages[1:]):
        if chain == [tuple(c) for c in CHAINS["single"]]:
            reference = reference_name("single", "report")
        elif chain == [tuple(c) for c in CHAINS["rdm8"]]:
            reference = reference_name("rdm8", "report", "chain-reference")
    return dict(chain=chain, stages=stages, n=spec["n"], seeds="report", shared_base=False,
                reference=reference, name=name)
