"""Training presets: overrides of `TrainConfig` defaults. Every command-line flag overrides
the preset. Paper presets carry the official hyperparameters (paper Appendix, docs/training.md) as comments."""

from __future__ import annotations

from ..schedules import PUBLISHED_SCHEDULES

# the relay stages' forward processes: the official recipes' (the demo and study use ImageNet's)
_IMAGENET_RELAY = dict(schedule=PUBLISHED_SCHEDULES["imagenet256"])
_CELEBA_RELAY = dict(schedule=PUBLISHED_SCHEDULES["celebahq256"])
_CPU = dict(lr=2e-3, lr_rampup=50_000, ema_halflife=100_000, batch=128, status_every=20_000,
            snapshot_every=200_000, sample_every=500_000)

TRAIN_PRESETS: dict[str, dict] = {
    # ---- offline demo / study: Fashion-MNIST padded to 32×32, 10 classes ----------------------
    "fmnist-base-8": dict(stage="base", network="tiny-8", resolution=8, cond=True, label_dropout=0.1,
                          duration=4_000_000, **_CPU),
    "fmnist-relay-8to32": dict(stage="relay", network="tiny-32", resolution=32, cond=True,
                               label_dropout=0.1, duration=4_000_000, **_IMAGENET_RELAY, **_CPU),
    "fmnist-single-32": dict(stage="base", network="tiny-32", resolution=32, cond=True,
                             label_dropout=0.1, duration=4_000_000, **_CPU),
    # ---- offline study: Twemoji (72×72 PNGs resized to 64), 16 → 64 -------------------------
    "twemoji-base-16": dict(stage="base", network="tiny-16", resolution=16, xflip=True,
                            duration=4_000_000, **_CPU),
    "twemoji-relay-16to64": dict(stage="relay", network="tiny-64", resolution=64, xflip=True,
                                 duration=4_000_000, **_IMAGENET_RELAY, **_CPU),
    "twemoji-single-64": dict(stage="base", network="tiny-64", resolution=64, xflip=True,
                              duration=4_000_000, **_CPU),
    # ---- the paper's models (official README commands; docs/training.md) ----------------------------
    # ImageNet 64 stage 1 = EDM's released model: batch 4096, lr 1e-4 (README; EDM's own ImageNet-64 command), EMA 50 Mimg,
    # dropout 0.1, no augmentation, fp16, 2500 Mimg; 32 V100 × 13 days.
    "imagenet64-stage1": dict(stage="base", network="imagenet64-stage1", cond=True, batch=4096,
                              batch_gpu=32, lr=1e-4, lr_rampup=10_000_000, ema_halflife=50_000_000,
                              dropout=0.1, precision="bf16", duration=2_500_000_000,
                              status_every=1_000_000, snapshot_every=50_000_000, sample_every=50_000_000),
    # ImageNet 64→256 stage 2: batch 4096 (8/GPU), lr 1e-4, EMA 0.5 Mimg, dropout 0.1, 1250 Mimg;
    # 64 A100 × 12.5 days. FID 1.87 with CFG 3.5 (needs label dropout; the official code has none).
    "imagenet256-stage2": dict(stage="relay", network="imagenet256-stage2", cond=True, batch=4096,
                               batch_gpu=8, lr=1e-4, lr_rampup=10_000_000, ema_halflife=500_000,
                               dropout=0.1, label_dropout=0.1, precision="bf16", duration=1_250_000_000,
                               status_every=1_000_000, snapshot_every=25_000_000,
                               sample_every=25_000_000, **_IMAGENET_RELAY),
    # CelebA-HQ 64 stage 1: unconditional, batch 1024, lr 1e-4, EMA 0.5 Mimg, dropout 0.15,
    # augment 0.2 (not implemented here: x-flip only); 32 A100 × 16 h.
    "celebahq64-stage1": dict(stage="base", network="celebahq64-stage1", batch=1024, batch_gpu=32,
                              lr=1e-4, lr_rampup=10_000_000, ema_halflife=500_000, dropout=0.15,
                              xflip=True, duration=200_000_000, status_every=1_000_000,
                              snapshot_every=10_000_000, sample_every=10_000_000),
    # CelebA-HQ 64→256 stage 2: batch 1024 (8/GPU), lr 1e-4, EMA 0.5 Mimg, dropout 0.2, fp16,
    # 47 Mimg (README); 32 A100 × 25.5 h. FID 3.15.
    "celebahq256-stage2": dict(stage="relay", network="celebahq256-stage2", batch=1024, batch_gpu=8,
                               lr=1e-4, lr_rampup=10_000_000, ema_halflife=500_000, dropout=0.2,
                               xflip=True, precision="bf16", duration=47_000_000,
                               status_every=1_000_000, snapshot_every=5_000_000,
                               sample_every=5_000_000, **_CELEBA_RELAY),
}
