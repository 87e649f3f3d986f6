"""The stage table (stages.py) and the typed model config (models.ModelConfig): every config.json
ever written reads back, bad ones are refused by name, and a new kind of stage is one table entry."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from relay_diffusion.weights import read_model_config
from relay_diffusion.losses import EDMLoss
from relay_diffusion.models import ModelConfig, RelayModel, read_config
from relay_diffusion.pipeline import RelayChain, bundled_demo_chain
from relay_diffusion.relay import RelaySchedule
from relay_diffusion.sampling import relay_stage
from relay_diffusion.sampling.settings import BaseSamplerSettings, RelaySamplerSettings
from relay_diffusion.seeds import SeededNoise
from relay_diffusion.stages import STAGE_KINDS, StageKind, settings_kind, stage_kind
from relay_diffusion.training.config import TrainConfig

NETWORK = dict(img_resolution=8, in_channels=1, out_channels=1, label_dim=0, model_channels=16,
               channel_mult=[1], num_blocks=1, attn_resolutions=[], dropout=0.0)


def test_every_stored_config_reads_back_unchanged():
    """The bundled demo models (which carry a "training" record), an imported model's "source"
    record, and a minimal early config without label_dim / sigma_data."""
    for directory in bundled_demo_chain():
        stored = {k: v for k, v in read_model_config(directory).items() if k not in ("format", "version")}
        cfg = read_config(directory)
        assert cfg.to_dict() == stored
        assert ModelConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    early = ModelConfig.from_dict({"stage": "base", "resolution": 8, "channels": 1, "network": NETWORK})
    assert (early.label_dim, early.sigma_data, early.schedule, early.source) == (0, 0.5, None, None)
    imported = dict(early.to_dict(), source={"file": "x.pt", "sha256": "0" * 64})
    assert ModelConfig.from_dict(imported).to_dict() == imported


@pytest.mark.parametrize("change, message", [
    (dict(stage=None), "lacks 'stage'"),
    (dict(stage="upscale"), "unknown stage 'upscale'"),
    (dict(stage="relay"), "needs its schedule"),
    (dict(schedule=dataclasses.asdict(RelaySchedule())), "has no schedule"),
    (dict(stage="relay", resolution=10, schedule=dataclasses.asdict(RelaySchedule())), "not divisible by up_scale"),
    (dict(network=[1, 2]), "'network' must be an object"),
    (dict(colour="blue"), r"unknown keys \['colour'\]"),
    (dict(channels=0), "channels must be a positive integer"),
    (dict(label_dim=1.5), "label_dim must be a non-negative integer"),
    (dict(schedule=dict(up_scale=3, warp=1)), "warp"),
])
def test_bad_configs_are_refused_by_name(change, message):
    d = {"stage": "base", "resolution": 8, "channels": 1, "network": NETWORK, **change}
    d = {k: v for k, v in d.items() if v is not None}
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_dict(d, "m/config.json")


def test_the_table_answers_every_stage_question():
    base, relay = stage_kind("base"), stage_kind("relay")
    assert (base.continues, relay.continues) == (False, True)
    assert settings_kind(BaseSamplerSettings(method="sde")) is base and settings_kind(RelaySamplerSettings()) is relay
    assert relay.input_resolution(32, RelaySchedule(up_scale=4)) == 8 and base.input_resolution(32, None) == 32
    with pytest.raises(ValueError, match="unknown stage 'x'; stages: base, relay"):
        stage_kind("x")
    with pytest.raises(TypeError, match="not the sampler settings of any stage"):
        settings_kind(object())


def _one_step(denoise, previous, labels, *, config, settings, noise, dtype, callback):
    """A toy kind: the denoiser's single estimate from pure noise at σ_max."""
    x = noise.randn(config.channels, config.resolution, config.resolution, dtype=dtype) * settings.sigma_max
    return denoise(x, torch.full((x.shape[0],), settings.sigma_max, dtype=dtype), labels)


def test_a_new_stage_kind_is_one_table_entry(monkeypatch, tmp_path):
    """Registering a kind in STAGE_KINDS is all it takes: its config validates and round-trips
    through a model directory, a chain runs it before a relay stage (the chain's result equals
    the kind's sampler followed by `relay_stage`), and training accepts it."""
    kind = StageKind("one-step", BaseSamplerSettings, False, _one_step, lambda cfg, schedule: EDMLoss())
    monkeypatch.setitem(STAGE_KINDS, kind.name, kind)
    base_dir, relay_dir = bundled_demo_chain()
    demo = RelayModel.from_pretrained(base_dir)
    model = RelayModel(demo.denoiser, dataclasses.replace(demo.config, stage="one-step", training=None))
    model.save_pretrained(tmp_path / "one-step")
    loaded = RelayModel.from_pretrained(tmp_path / "one-step")
    assert loaded.kind is kind and loaded.config == model.config
    relay = RelayModel.from_pretrained(relay_dir)
    chain = RelayChain([loaded, relay])
    assert chain.nfe()[0] == BaseSamplerSettings().nfe()        # the settings class counts its evaluations
    seeds = [3, 4]
    images = chain(seeds, "balanced")
    noise = SeededNoise(seeds)
    labels = torch.nn.functional.one_hot(torch.tensor(seeds) % 10, 10).float()
    low = _one_step(loaded.denoiser, None, labels, config=loaded.config, settings=BaseSamplerSettings(),
                    noise=noise, dtype=torch.float32, callback=None)
    expected = relay_stage(relay.denoiser, low, labels, schedule=relay.schedule, settings=RelaySamplerSettings(),
                           randn_like=noise)
    assert torch.equal(images, expected)
    TrainConfig(stage="one-step", data="d.zip", outdir="o").validate()
