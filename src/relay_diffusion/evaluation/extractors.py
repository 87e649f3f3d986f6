"""Feature extractors for `rdm eval`: the FID Inception-v3 or an offline feature net. Each maps
uint8-range images [N, C, H, W] to {"pool", "logits"[, "spatial"]} float arrays."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable

import torch

from ..metrics.classifier import BUNDLED_FEATURE_NETS, bundled_feature_net_dir, load_feature_net
from .sets import file_stamp

INCEPTION = "inception"


@dataclasses.dataclass
class Extractor:
    name: str                        # recorded in feature files; sets must share it to be compared
    fingerprint: str                 # identifies the weights, for the activation cache
    run: Callable                    # uint8 [N, C, H, W] → dict of [N, D] tensors
    device: torch.device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> dict:
        return {k: v.to("cpu", torch.float64).numpy() for k, v in self.run(images.to(self.device)).items()}


def _file_fingerprint(path: Path) -> str:
    return hashlib.sha256(file_stamp(path).encode()).hexdigest()[:16]


def load_extractor(which: str = INCEPTION, inception_path: str | None = None,
                   device: str | torch.device = "cpu", inception_hash: str | bool = True) -> Extractor:
    """which: "inception" (weights by `inception_path`, $RDM_INCEPTION or the cache dir), the name
    of a bundled Fashion-MNIST feature net ("fmnist", or "fmnist-b": a second, independent
    feature space; see `BUNDLED_FEATURE_NETS`) or a feature-net directory (`rdm eval
    train-features`).
    inception_hash: True = the published file's SHA-256 prefix, a hex prefix (e.g. of a
    .safetensors conversion) or False (no check)."""
    device = torch.device(device)
    if which == INCEPTION:
        from ..metrics.inception import inception_weights_path, load_inception

        path = inception_weights_path(inception_path)
        net = load_inception(path, device=device, check_hash=inception_hash)

        def run(x):
            f = net.features(x)
            # IS on the logits without the bias, as ADM's evaluator (and hence RDM) computes them
            return {"pool": f["pool"], "spatial": f["spatial"], "logits": f["logits_unbiased"]}
        return Extractor("inception-2015-12-05", _file_fingerprint(path), run, device)
    directory = bundled_feature_net_dir(which) if which in BUNDLED_FEATURE_NETS else Path(which)
    if not (directory / "config.json").is_file():
        names = ", ".join(repr(n) for n in (INCEPTION, *BUNDLED_FEATURE_NETS))
        raise ValueError(f"--features {which!r}: expected {names} or a feature-net "
                         f"directory (from `rdm eval train-features`)")
    net = load_feature_net(directory, device=device)
    name = f"feature-net:{net.info.get('name', directory.name)}"
    return Extractor(name, _file_fingerprint(directory / "model.safetensors"), net, device)
