"""Resolution scaling: parameters, forward FLOPs, seconds and peak memory per image of the ADM
networks at 32, 64, 128 and 256 pixels — the tiny CPU presets (tiny-32, tiny-64, built for each
resolution with `with_data(res, 3, 0)`, batch --batch) and the paper configs (imagenet64-stage1,
native 64; imagenet256-stage2 and celebahq256-stage2, native 256; labels kept, batch 1), each
built at every resolution; forward and a training step (forward + backward) for both.

    python benchmarks/scaling.py --json scaling.json [--batch 16] [--repeats 5]
                                 [--paper NAMES | --skip-paper] [--device cuda [--bf16]] [--quick]

On a 2-core CPU (≈ 300 GFLOP/s on these convolutions) the paper configs add ≈ 3.5 minutes each
(≈ 3–4 TFLOP per forward sweep over 32…256, batch 1); celebahq256-stage2 is imagenet256-stage2
without labels, so `--paper` may leave it out.

FLOPs are counted by torch.utils.flop_counter.FlopCounterMode on a meta-device copy (matmuls,
convolutions and attention; one multiply-add = 2 FLOPs), so they cost nothing to compute and are
reported for the paper configs at every resolution too. Times are medians of --repeats calls
after warm-up. Peak memory is measured in a fresh subprocess per measurement: on CPU the
resident-memory high-water mark above the level after building the network and its inputs
(VmHWM after resetting it through /proc/self/clear_refs), on CUDA torch.cuda.max_memory_allocated
above the allocation before the call. Growth ratios (value at res / value at 32) are measured in
the same run. Note: attn_resolutions are in pixels, so the tiny networks have self-attention only
where a level is 8×8 (tiny-32 at 32; tiny-64 at 32 and 64), as when trained at those resolutions.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import PeakRSS, add_quick, emit, machine, median_seconds, parse_args, run_child  # noqa: E402

from relay_diffusion.networks import NETWORK_PRESETS  # noqa: E402

TINY = ("tiny-32", "tiny-64")
PAPER = (("imagenet64-stage1", 64), ("imagenet256-stage2", 256), ("celebahq256-stage2", 256))


def network_config(name: str, res: int):
    """Tiny presets: `with_data(res, 3, 0)` (RGB, unconditional); paper presets keep their labels
    and augmentation inputs, at resolution `res`."""
    base = NETWORK_PRESETS[name]
    label_dim = base.label_dim if name in dict(PAPER) else 0
    return base.with_data(res, 3, label_dim)


def inputs(cfg, batch: int, device):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, cfg.in_channels, cfg.img_resolution, cfg.img_resolution, generator=g)
    noise = torch.randn(batch, generator=g) / 4                        # EDM's c_noise = ln(σ)/4
    labels = torch.eye(cfg.label_dim)[torch.arange(batch) % cfg.label_dim] if cfg.label_dim else None
    augment = torch.zeros(batch, cfg.augment_dim) if cfg.augment_dim else None
    return [t.to(device) if t is not None else None for t in (x, noise, labels, augment)]


def count(name: str, res: int) -> dict:
    """Parameters and forward FLOPs per image, on the meta device (nothing is allocated or run)."""
    from torch.utils.flop_counter import FlopCounterMode
    cfg = network_config(name, res)
    with torch.device("meta"):
        net = cfg.build()
        args = inputs(cfg, 1, "meta")
        with FlopCounterMode(display=False) as counter:
            net(*args)
    return {"params": sum(p.numel() for p in net.parameters()), "flops_per_image": counter.get_total_flops()}


def measure(spec: dict) -> dict:
    """One measurement in this (fresh) process: peak memory of the first call, then the median time."""
    device = torch.device(spec["device"])
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    cfg = network_config(spec["network"], spec["resolution"])
    net = cfg.build().to(device)
    x, noise, labels, augment = inputs(cfg, spec["batch"], device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec["bf16"])

    if spec["mode"] == "forward":
        net.eval()

        def call():
            with torch.no_grad(), autocast:
                net(x, noise, labels, augment)
    else:
        net.train()

        def call():
            net.zero_grad(set_to_none=True)
            with autocast:
                out = net(x, noise, labels, augment)
            (out.float() - x).square().mean().backward()

    def fn():
        call()
        if cuda:
            torch.cuda.synchronize(device)

    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        peak = (torch.cuda.max_memory_allocated(device) - before) / 2 ** 20
    else:
        with PeakRSS() as probe:
            fn()
        peak = probe.mib
    seconds = median_seconds(fn, spec["repeats"], warmup=spec["warmup"])
    b = spec["batch"]
    return {**spec, "seconds": seconds, "seconds_per_image": seconds / b, "peak_mib": peak,
            "peak_mib_per_image": None if peak is None else peak / b}


def _ratio(a, b):
    return None if a is None or b in (None, 0) else a / b


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--resolutions", default="32,64,128,256", help="comma-separated; the first is the growth base")
    ap.add_argument("--tiny", default=",".join(TINY), help="tiny presets to measure (comma-separated)")
    ap.add_argument("--batch", type=int, default=16, help="images per call for the tiny networks")
    ap.add_argument("--repeats", type=int, default=5, help="timed calls per tiny measurement (median)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed calls after the memory-probe call")
    ap.add_argument("--paper", default=",".join(n for n, _ in PAPER),
                    help="paper configs to run (comma-separated); the others are counted, not run")
    ap.add_argument("--paper-repeats", type=int, default=2,
                    help="timed calls (batch 1) per paper measurement, after one memory-probe call")
    ap.add_argument("--skip-paper", action="store_true",
                    help="run no paper config (their parameters and FLOPs are still counted)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--bf16", action="store_true", help="bfloat16 autocast around the network")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    add_quick(ap, batch=2, repeats=1, warmup=0, paper_repeats=1)
    args = parse_args(ap, argv)
    if args.one is not None:
        print(json.dumps(measure(json.loads(args.one))))
        return {}
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available")
    resolutions = [int(r) for r in args.resolutions.split(",")]
    base_res = resolutions[0]
    common_spec = {"device": args.device, "bf16": args.bf16}

    def child(name, res, mode, batch, repeats, warmup):
        spec = {**common_spec, "network": name, "resolution": res, "mode": mode, "batch": batch,
                "repeats": repeats, "warmup": warmup}
        print(f"scaling: {name} @ {res} {mode} (batch {batch})", file=sys.stderr, flush=True)
        return run_child([__file__, "--one", json.dumps(spec)])

    peak = machine(args.device).get("fp32_peak_gflops")

    def network_rows(name, batch, repeats, warmup, run=True):
        """One row per resolution: params and FLOPs (always), then forward and training-step seconds
        and peak memory per image when `run`, and growth ratios vs the first resolution."""
        rows = []
        for res in resolutions:
            row = {"network": name, "resolution": res, **count(name, res), "batch": batch,
                   "repeats": repeats if run else None, "measured": run}
            for mode, key in (("forward", "forward"), ("train", "train_step")):
                m = child(name, res, mode, batch, repeats, warmup) if run else {}
                row[f"{key}_s_per_image"] = m.get("seconds_per_image")
                row[f"{mode}_peak_mib"] = m.get("peak_mib")
                row[f"{mode}_peak_mib_per_image"] = m.get("peak_mib_per_image")
            row["forward_gflops_per_s"] = _ratio(row["flops_per_image"] / 1e9, row["forward_s_per_image"])
            # the share of the machine's fp32 peak (common.fp32_peak) the forward pass reaches
            row["forward_fraction_of_fp32_peak"] = (_ratio(row["forward_gflops_per_s"], peak)
                                                    if args.device == "cpu" and peak else None)
            rows.append(row)
        for r in rows:
            r["growth_vs_base"] = {
                "pixels": (r["resolution"] / base_res) ** 2,
                "flops": _ratio(r["flops_per_image"], rows[0]["flops_per_image"]),
                "forward_time": _ratio(r["forward_s_per_image"], rows[0]["forward_s_per_image"]),
                "train_time": _ratio(r["train_step_s_per_image"], rows[0]["train_step_s_per_image"]),
                "forward_memory": _ratio(r["forward_peak_mib"], rows[0]["forward_peak_mib"]),
                "train_memory": _ratio(r["train_peak_mib"], rows[0]["train_peak_mib"]),
            }
        return rows

    tiny = [r for name in args.tiny.split(",") if name
            for r in network_rows(name, args.batch, args.repeats, args.warmup)]
    paper_run = [] if args.skip_paper else [n for n in args.paper.split(",") if n]
    paper = [r for name, _ in PAPER
             for r in network_rows(name, 1, args.paper_repeats, 0, run=name in paper_run)]

    return emit({**machine(args.device), "quick": args.quick, "bf16": args.bf16, "resolutions": resolutions,
                 "base_resolution": base_res, "warmup": args.warmup,
                 "flops": "FlopCounterMode on the meta device, forward, per image (multiply-add = 2)",
                 "memory": ("torch.cuda.max_memory_allocated above the allocation before the call"
                            if args.device.startswith("cuda") else
                            "process VmHWM above VmRSS before the call (fresh process per measurement)"),
                 "tiny": tiny, "paper": paper}, args.json)


if __name__ == "__main__":
    main()
