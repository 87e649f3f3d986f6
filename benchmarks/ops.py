"""Relay-operator benchmark: cost of blur and block noise relative to torch.randn of the same
shape, and speed-up over straightforward reference implementations (FFT-based patch DCT as in
the official code's torch-dct path; block noise as s² circular rolls).

    python benchmarks/ops.py --json ops.json [--shape 16,3,256,256] [--repeats 25] [--quick]

All numbers are medians of `--repeats` timings, measured in one run; ratios are what to compare
across machines.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import add_quick, emit, machine, median_seconds, parse_args  # noqa: E402
from relay_diffusion.reference import _dct_fft, _from_patches, _idct_fft, _to_patches, reference_block_noise  # noqa: E402

from relay_diffusion import RelaySchedule, blur, block_noise, patch_dct, patch_idct


# ---- straightforward references: relay_diffusion/reference.py

def reference_blur(x, blur_sigma, p, min_scale=1e-3):
    """Official-style: patches → FFT DCT rows, then columns → scale → inverse → back."""
    u = _to_patches(x, p)
    u = _dct_fft(_dct_fft(u).transpose(-1, -2)).transpose(-1, -2)
    k = torch.arange(p, dtype=x.dtype)
    lam = (math.pi * k / p) ** 2
    a = (1 - min_scale) * torch.exp(-(lam[:, None] + lam[None, :]) * blur_sigma.reshape(-1, 1, 1) ** 2 / 2) + min_scale
    nb = u.shape[0] // x.shape[0]
    u = u * a.repeat_interleave(nb, 0)[:, None]
    u = _idct_fft(_idct_fft(u).transpose(-1, -2)).transpose(-1, -2)
    return _from_patches(u, p, x.shape)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", help="write the results to this file")
    ap.add_argument("--shape", default="16,3,256,256", help="B,C,H,W of the benchmark tensor")
    ap.add_argument("--repeats", type=int, default=25, help="timings per measurement (median)")
    ap.add_argument("--patch", type=int, default=4, help="patch size / block-noise kernel s")
    add_quick(ap, shape="4,3,64,64", repeats=3)
    args = parse_args(ap, argv)
    shape = tuple(int(v) for v in args.shape.split(","))
    p, r = args.patch, args.repeats
    torch.manual_seed(0)
    x = torch.randn(shape)
    sb = torch.rand(shape[0]) * 3.0                         # one σ_B per sample, as in training

    # correctness of the references against the library (so the comparison is like for like)
    xs = x[:2, :, :32, :32].double()
    assert torch.allclose(reference_blur(xs, sb[:2].double(), p), blur(xs, sb[:2].double(), p), atol=1e-10)
    assert torch.allclose(reference_block_noise(xs, p), block_noise(xs, p), atol=1e-10)

    t = {}
    t["randn"] = median_seconds(lambda: torch.randn(shape), r, warmup=2)
    t["blur"] = median_seconds(lambda: blur(x, sb, p), r)
    t["blur_shared_sigma"] = median_seconds(lambda: blur(x, 2.0, p), r)
    t["patch_dct_round_trip"] = median_seconds(lambda: patch_idct(patch_dct(x, p), p), r)
    t["block_noise_transform"] = median_seconds(lambda: block_noise(x, p), r)
    t["block_noise"] = median_seconds(lambda: block_noise(torch.randn(shape), p), r)
    sch = RelaySchedule(up_scale=p)
    t["relay_noise"] = median_seconds(lambda: sch.noise(x), r)
    t["reference_blur_fft"] = median_seconds(lambda: reference_blur(x, sb, p), max(5, r // 3))
    t["reference_block_noise_transform_rolls"] = median_seconds(lambda: reference_block_noise(x, p),
                                                                max(5, r // 3))
    t["reference_block_noise_rolls"] = median_seconds(lambda: reference_block_noise(torch.randn(shape), p),
                                                      max(5, r // 3))
    res = {
        "shape": list(shape), "patch": p, "dtype": "float32", **machine(), "quick": args.quick,
        "repeats": r, "reference_repeats": max(5, r // 3),
        "seconds": {k: round(v, 6) for k, v in t.items()},
        "blur_over_randn": t["blur"] / t["randn"],
        "blur_shared_sigma_over_randn": t["blur_shared_sigma"] / t["randn"],
        "block_noise_over_randn": t["block_noise"] / t["randn"],
        "block_noise_transform_over_randn": t["block_noise_transform"] / t["randn"],
        "relay_noise_over_randn": t["relay_noise"] / t["randn"],
        "blur_speedup_vs_fft_reference": t["reference_blur_fft"] / t["blur"],
        "block_noise_speedup_vs_roll_reference": t["reference_block_noise_rolls"] / t["block_noise"],
        "block_noise_transform_speedup_vs_roll_reference":
            t["reference_block_noise_transform_rolls"] / t["block_noise_transform"],
        "targets": {"blur_over_randn": 0.7, "block_noise_over_randn": 1.6},
    }
    return emit(res, args.json)


if __name__ == "__main__":
    main()
