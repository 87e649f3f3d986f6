"""How networks run (networks/runtime.py): channels-last and bf16 autocast change only the network
call — same weights, same state dict, per-seed images; fp16 is refused off CUDA; the options
reach models, chains, the CLI records and the feature cache keys."""

from __future__ import annotations

import json

import pytest
import torch

from relay_diffusion.cli import main
from relay_diffusion.evaluation.evaluate import runtime_key
from relay_diffusion.pipeline import bundled_demo_chain
from relay_diffusion.models import RelayModel
from relay_diffusion.networks.runtime import RuntimeOptions
from relay_diffusion.pipeline import RelayChain
from relay_diffusion.sampling.presets import chain_recipe

SEEDS = [0, 3, 11, 12]


def fast_chain(**runtime) -> RelayChain:
    return RelayChain.from_pretrained(bundled_demo_chain(), chain_recipe("fast"), **runtime)


def relay_inputs(n=4):
    g = torch.Generator().manual_seed(0)
    return (torch.randn(n, 1, 32, 32, generator=g), torch.linspace(0.05, 2.0, n),
            torch.eye(10)[torch.arange(n)])


@pytest.mark.parametrize("bad, match", [(dict(precision="fp8"), "precision"),
                                        (dict(channels_last="yes"), "channels_last"),
                                        (dict(compile=1), "compile")])
def test_bad_options_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        RuntimeOptions(**bad)


def test_fp16_needs_cuda():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        RelayModel.from_pretrained(bundled_demo_chain()[0], precision="fp16")
    with pytest.raises(SystemExit):                       # argparse: not a choice
        main(["sample", "--precision", "fp64", "--grid", "x.png"])


def test_channels_last_is_the_same_network():
    """NHWC changes the layout, not the math: outputs agree to float32 rounding; the state dict
    (names, values, contiguous on save) is untouched."""
    plain = RelayModel.from_pretrained(bundled_demo_chain()[1], channels_last=False)
    nhwc = RelayModel.from_pretrained(bundled_demo_chain()[1])                  # the default
    conv = nhwc.denoiser.net.enc["32x32_block0"].conv0.weight
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
    x, sigma, labels = relay_inputs()
    torch.testing.assert_close(nhwc.denoiser(x, sigma, labels), plain.denoiser(x, sigma, labels),
                               atol=2e-5, rtol=0)
    a, b = plain.denoiser.state_dict(), nhwc.denoiser.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_save_after_configure_round_trips(tmp_path):
    model = RelayModel.from_pretrained(bundled_demo_chain()[1], channels_last=True, precision="bf16")
    model.save_pretrained(tmp_path / "m")
    again = RelayModel.from_pretrained(tmp_path / "m")
    a, b = model.denoiser.state_dict(), again.denoiser.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert again.denoiser.runtime == RuntimeOptions(channels_last=True)      # the loading default, not saved


def test_bf16_runs_only_the_network_in_bf16():
    """Autocast covers the network; the preconditioning and the output stay float32 (float64 for
    float64 samplers), and the error is bf16's (8 mantissa bits), not more."""
    plain = RelayModel.from_pretrained(bundled_demo_chain()[1]).denoiser
    bf16 = RelayModel.from_pretrained(bundled_demo_chain()[1], precision="bf16").denoiser
    x, sigma, labels = relay_inputs()
    ref, got = plain(x, sigma, labels), bf16(x, sigma, labels)
    assert got.dtype == torch.float32 and bf16(x.double(), sigma, labels).dtype == torch.float64
    err = (got - ref).abs().max().item()
    assert 0 < err < 0.05 * ref.abs().max().item()
    assert torch.equal(bf16(x, sigma, labels), got)                # deterministic


def test_bf16_images_depend_on_their_seed_only():
    """Per-seed images at bf16: batch 4 and batches of 1 give the same images to bf16 rounding
    of the network (a few uint8 levels), and a repeat gives the very same bits."""
    chain = fast_chain(precision="bf16", channels_last=True)
    together = chain(SEEDS)
    alone = torch.cat([chain([s]) for s in SEEDS])
    assert torch.equal(chain(SEEDS), together)
    diff = (together - alone).abs()
    assert diff.mean() < 2 / 255 and diff.max() < 0.25
    plain = fast_chain()(SEEDS)
    assert (together - plain).abs().mean() < 4 / 255                 # bf16 ≈ fp32 images, per seed


def test_channels_last_chain_matches_plain_chain():
    """Channels-last images equal the plain ones to float32 rounding, and are as batch-invariant
    (a batch of 4 against batches of 1) and reproducible as plain fp32 images."""
    chain = fast_chain()                                                     # channels-last: the default
    assert chain.models[0].denoiser.runtime.channels_last
    plain, nhwc = fast_chain(channels_last=False)(SEEDS), chain(SEEDS)
    torch.testing.assert_close(nhwc, plain, atol=1e-3, rtol=0)
    assert torch.equal(chain(SEEDS), nhwc)
    torch.testing.assert_close(torch.cat([chain([s]) for s in SEEDS]), nhwc, atol=1e-5, rtol=0)


