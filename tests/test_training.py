"""Training: overfitting, DDP ≡ single process, bit-exact resume after SIGKILL, atomic snapshots,
and the errors that must come before any training."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from relay_diffusion.training import TrainConfig, parse_images, train
from relay_diffusion.training.checkpoint import list_snapshots

from helpers.training import ROOT, small, train_in_one_and_two_processes, write_edm_zip


@pytest.fixture(scope="module")
def data32(tmp_path_factory) -> Path:
    return write_edm_zip(tmp_path_factory.mktemp("data") / "d32.zip", 16, 32, 1, classes=4)


def weights(run: Path, which="model") -> dict:
    return load_file(str(list_snapshots(run)[-1] / f"{which}.safetensors"))


def test_parse_images():
    assert parse_images("200k") == 200_000 and parse_images("1.5M") == 1_500_000
    assert parse_images("64Ki") == 65536 and parse_images(10) == 10
    with pytest.raises(ValueError, match="image count"):
        parse_images("ten")


@pytest.mark.parametrize("stage,res,net,steps,lr", [("base", 8, "tiny-8", 800, 3e-3),
                                                  ("relay", 16, "tiny-16", 300, 5e-3)])
def test_tiny_model_overfits_four_images(tmp_path, stage, res, net, steps, lr):
    """The EMA model's loss on 4 fixed images, measured with the same 1024 noise draws before and
    after training, falls at least 10× (the exact 4-point posterior mean reaches ≈ 0.03 for the
    base stage, ≈ 0 for the relay stage)."""
    data = write_edm_zip(tmp_path / "four.zip", 4, 32, 1)
    cfg = small(stage=stage, data=str(data), outdir=str(tmp_path / "run"), network=net, resolution=res,
                batch=16, duration=16 * steps, lr=lr, snapshot_every=10 ** 9, status_every=16 * 100,
                ema_halflife=1600)
    from relay_diffusion.precond import EDMPrecond
    from relay_diffusion.seeds import SeededNoise
    from relay_diffusion.training.batches import ImageSource
    from relay_diffusion.training.loop import _loss_fn, prepare

    setup = prepare(cfg)
    images, _ = ImageSource(setup.dataset, res, False, True).fetch([0, 1, 2, 3] * 256, "cpu")
    loss_fn = _loss_fn(setup)

    def eval_loss(state):
        net = setup.network_config.build()
        net.load_state_dict(state)
        with torch.no_grad():
            return loss_fn(EDMPrecond(net.eval()), images, generator=SeededNoise(range(1024))).mean().item()

    torch.manual_seed(cfg.seed)
    before = eval_loss(setup.network_config.build().state_dict())
    train(cfg, echo=lambda s: None)
    after = eval_loss(weights(tmp_path / "run", "ema"))
    assert after < before / 10, (before, after)


@pytest.mark.slow
def test_resume_after_sigkill_is_bit_identical(tmp_path, data32):
    args = ["--stage", "relay", "--network", "tiny-16", "--resolution", "16", "--data", str(data32), "--batch", "8",
            "--duration", "480", "--snapshot", "96", "--status", "48", "--sample-every", "0",
            "--lr-rampup", "100", "--ema", "200", "--device", "cpu", "--cond",
            "--label-dropout", "0.2", "--dropout", "0.1", "--xflip"]
    cmd = [sys.executable, "-m", "relay_diffusion", "train"]
    ref = tmp_path / "ref"
    subprocess.run(cmd + args + ["--outdir", str(ref)], check=True, capture_output=True, cwd=ROOT)

    run = tmp_path / "killed"
    proc = subprocess.Popen(cmd + args + ["--outdir", str(run)], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.time() + 120
    while time.time() < deadline and len(list_snapshots(run)) < 2:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = list_snapshots(run)[-1].name
    assert killed_at < "snapshot-000000000480", "the run finished before it could be killed"
    out = subprocess.run(cmd + args + ["--outdir", str(run)], check=True, capture_output=True, text=True,
                         cwd=ROOT).stdout
    assert "resuming from" in out
    for which in ("model", "ema"):
        a, b = weights(ref, which), weights(run, which)
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (which, k)


@pytest.mark.slow
def test_sigkill_during_snapshot_write_keeps_the_previous_one(tmp_path, data32):
    run = tmp_path / "run"
    cfg = small(data=str(data32), outdir=str(run), resolution=8, duration=32, snapshot_every=32)
    train(cfg, echo=lambda s: None)
    good = list_snapshots(run)[-1]
    # a writer that is killed in the middle of the next snapshot (after the weights, before the
    # training state is complete), in a separate process
    cfg_file = tmp_path / "cfg.json"
    cfg_file.write_text(json.dumps({**dataclasses.asdict(cfg), "duration": 64, "betas": list(cfg.betas)}))
    script = f"""
