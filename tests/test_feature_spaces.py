"""The two bundled feature spaces: "fmnist" (plain conv stages) and "fmnist-b" (residual stages,
other widths and seed). The design switch (FeatureNetConfig.block) is validated, leaves the first
net's weights and features untouched, and the second net loads by name, is accurate and gives
features of its own. The real-data check needs the Debian package dataset-fashion-mnist."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from relay_diffusion.cli import main
from relay_diffusion.evaluation import load_extractor
from relay_diffusion.metrics.classifier import (BUNDLED_FEATURE_NETS, FeatureNet, FeatureNetConfig,
                                                FeatureTrainConfig, ResidualBlock, accuracy,
                                                bundled_feature_net_dir, load_feature_net, save_feature_net,
                                                train_feature_net)


def _pattern(n=3, size=32):
    """Deterministic uint8 images [n, 1, size, size] (no RNG, so stable across torch versions)."""
    k = torch.arange(n).view(n, 1, 1, 1)
    i, j = torch.arange(size).view(1, 1, size, 1), torch.arange(size).view(1, 1, 1, size)
    return ((i * 7 + j * 13 + k * 61) % 256).to(torch.uint8)


# logits of the bundled "fmnist" net for _pattern(), computed before FeatureNetConfig had a
# `block` field (the net as it was trained and shipped)
FMNIST_LOGITS = [
    [3.8968809, -2.6742258, 1.4601537, -5.0206051, -7.2789021, -4.7777061, -3.7114360, -5.0521855, -5.6977601, -3.4258225],
    [5.1598010, -2.8801045, 1.1591160, -5.0461354, -8.2354813, -4.5918579, -3.3608563, -5.8799043, -5.5964184, -4.0236006],
    [5.1901646, -3.0980392, 0.4422813, -4.4449477, -7.9074669, -4.3426323, -3.3067667, -4.6271472, -4.9256825, -3.8454783],
]
FMNIST_POOL_SUMS = [84.4759674, 89.0569305, 82.8921509]


@pytest.mark.parametrize("block", ["dense", "Residual", "", None, 1])
def test_block_is_validated(block):
    """(`rdm eval train-features --block` goes through the same check: tests/test_eval.py.)"""
    with pytest.raises(ValueError, match=re.escape(f"block must be one of 'plain', 'residual', got {block!r}")):
        FeatureNetConfig(block=block)


def test_old_config_without_block_loads_the_plain_net_with_unchanged_features(tmp_path):
    """The shipped config.json predates `block`: it loads as "plain" (strict state-dict load, so
    the layer layout is the old one) and gives the very logits it gave before the field existed;
    writing the field explicitly changes nothing."""
    src = bundled_feature_net_dir("fmnist")
    assert bundled_feature_net_dir() == src
    assert "block" not in json.loads((src / "config.json").read_text())["network"]
    net = load_feature_net(src)
    assert net.config.block == "plain" and net.config.feature_dim == 128
    out = net(_pattern())
    torch.testing.assert_close(out["logits"], torch.tensor(FMNIST_LOGITS), rtol=0, atol=1e-4)
    torch.testing.assert_close(out["pool"].sum(1), torch.tensor(FMNIST_POOL_SUMS), rtol=0, atol=1e-3)

    copy = tmp_path / "explicit"
    shutil.copytree(src, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["network"]["block"] = "plain"
    (copy / "config.json").write_text(json.dumps(cfg))
    again = load_feature_net(copy)(_pattern())
    assert all(torch.equal(again[k], out[k]) for k in out)


def test_residual_net_forwards_trains_and_round_trips(tmp_path):
    cfg = FeatureNetConfig(resolution=16, num_classes=3, widths=(4, 8, 8), block="residual")
    net = FeatureNet(cfg)
    blocks = [m for m in net.body if isinstance(m, ResidualBlock)]
    assert len(blocks) == 3                                      # one block per stage
    assert [isinstance(b.skip, torch.nn.Identity) for b in blocks] == [False, False, True]
    out = net(torch.randint(0, 256, (5, 1, 20, 20), dtype=torch.uint8))      # resized to 16×16
    assert out["pool"].shape == (5, 8) and out["logits"].shape == (5, 3)
    assert torch.isfinite(out["pool"]).all() and (out["pool"] >= 0).all()    # after the final ReLU

    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (24, 1, 16, 16), generator=g, dtype=torch.uint8)
    labels = torch.arange(24) % 3
    before = {k: v.clone() for k, v in FeatureNet(cfg).state_dict().items()}
    trained, info = train_feature_net(images, labels, images, labels, net_config=cfg,
                                      train_config=FeatureTrainConfig(epochs=1, batch=8, seed=3), log=lambda _: None)
    assert 0 <= info["test_accuracy"] <= 1 and info["train_images"] == 24
    after = trained.state_dict()
    assert set(after) == set(before)
    assert not torch.equal(after["body.0.main.0.weight"], before["body.0.main.0.weight"])   # it learned

    save_feature_net(tmp_path / "res", trained, {"name": "res"})
    loaded = load_feature_net(tmp_path / "res")
    assert loaded.config == cfg
    x = images[:4]
    assert torch.equal(loaded(x)["pool"], trained(x)["pool"])


def test_bundled_names_are_one_table():
    assert set(BUNDLED_FEATURE_NETS) == {"fmnist", "fmnist-b"}
    for name in BUNDLED_FEATURE_NETS:
        d = bundled_feature_net_dir(name)
        assert (d / "config.json").is_file() and (d / "model.safetensors").is_file() and (d / "MODEL_CARD.md").is_file()
    with pytest.raises(ValueError, match="no bundled feature net 'nope'; bundled: fmnist, fmnist-b"):
        bundled_feature_net_dir("nope")
    with pytest.raises(ValueError, match="expected 'inception', 'fmnist', 'fmnist-b' or a feature-net directory"):
        load_extractor("nope")


def test_second_feature_space_is_accurate_and_differs_from_the_first():
    a, b = load_extractor("fmnist"), load_extractor("fmnist-b")
    assert a.name == "feature-net:fmnist-features" and b.name == "feature-net:fmnist-features-b"
    assert a.fingerprint != b.fingerprint
    info = b.run.info
    assert info["test_accuracy"] >= 0.90 and info["test_images"] == 10_000
    assert info["network"]["block"] == "residual"
    assert info["train_config"]["seed"] != a.run.info["train_config"]["seed"]
    assert tuple(info["network"]["widths"]) != tuple(a.run.info["network"]["widths"])
    assert (bundled_feature_net_dir("fmnist-b") / "model.safetensors").stat().st_size < 2.5 * 2 ** 20
    card = (bundled_feature_net_dir("fmnist-b") / "MODEL_CARD.md").read_text()
    assert "second" in card and f"{info['test_accuracy']:.2%}" in card
    fa, fb = a(_pattern())["pool"], b(_pattern())["pool"]
    assert fa.shape == (3, 128) and fb.shape == (3, 160)          # different spaces, not a rescaling


def test_rdm_eval_accepts_the_second_feature_space(tmp_path, capsys):
    src = tmp_path / "imgs"
    src.mkdir()
    rng = np.random.default_rng(0)
    for i in range(12):
        Image.fromarray(rng.integers(0, 256, (28, 28), dtype=np.uint8)).save(src / f"{i}.png")
    assert main(["eval", "--samples", str(src), "--ref", str(src), "--features", "fmnist-b", "--allow-small",
                 "--no-cache", "--metrics", "pr", "--json", str(tmp_path / "r.json"), "--quiet"]) == 0
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["features"] == "feature-net:fmnist-features-b"
    assert result["precision"] == 1 and result["recall"] == 1              # a set against itself


def test_second_feature_net_classifies_real_test_images():
    from relay_diffusion.data.builtin import fashion_mnist_arrays, pad_to
    try:
        x, y = fashion_mnist_arrays("test")
    except ValueError as e:
        pytest.skip(str(e))
    idx = np.random.default_rng(0).choice(len(x), 500, replace=False)
    images, labels = torch.from_numpy(pad_to(x[idx], 32))[:, None], torch.from_numpy(y[idx]).long()
    assert accuracy(load_feature_net(bundled_feature_net_dir("fmnist-b")), images, labels) >= 0.85
