"""The bundled Fashion-MNIST demo chain (8×8 base + 8→32 relay): it loads, samples offline, and its
samples are recognisably class-conditional — judged by the bundled Fashion-MNIST feature net (needs the Debian package dataset-fashion-mnist, installed by .ci/run)."""

from __future__ import annotations

import json

import pytest
import torch

from relay_diffusion.cli import main
from relay_diffusion.models import read_config
from relay_diffusion.pipeline import bundled_demo_chain
from relay_diffusion.pixels import to_uint8
from relay_diffusion.metrics.classifier import accuracy, bundled_feature_net_dir, load_feature_net
from relay_diffusion.pipeline import RelayChain


def _real(split):
    """Fashion-MNIST padded to 32×32 as uint8 [N, 1, 32, 32] and labels."""
    from relay_diffusion.data.builtin import fashion_mnist_arrays, pad_to
    try:
        x, y = fashion_mnist_arrays(split)
    except ValueError as e:
        pytest.skip(str(e))
    return torch.from_numpy(pad_to(x, 32))[:, None], torch.from_numpy(y)


@pytest.fixture(scope="module")
def classifier():
    """The bundled feature net (demo/fmnist-features) as the judge; its card states 92.6 % test
    accuracy, re-checked here on 2,000 test images."""
    net = load_feature_net(bundled_feature_net_dir())
    xt, yt = _real("test")
    assert accuracy(net, xt[:2000], yt[:2000]) > 0.9                # a sane judge
    return lambda images: net(to_uint8(images))["logits"]


def test_demo_chain_loads_with_card():
    dirs = bundled_demo_chain()
    chain = RelayChain.from_pretrained(dirs)
    assert [m.stage for m in chain.models] == ["base", "relay"]
    assert chain.resolution == 32 and chain.label_dim == 10
    card = (dirs[0].parent / "MODEL_CARD.md").read_text()
    assert "rdm train --config fmnist-base-8" in card and "rdm train --config fmnist-relay-8to32" in card
    size = sum(p.stat().st_size for d in dirs for p in d.iterdir())
    assert size <= 10 * 2 ** 20


@pytest.mark.parametrize("distilled", [False, True], ids=["demo", "distilled"])
def test_demo_samples_are_class_conditional(classifier, distilled):
    chain = RelayChain.from_pretrained(bundled_demo_chain(distilled=distilled))
    seeds = list(range(200))                              # 20 per class (label = seed mod 10)
    images = chain(seeds, labels="balanced")
    with torch.no_grad():
        pred = classifier(images.clamp(-1, 1)).argmax(1)
    acc = (pred == torch.tensor(seeds) % 10).float().mean().item()
    assert acc >= 0.70, acc


def test_rdm_sample_without_model_uses_the_demo(tmp_path):
    assert main(["sample", "--seeds", "0-19", "--grid", str(tmp_path / "grid.png"),
                 "--settings", str(tmp_path / "s.json")]) == 0
    rec = json.loads((tmp_path / "s.json").read_text())
    assert rec["models"][0].endswith("fmnist-base-8") and rec["num_images"] == 20


def test_preset_distilled_samples_the_bundled_distilled_chain_in_four_evaluations(tmp_path):
    """`rdm sample --preset distilled` without --model: the bundled distilled stages, each on its
    own grid, 2 + 2 evaluations recorded as nfe; classifier-free guidance doubles them (the bundled
    students take no guidance input, demo/MODEL_CARD.md)."""
    assert main(["sample", "--preset", "distilled", "--seeds", "0-9", "--npz", str(tmp_path / "a.npz"),
                 "--settings", str(tmp_path / "s.json"), "--quiet"]) == 0
    rec = json.loads((tmp_path / "s.json").read_text())
    assert rec["models"][1].endswith("fmnist-relay-8to32-distilled") and rec["nfe"] == 4
    assert [s["sampler"]["solver"] for s in rec["stages"]] == ["ddim", "ddim"]
    assert main(["sample", "--preset", "distilled", "--seeds", "0-9", "--cfg-scale", "2", "--npz",
                 str(tmp_path / "b.npz"), "--settings", str(tmp_path / "t.json"), "--quiet"]) == 0
    assert json.loads((tmp_path / "t.json").read_text())["nfe"] == 8
    card = (bundled_demo_chain()[0].parent / "MODEL_CARD.md").read_text()
    for d in bundled_demo_chain(distilled=True):
        config = read_config(d)
        assert f"`{d.name}/`" in card and len(config.distilled_grid) == 2 and config.class_names
        assert config.training["command"].startswith("rdm distill --teacher ")


def test_feature_net_fid_separates_real_from_degraded():
    """Feature-net FID of real test images vs train images is far below that of the same test
    images blurred (2×2 box, i.e. 16×16 detail) or noised (σ = 25/255·2 in [−1, 1] units)."""
    from relay_diffusion.evaluation import FeatureSet, compute_metrics

    net = load_feature_net(bundled_feature_net_dir())
    train, _ = _real("train")
    test, _ = _real("test")
    train, test = train[:5000], test[:5000]
    blurred = torch.nn.functional.interpolate(
        torch.nn.functional.avg_pool2d(test.float(), 2), scale_factor=2, mode="nearest").round().to(torch.uint8)
    noised = (test.float() + 25 * torch.randn(test.shape, generator=torch.Generator().manual_seed(0))
              ).clamp(0, 255).round().to(torch.uint8)

    def features(x, name):
        return FeatureSet(name, len(x), "fmnist", {"pool": net(x)["pool"].double().numpy()})
    ref = features(train, "train")
    fid = {name: compute_metrics(features(x, name), ref, ["fid"], allow_small=True)["fid"]
           for name, x in (("test", test), ("blurred", blurred), ("noised", noised))}
    assert fid["test"] * 10 < fid["blurred"] and fid["test"] * 10 < fid["noised"], fid
