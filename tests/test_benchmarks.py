"""The benchmark harness (python -m benchmarks): one small real run of the scaling benchmark through
the orchestrator — JSON records, run.json, the rendered README — and its refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_benchmarks(*args, cwd=ROOT):
    return subprocess.run([sys.executable, "-m", "benchmarks", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


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


def test_unknown_benchmark_is_refused(tmp_path):
    r = run_benchmarks("--only", "nope", "--outdir", str(tmp_path))
    assert r.returncode == 2 and "unknown benchmark" in r.stderr
    r = run_benchmarks("--extra", "nope=--x", "--outdir", str(tmp_path))
    assert r.returncode == 2 and "unknown benchmark" in r.stderr
