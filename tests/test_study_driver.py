"""The study driver's bookkeeping (studies/fmnist32.py): snapshot lookup, evaluation claims that
survive killed workers, records of a changed plan being redone, and the plan's consistency."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

STUDIES = Path(__file__).resolve().parent.parent / "studies"
sys.path.insert(0, str(STUDIES))
study = pytest.importorskip("fmnist32")


def test_snapshot_dir_picks_the_nearest_written_snapshot(tmp_path):
    run = tmp_path / "runs" / "r"
    for images in (50_048, 100_096, 150_144):
        (run / f"snapshot-{images:012d}").mkdir(parents=True)
    assert study.snapshot_dir(tmp_path, "r", 100_000).name == "snapshot-000000100096"
    assert study.snapshot_dir(tmp_path, "r", 200_000) is None          # not trained that far yet
    assert study.snapshot_dir(tmp_path, "missing", 100_000) is None


def test_claims_are_exclusive_and_dead_claims_are_taken_over(tmp_path):
    assert study.claim(tmp_path, "a")                       # first claim
    assert study.claim(tmp_path, "a")                       # our own claim again
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / "evals" / "b.claim").write_text(str(other.pid))
        assert not study.claim(tmp_path, "b")               # a live process holds it
    finally:
        other.kill()
        other.wait()
    assert study.claim(tmp_path, "b")                       # its holder died: taken over
    assert (tmp_path / "evals" / "b.claim").read_text() == str(os.getpid())


def test_train_commands_carry_the_ablated_settings(tmp_path):
    cmd = study.train_command("relay32-alpha0", tmp_path)
    assert cmd[cmd.index("--block-scale") + 1] == "0.0"
    assert cmd[cmd.index("--preset") + 1] == "fmnist-relay-8to32"
    assert "--noise-mixture" in study.train_command("relay32-paper", tmp_path)
    cmd = study.train_command("relay16to32", tmp_path)
    assert cmd[cmd.index("--up-scale") + 1] == "2"
    cmd = study.train_command("base16", tmp_path)
    assert (cmd[cmd.index("--network") + 1], cmd[cmd.index("--resolution") + 1]) == ("tiny-16", "16")


def test_every_evaluation_uses_trained_runs_and_enough_samples():
    for name, spec in study.EVALS.items():
        assert spec["n"] >= 10_000, name                                # the floor
        for run, images, _ in spec.get("stages", []):
            assert run in study.RUNS, (name, run)
            assert images <= study.RUNS[run]["duration"], (name, run)  # a snapshot that will exist
    lanes = [r for lane in study.LANES for r in lane]
    assert sorted(lanes) == sorted(study.RUNS)                          # every run trained once


def test_a_record_of_another_sample_count_is_superseded(tmp_path):
    evals = tmp_path / "evals"
    evals.mkdir()
    n = study.EVALS["single@300k"]["n"]
    (evals / "single@300k.json").write_text(json.dumps({"n": n}))
    assert study.finished(tmp_path, "single@300k")
    (evals / "rdm@50k.json").write_text(json.dumps({"n": n // 2}))
    (evals / "rdm@50k-first100.npz").write_bytes(b"x")
    assert not study.finished(tmp_path, "rdm@50k")                      # redone, old record kept
    assert sorted(p.name for p in (evals / "superseded").iterdir()) == ["rdm@50k-first100.npz", "rdm@50k.json"]
    assert not (evals / "rdm@50k.json").exists()
    assert not study.finished(tmp_path, "rdm@100k")                     # never run
