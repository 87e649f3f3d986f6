"""`rdm distill` / distillation.run: rounds of progressive distillation on the training loop, a
final model directory that samples with its own steps, resume, and bad input."""

from __future__ import annotations

import json

import pytest
import torch

from relay_diffusion.cli import main
from relay_diffusion.distillation.run import DistillConfig, distill
from relay_diffusion.models import read_config
from relay_diffusion.pipeline import RelayChain
from relay_diffusion.training import train
from relay_diffusion.training.checkpoint import list_snapshots

from helpers.training import small, write_edm_zip


@pytest.fixture(scope="module")
def base_teacher(tmp_path_factory):
    """A tiny conditional 8×8 base model, trained briefly."""
    root = tmp_path_factory.mktemp("teacher")
    data = write_edm_zip(root / "d.zip", 16, 8, 1, classes=2)
    train(small(data=str(data), outdir=str(root / "run"), resolution=8, duration=32, cond=True), echo=lambda s: None)
    return data, list_snapshots(root / "run")[-1]


def config(data, teacher, out, **kw):
    base = dict(teacher=str(teacher), data=str(data), outdir=str(out), steps=1, teacher_steps=4, round_images=16,
                batch=8, status_every=8, snapshot_every=16, device="cpu")
    return DistillConfig(**{**base, **kw})


def test_two_rounds_make_a_one_step_model_that_samples_with_its_own_grid(base_teacher, tmp_path):
    data, teacher = base_teacher
    lines = []
    final = distill(config(data, teacher, tmp_path / "d"), echo=lines.append)
    assert "round 1 of 2: 4 teacher σ's (dpmpp-2m-pc) → 2 student steps" in lines
    assert "round 2 of 2: 2 teacher σ's (ddim) → 1 student steps" in lines
    cfg = read_config(final)
    first = read_config(list_snapshots(tmp_path / "d" / "round-1")[-1])
    assert len(first.distilled_grid) == 2 and len(cfg.distilled_grid) == 1
    assert cfg.distilled_grid == first.distilled_grid[:1] and cfg.distilled["teacher_solver"] == "ddim"
    assert (cfg.network, cfg.label_dim) == (read_config(teacher).network, 2)
    chain = RelayChain.from_pretrained([final])
    assert chain.nfe() == [1] and chain.settings[0].solver == "ddim"
    a = chain([0, 1, 2], "balanced")
    torch.testing.assert_close(torch.cat([chain([0], "balanced"), chain([1, 2], "balanced")]), a,
                               atol=1e-5, rtol=0)                           # per seed, whatever the batch
    assert torch.equal(chain([0, 1, 2], "balanced"), a)                     # and reproducible
    with pytest.raises(ValueError, match="distilled for 1 ddim steps.*num_steps"):
        RelayChain(chain.models, [chain.settings[0].with_overrides({"num_steps": 4})])
    # the CLI samples it with its steps; asking for other steps is refused before any weights load
    assert main(["sample", "--model", str(final), "--seeds", "0-3", "--grid", str(tmp_path / "g.png"),
                 "--settings", str(tmp_path / "s.json"), "--cfg", "1.5"]) == 0
    assert json.loads((tmp_path / "s.json").read_text())["nfe"] == 2                     # guided: 2 calls
    assert main(["sample", "--model", str(final), "--seeds", "0", "--grid", str(tmp_path / "h.png"),
                 "--steps", "4"]) == 2
    # resume: the same command trains nothing more and rewrites the same model
    before = (final / "ema.safetensors").read_bytes()
    distill(config(data, teacher, tmp_path / "d"), echo=lines.append)
    assert (final / "ema.safetensors").read_bytes() == before


