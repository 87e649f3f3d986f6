"""The bundled Fashion-MNIST demo chain (8×8 base + 8→32 relay): it loads, samples offline, and its
samples are recognisably class-conditional — judged by a small classifier trained here on real
Fashion-MNIST (needs the Debian package dataset-fashion-mnist, installed by .ci/run)."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from relay_diffusion.cli import main
from relay_diffusion.generate import bundled_demo_chain
from relay_diffusion.pipeline import RelayChain


def _classifier() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 16, 128), nn.ReLU(), nn.Linear(128, 10))


def _real(split):
    from relay_diffusion.data.builtin import fashion_mnist_arrays, pad_to
    try:
        x, y = fashion_mnist_arrays(split)
    except ValueError as e:
        pytest.skip(str(e))
    x = torch.from_numpy(pad_to(x, 32)).float()[:, None] / 127.5 - 1
    return x, torch.from_numpy(y)


@pytest.fixture(scope="module")
def classifier():
    torch.manual_seed(0)
    x, y = _real("train")
    net = _classifier()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(2):                                   # 2 epochs over 30k images
        perm = torch.randperm(30000, generator=g)
        for i in range(0, 30000, 128):
            b = perm[i:i + 128]
            loss = nn.functional.cross_entropy(net(x[b]), y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
    net.eval()
    xt, yt = _real("test")
    with torch.no_grad():
        acc = (net(xt[:2000]).argmax(1) == yt[:2000]).float().mean().item()
    assert acc > 0.85, acc                               # a sane judge
    return net


def test_demo_chain_loads_with_card():
    dirs = bundled_demo_chain()
    chain = RelayChain.from_pretrained(dirs)
    assert [m.stage for m in chain.models] == ["base", "relay"]
    assert chain.resolution == 32 and chain.label_dim == 10
    card = (dirs[0].parent / "MODEL_CARD.md").read_text()
    assert "rdm train --preset fmnist-base-8" in card and "rdm train --preset fmnist-relay-8to32" in card
    size = sum(p.stat().st_size for d in dirs for p in d.iterdir())
    assert size <= 10 * 2 ** 20


def test_demo_samples_are_class_conditional(classifier):
    chain = RelayChain.from_pretrained(bundled_demo_chain())
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
