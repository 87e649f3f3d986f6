"""Sampling throughput: images/s of the bundled 2-stage demo chain and of a 64→256 chain with tiny
ADM networks; the relay sampler's own overhead per step (a trivial denoiser) against a
straightforward transcription of the official algorithm (float64, FFT patch DCT, s²-roll block
noise, coefficient maps in DCT space) — target ≥ 8× less overhead; and a 64→256 chain per network
runtime against that transcription of the official samplers (same weights, same network calls) —
target ≥ 1.5× with fp32 network math, ≥ 2× with bf16.

    python benchmarks/sample_throughput.py --json sample.json [--repeats 5] [--quick]
    python benchmarks/sample_throughput.py --device cuda --sections official --official-networks paper

Medians of --repeats, measured in one run. Every timing also gives its achieved GFLOP/s (network
FLOPs per image: evaluations × a forward's convolutions, matmuls and attention) and the fraction
of the machine's fp32 peak (benchmarks/README.md: cores × clock × FLOPs per cycle).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (ALLOCATORS, RUNTIMES, add_quick, add_runtimes, apply_allocator, chain_flops, emit,  # noqa: E402
                    machine, median_seconds, parse_args, parse_names, parse_runtimes, peak_use, run_child,
                    synchronize)
from relay_diffusion.reference import reference_edm_sampler, reference_relay_sampler  # noqa: E402

from relay_diffusion import EDMPrecond, RelaySchedule, SeededNoise, relay_sampler, relay_sigmas  # noqa: E402
from relay_diffusion.models import RelayModel  # noqa: E402
from relay_diffusion.networks import NETWORK_PRESETS  # noqa: E402
from relay_diffusion.networks.runtime import RuntimeOptions  # noqa: E402
from relay_diffusion.pipeline import RelayChain  # noqa: E402
from relay_diffusion.relay import upsample_nearest  # noqa: E402
from relay_diffusion.sampling.presets import chain_recipe  # noqa: E402
from relay_diffusion.sampling.settings import BaseSamplerSettings, RelaySamplerSettings  # noqa: E402


class CountedCalls:
    """denoise(x, σ) for the official transcriptions: float32 network, float64 result, counted."""

    def __init__(self, denoiser):
        self.denoiser, self.calls = denoiser, 0

    def __call__(self, x, sigma):
        self.calls += 1
        # EDM's networks write every element-wise result to a new tensor; ours do that only while
        # autograd is on (networks/layers.py ResBlock), so the official side runs with it on. No
        # weight or input requires grad, so no graph is built (checked).
        with torch.enable_grad():
            out = self.denoiser(x.float(), torch.full((x.shape[0],), float(sigma), device=x.device))
        if out.requires_grad:
            raise AssertionError("the official transcription's network built an autograd graph")
        return out.double()


@torch.no_grad()
def official_chain(chain: RelayChain, n: int) -> tuple[torch.Tensor, list[int]]:
    """The chain's base + relay stages through the official algorithms (float64 samplers, fp32
    eager networks, torch.randn noise): images and network calls per image of each stage."""
    base, relay = chain.models
    base_settings, relay_settings = chain.settings
    counted = [CountedCalls(base.denoiser), CountedCalls(relay.denoiser)]
    device = next(base.denoiser.parameters()).device
    noise = torch.randn(n, base.channels, base.resolution, base.resolution, device=device)
    low = reference_edm_sampler(counted[0], noise, base_settings.sigmas())
    sch = relay.schedule
    x = reference_relay_sampler(counted[1], upsample_nearest(low, sch.up_scale), relay_settings.sigmas(sch), sch,
                                relay_settings.eta, sch.block_scale if relay_settings.block_scale is None
                                else relay_settings.block_scale, torch.randn_like)
    return x, [c.calls for c in counted]


def sampler_overhead(repeats: int, shape=(16, 3, 256, 256), steps: int = 8, device="cpu") -> dict:
    """Seconds per relay step with a trivial denoiser (D(x) = 0.9·x) on `shape` (default 16×3×256×256)."""
    sch = RelaySchedule()
    sigmas = relay_sigmas(num_steps=40)[:steps]
    x_up = torch.rand(shape, device=device) * 2 - 1
    trivial = lambda x, s, labels=None: 0.9 * x                       # noqa: E731
    randn = lambda t: torch.randn_like(t)                             # noqa: E731
    # like for like: both samplers give the same result on the same draws
    small = x_up[:2, :, :32, :32].double()
    a = relay_sampler(trivial, small, schedule=sch, sigmas=sigmas, randn_like=SeededNoise([1, 2]),
                      dtype=torch.float64)
    b = reference_relay_sampler(lambda x, s: 0.9 * x, small, sigmas, sch, 0.2, 0.15, SeededNoise([1, 2]))
    assert torch.allclose(a, b, atol=1e-9), float((a - b).abs().max())
    t = {
        "ours_float32": median_seconds(lambda: relay_sampler(trivial, x_up, schedule=sch, sigmas=sigmas,
                                                             randn_like=randn), repeats),
        "ours_float64": median_seconds(lambda: relay_sampler(trivial, x_up, schedule=sch, sigmas=sigmas,
                                                             randn_like=randn, dtype=torch.float64), repeats),
        "reference_float64": median_seconds(lambda: reference_relay_sampler(
            lambda x, s: 0.9 * x, x_up, sigmas, sch, 0.2, 0.15, randn), max(3, repeats // 2)),
        "ours_dpmpp_2m_pc_float32": median_seconds(lambda: relay_sampler(
            trivial, x_up, schedule=sch, sigmas=sigmas, solver="dpmpp-2m-pc", randn_like=randn), repeats),
    }
    per_step = {k: v / steps for k, v in t.items()}
    # a Heun step makes two network evaluations, a multistep step one (the last σ: one for both)
    per_eval = {k: v / (steps if "dpmpp" in k else 2 * steps - 1) for k, v in t.items()}
    return {"shape": list(shape), "steps": steps, "repeats": repeats, "reference_repeats": max(3, repeats // 2),
            "seconds_per_step": per_step, "seconds_per_evaluation": per_eval,
            "overhead_reduction_float32": per_step["reference_float64"] / per_step["ours_float32"],
            "overhead_reduction_float64": per_step["reference_float64"] / per_step["ours_float64"],
            "target_reduction": 8.0}


def _random_model(stage, res, net_name, channels=3, up=None, device="cpu"):
    cfg = NETWORK_PRESETS[net_name].with_data(res, channels, 0)
    torch.manual_seed(0)
    net = cfg.build().to(device)
    config = {"stage": stage, "resolution": res, "channels": channels, "label_dim": 0, "sigma_data": 0.5,
              "network": cfg.to_dict(),
              "schedule": dataclasses.asdict(RelaySchedule(up_scale=up)) if up else None}
    return RelayModel(EDMPrecond(net).eval().requires_grad_(False), config)


def chain_throughput(repeats: int, demo_images: int = 100, chain_images: int = 4, chain_repeats: int = 1,
                     device="cpu") -> dict:
    out = {}
    try:
        from relay_diffusion.pipeline import bundled_demo_chain
        demo = RelayChain.from_pretrained(bundled_demo_chain(), device=device)
        n = demo_images
        sec = median_seconds(lambda: demo(range(n)), max(1, repeats // 2))
        record = machine(str(device))
        out["demo_fmnist_8_to_32"] = {"images": n, "seconds": sec, "images_per_s": n / sec,
                                      "repeats": max(1, repeats // 2),
                                      "settings": "base 18 steps (35 NFE) + relay 7 steps (13 NFE)",
                                      **peak_use(chain_flops(demo), n / sec, record)}
        demo.settings = chain_recipe("fast")
        fast = median_seconds(lambda: demo(range(n)), max(1, repeats // 2))
        out["demo_fmnist_8_to_32_fast"] = {"images": n, "seconds": fast, "images_per_s": n / fast,
                                           "speedup_vs_default": sec / fast, "repeats": max(1, repeats // 2),
                                           "settings": f"--preset fast ({' + '.join(map(str, demo.nfe()))} NFE)",
                                           **peak_use(chain_flops(demo), n / fast, record)}
        demo.settings = [BaseSamplerSettings(), RelaySamplerSettings()]          # the official defaults again
        official = median_seconds(lambda: official_chain(demo, n), max(1, repeats // 2))
        out["demo_fmnist_8_to_32_official_transcription"] = {
            "images": n, "seconds": official, "images_per_s": n / official, "repeats": max(1, repeats // 2),
            "settings": "the official samplers transcribed (float64, relay_diffusion.reference), same weights",
            **peak_use(chain_flops(demo), n / official, record)}
        out.update(distilled_throughput(n, repeats, device, {"default": sec, "fast": fast, "official": official}))
    except ValueError as e:
        out["demo_fmnist_8_to_32"] = {"skipped": str(e)}
    chain = RelayChain([_random_model("base", 64, "tiny-64", device=device),
                        _random_model("relay", 256, "tiny-64", up=4, device=device)],
                       [BaseSamplerSettings(), RelaySamplerSettings()])
    n = chain_images
    sec = median_seconds(lambda: chain(range(n)), chain_repeats)
    out["tiny_adm_64_to_256"] = {"images": n, "seconds": sec, "images_per_s": n / sec, "repeats": chain_repeats,
                                 "settings": "tiny-64 networks, base 18 steps + relay 7 steps",
                                 **peak_use(chain_flops(chain), n / sec, machine(str(device)))}
    return out


def distilled_throughput(n: int, repeats: int, device, teacher_seconds: dict) -> dict:
    """The bundled distilled demo chain (`--preset distilled`) against the teacher chain's
    timings of the same run (`teacher_seconds`: default, fast, official → seconds for n images)."""
    from relay_diffusion.pipeline import bundled_demo_chain

    try:
        chain = RelayChain.from_pretrained(bundled_demo_chain(distilled=True), device=device)
    except ValueError as e:
        return {"demo_fmnist_8_to_32_distilled": {"skipped": str(e)}}
    sec = median_seconds(lambda: chain(range(n)), max(1, repeats // 2))
    return {"demo_fmnist_8_to_32_distilled": {
        "images": n, "seconds": sec, "images_per_s": n / sec, "repeats": max(1, repeats // 2),
        "settings": f"--preset distilled ({' + '.join(map(str, chain.nfe()))} NFE)",
        **peak_use(chain_flops(chain), n / sec, machine(str(device))),
        **{f"speedup_vs_{k}": v / sec for k, v in teacher_seconds.items() if v}}}


# network runtimes timed against the official samplers (common.RUNTIMES)
CHAIN_RUNTIMES = ("fp32", "fp32_channels_last", "fp32_channels_last_compiled", "bf16", "bf16_channels_last",
                  "bf16_channels_last_compiled")
# runtimes counted as "unchanged quality" for chain_speedup_vs_official, as measured by the quality
# plan `runtime` of studies/solvers.py (docs/speed.md): channels-last gives the fp32 images (ΔFID
# +0.000); bf16 costs +0.028 ± 0.003 feature FID on the demo chain (10k samples, paired bootstrap),
# so bf16 rows are timed but not counted. Compilation keeps the network's function (tested).
UNCHANGED_QUALITY = tuple(name for name, options in RUNTIMES.items() if "precision" not in options)
# the chain timed against the official samplers: (base network, relay network), 64² → 256²
OFFICIAL_NETWORKS = {"tiny": ("tiny-64", "tiny-64"),
                     "paper": ("imagenet64-stage1", "imagenet256-stage2")}      # the paper's ImageNet pair


def _box_resampling(model: RelayModel, on: bool) -> None:
    """Let the network resample by pooling/nearest upsampling (ours) or not (EDM's convolutions)."""
    for module in model.denoiser.modules():
        if hasattr(module, "box_filter"):
            module.box_filter = on


def chain_vs_official(repeats: int, n: int, runtimes: list[str], networks: str = "tiny", device="cpu") -> dict:
    """Images/s of a 64→256 chain with the default (official) sampler settings: ours per network
    runtime against official_chain on the same weights and the same number of network calls.
    The official chain is timed before and after ours; the median of both."""
    base_net, relay_net = OFFICIAL_NETWORKS[networks]
    models = [_random_model("base", 64, base_net, device=device),
              _random_model("relay", 256, relay_net, up=4, device=device)]
    chain = RelayChain(models, [BaseSamplerSettings(), RelaySamplerSettings()])

    def official():
        for m in models:
            m.denoiser.configure(RuntimeOptions())
            _box_resampling(m, False)                    # EDM resamples by depthwise convolution
        try:
            return official_chain(chain, n)
        finally:
            for m in models:
                _box_resampling(m, True)

    _, calls = official()
    if calls != chain.nfe():
        raise AssertionError(f"network calls differ: official {calls}, ours {chain.nfe()}")
    flops, record = chain_flops(chain), machine(str(device))           # the same network calls on both sides
    t_official = [median_seconds(official, repeats)]
    out = {}
    for name in runtimes:
        options = RuntimeOptions(**RUNTIMES[name])
        try:
            options.check(device)
        except ValueError as e:                          # fp16 off CUDA
            out[name] = {"skipped": str(e)}
            continue
        for m in models:
            m.denoiser.configure(options)
        synchronize()
        t0 = time.perf_counter()
        chain(range(n))                                  # warm-up (compilation happens here)
        synchronize()
        first = time.perf_counter() - t0
        t = median_seconds(lambda: chain(range(n)), repeats, warmup=0)
        out[name] = {"seconds": t, "images_per_s": n / t, "first_call_seconds": first,
                     **peak_use(flops, n / t, record)}
    t_official.append(median_seconds(official, repeats))
    official_s = statistics.median(t_official)
    timed = [k for k in out if "seconds" in out[k]]
    for k in timed:
        out[k]["speedup_vs_official"] = official_s / out[k]["seconds"]
    fair = [k for k in timed if k in UNCHANGED_QUALITY]
    best = max(fair, key=lambda k: out[k]["speedup_vs_official"]) if fair else None
    fp32 = [k for k in fair if k.startswith("fp32")]
    bf16 = [k for k in timed if k.startswith("bf16")]
    return {"device": str(device), "images": n, "repeats": repeats, "network_calls_per_image": calls,
            "networks": {"base": base_net, "relay": relay_net},
            "settings": f"{base_net} base 64² EDM Heun 18 steps + {relay_net} relay 256² 18-step grid from σ 0.9",
            "official_seconds": t_official, "official_images_per_s": n / official_s,
            "official_peak_use": peak_use(flops, n / official_s, record), "ours": out,
            "best_runtime": best, "chain_speedup_vs_official": out[best]["speedup_vs_official"] if best else None,
            "chain_speedup_vs_official_fp32_math": max(out[k]["speedup_vs_official"] for k in fp32) if fp32 else None,
            # bf16 is timed, not counted above: its quality cost is in docs/speed.md
            "chain_speedup_vs_official_bf16": max(out[k]["speedup_vs_official"] for k in bf16) if bf16 else None,
            "unchanged_quality_runtimes": [k for k in UNCHANGED_QUALITY if k in out],
            "targets": {"fp32_math": 1.5, "bf16": 2.0, "gpu": 3.0}}


SECTIONS = ("overhead", "chains", "official")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--device", default="cpu", help="torch device to sample on (cpu, cuda, cuda:1, …)")
    ap.add_argument("--sections", default=",".join(SECTIONS),
                    help=f"what to measure (comma list of {', '.join(SECTIONS)})")
    ap.add_argument("--repeats", type=int, default=5, help="timings per measurement (median)")
    ap.add_argument("--overhead-shape", default="16,3,256,256", help="B,C,H,W of the sampler-overhead batch")
    ap.add_argument("--overhead-steps", type=int, default=8, help="relay steps timed for the overhead")
    ap.add_argument("--demo-images", type=int, default=100, help="images per bundled-demo chain call")
    ap.add_argument("--chain-images", type=int, default=4, help="images per tiny 64→256 chain call")
    ap.add_argument("--chain-repeats", type=int, default=1, help="timings of the tiny 64→256 chain (median)")
    ap.add_argument("--official-images", type=int, default=4, help="images per call of the chain-vs-official timing")
    ap.add_argument("--official-repeats", type=int, default=3,
                    help="timings per runtime and per official measurement in the chain-vs-official timing (median)")
    ap.add_argument("--official-networks", default="tiny", choices=OFFICIAL_NETWORKS,
                    help="networks of the chain-vs-official timing: tiny-64 pair, or the paper's ImageNet 64→256 pair")
    add_runtimes(ap, CHAIN_RUNTIMES, "timed against the official chain")
    ap.add_argument("--allocators", default=",".join(ALLOCATORS),
                    help="CPU allocators of the chain-vs-official timing, each in its own process: system "
                         "(glibc's defaults, both sides) and/or tuned (what rdm sets, both sides)")
    ap.add_argument("--allocator", choices=ALLOCATORS, help=argparse.SUPPRESS)   # a child's own setting
    add_quick(ap, repeats=2, overhead_shape="2,3,64,64", overhead_steps=4, demo_images=10, chain_images=1,
              official_images=1, official_repeats=1, runtimes="fp32,bf16", allocators="system")
    args = parse_args(ap, argv)
    sections = parse_names(ap, "--sections", args.sections, SECTIONS)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        ap.error(f"--device {args.device}: CUDA is not available")
    shape = tuple(int(v) for v in args.overhead_shape.split(","))
    runtimes = parse_runtimes(ap, args.runtimes)
    allocators = parse_names(ap, "--allocators", args.allocators, ALLOCATORS)
    if args.allocator:                                   # a child: one chain-vs-official timing, one line
        tuned = apply_allocator(args.allocator)
        result = chain_vs_official(args.official_repeats, args.official_images, runtimes,
                                   args.official_networks, device)
        print(json.dumps({**result, "allocator": args.allocator, "allocator_tuned": tuned}))
        return {}
    out = {**machine(str(device)), "quick": args.quick}
    if "overhead" in sections:
        out["sampler_overhead"] = sampler_overhead(args.repeats, shape, args.overhead_steps, device)
    if "chains" in sections:
        out["chains"] = chain_throughput(args.repeats, args.demo_images, args.chain_images, args.chain_repeats,
                                         device)
    if "official" in sections:
        out.update(official_per_allocator(args, runtimes, allocators))
    return emit(out, args.json)


def official_per_allocator(args, runtimes: list[str], allocators: list[str]) -> dict:
    """chain_vs_official in a fresh process per allocator. The headline keys come from the system
    allocator when it ran (both sides on glibc's defaults: like for like); with both, also how `rdm`
    (tuned) compares with the official samplers run as plain scripts (system)."""
    common = ["--device", args.device, "--official-repeats", str(args.official_repeats),
              "--official-images", str(args.official_images), "--official-networks", args.official_networks,
              "--runtimes", ",".join(runtimes)]
    results = {a: run_child([__file__, "--allocator", a, *common]) for a in allocators}
    first = results.get("system") or results[allocators[0]]
    out = {"chain_vs_official": first,
           **{k: first[k] for k in ("chain_speedup_vs_official", "chain_speedup_vs_official_fp32_math",
                                    "chain_speedup_vs_official_bf16")}}
    if "tuned" in results:
        out["chain_vs_official_tuned_allocator"] = results["tuned"]
    if {"system", "tuned"} <= set(results):
        official_s = statistics.median(results["system"]["official_seconds"])
        ours = results["tuned"]["ours"]
        out["rdm_tuned_vs_official_system_allocator"] = {
            k: official_s / row["seconds"] for k, row in ours.items() if "seconds" in row}
    return out


if __name__ == "__main__":
    main()
