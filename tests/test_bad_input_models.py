"""Model directories that cannot be used: each gives one clear ValueError (exit 2 from the CLI)
naming the file, before a large network is allocated."""

from __future__ import annotations

import json
import shutil
import time

import pytest

from relay_diffusion.cli import main
from relay_diffusion.models import RelayModel
from relay_diffusion.networks import NetworkConfig
from helpers.models import tiny_model


@pytest.fixture
def model_dir(tmp_path):
    d = tmp_path / "m"
    tiny_model("base", 8, seed=0).save_pretrained(d)
    return d


def edit_config(d, **network):
    cfg = json.loads((d / "config.json").read_text())
    cfg["network"].update(network)
    (d / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize("edit,message", [
    (dict(channel_mult=2), "network channel_mult must be a list of positive integers, got 2"),
    (dict(channel_mult=[1, 0]), "network channel_mult must be a list of positive integers"),
    (dict(attn_resolutions="8"), "network attn_resolutions must be a list of positive integers"),
    (dict(model_channels=1.5), "network model_channels must be an integer >= 1, got 1.5"),
    (dict(num_blocks=0), "network num_blocks must be an integer >= 1"),
    (dict(img_resolution=6, channel_mult=[1, 2, 2]), "img_resolution 6 must be divisible by 2^2"),
    (dict(dropout=2.0), "network dropout must be in [0, 1]"),
    (dict(width=3), "unknown NetworkConfig keys ['width']"),
])
def test_bad_network_config(model_dir, edit, message):
    edit_config(model_dir, **edit)
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("^", r"\^")):
        RelayModel.from_pretrained(model_dir)


def test_huge_network_config_fails_before_allocating(model_dir):
    edit_config(model_dir, model_channels=100_000)     # would be hundreds of GB
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"model.safetensors: weights do not match config.json: .*stored"):
        RelayModel.from_pretrained(model_dir)
    assert time.perf_counter() - t < 20                 # built on the meta device, never for real


@pytest.mark.parametrize("content", [b"", b"\x08\x00\x00\x00\x00\x00\x00\x00{}", b"truncated"])
def test_unreadable_weights(model_dir, content, capsys):
    whole = (model_dir / "model.safetensors").read_bytes()
    (model_dir / "model.safetensors").write_bytes(content or whole[:0])
    with pytest.raises(ValueError, match=r"model.safetensors (is not a readable safetensors file|: weights do not)"):
        RelayModel.from_pretrained(model_dir)
    assert main(["sample", "--model", str(model_dir), "--seeds", "0", "--grid", str(model_dir / "g.png")]) == 2
    assert "rdm: error:" in capsys.readouterr().err and not (model_dir / "g.png").exists()


def test_truncated_weights(model_dir):
    path = model_dir / "model.safetensors"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="is not a readable safetensors file .*truncated"):
        RelayModel.from_pretrained(model_dir)


def test_missing_weights_and_bad_which(model_dir):
    with pytest.raises(ValueError, match="which must be 'ema' or 'model'"):
        RelayModel.from_pretrained(model_dir, which="best")
    shutil.move(model_dir / "model.safetensors", model_dir / "elsewhere.safetensors")
    with pytest.raises(ValueError, match=r"no weights in .* \(expected model.safetensors\)"):
        RelayModel.from_pretrained(model_dir)


def test_network_config_accepts_what_it_writes():
    cfg = NetworkConfig(img_resolution=16, model_channels=16, channel_mult=[1, 2], attn_resolutions=[8])
    assert NetworkConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_a_run_folder_names_its_newest_snapshot(tmp_path):
    run = tmp_path / "run"
    for nimg in (16, 32):
        tiny_model("base", 8, seed=0).save_pretrained(run / f"snapshot-{nimg:012d}")
    (run / "config.json").write_text(json.dumps({"stage": "base"}))          # the run's TrainConfig
    with pytest.raises(ValueError, match=rf"{run} is a training run folder, not a model; give one of its "
                                         rf"snapshots, e.g. {run}/snapshot-000000000032 \(the newest\)"):
        RelayModel.from_pretrained(run)


def test_fid_of_a_set_against_itself_is_zero_not_negative():
    import numpy as np
    from relay_diffusion.metrics.features import feature_statistics, frechet_distance
    x = np.random.default_rng(0).normal(size=(500, 64)) * np.linspace(0.1, 3, 64)
    mu, sigma = feature_statistics(x)
    assert frechet_distance(mu, sigma, mu, sigma) == 0.0
    assert frechet_distance(mu, sigma, mu + 0.01, sigma) > 0


@pytest.mark.parametrize("device,message", [
    ("gpu0", "not a torch device: 'gpu0'"),
    pytest.param("cuda", "CUDA is not available", marks=pytest.mark.skipif(
        __import__("torch").cuda.is_available(), reason="this machine has CUDA")),
])
def test_bad_devices(model_dir, device, message):
    with pytest.raises(ValueError, match=message):
        RelayModel.from_pretrained(model_dir, device=device)


def test_a_float_class_is_refused(model_dir):
    from relay_diffusion.pipeline import class_labels
    with pytest.raises(TypeError, match="labels must be a mode"):
        class_labels([0, 1], 10, 1.0)