def test_runtime_is_recorded_and_keys_the_feature_cache(tmp_path):
    assert runtime_key(RuntimeOptions()) == runtime_key(RuntimeOptions(channels_last=True, compile=True)) == ()
    assert runtime_key(RuntimeOptions("bf16")) == runtime_key(RuntimeOptions("bf16", channels_last=True)) != ()
    assert main(["sample", "--preset", "fast", "--seeds", "0-1", "--grid", str(tmp_path / "g.png"),
                 "--settings", str(tmp_path / "s.json"), "--precision", "bf16", "--channels-last"]) == 0
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["runtime"] == {"precision": "bf16", "channels_last": True, "compile": False, "auto": False}


@pytest.mark.parametrize("flags, chosen", [({"avx2", "fma"}, "fp32"), ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
                                           ({"amx_bf16", "amx_tile"}, "bf16"), ({"asimd", "bf16"}, "bf16"), (set(), "fp32")])
def test_auto_picks_bf16_only_on_cpus_that_have_it(monkeypatch, flags, chosen):
    from relay_diffusion.networks import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))
    options = RuntimeOptions("auto", channels_last=True).for_device("cpu")
    assert (options.precision, options.auto, options.channels_last) == (chosen, True, True)
    assert options.describe() == f"{chosen} (auto), channels-last"


def test_auto_on_cuda_follows_the_device(monkeypatch):
    for supported, chosen in ((True, "bf16"), (False, "fp32")):
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, s=supported, **k: s)
        assert RuntimeOptions("auto").for_device("cuda").precision == chosen


def test_bf16_on_a_cpu_without_it_warns_once_and_auto_does_not(monkeypatch, tmp_path):
    import warnings

    from relay_diffusion.networks import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2"}))
    runtime._warn_emulated_bf16.cache_clear()
    with pytest.warns(RuntimeWarning, match="no native bf16.*8–12× slower network math than fp32"):
        RuntimeOptions("bf16").for_device("cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        RuntimeOptions("bf16").for_device("cpu")                        # once per process
        runtime._warn_emulated_bf16.cache_clear()
        RuntimeOptions("fp32").for_device("cpu")
        RuntimeOptions("auto").for_device("cpu")
        monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
        RuntimeOptions("bf16").for_device("cpu")                        # native: no warning
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2"}))
    assert main(["sample", "--preset", "fast", "--seeds", "0", "--grid", str(tmp_path / "g.png"),
                 "--settings", str(tmp_path / "s.json"), "--precision", "auto"]) == 0
    record = json.loads((tmp_path / "s.json").read_text())
    assert record["runtime"] == {"precision": "fp32", "channels_last": True, "compile": False, "auto": True}


@pytest.mark.slow
def test_compiled_network_computes_the_same():
    """torch.compile (inductor, CPU here) is the same function: outputs to float32 rounding, and
    the state dict keeps its plain names (the compiled wrapper is not a submodule)."""
    plain = RelayModel.from_pretrained(bundled_demo_chain()[1])
    compiled = RelayModel.from_pretrained(bundled_demo_chain()[1], compile=True)
    x, sigma, labels = relay_inputs()
    torch.testing.assert_close(compiled.denoiser(x, sigma, labels), plain.denoiser(x, sigma, labels),
                               atol=1e-4, rtol=0)
    assert compiled.denoiser.state_dict().keys() == plain.denoiser.state_dict().keys()


# ---- the CPU allocator (cpu_allocator.py): a process-wide setting, so each case runs in a child

_MMAPPED_BYTES = """
import ctypes, sys
from relay_diffusion.cpu_allocator import tune_cpu_allocator
libc = ctypes.CDLL("libc.so.6")
class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in
                "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
applied = tune_cpu_allocator() if sys.argv[1] == "tune" else None
block = libc.malloc(200 << 20)                       # 200 MB: above glibc's largest default threshold
print(applied, libc.mallinfo2().hblkhd)              # bytes held in mmapped blocks
"""


def _glibc_with_mallinfo2() -> bool:
    import ctypes
    try:
        return hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _glibc_with_mallinfo2(), reason="needs glibc ≥ 2.33 (mallopt, mallinfo2)")
def test_tuned_allocator_serves_large_blocks_from_the_heap():
    import os
    import subprocess
    import sys

    def mmapped(mode, **env):
        out = subprocess.run([sys.executable, "-c", _MMAPPED_BYTES, mode], capture_output=True, text=True,
                             env={**os.environ, **env}, check=True).stdout.split()
        return out[0], int(out[1])

    big = 200 << 20                                   # blocks mmapped before the call stay counted
    assert mmapped("plain")[1] >= big
    applied, held = mmapped("tune")
    assert applied == "True" and held < big            # served from the heap: reusable, no page faults
    applied, held = mmapped("tune", RDM_CPU_ALLOCATOR="system")
    assert applied == "False" and held >= big          # the opt-out leaves glibc's defaults


def test_allocator_setting_is_checked(monkeypatch, capsys):
    from relay_diffusion.cpu_allocator import tune_cpu_allocator
    with pytest.raises(ValueError, match="threshold must be between"):
        tune_cpu_allocator(0)
    with pytest.raises(ValueError, match="threshold must be between"):
        tune_cpu_allocator(2 ** 31)
    monkeypatch.setenv("RDM_CPU_ALLOCATOR", "fast")
    with pytest.raises(ValueError, match="RDM_CPU_ALLOCATOR must be 'tuned' or 'system', got 'fast'"):
        tune_cpu_allocator()
    assert main(["analyze", "schedule", "--steps", "4"]) == 2
    assert "RDM_CPU_ALLOCATOR must be" in capsys.readouterr().err
