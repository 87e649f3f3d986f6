"""The CUDA code paths (docs/speed.md): every network runtime samples and trains on a GPU, images
stay per-seed, attention runs on the fused SDPA kernels, and two NCCL processes train like one.
Skipped without CUDA; `benchmarks/gpu_check.sh` runs them on a GPU machine. The first test runs
everywhere: the library never hard-codes a device."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import torch

from relay_diffusion.pipeline import bundled_demo_chain
from relay_diffusion.models import RelayModel
from relay_diffusion.pipeline import RelayChain
from relay_diffusion.sampling.presets import chain_recipe

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [0, 3, 11, 12]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
RUNTIMES = {"fp32": {}, "bf16": dict(precision="bf16"), "fp16": dict(precision="fp16"),
            "bf16-channels-last": dict(precision="bf16", channels_last=True)}
# per-seed agreement of a batch of 4 with batches of 1 (uint8 levels are 1/127.5 in [-1, 1])
BATCH_TOLERANCE = {"fp32": 1e-3, "bf16": 0.25, "fp16": 0.05, "bf16-channels-last": 0.25}


def test_library_code_names_no_device():
    """Device-agnostic code: tensors follow their inputs or a `device` argument, never `.cuda()`."""
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in (ROOT / "src").rglob("*.py")
            for i, line in enumerate(p.read_text().splitlines(), 1) if re.search(r"\.cuda\(\)", line)]
    assert not hits, hits


def chain_on_gpu(**runtime) -> RelayChain:
    return RelayChain.from_pretrained(bundled_demo_chain(), chain_recipe("fast"),
                                      device="cuda", **runtime)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("name", RUNTIMES)
def test_images_depend_on_their_seed_only(name):
    chain = chain_on_gpu(**RUNTIMES[name])
    together = chain(SEEDS)
    assert together.device.type == "cuda" and torch.isfinite(together).all()
    torch.testing.assert_close(chain(SEEDS), together, atol=1e-6, rtol=0)        # a repeat
    alone = torch.cat([chain([s]) for s in SEEDS])
    diff = (together - alone).abs()
    assert diff.max() < BATCH_TOLERANCE[name] and diff.mean() < 2 / 255


@pytest.mark.cuda
@needs_cuda
def test_low_precision_images_match_fp32_per_seed():
    plain = chain_on_gpu()(SEEDS)
    for name in ("bf16", "fp16"):
        assert (chain_on_gpu(**RUNTIMES[name])(SEEDS) - plain).abs().mean() < 4 / 255, name


@pytest.mark.cuda
@needs_cuda
def test_gpu_network_matches_cpu_network():
    """Same weights, same input: the GPU forward is the CPU forward up to TF32 convolutions."""
    cpu = RelayModel.from_pretrained(bundled_demo_chain()[1]).denoiser
    gpu = RelayModel.from_pretrained(bundled_demo_chain()[1], device="cuda").denoiser
    g = torch.Generator().manual_seed(0)
    x, sigma, labels = torch.randn(4, 1, 32, 32, generator=g), torch.linspace(0.05, 2.0, 4), torch.eye(10)[:4]
    ref = cpu(x, sigma, labels)
    got = gpu(x.cuda(0), sigma.cuda(0), labels.cuda(0)).cpu()
    assert (got - ref).abs().max() < 0.01 * ref.abs().max()


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_attention_runs_on_fused_kernels(precision):
    """Under autocast the network's attention must run on flash or memory-efficient SDPA kernels
    (the math fallback is refused here, so an unsupported shape or dtype fails the test)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = RelayModel.from_pretrained(bundled_demo_chain()[1], device="cuda", precision=precision)
    assert any("attn" in n or "qkv" in n for n, _ in model.denoiser.named_modules())
    x = torch.randn(8, 1, 32, 32, device="cuda")
    with sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION]):
        out = model.denoiser(x, torch.full((8,), 0.5, device="cuda"), torch.eye(10, device="cuda")[:8])
    assert torch.isfinite(out).all()


@pytest.mark.cuda
@needs_cuda
def test_compiled_chain_matches_eager():
    eager = chain_on_gpu(precision="bf16", channels_last=True)(SEEDS)
    compiled = chain_on_gpu(precision="bf16", channels_last=True, compile=True)(SEEDS)
    assert (compiled - eager).abs().mean() < 2 / 255


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("runtime", [dict(precision="bf16", channels_last=True), dict(precision="fp16"),
                                     dict(compile=True)])
def test_training_steps_on_gpu_keep_fp32_state(runtime):
    """A few trainer steps per runtime: finite loss, and weights, EMA and Adam moments stay fp32."""
    from relay_diffusion.training import TrainConfig
    from relay_diffusion.distributed import Dist
    from relay_diffusion.training.loop import Trainer, prepare

    from relay_diffusion.data.synthetic import SyntheticDataset

    cfg = TrainConfig(stage="relay", data="<synthetic>", outdir="<none>", network="tiny-32", cond=True,
                      batch=16, lr_rampup=0, device="cuda", **runtime)
    trainer = Trainer(prepare(cfg, SyntheticDataset(64, 32, 1, 10)), Dist(), torch.device("cuda", 0))
    before = [p.detach().clone() for p in trainer.net.parameters()]
    for step in range(3):
        assert torch.isfinite(torch.tensor(trainer.step(step)["loss"]))
    params = list(trainer.net.parameters()) + list(trainer.ema_net.parameters())
    assert all(p.dtype == torch.float32 and p.is_cuda for p in params)
    moments = [v for s in trainer.optimizer.state.values() for v in s.values() if torch.is_tensor(v) and v.dim()]
    assert moments and all(v.dtype == torch.float32 for v in moments)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.net.parameters()))


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_nccl_processes_train_like_one(tmp_path):
    """torchrun with 2 GPUs (NCCL) × batch 4 ≡ 1 GPU × batch 8, like the gloo test on CPU."""
    from safetensors.torch import load_file

    from helpers.training import train_in_one_and_two_processes, write_edm_zip

    from relay_diffusion.training.checkpoint import list_snapshots

    data = write_edm_zip(tmp_path / "d.zip", 32, 32, 1, classes=10)
    common = ["--stage", "relay", "--network", "tiny-32", "--data", str(data), "--batch", "8", "--duration", "32",
              "--snapshot", "32", "--status", "16", "--sample-every", "0", "--lr-rampup", "0", "--dropout", "0",
              "--device", "cuda", "--cond", "--eps", "1e-4"]
    env = {**os.environ, "NVIDIA_TF32_OVERRIDE": "0"}                   # compare fp32 with fp32
    one, two = train_in_one_and_two_processes(common, tmp_path, env)
    a = load_file(str(list_snapshots(one)[-1] / "model.safetensors"))
    b = load_file(str(list_snapshots(two)[-1] / "model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=0)
