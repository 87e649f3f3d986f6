"""The benchmark harness (python -m benchmarks): one small real run of the scaling benchmark through
the orchestrator — JSON records, run.json, the rendered README — and its refusals."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_benchmarks(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_flops_per_cycle_follow_the_vector_units_the_core_really_has():
    """Two FMA pipes of the widest full-width vector: AVX-512 counts 64 fp32 FLOPs per cycle only
    where the core executes it at full width, not on AMD Zen 4 (family 25), which splits it in two."""
    from benchmarks.common import flops_per_cycle

    avx2 = frozenset({"sse2", "avx", "avx2", "fma"})
    assert flops_per_cycle(avx2 | {"avx512f"}, "GenuineIntel", "6") == 64
    assert flops_per_cycle(avx2 | {"avx512f", "avx512_bf16"}, "AuthenticAMD", "25") == 32      # Zen 4
    assert flops_per_cycle(avx2 | {"avx512f"}, "AuthenticAMD", "26") == 64                     # Zen 5
    assert flops_per_cycle(avx2, "AuthenticAMD", "25") == 32                                  # Zen 3
    assert flops_per_cycle(frozenset({"avx"}), None, None) == 16
    assert flops_per_cycle(frozenset({"sse2"}), None, None) == 8


def test_report_states_the_machine_and_each_timings_share_of_the_peak(tmp_path):
    """The rendered README names the CPU's flags and fp32 peak, and every training timing its
    achieved GFLOP/s and share of that peak (common.peak_use on the record's own machine)."""
    from benchmarks.common import peak_use
    from benchmarks.report import render

    record = {"cpu_model": "Test CPU", "cpu_flags": ["avx", "avx2", "fma"], "native_bf16": False, "threads": 2,
              "peak_cores": 2, "fp32_peak_gflops": 100.0, "clock_ghz": 1.5625, "flops_per_cycle": 32,
              "target_outside_network_share": 0.15, "steps": 3}
    row = {"config": "relay-32 (fmnist)", "network": "tiny-32", "resolution": 32, "batch": 8, "params": 1000,
           "step_s": 0.5, "images_per_s": 16.0, "network_fwd_bwd_s": 0.45, "outside_network_share": 0.1,
           "peak_rss_mib": 100.0, **peak_use(2.5e9, 16.0, record)}       # 40 GFLOP/s of 100
    (tmp_path / "training.json").write_text(json.dumps({**record, "results": [row]}))
    readme = render(tmp_path)
    assert "avx, avx2, fma; native bf16: no" in readme
    assert "100 GFLOP/s = 2 cores × 1.5625 GHz × 32 FLOPs/cycle" in readme
    assert "| 16 | 40 | 40 % |" in readme
    (tmp_path / "training.json").write_text(json.dumps({**record, "threads": 1, "results": [row | peak_use(
        2.5e9, 16.0, {**record, "threads": 1})]}))
    assert "| 16 | 40 | 80 % |" in render(tmp_path)                 # one thread: half the peak is usable
    from benchmarks.report import describe_machine, peak_lines
    assert peak_lines(tmp_path) == ["training/results/relay-32 (fmnist): 40 GFLOP/s, 80 % of the fp32 peak"]
    assert "flags avx avx2 fma, native bf16 no, fp32 peak 100 GFLOP/s" in describe_machine(record)


@pytest.mark.slow
def test_scaling_run_writes_json_and_readme(tmp_path):
    out = tmp_path / "results"
    r = run_benchmarks("--quick", "--only", "scaling", "--outdir", str(out), "--note", "test run",
                       "--extra", "scaling=--resolutions 32,64 --tiny tiny-32")
    assert r.returncode == 0, r.stderr
    d = json.loads((out / "scaling.json").read_text())
    assert [row["resolution"] for row in d["tiny"]] == [32, 64]
    for row in d["tiny"]:                                          # measured: positive times and memory
        assert row["measured"] and row["forward_s_per_image"] > 0 and row["train_step_s_per_image"] > 0
        assert row["train_peak_mib"] is not None
    base, up = d["tiny"]
    assert base["growth_vs_base"]["flops"] == 1.0
    assert 3.0 < up["growth_vs_base"]["flops"] < 5.0               # ≈ 4× the pixels, same network
    # --quick skips the paper configs: counted (params, FLOPs at both resolutions), not run
    assert {row["network"] for row in d["paper"]} == {"imagenet64-stage1", "imagenet256-stage2",
                                                      "celebahq256-stage2"}
    for row in d["paper"]:
        assert not row["measured"] and row["forward_s_per_image"] is None and row["params"] > 2e8
    run = json.loads((out / "run.json").read_text())
    assert run["quick"] and run["note"] == "test run" and run["benchmarks"]["scaling"]["returncode"] == 0
    readme = (out / "README.md").read_text()
    assert "Quick mode — not for citation" in readme and "test run" in readme
    assert "### Paper ADM configs" in readme and "not run" in readme
    assert "| `tiny-32` | 64 | 4× |" in readme                     # growth row: pixels ratio vs 32


@pytest.mark.slow
def test_unknown_benchmark_is_refused(tmp_path):
    r = run_benchmarks("--only", "nope", "--outdir", str(tmp_path))
    assert r.returncode == 2 and "unknown benchmark" in r.stderr
    r = run_benchmarks("--extra", "nope=--x", "--outdir", str(tmp_path))
    assert r.returncode == 2 and "unknown benchmark" in r.stderr


@pytest.mark.slow
def test_training_runtimes_run_and_render(tmp_path):
    """The per-runtime training comparison: each runtime timed in its own process, fp16 reported
    as skipped off CUDA (not failed), speed-ups relative to eager fp32 on the system allocator
    (timed in its own process), rendered as a table."""
    out = tmp_path / "results"
    r = run_benchmarks("--quick", "--only", "training", "--outdir", str(out), "--extra",
                       "training=--sections runtimes --runtimes fp32,fp32_channels_last,fp16_channels_last")
    assert r.returncode == 0, r.stderr
    d = json.loads((out / "training.json").read_text())
    assert "results" not in d                                      # the table section was not asked for
    rt = d["runtimes"]
    assert rt["config"] == "relay-32 (fmnist)" and rt["batch"] == 8
    assert "fp16 needs a CUDA device" in rt["rows"]["fp16_channels_last"]["skipped"]
    base = rt["baseline"]
    assert base["runtime"] == "fp32" and base["allocator"] == "system" and not base["allocator_tuned"]
    assert rt["rows"]["fp32"]["allocator"] == "tuned"
    assert rt["step_speedup_vs_fp32_eager"]["fp32"] == base["step_s"] / rt["rows"]["fp32"]["step_s"]
    assert rt["rows"]["fp32_channels_last"]["step_s"] > 0 and rt["best"] in ("fp32", "fp32_channels_last")
    readme = (out / "README.md").read_text()
    assert "### Training step per network runtime" in readme and "| `fp32_channels_last` |" in readme
    assert "| `fp32`, system allocator (baseline) |" in readme


@pytest.mark.slow
def test_a_benchmark_past_its_timeout_fails_without_stale_numbers(tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "sampling.json").write_text("{}")                      # from an earlier run
    r = run_benchmarks("--quick", "--only", "sampling", "--outdir", str(out), "--timeout", "0.5")
    assert r.returncode == 1 and "exit 124" in r.stderr
    assert not (out / "sampling.json").exists()
    assert json.loads((out / "run.json").read_text())["benchmarks"]["sampling"]["returncode"] == 124


@pytest.mark.slow
def test_chain_vs_official_per_allocator(tmp_path):
    """Each allocator's timing runs in its own process; the headline is the like-for-like system
    run, the tuned run and `rdm`-as-run ratios come with it, and both render."""
    out = tmp_path / "results"
    r = run_benchmarks("--quick", "--only", "sampling", "--outdir", str(out), "--extra",
                       "sampling=--sections official --runtimes fp32 --allocators tuned,system")
    assert r.returncode == 0, r.stderr
    d = json.loads((out / "sampling.json").read_text())
    system, tuned = d["chain_vs_official"], d["chain_vs_official_tuned_allocator"]
    assert (system["allocator"], system["allocator_tuned"]) == ("system", False)
    assert (tuned["allocator"], tuned["allocator_tuned"]) == ("tuned", True)
    assert d["chain_speedup_vs_official"] == system["chain_speedup_vs_official"]
    assert system["network_calls_per_image"] == tuned["network_calls_per_image"] == [35, 13]
    official = statistics.median(system["official_seconds"])
    assert d["rdm_tuned_vs_official_system_allocator"]["fp32"] == pytest.approx(
        official / tuned["ours"]["fp32"]["seconds"])
    readme = (out / "README.md").read_text()
    assert "official samplers (`sample_throughput.py`), system allocator" in readme
    assert "official samplers (`sample_throughput.py`), tuned allocator" in readme
    assert "### As run: `rdm` (tuned allocator)" in readme