def test_bad_distillations_are_refused_before_training(base_teacher, tmp_path, capsys):
    data, teacher = base_teacher
    with pytest.raises(ValueError, match="halved a whole number of times"):
        distill(config(data, teacher, tmp_path / "a", steps=3, teacher_steps=8))
    unconditional = tmp_path / "u"
    train(small(data=str(data), outdir=str(unconditional), resolution=8, duration=8), echo=lambda s: None)
    with pytest.raises(ValueError, match="need a class-conditional teacher"):
        distill(config(data, list_snapshots(unconditional)[-1], tmp_path / "a2", guidance_range=(1, 3)))
    with pytest.raises(ValueError, match="not found|not a relay-diffusion model"):
        distill(config(data, tmp_path, tmp_path / "b"))
    with pytest.raises(ValueError, match=r"label_dropout must be in \[0, 1\]"):
        distill(config(data, teacher, tmp_path / "c", label_dropout=1.5))
    rgb = write_edm_zip(tmp_path / "rgb.zip", 8, 8, 3, classes=2)
    with pytest.raises(ValueError, match="the teacher makes 1-channel images"):
        distill(config(rgb, teacher, tmp_path / "f"))
    assert not any((tmp_path / d).exists() for d in ("a", "a2", "b", "c", "f"))
    assert main(["distill", "--teacher", str(teacher), "--data", str(data), "--outdir", str(tmp_path / "e"),
                 "--steps", "2", "--teacher-steps", "6"]) == 2
    assert "halved a whole number of times" in capsys.readouterr().err


def test_a_relay_stage_distils_and_continues_a_low_resolution_image(tmp_path):
    data = write_edm_zip(tmp_path / "d.zip", 8, 16, 1, classes=2)
    train(small(stage="relay", network="tiny-16", data=str(data), outdir=str(tmp_path / "run"), duration=16,
                cond=True), echo=lambda s: None)
    teacher = list_snapshots(tmp_path / "run")[-1]
    lines = []
    final = distill(config(data, teacher, tmp_path / "d", steps=2, teacher_steps=4, round_images=8),
                    echo=lines.append)
    assert any(line.startswith(f"relay stage, network the teacher's ({teacher})") for line in lines)
    cfg = read_config(final)
    assert cfg.stage == "relay" and cfg.schedule == read_config(teacher).schedule and len(cfg.distilled_grid) == 2
    chain = RelayChain.from_pretrained([final])
    low = torch.rand(3, 1, 4, 4) * 2 - 1
    out = chain([0, 1, 2], "balanced", low_res=low)
    assert out.shape == (3, 1, 16, 16) and torch.isfinite(out).all() and chain.nfe() == [2]


def test_a_relay_stage_distils_from_a_base_stages_samples(base_teacher, tmp_path):
    """--relay-starts: the relay student's first step starts from the base stage's samples (§5),
    recorded in its config; the base + student chain samples; a base teacher, a relay model as
    the base and a base of the wrong size are refused before anything is written."""
    _, base = base_teacher
    data = write_edm_zip(tmp_path / "d.zip", 8, 16, 1, classes=2)
    for up in (2, 4):
        train(small(stage="relay", network="tiny-16", data=str(data), outdir=str(tmp_path / f"up{up}"),
                    duration=16, cond=True, up_scale=up), echo=lambda s: None)
    teacher = list_snapshots(tmp_path / "up2")[-1]
    kw = dict(steps=1, teacher_steps=2, round_images=8, guidance_range=(1, 3), label_dropout=0.5)
    final = distill(config(data, teacher, tmp_path / "s", relay_starts=str(base), **kw), echo=lambda s: None)
    assert read_config(final).distilled["relay_starts"] == str(base.resolve())
    plain = distill(config(data, teacher, tmp_path / "p", **kw), echo=lambda s: None)
    assert (final / "ema.safetensors").read_bytes() != (plain / "ema.safetensors").read_bytes()
    out = RelayChain.from_pretrained([base, final])([0, 1], "balanced")
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    with pytest.raises(ValueError, match="holds a distillation with other settings"):
        distill(config(data, teacher, tmp_path / "s", **kw))
    with pytest.raises(ValueError, match="for distilling a relay stage; the teacher is a base stage"):
        distill(config(data, base, tmp_path / "a", relay_starts=str(base)))
    with pytest.raises(ValueError, match="a relay stage; give a stage that starts from noise"):
        distill(config(data, teacher, tmp_path / "b", relay_starts=str(teacher)))
    with pytest.raises(ValueError, match=r"makes 8×8 images .* starts from 4×4"):
        distill(config(data, list_snapshots(tmp_path / "up4")[-1], tmp_path / "c", relay_starts=str(base)))
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))


