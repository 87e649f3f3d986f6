"""Evaluation costs on this machine: feature-extraction images/s of the FID Inception-v3 (random
weights: speed does not depend on them) and of the bundled Fashion-MNIST feature net, and the
time and peak memory of precision/recall on two 10k × 2048 feature sets (chunked distances).

    python benchmarks/metrics.py --json metrics.json [--repeats 3]

Throughputs are medians of --repeats timed batches after one warm-up batch, measured in one run;
the P/R peak is the process's resident-memory high-water mark above its level before the call,
measured in a fresh subprocess so nothing else inflates it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import BENCH_DIR, add_quick, emit, machine, median_seconds, parse_args, run_child  # noqa: E402

from relay_diffusion.metrics import InceptionV3FID, load_feature_net  # noqa: E402
from relay_diffusion.metrics.classifier import bundled_feature_net_dir  # noqa: E402

PR_CHILD = r"""
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from common import PeakRSS
from relay_diffusion.metrics import precision_recall
n, d, batch, repeats = map(int, sys.argv[2:6])
rng = np.random.default_rng(0)
real = rng.standard_normal((n, d))
fake = rng.standard_normal((n, d))
fake += 0.1

times = []
with PeakRSS() as peak:                           # the first call: its own peak above the inputs
    t = time.perf_counter()
    p, r = precision_recall(real, fake, k=3, batch=batch)
    times.append(time.perf_counter() - t)
for _ in range(repeats - 1):
    t = time.perf_counter()
    precision_recall(real, fake, k=3, batch=batch)
    times.append(time.perf_counter() - t)
print(json.dumps({"n": n, "dim": d, "batch": batch, "seconds": statistics.median(times),
                  "repeats": repeats, "precision": p, "recall": r, "peak_above_inputs_mib": peak.mib,
                  "inputs_mib": 2 * n * d * 8 / 2 ** 20}))
"""


def throughput(fn, images, repeats) -> dict:
    seconds = median_seconds(lambda: fn(images), repeats)
    return {"batch": len(images), "input": list(images.shape[1:]), "images_per_s": len(images) / seconds}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pr-images", type=int, default=10_000)
    parser.add_argument("--pr-batch", type=int, default=2_000,
                        help="a distance chunk (rows × rows) to measure beside the default 10,000")
    parser.add_argument("--pr-repeats", type=int, default=1,
                        help="P/R timings per chunk size (median; the first one also gives the peak)")
    parser.add_argument("--inception-batch", type=int, default=50, help="images per timed Inception batch")
    parser.add_argument("--feature-batch", type=int, default=500, help="images per timed feature-net batch")
    parser.add_argument("--json", default=None, help="also write the result to this path")
    add_quick(parser, repeats=2, pr_images=1000, pr_batch=500, inception_batch=4, feature_batch=100)
    args = parse_args(parser, argv)
    torch.manual_seed(0)
    with torch.no_grad():
        inception = InceptionV3FID().eval()
        fnet = load_feature_net(bundled_feature_net_dir())
        result = {
            **machine(), "quick": args.quick, "repeats": args.repeats,
            "inception_32px": throughput(inception.features, torch.randint(
                0, 256, (args.inception_batch, 3, 32, 32), dtype=torch.uint8), args.repeats),
            "feature_net_32px": throughput(fnet, torch.randint(
                0, 256, (args.feature_batch, 1, 32, 32), dtype=torch.uint8), args.repeats),
        }
    result["precision_recall"] = [
        run_child(["-c", PR_CHILD, str(BENCH_DIR), str(args.pr_images), "2048", str(b), str(args.pr_repeats)])
        for b in sorted({args.pr_batch, 10_000})]
    result["feature_net_over_inception"] = (result["feature_net_32px"]["images_per_s"]
                                            / result["inception_32px"]["images_per_s"])
    return emit(result, args.json)


if __name__ == "__main__":
    main()
