"""Model directories and relay chains of 1, 2 and 3 stages."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from relay_diffusion.models import RelayModel
from relay_diffusion.pipeline import RelayChain, class_labels
from relay_diffusion.sampling.settings import BaseSamplerSettings, RelaySamplerSettings

from helpers.models import tiny_model


FAST_BASE = BaseSamplerSettings(num_steps=6)
FAST_RELAY = RelaySamplerSettings(num_steps=12)


def chain_of(*specs):
    models = [tiny_model(*s, seed=i) for i, s in enumerate(specs)]
    return RelayChain(models, [FAST_BASE if m.stage == "base" else FAST_RELAY for m in models])


CHAINS = {
    1: [("base", 4)],
    2: [("base", 4), ("relay", 8, 1, 3, 2)],
    3: [("base", 4), ("relay", 8, 1, 3, 2), ("relay", 32, 1, 3, 4)],
}


@pytest.mark.parametrize("n", [1, 2, 3])
def test_chain_shapes_and_per_seed_determinism(n):
    chain = chain_of(*CHAINS[n])
    seeds = [3, 1, 4, 1, 5, 9, 2]
    outs = []
    ref = chain(seeds, stage_callback=lambda i, x: outs.append(x.shape))
    assert ref.shape == (7, 1, chain.resolution, chain.resolution)
    assert [s[-1] for s in outs] == [4, 8, 32][:n]
    one_by_one = torch.cat([chain([s]) for s in seeds])
    torch.testing.assert_close(one_by_one, ref, atol=1e-5, rtol=0)
    torch.testing.assert_close(ref[1], ref[3], atol=1e-5, rtol=0)      # seed 1 twice, same class
    assert not torch.allclose(ref[0], ref[2])


def test_float64_option_agrees_with_float32():
    chain = chain_of(*CHAINS[2])
    a = chain([0, 1], dtype=torch.float32)
    b = chain([0, 1], dtype=torch.float64)
    assert b.dtype == torch.float64
    torch.testing.assert_close(a.double(), b, atol=1e-4, rtol=0)


def test_super_resolution_mode_runs_only_relay_stages():
    full = chain_of(*CHAINS[3])
    sr = RelayChain(full.models[1:], full.settings[1:])
    low = torch.rand(2, 1, 4, 4) * 2 - 1
    out = sr([7, 8], low_res=low)
    assert out.shape == (2, 1, 32, 32) and sr.input_resolution == 4
    with pytest.raises(ValueError, match="shape"):
        sr([7, 8], low_res=torch.zeros(2, 1, 8, 8))
    with pytest.raises(ValueError, match="low_res"):
        sr([7, 8])
    with pytest.raises(ValueError, match="base model"):
        full([7, 8], low_res=low)


def test_chain_validation():
    with pytest.raises(ValueError, match="expects 2×2"):
        RelayChain([tiny_model("base", 8), tiny_model("relay", 8, 1, 3, 4)])
    with pytest.raises(ValueError, match="channels"):
        RelayChain([tiny_model("base", 4, 1), tiny_model("relay", 8, 3, 3, 2)])
    with pytest.raises(ValueError, match="only the first"):
        RelayChain([tiny_model("base", 4), tiny_model("base", 4)])
    with pytest.raises(ValueError, match="classes"):
        RelayChain([tiny_model("base", 4, 1, 3), tiny_model("relay", 8, 1, 5, 2)])
    with pytest.raises(ValueError, match="RelaySamplerSettings"):
        RelayChain([tiny_model("base", 4), tiny_model("relay", 8, 1, 3, 2)], [FAST_BASE, FAST_BASE])


def test_class_labels():
    assert class_labels([10, 11, 12], 10).tolist() == [0, 1, 2]
    assert class_labels([5, 6], 10, 3).tolist() == [3, 3]
    r = class_labels(list(range(100)), 10, "random")
    assert torch.equal(r, class_labels(list(range(100)), 10, "random")) and len(set(r.tolist())) > 5
    assert class_labels([1], 0) is None
    with pytest.raises(ValueError):
        class_labels([1, 2], 10, 12)
    with pytest.raises(ValueError):
        class_labels([1, 2], 10, [1])


def test_labels_change_the_images_and_guidance_runs():
    chain = chain_of(*CHAINS[2])
    a = chain([0, 0, 0], labels=[0, 1, 2])
    assert not torch.allclose(a[0], a[1])
    chain.settings = [dataclasses.replace(FAST_BASE, cfg_scale=2.0), dataclasses.replace(FAST_RELAY, cfg_scale=2.0)]
    b = chain([0, 0, 0], labels=[0, 1, 2])
    assert torch.isfinite(b).all() and not torch.allclose(a, b)


def test_save_and_load_pretrained(tmp_path):
    m = tiny_model("relay", 8, 1, 3, 2)
    m.save_pretrained(tmp_path / "m")
    back = RelayModel.from_pretrained(tmp_path / "m")
    assert back.stage == "relay" and back.schedule == m.schedule and back.label_dim == 3
    x, s = torch.randn(2, 1, 8, 8), torch.tensor([0.3, 1.0])
    torch.testing.assert_close(back.denoiser(x, s, None), m.denoiser(x, s, None))
    with pytest.raises(ValueError, match="not found"):
        RelayModel.from_pretrained(tmp_path / "missing")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text('{"format": "something-else"}')
    with pytest.raises(ValueError, match="not a relay-diffusion model"):
        RelayModel.from_pretrained(tmp_path / "bad")


def test_training_snapshot_is_a_model_directory(tmp_path):
    """What `rdm train` writes loads with from_pretrained (EMA weights by default)."""
    from helpers.training import small, write_edm_zip
    from relay_diffusion.training import train
    from relay_diffusion.training.checkpoint import list_snapshots

    data = write_edm_zip(tmp_path / "d.zip", 8, 16, 1, classes=2)
    train(small(stage="relay", network="tiny-16", data=str(data), outdir=str(tmp_path / "run"), duration=16,
                cond=True), echo=lambda s: None)
    m = RelayModel.from_pretrained(list_snapshots(tmp_path / "run")[-1])
    assert m.stage == "relay" and m.resolution == 16 and m.label_dim == 2
    out = RelayChain([m], [FAST_RELAY])([0, 1], low_res=torch.zeros(2, 1, 4, 4))
    assert out.shape == (2, 1, 16, 16)
