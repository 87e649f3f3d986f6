"""`rdm train` on a run directory it must not damage: one writer at a time (a lock that a killed
holder does not leave behind), nothing left by a run that fails before it starts, resume with
the same data however its path is spelled, and refusal of other data."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from relay_diffusion.cli import main
from relay_diffusion.training import train
from relay_diffusion.training.checkpoint import list_snapshots
from relay_diffusion.training.rundir import RunInUseError, RunLock
from helpers.training import small, write_edm_zip


@pytest.fixture(scope="module")
def data8(tmp_path_factory):
    return write_edm_zip(tmp_path_factory.mktemp("data") / "d8.zip", 8, 8, 1)


def cfg(data, outdir, **kw):
    return small(**{"stage": "base", "data": str(data), "outdir": str(outdir), "duration": 16,
                    "snapshot_every": 16, "status_every": 16, **kw})


@pytest.mark.slow
def test_a_second_writer_is_refused_and_the_lock_dies_with_its_holder(tmp_path, data8):
    run = tmp_path / "run"
    with RunLock(run):
        with pytest.raises(RunInUseError, match=rf"{run} is in use by another training process \(pid {os.getpid()} "):
            train(cfg(data8, run))
        assert list(run.iterdir()) == [run / "run.lock"]              # the refused run wrote nothing
    # a holder killed with SIGKILL: the kernel drops its lock
    script = f"import os, signal\nfrom relay_diffusion.training.rundir import RunLock\n" \
             f"RunLock({str(run)!r}).__enter__()\nos.kill(os.getpid(), signal.SIGKILL)\n"
    assert subprocess.run([sys.executable, "-c", script]).returncode == -signal.SIGKILL
    assert "pid" in (run / "run.lock").read_text()                     # the dead holder's note remains …
    train(cfg(data8, run), echo=lambda s: None)                        # … but not its lock
    assert [p.name for p in list_snapshots(run)] == ["snapshot-000000000016"]


def test_cli_names_the_holder(tmp_path, data8, capsys):
    run = tmp_path / "run"
    with RunLock(run):
        assert main(["train", "--stage", "base", "--data", str(data8), "--outdir", str(run), "--network", "tiny-8",
                     "--batch", "8", "--duration", "16", "--device", "cpu"]) == 2
    assert f"rdm: error: {run} is in use by another training process (pid {os.getpid()}" in capsys.readouterr().err


def test_outdir_that_is_a_file_is_refused(tmp_path, data8, capsys):
    (tmp_path / "f").write_text("mine")
    assert main(["train", "--stage", "base", "--data", str(data8), "--outdir", str(tmp_path / "f"),
                 "--network", "tiny-8", "--batch", "8", "--duration", "16", "--device", "cpu"]) == 2
    assert f"--outdir {tmp_path / 'f'} exists and is not a folder" in capsys.readouterr().err
    assert (tmp_path / "f").read_text() == "mine"


def test_a_run_that_fails_before_starting_leaves_nothing(tmp_path):
    with pytest.raises(ValueError, match="missing.zip: not a folder or a .zip file"):
        train(cfg(tmp_path / "missing.zip", tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_resume_accepts_the_same_data_spelled_or_placed_differently(tmp_path, data8, monkeypatch):
    shutil.copy(data8, tmp_path / "d.zip")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    train(cfg("d.zip", run), echo=lambda s: None)                               # relative path
    log = []
    train(cfg("./d.zip", run, duration=32), echo=log.append)                    # spelled differently
    train(cfg(tmp_path / "d.zip", run, duration=48), echo=log.append)          # absolute path
    assert not any("moved" in line for line in log)
    (tmp_path / "elsewhere").mkdir()
    shutil.move(tmp_path / "d.zip", tmp_path / "elsewhere" / "d.zip")          # moved: same bytes
    train(cfg(tmp_path / "elsewhere" / "d.zip", run, duration=64), echo=log.append)
    assert any(f"the dataset moved: {tmp_path / 'd.zip'} → {tmp_path / 'elsewhere' / 'd.zip'}" in line
               for line in log)
    assert [p.name for p in list_snapshots(run)][-1] == "snapshot-000000000064"
    other = write_edm_zip(tmp_path / "other.zip", 8, 8, 1, seed=5)
    with pytest.raises(ValueError, match=rf"{run} was trained on .*elsewhere/d.zip, not .*other.zip"):
        train(cfg(other, run, duration=80))


def test_train_config_is_a_name_or_a_runs_config_json(tmp_path, capsys):
    """--config NAME (TRAIN_PRESETS) or a run's config.json; flags override either; the flag's
    earlier name --preset still works, with a note."""
    import dataclasses

    from relay_diffusion.cli import build_parser
    from relay_diffusion.cli.train import resolve_config

    def resolve(*argv):
        return resolve_config(build_parser("train").parse_args(["train", *argv]))
    named = resolve("--config", "fmnist-base-8", "--data", "d", "--outdir", "o")
    (tmp_path / "config.json").write_text(named.to_json())
    again = resolve("--config", str(tmp_path / "config.json"), "--outdir", "o2", "--lr", "0.5")
    assert again == dataclasses.replace(named, outdir="o2", lr=0.5)
    assert resolve("--preset", "fmnist-base-8", "--data", "d", "--outdir", "o") == named
    assert "--preset is now --config" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not a training configuration"):
        resolve("--config", "fmnist-base", "--data", "d", "--outdir", "o")
    with pytest.raises(ValueError, match="no such file"):
        resolve("--config", str(tmp_path / "missing.json"), "--data", "d", "--outdir", "o")


def test_no_cond_with_a_conditional_preset_turns_label_dropout_off(capsys):
    from relay_diffusion.cli import build_parser
    from relay_diffusion.cli.train import resolve_config
    args = build_parser("train").parse_args(["train", "--config", "fmnist-base-8", "--no-cond", "--data", "d", "--outdir", "o"])
    cfg = resolve_config(args)
    assert (cfg.cond, cfg.label_dropout) == (False, 0.0)
    assert "--no-cond: label dropout off (the config's 0.1 needs class labels)" in capsys.readouterr().err
    args = build_parser("train").parse_args(["train", "--config", "fmnist-base-8", "--no-cond", "--label-dropout", "0.2",
                              "--data", "d", "--outdir", "o"])
    with pytest.raises(ValueError, match="label_dropout needs a conditional model"):
        resolve_config(args)                                   # asked for explicitly: still refused


def test_short_runs_warn_and_show_progress(tmp_path, data8):
    log = []
    train(cfg(data8, tmp_path / "run", duration=64, status_every=10 ** 6, lr_rampup=1000, ema_halflife=500,
              ema_rampup=0.0), echo=log.append)
    warnings = [line for line in log if line.startswith("warning:")]
    assert any("ends before the learning-rate warm-up (1.0k)" in w for w in warnings)
    assert any("92% of the EMA weights will still be the random initial weights" in w for w in warnings)
    status = [line for line in log if " / 64 images" in line]
    assert len(status) == 8                                  # every batch of 8, though status_every is 1M
