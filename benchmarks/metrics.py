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
import json
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import emit, machine, median_seconds  # noqa: E402

from relay_diffusion.metrics import InceptionV3FID, load_feature_net  # noqa: E402
from relay_diffusion.metrics.classifier import bundled_feature_net_dir  # noqa: E402

PR_CHILD = r"""
import json, sys, time
import numpy as np
from relay_diffusion.metrics import precision_recall
n, d, batch = map(int, sys.argv[1:4])
rng = np.random.default_rng(0)
real = rng.standard_normal((n, d))
fake = rng.standard_normal((n, d))
fake += 0.1

def rss(field):                                   # kB from /proc/self/status
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1])

before = rss("VmRSS:")
open("/proc/self/clear_refs", "w").write("5")     # reset the high-water mark (VmHWM) to now
t = time.perf_counter()
p, r = precision_recall(real, fake, k=3, batch=batch)
seconds = time.perf_counter() - t
print(json.dumps({"n": n, "dim": d, "batch": batch, "seconds": seconds, "precision": p,
                  "recall": r, "peak_above_inputs_mib": (rss("VmHWM:") - before) / 1024,
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
    parser.add_argument("--json", default=None, help="also write the result to this path")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    with torch.no_grad():
        inception = InceptionV3FID().eval()
        fnet = load_feature_net(bundled_feature_net_dir())
        result = {
            **machine(),
            "inception_32px": throughput(inception.features, torch.randint(0, 256, (50, 3, 32, 32), dtype=torch.uint8), args.repeats),
            "feature_net_32px": throughput(fnet, torch.randint(0, 256, (500, 1, 32, 32), dtype=torch.uint8), args.repeats),
        }
    result["precision_recall"] = [
        json.loads(subprocess.run([sys.executable, "-c", PR_CHILD, str(args.pr_images), "2048", str(b)],
                                  check=True, capture_output=True, text=True).stdout)
        for b in sorted({args.pr_batch, 10_000})]
    result["feature_net_over_inception"] = (result["feature_net_32px"]["images_per_s"]
                                            / result["inception_32px"]["images_per_s"])
    return emit(result, args.json)


if __name__ == "__main__":
    main()