def test_guidance_is_distilled_as_an_input(base_teacher, tmp_path):
    """--guidance-range: the student takes w as an input (one evaluation per step at any w in the
    range), starts as the teacher (zero-initialised embedding) and is refused outside the range."""
    data, teacher = base_teacher
    final = distill(config(data, teacher, tmp_path / "g", steps=1, teacher_steps=2, guidance_range=(1, 3),
                           label_dropout=0.1), echo=lambda s: None)       # as the teacher was trained
    cfg = read_config(final)
    assert cfg.guidance_range == (1.0, 3.0) and cfg.network.guidance_embed
    chain = RelayChain.from_pretrained([final])
    two = RelayChain(chain.models, [chain.settings[0].with_overrides({"cfg_scale": 2.0})])
    assert two.nfe() == [1]                                   # guided, yet one evaluation
    assert not torch.equal(two([0, 1], "balanced"), chain([0, 1], "balanced"))
    with pytest.raises(ValueError, match="distilled for guidance scales 1 to 3, got cfg_scale 5"):
        RelayChain(chain.models, [chain.settings[0].with_overrides({"cfg_scale": 5.0})])


def test_the_first_guided_round_teaches_the_teachers_classifier_free_guidance():
    """With w fixed at 2 the loss equals the unguided loss of the CFG-wrapped teacher (same draws)."""
    from relay_diffusion.distillation import StepFrame
    from relay_diffusion.distillation.loss import DistillationLoss
    from relay_diffusion.sampling import classifier_free_guidance
    from relay_diffusion.sampling.settings import BaseSamplerSettings
    from relay_diffusion.seeds import SeededNoise

    from helpers.nets import tiny_denoiser

    teacher, student = tiny_denoiser(channels=1, label_dim=3, seed=1), tiny_denoiser(channels=1, label_dim=3, seed=2)
    frame = StepFrame(BaseSamplerSettings(solver="dpmpp-2m-pc"))
    grid = (20.0, 5.0, 1.0, 0.2)
    images, labels = torch.rand(6, 1, 8, 8) * 2 - 1, torch.eye(3)[torch.arange(6) % 3]
    guided = DistillationLoss(frame, teacher, grid, guidance=(2.0, 2.0))
    wrapped = DistillationLoss(frame, classifier_free_guidance(teacher, 2.0), grid)
    def student_ignoring_w(x, sigma, labels=None, guidance=None):
        return student(x, sigma, labels)
    a = guided(student_ignoring_w, images, labels, generator=SeededNoise(range(6)))
    b = wrapped(student_ignoring_w, images, labels, generator=SeededNoise(range(6)))
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="guidance distillation needs class labels"):
        guided(student_ignoring_w, images, None, generator=SeededNoise(range(6)))


