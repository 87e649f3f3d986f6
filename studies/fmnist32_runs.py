"""Training runs of the Fashion-MNIST 32×32 study (docs/study.md): what is trained, for how many
images, in which lane. Kept apart from the driver so the plan reads as one table."""

from __future__ import annotations

# Every run uses the package's own presets (training/presets.py); only the duration, snapshot
# interval and the ablated relay settings change. Durations are in training images.
SNAPSHOT = 50_000
RUNS = {
    # single-stage EDM at 32×32: the baseline (tiny-32, EDM loss from pure noise)
    "single32": dict(preset="fmnist-single-32", duration=300_000),
    # RDM: 8×8 base (EDM loss) + 8→32 relay (blur + block noise, α = 0.15, official mixture)
    "base8": dict(preset="fmnist-base-8", duration=400_000, snapshot=100_000),
    # snapshots every 25k: the 75k one is RDM at 46 % of the single-stage training compute (the
    # paper's "≤ 50 %" is judged there)
    "relay32": dict(preset="fmnist-relay-8to32", duration=150_000, snapshot=25_000),
    # ablations of the relay stage, compared with relay32's 100k snapshot (CPU budget): no block
    # noise (α = 0; §3.2, Fig. 4) and the paper's variance-normalised mixture (ε + αB)/√(1+α²)
    # instead of the official σ(ε + αB)
    "relay32-alpha0": dict(preset="fmnist-relay-8to32", duration=100_000, block_scale=0.0),
    "relay32-paper": dict(preset="fmnist-relay-8to32", duration=100_000, noise_mixture="paper"),
    # RDM with up-scale 2: a 16×16 base (the 8×8 preset's recipe on tiny-16) + a 16→32 relay
    # (2×2 patches, block noise over 2×2 blocks); durations sized to rdm 8→32's final compute
    "base16": dict(preset="fmnist-base-8", duration=200_000, network="tiny-16", resolution=16),
    "relay16to32": dict(preset="fmnist-relay-8to32", duration=100_000, up_scale=2),
    # a second training seed of the headline models: training-seed spread beside sampling spread
    "single32-seed1": dict(preset="fmnist-single-32", duration=300_000, seed=1),
    "base8-seed1": dict(preset="fmnist-base-8", duration=400_000, snapshot=100_000, seed=1),
    "relay32-seed1": dict(preset="fmnist-relay-8to32", duration=150_000, seed=1),
}
# the second seed's chain pairs its own base and relay stage
SEED_PAIRS = {"single32": "single32-seed1", "base8": "base8-seed1", "relay32": "relay32-seed1"}
# two single-thread processes; each lane runs its runs one after another (≈ balanced in FLOPs:
# 476 and 545 PFLOP·10⁻³), the headline models first, then their second seed, then the ablations
LANES = (("single32", "relay32-seed1", "relay32-paper", "base16"),
         ("base8", "relay32", "base8-seed1", "single32-seed1", "relay32-alpha0", "relay16to32"))
