"""Training throughput for the tiny presets: images/s, peak memory, and the share of a training
step spent outside the network's forward + backward (data, relay corruption and noise, optimizer,
EMA) — target ≤ 15 % — and one configuration's step per network runtime (channels-last, bf16
autocast, torch.compile) against eager fp32 — target ≥ 1.3× for the relay-32 step.

    python benchmarks/train_throughput.py --json train.json [--batch 128] [--steps 20] [--quick]
    python benchmarks/train_throughput.py --device cuda --sections runtimes \
        --runtime-config "relay-256 (imagenet256-stage2)" --batch 8

Each configuration runs in its own process (so its peak RSS is its own). Times are medians over
--steps steps after 3 warm-up steps, measured in one run.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ALLOCATORS, RUNTIMES, add_quick, add_runtimes, apply_allocator, emit, machine, peak_use,  # noqa: E402
                    median_seconds, parse_args, parse_names, parse_runtimes, run_child, synchronize)

from relay_diffusion.data.labels import one_hot  # noqa: E402
from relay_diffusion.data.synthetic import SyntheticDataset  # noqa: E402
from relay_diffusion.networks.runtime import RuntimeOptions  # noqa: E402

CONFIGS = [  # (name, stage, network, resolution, channels, classes): the table's rows
    ("base-8 (fmnist)", "base", "tiny-8", 8, 1, 10),
    ("base-16 (twemoji)", "base", "tiny-16", 16, 3, 0),
    ("relay-32 (fmnist)", "relay", "tiny-32", 32, 1, 10),
    ("relay-64 (twemoji)", "relay", "tiny-64", 64, 3, 0),
]
PAPER_CONFIGS = [  # the paper's ImageNet networks (GPU sizes; labels as in the paper)
    ("base-64 (imagenet64-stage1)", "base", "imagenet64-stage1", 64, 3, 1000),
    ("relay-256 (imagenet256-stage2)", "relay", "imagenet256-stage2", 256, 3, 1000),
]
ALL_CONFIGS = {c[0]: c for c in CONFIGS + PAPER_CONFIGS}


# network runtimes of the compared training step (common.RUNTIMES → TrainConfig fields)
STEP_RUNTIMES = ("fp32", "fp32_channels_last", "bf16", "bf16_channels_last", "fp32_compiled",
                 "fp32_channels_last_compiled")
RUNTIME_CONFIG = "relay-32 (fmnist)"        # the reference step
SECTIONS = ("table", "runtimes")


def run_one(name: str, batch: int, steps: int, runtime: str = "fp32", device: str = "cpu",
            allocator: str = "system") -> dict:
    tuned = apply_allocator(allocator)                   # before anything is allocated
    from relay_diffusion.training import TrainConfig
    from relay_diffusion.distributed import Dist
    from relay_diffusion.training.loop import Trainer, prepare

    name, stage, net, res, ch, classes = ALL_CONFIGS[name]
    cfg = TrainConfig(stage=stage, data="<synthetic>", outdir="<none>", network=net, cond=classes > 0,
                      batch=batch, lr_rampup=0, device=device, **RUNTIMES[runtime])
    dev = torch.device(device)
    data = SyntheticDataset(max(4 * batch, 64), res, ch, classes)
    trainer = Trainer(prepare(cfg, data), Dist(), dev)
    step = iter(range(10 ** 9))
    t0 = time.perf_counter()
    trainer.step(next(step))
    synchronize()
    first = time.perf_counter() - t0                     # includes compilation when compiled
    for _ in range(2):
        trainer.step(next(step))
    t_step = median_seconds(lambda: trainer.step(next(step)), steps, warmup=0)

    # the network alone: forward + backward of the preconditioned model on a ready batch
    images, labels = trainer.source.fetch(list(range(batch)), dev)
    onehot = one_hot(labels, classes) if classes else None
    x = images + 0.5 * torch.randn_like(images)
    sigma = torch.full((batch,), 0.5, device=dev)

    def net_only():
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.forward(x, sigma, onehot).square().mean().backward()

    for _ in range(3):
        net_only()
    t_net = median_seconds(net_only, steps, warmup=0)
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as counter:     # forward + backward of one image
        trainer.forward(x[:1], sigma[:1], onehot[:1] if onehot is not None else None).square().mean().backward()
    trainer.optimizer.zero_grad(set_to_none=True)
    gpu_peak = torch.cuda.max_memory_allocated(dev) / 2 ** 20 if dev.type == "cuda" else None
    return {"config": name, "runtime": runtime, "allocator": allocator, "allocator_tuned": tuned,
            "device": str(dev), "first_step_s": first,
            "gpu_peak_allocated_mib": gpu_peak,
            "stage": stage, "network": net, "resolution": res, "channels": ch,
            "batch": batch, "params": sum(p.numel() for p in trainer.net.parameters()),
            "step_s": t_step, "network_fwd_bwd_s": t_net, "images_per_s": batch / t_step,
            "outside_network_share": max(0.0, 1 - t_net / t_step),
            **peak_use(float(counter.get_total_flops()), batch / t_step, machine(device)),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--device", default="cpu", help="torch device to train on (cpu, cuda, …)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help="table: every tiny config in fp32; runtimes: one config per runtime")
    ap.add_argument("--batch", type=int, default=128, help="training batch (the CPU presets use 128)")
    ap.add_argument("--steps", type=int, default=20, help="timed steps per measurement (median)")
    add_runtimes(ap, STEP_RUNTIMES, "of the compared step")
    ap.add_argument("--runtime-config", default=RUNTIME_CONFIG, choices=ALL_CONFIGS,
                    help="the configuration timed per runtime")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--runtime", default="fp32", choices=RUNTIMES, help=argparse.SUPPRESS)
    ap.add_argument("--allocator", default="tuned", choices=ALLOCATORS,
                    help="CPU allocator of every timed step (tuned: what rdm train sets); the runtimes "
                         "section's baseline is always fp32 on the system allocator (plain PyTorch)")
    add_quick(ap, batch=8, steps=2, runtimes="fp32,fp32_channels_last")
    args = parse_args(ap, argv)
    if args.one is not None:
        print(json.dumps(run_one(args.one, args.batch, args.steps, args.runtime, args.device, args.allocator)))
        return {}
    sections = parse_names(ap, "--sections", args.sections, SECTIONS)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available")
    runtimes = parse_runtimes(ap, args.runtimes)

    def child(name, runtime="fp32", allocator=args.allocator):
        return run_child([__file__, "--one", name, "--batch", str(args.batch), "--steps", str(args.steps),
                          "--runtime", runtime, "--device", args.device, "--allocator", allocator])

    out = {**machine(args.device), "quick": args.quick, "steps": args.steps, "warmup_steps": 3,
           "target_outside_network_share": 0.15}
    rows = [child(c[0]) for c in CONFIGS] if "table" in sections else []
    if rows:
        out["results"] = rows
    if "runtimes" in sections:
        # the baseline: today's eager fp32 step in plain PyTorch (glibc's default allocator)
        baseline = child(args.runtime_config, "fp32", "system")
        by_runtime = {}
        for r in runtimes:
            try:
                RuntimeOptions(**RUNTIMES[r]).check(args.device)
            except ValueError as e:                      # fp16 off CUDA
                by_runtime[r] = {"skipped": str(e)}
                continue
            by_runtime[r] = child(args.runtime_config, r)
        timed = {r: row for r, row in by_runtime.items() if "step_s" in row}
        speedups = {r: baseline["step_s"] / row["step_s"] for r, row in timed.items()}
        out["runtimes"] = {"config": args.runtime_config, "batch": args.batch, "allocator": args.allocator,
                           "baseline": baseline, "rows": by_runtime, "step_speedup_vs_fp32_eager": speedups,
                           "best": max(speedups, key=speedups.get) if speedups else None, "target_speedup": 1.3}
    return emit(out, args.json)


if __name__ == "__main__":
    main()