@pytest.mark.slow
def test_a_killed_distillation_resumes_to_the_same_model(base_teacher, tmp_path):
    """SIGKILL in the middle of round 2's snapshot; the same command then finishes with weights
    bit-identical to an uninterrupted run's."""
    import dataclasses
    import signal
    import subprocess
    import sys

    from helpers.training import ROOT

    data, teacher = base_teacher
    reference = distill(config(data, teacher, tmp_path / "ref", snapshot_every=8), echo=lambda s: None)
    cfg = config(data, teacher, tmp_path / "run", snapshot_every=8)
    script = f"""
import os, signal
from relay_diffusion.distillation.run import DistillConfig, distill
from relay_diffusion.training import checkpoint
real = checkpoint.save_tensors
def dying(tensors, path):
    real(tensors, path)
    if "round-2" in str(path) and str(path).endswith("training-state.safetensors"):
        os.kill(os.getpid(), signal.SIGKILL)
checkpoint.save_tensors = dying
distill(DistillConfig(**{dataclasses.asdict(cfg)!r}), echo=lambda s: None)
"""
    r = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True)
    assert r.returncode == -signal.SIGKILL, r.stderr.decode()[-2000:]
    assert not (tmp_path / "run" / "model").exists()
    lines = []
    final = distill(cfg, echo=lines.append)
    assert any("resuming from" in line for line in lines)
    for name in ("model.safetensors", "ema.safetensors"):
        assert (final / name).read_bytes() == (reference / name).read_bytes()


@pytest.mark.slow
def test_two_processes_distil_like_one(base_teacher, tmp_path):
    """`torchrun --nproc_per_node=2 rdm distill` (gloo, 2 rounds): the same rounds and snapshots,
    and weights equal to one process's to float32 all-reduce rounding (Adam ε raised as in
    test_training.test_two_processes_equal_one; the learning rate makes the weights move ≫ that)."""
    import os
    import subprocess
    import sys

    from safetensors.torch import load_file

    data, teacher = base_teacher
    args = ["-m", "relay_diffusion", "distill", "--teacher", str(teacher), "--data", str(data), "--steps", "1",
            "--teacher-steps", "4", "--round-images", "32", "--batch", "8", "--lr", "1e-2", "--eps", "1e-4",
            "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, *args, "--outdir", str(tmp_path / "one")], check=True, capture_output=True,
                   env=env)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", *args,
                        "--outdir", str(tmp_path / "two")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "2 process(es)" in (tmp_path / "two" / "round-2" / "log.txt").read_text()
    a, b = (load_file(str(tmp_path / d / "model" / "model.safetensors")) for d in ("one", "two"))
    start = load_file(str(teacher / "model.safetensors"))
    assert max(float((a[k] - start[k]).abs().max()) for k in a) > 1e-3
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=0)


def test_a_distillation_resumes_from_another_folder_with_other_paths(base_teacher, tmp_path, monkeypatch):
    """distill.json records absolute paths: the same run given relative paths from elsewhere resumes
    (trains nothing more) instead of being refused; other settings are still refused."""
    data, teacher = base_teacher
    monkeypatch.chdir(tmp_path)
    final = distill(config(data, teacher, "d", teacher_steps=2), echo=lambda s: None)
    before = (tmp_path / final / "ema.safetensors").read_bytes()
    assert json.loads((tmp_path / "d" / "distill.json").read_text())["outdir"] == str(tmp_path / "d")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    lines = []
    distill(config(data, teacher, "../d", teacher_steps=2, status_every=4), echo=lines.append)
    assert not any("images  loss" in line for line in lines)                 # nothing trained again
    assert (tmp_path / "d" / "model" / "ema.safetensors").read_bytes() == before
    with pytest.raises(ValueError, match="other settings"):
        distill(config(data, teacher, "../d", teacher_steps=2, lr=3e-4))


def test_preset_distilled_runs_distilled_stages_on_their_own_steps(base_teacher, tmp_path, capsys):
    data, teacher = base_teacher
    final = distill(config(data, teacher, tmp_path / "d", teacher_steps=2), echo=lambda s: None)
    assert main(["sample", "--model", str(final), "--preset", "distilled", "--seeds", "0-3",
                 "--grid", str(tmp_path / "g.png"), "--settings", str(tmp_path / "s.json")]) == 0
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["nfe"] == 1 and record["stages"][0]["sampler"]["solver"] == "ddim"
    assert main(["sample", "--model", str(teacher), "--preset", "distilled", "--seeds", "0",
                 "--grid", str(tmp_path / "h.png")]) == 2
    assert "stage 0 (base) is not distilled" in capsys.readouterr().err
    assert not (tmp_path / "h.png").exists()