import json, os, signal
from relay_diffusion.training import checkpoint, TrainConfig, train
real = checkpoint.save_tensors
def dying(tensors, path):
    real(tensors, path)
    if str(path).endswith("training-state.safetensors"):
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save_tensors = dying
train(TrainConfig.from_dict(json.load(open({str(cfg_file)!r}))), echo=lambda s: None)
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    assert list_snapshots(run) == [good]                  # the half-written one is not listed
    assert any(".tmp-" in p.name for p in run.iterdir())  # it is there, unfinished
    load_file(str(good / "model.safetensors"))
    # and the run resumes from the good snapshot
    log = []
    train(TrainConfig.from_dict({**vars(cfg), "duration": 64}), echo=log.append)
    assert any("resuming from " + good.name in line for line in log)
    assert not any(".tmp-" in p.name for p in run.iterdir())
    assert list_snapshots(run)[-1].name == "snapshot-000000000064"


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["base", "relay"])
def test_two_processes_equal_one(tmp_path, data32, stage):
    """2 gloo processes × batch 4 ≡ 1 process × batch 8 (per-sample noise, per-GPU loss
    normalisation). Tolerance 1e-5 (training moves the weights by > 1e-3): float32 rounding of the
    all-reduced gradient differs by ~1e-7 relative. Adam's ε is raised to 1e-4 here because with
    ε = 1e-8 a gradient that is ~0 up to rounding gets a full ±lr step of either sign."""
    common = ["--stage", stage, "--network", "tiny-8" if stage == "base" else "tiny-32",
              "--data", str(data32), "--batch", "8", "--duration", "48", "--snapshot", "8", "--keep", "100",
              "--status", "16", "--sample-every", "0", "--lr-rampup", "0", "--dropout", "0",
              "--device", "cpu", "--cond", "--eps", "1e-4"]
    if stage == "base":
        common += ["--resolution", "8"]
    one, two = train_in_one_and_two_processes(common, tmp_path, {**os.environ, "OMP_NUM_THREADS": "1"})
    assert [p.name for p in list_snapshots(one)] == [p.name for p in list_snapshots(two)]
    a, b = weights(one), weights(two)
    first = load_file(str(list_snapshots(one)[0] / "model.safetensors"))
    moved = max(float((a[k] - first[k]).abs().max()) for k in a)
    assert moved > 1e-3                                   # training moved the weights far beyond the tolerance
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kw,match", [
    (dict(stage="relay", network="tiny-32", resolution=30), "divide"),
    (dict(stage="relay", network="tiny-32", up_scale=3), "divisible by up_scale"),
    (dict(stage="base", resolution=64), "divide"),
    (dict(stage="base", cond=True, label_dropout=0.1, data="UNLABELED"), "labels"),
    (dict(stage="base", network="nope"), "network preset"),
    (dict(stage="base", batch=6, batch_gpu=4), "batch_gpu"),
    (dict(stage="relay", network="tiny-32", prob_length=1.1), "prob_length"),
    (dict(stage="base", label_dropout=0.2), "conditional"),
    (dict(stage="base", precision="fp16", device="cpu"), "fp16"),
])
def test_invalid_configs_fail_before_training(tmp_path, data32, kw, match):
    data = str(data32)
    if kw.get("data") == "UNLABELED":
        data = str(write_edm_zip(tmp_path / "u.zip", 4, 32, 1, classes=0))
    cfg = small(**{**kw, "data": data, "outdir": str(tmp_path / "run")})
    with pytest.raises(ValueError, match=match):
        train(cfg, echo=lambda s: None)
    assert not list_snapshots(tmp_path / "run")


def test_resume_with_other_settings_is_refused(tmp_path, data32):
    cfg = small(data=str(data32), outdir=str(tmp_path / "run"), resolution=8, duration=16)
    train(cfg, echo=lambda s: None)
    with pytest.raises(ValueError, match="other settings.*lr"):
        train(TrainConfig.from_dict({**vars(cfg), "lr": 1e-4}), echo=lambda s: None)
    log = []
    train(TrainConfig.from_dict({**vars(cfg), "duration": 32}), echo=log.append)   # longer: fine
    assert any("resuming" in s for s in log)


