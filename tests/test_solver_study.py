"""The solver study's plans (studies/solvers_points.py) and its spectrum measure: every point is a
valid chain of sampler settings with the NFE it claims, names are unique, and every RMSE
reference is a saved point of an earlier plan."""

from __future__ import annotations

import pytest
import solvers as driver                 # studies/ is on pytest's path (pyproject.toml)
import solvers_points as points
import torch
from fmnist32_runs import RUNS

from relay_diffusion import RelaySchedule
from relay_diffusion.networks.runtime import RuntimeOptions
from relay_diffusion.sampling.presets import FAST_RECIPE
from relay_diffusion.sampling.settings import BaseSamplerSettings, RelaySamplerSettings


def test_every_plan_point_is_a_valid_chain():
    seen, saved = set(), set()
    for plan, make in points.PLANS.items():
        for name, spec in make().items():
            assert name not in seen, f"{name} appears twice"
            seen.add(name)
            if isinstance(spec["chain"], str):
                assert spec["chain"] == "demo" or spec["chain"] in points.CHAINS
            else:                                                       # a study chain of runs
                assert all(run in RUNS and images <= RUNS[run]["duration"] for run, images in spec["chain"])
            assert spec.get("seeds", "selection") in ("selection", "report")
            if plan in ("demo-report", "study-evals", "study-verdicts"):   # results: report seeds only
                assert spec["seeds"] == "report", name
            RuntimeOptions(**spec.get("runtime", {}))
            base = BaseSamplerSettings.from_dict(spec["stages"][0])
            assert base.nfe() >= 2
            for relay in spec["stages"][1:]:
                settings = RelaySamplerSettings.from_dict(relay)
                sig = settings.sigmas(RelaySchedule())
                assert settings.nfe(RelaySchedule()) == (2 * len(sig) - 1 if settings.solver == "heun" else len(sig))
            if spec.get("reference"):
                assert spec["reference"] in saved, f"{name}: reference {spec['reference']} is not saved earlier"
            if spec.get("save"):
                saved.add(name)


def test_fast_chain_point_is_the_fast_preset():
    """The study measures exactly the `--preset fast` chain: its dicts rebuild the preset."""
    base, relay = points.PLANS["demo-full"]()["demo-full-chain-nfe20"]["stages"]
    assert (BaseSamplerSettings.from_dict(base), RelaySamplerSettings.from_dict(relay)) == FAST_RECIPE


def test_high_frequency_power_is_one_for_the_same_set_and_falls_with_blur():
    x = torch.rand(16, 1, 32, 32) * 2 - 1
    blurred = torch.nn.functional.avg_pool2d(x, 2).repeat_interleave(2, -1).repeat_interleave(2, -2)
    assert driver.high_frequency_power(x, x) == pytest.approx(1.0)
    assert driver.high_frequency_power(x, blurred) < 0.5


def test_workers_share_points_by_claim_and_a_killed_holder_frees_its_point(tmp_path, monkeypatch):
    """Any number of workers run the same plans: a point another process holds is skipped, a
    point whose holder died (even by SIGKILL) is free again."""
    import subprocess
    import sys

    pytest.importorskip("fcntl")                               # POSIX: elsewhere every worker takes every point
    with driver.point_claim(tmp_path, "a") as first:
        with driver.point_claim(tmp_path, "a") as second, driver.point_claim(tmp_path, "b") as other:
            assert first and not second and other
        measured = []                                          # a worker meanwhile skips "a"
        monkeypatch.setattr(driver, "run_point", lambda work, study, name, *a: measured.append(name) or True)
        assert driver.measure_points(tmp_path, tmp_path, [("a", {}), ("b", {}), ("c", {})], None, 1) == []
        assert measured == ["b", "c"]
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'a'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(600)",
                               str(tmp_path / "claims" / "a.lock")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with driver.point_claim(tmp_path, "a") as mine:
            assert not mine
    finally:
        holder.kill()
        holder.wait()
    with driver.point_claim(tmp_path, "a") as mine:
        assert mine


def test_a_point_waits_for_the_worker_making_its_reference(tmp_path, monkeypatch):
    import threading

    pytest.importorskip("fcntl")
    measured = []
    monkeypatch.setattr(driver, "run_point", lambda work, study, name, *a: measured.append(name) or True)
    points = [("p", {"reference": "r"}), ("q", {})]
    assert driver.measure_points(tmp_path, tmp_path, points, None, 1) == ["p"]   # no one makes r: p waits
    assert measured == ["q"]
    measured.clear()
    with driver.point_claim(tmp_path, "r") as making:                  # another worker is making r
        assert making
        worker = threading.Thread(target=driver.measure_points, args=(tmp_path, tmp_path, points, None, 1))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive() and measured == []                    # p blocks on r, q comes after
        for folder, suffix in (("images", ".pt"), ("points", ".json")):
            (tmp_path / folder).mkdir(exist_ok=True)
            (tmp_path / folder / f"r{suffix}").write_text("made")
    worker.join(10)
    assert not worker.is_alive() and measured == ["p", "q"]


def test_a_plan_is_built_after_every_worker_finished_the_one_before(tmp_path, monkeypatch):
    """study-chains is built from study-search's records: a worker that runs out of points of a
    plan waits for the others before building the next."""
    import threading

    pytest.importorskip("fcntl")
    built = []
    monkeypatch.setitem(driver.PLANS, "first", lambda: {"a": {}, "b": {}})
    monkeypatch.setitem(driver.PLANS, "second", lambda: built.append("second") or {})
    monkeypatch.setattr(driver, "Reference", lambda *a: None)
    monkeypatch.setattr(driver, "run_point", lambda *a: True)
    args = ["--workdir", str(tmp_path), "--study", str(tmp_path), "--points", "first,second"]
    with driver.point_claim(tmp_path, "a"):                            # another worker is still on "a"
        worker = threading.Thread(target=driver.main, args=(args,))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive() and built == []
    worker.join(10)
    assert not worker.is_alive() and built == ["second"]