def test_non_finite_loss_stops_without_saving(tmp_path, data32, monkeypatch):
    cfg = small(data=str(data32), outdir=str(tmp_path / "run"), resolution=8, duration=64, snapshot_every=16)
    from relay_diffusion.losses import EDMLoss
    from relay_diffusion.training import loop

    real = EDMLoss.__call__
    calls = {"n": 0}

    def poisoned(self, *a, **k):
        calls["n"] += 1
        out = real(self, *a, **k)
        return out * float("nan") if calls["n"] > 3 else out

    monkeypatch.setattr(EDMLoss, "__call__", poisoned)
    with pytest.raises(loop.TrainingError, match="non-finite loss at 24 images"):
        train(cfg, echo=lambda s: None)
    snaps = list_snapshots(tmp_path / "run")
    assert [p.name for p in snaps] == ["snapshot-000000000016"]


def test_run_directory_contents(tmp_path, data32):
    run = tmp_path / "run"
    cfg = small(data=str(data32), outdir=str(run), stage="relay", network="tiny-32", duration=32,
                sample_every=32, cond=True)
    train(cfg, echo=lambda s: None)
    assert json.loads((run / "config.json").read_text())["stage"] == "relay"
    stats = [json.loads(l) for l in (run / "stats.jsonl").read_text().splitlines()]
    assert stats[-1]["nimg"] == 32 and stats[-1]["img_per_s"] > 0
    snap = list_snapshots(run)[-1]
    mc = json.loads((snap / "config.json").read_text())
    assert mc["format"] == "relay-diffusion-model" and mc["stage"] == "relay" and mc["label_dim"] == 4
    assert mc["schedule"]["up_scale"] == 4 and mc["network"]["img_resolution"] == 32
    assert {p.name for p in snap.iterdir()} >= {"config.json", "model.safetensors", "ema.safetensors",
                                               "training-state.safetensors", "training-state.json"}
    grid = Image.open(run / "samples-000000000032.png")
    assert grid.size[0] > 32 * 8


def test_gradient_accumulation_equals_the_full_batch(tmp_path, data32):
    """batch 8 as 4 rounds of 2 ≡ one round of 8 (same samples, same per-sample noise)."""
    runs = {}
    for bg in (8, 2):
        cfg = small(data=str(data32), outdir=str(tmp_path / f"bg{bg}"), resolution=8, batch=8, batch_gpu=bg,
                    duration=48, lr_rampup=0, eps=1e-4, cond=True, label_dropout=0.3)
        train(cfg, echo=lambda s: None)
        runs[bg] = weights(tmp_path / f"bg{bg}")
    for k in runs[8]:
        torch.testing.assert_close(runs[2][k], runs[8][k], atol=1e-5, rtol=0)


def test_bf16_autocast_trains_on_cpu(tmp_path, data32):
    cfg = small(data=str(data32), outdir=str(tmp_path / "run"), resolution=8, duration=32, precision="bf16")
    log = []
    train(cfg, echo=log.append)
    assert all(torch.isfinite(v).all() for v in weights(tmp_path / "run").values())
    assert json.loads((tmp_path / "run" / "stats.jsonl").read_text().splitlines()[-1])["loss"] > 0


def test_channels_last_trains_the_same_weights(tmp_path, data32):
    """NHWC is a layout, not a method: four steps give the plain run's weights to float32
    rounding (Adam divides by √v, so a near-zero gradient's rounding can move a weight by a
    fraction of the learning rate), and the snapshot stores ordinary (contiguous) tensors."""
    runs = {}
    for nhwc in (False, True):
        cfg = small(data=str(data32), outdir=str(tmp_path / f"cl{nhwc}"), resolution=8, batch=8, duration=32,
                    lr_rampup=0, channels_last=nhwc)
        train(cfg, echo=lambda s: None)
        runs[nhwc] = weights(tmp_path / f"cl{nhwc}")
    for k in runs[False]:
        assert runs[True][k].is_contiguous()
        torch.testing.assert_close(runs[True][k], runs[False][k], atol=2e-4, rtol=0)


def test_the_dataset_cache_keeps_to_its_memory_limit(tmp_path, data32, monkeypatch):
    from relay_diffusion.data import ImageDataset
    from relay_diffusion.training import batches

    ds = ImageDataset(str(data32))
    assert batches.ImageSource(ds, 32, False, cache=True).images is not None
    monkeypatch.setattr(batches, "CACHE_LIMIT", len(ds) * ds.num_channels * 32 * 32 - 1)   # one byte short
    source = batches.ImageSource(ds, 32, False, cache=True)
    assert source.images is None                                       # read on demand instead
    images, labels = source.fetch([0, 1], "cpu")
    on_demand = batches.ImageSource(ds, 32, False, cache=False)
    assert torch.equal(images, on_demand.fetch([0, 1], "cpu")[0])
