"""`rdm sample`: chains from model directories, EDM output layout, grid/npz/settings, SR mode,
batch- and process-independence."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from relay_diffusion.cli import main
from relay_diffusion.seeds import seed_from_name
from relay_diffusion.seeds import parse_seeds
from helpers.models import tiny_model

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def chain_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    dirs = []
    for i, spec in enumerate([("base", 4), ("relay", 8, 1, 3, 2), ("relay", 32, 1, 3, 4)]):
        tiny_model(*spec, seed=i).save_pretrained(root / f"s{i}")
        dirs.append(str(root / f"s{i}"))
    return dirs


FAST = ["--steps", "6,12,12"]


def models(dirs):
    return [a for d in dirs for a in ("--model", d)]


def test_parse_seeds_and_names():
    assert parse_seeds("0-3,10,12-13") == [0, 1, 2, 3, 10, 12, 13]
    with pytest.raises(ValueError):
        parse_seeds("3-1")
    with pytest.raises(ValueError):
        parse_seeds("a,b")
    assert seed_from_name("000123.png") == 123
    assert seed_from_name("cat.png") == seed_from_name("cat.jpg") != seed_from_name("dog.png")


def test_sample_writes_edm_tree_grid_npz_and_settings(tmp_path, chain_dirs):
    out = tmp_path / "out"
    assert main(["sample", *models(chain_dirs), *FAST, "--seeds", "998-1001", "--batch", "3",
                 "--outdir", str(out), "--grid", str(tmp_path / "g.png"), "--npz", str(tmp_path / "x.npz"),
                 "--cfg", "1.5", "--s-noise", "0.1"]) == 0
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png"))
    assert files == ["000000/000998.png", "000000/000999.png", "001000/001000.png", "001000/001001.png"]
    assert Image.open(out / "001000/001001.png").size == (32, 32)
    z = np.load(tmp_path / "x.npz")
    assert z["images"].shape == (4, 32, 32, 1) and z["seeds"].tolist() == [998, 999, 1000, 1001]
    assert z["labels"].tolist() == [998 % 3, 999 % 3, 1000 % 3, 1001 % 3]
    assert np.array_equal(np.asarray(Image.open(out / "000000/000999.png")), z["images"][1, :, :, 0])
    rec = json.loads((out / "settings.json").read_text())
    assert [s["sampler"]["num_steps"] for s in rec["stages"]] == [6, 12, 12]
    assert rec["stages"][1]["sampler"]["eta"] == 0.1 and rec["stages"][0]["sampler"]["cfg_scale"] == 1.5
    assert rec["postprocess"] == {} and rec["dtype"] == "torch.float32"
    assert Image.open(tmp_path / "g.png").size[0] > 32


def test_images_do_not_depend_on_batch_size(tmp_path, chain_dirs):
    for b in (1, 4):
        assert main(["sample", *models(chain_dirs), *FAST, "--seeds", "0-3", "--batch", str(b),
                     "--npz", str(tmp_path / f"b{b}.npz")]) == 0
    a, b = np.load(tmp_path / "b1.npz")["images"], np.load(tmp_path / "b4.npz")["images"]
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1            # uint8 rounding of ~1e-6 differences


@pytest.mark.slow
def test_two_processes_write_the_same_images(tmp_path, chain_dirs):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["sample", *models(chain_dirs[:2]), "--steps", "6,12", "--seeds", "0-5", "--batch", "2"]
    subprocess.run([sys.executable, "-m", "relay_diffusion", *args, "--npz", str(tmp_path / "one.npz")],
                   check=True, capture_output=True, cwd=ROOT, env=env)
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        "-m", "relay_diffusion", *args, "--npz", str(tmp_path / "two.npz"),
                        "--outdir", str(tmp_path / "two")], capture_output=True, text=True, cwd=ROOT, env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = np.load(tmp_path / "one.npz")["images"], np.load(tmp_path / "two.npz")["images"]
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert len(list((tmp_path / "two").rglob("*.png"))) == 6


def test_super_resolution_from_a_folder(tmp_path, chain_dirs):
    src = tmp_path / "low"
    src.mkdir()
    rng = np.random.default_rng(0)
    for name in ("000007.png", "cat.png"):
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8)).save(src / name)
    out = tmp_path / "sr"
    assert main(["sample", *models(chain_dirs[2:]), "--steps", "12", "--from-images", str(src),
                 "--outdir", str(out), "--class", "1"]) == 0
    assert sorted(p.name for p in out.glob("*.png")) == ["000007.png", "cat.png"]
    assert Image.open(out / "cat.png").size == (32, 32)
    Image.fromarray(np.zeros((16, 16), np.uint8)).save(src / "big.png")
    assert main(["sample", *models(chain_dirs[2:]), "--from-images", str(src), "--outdir", str(out)]) == 2


def test_postprocessing_is_explicit_and_recorded(tmp_path, chain_dirs):
    for tag, extra in (("plain", []), ("bright", ["--brightness", "1.5"])):
        assert main(["sample", *models(chain_dirs[:1]), "--steps", "6", "--seeds", "0-1",
                     "--npz", str(tmp_path / f"{tag}.npz"), "--settings", str(tmp_path / f"{tag}.json"), *extra]) == 0
    a, b = np.load(tmp_path / "plain.npz")["images"], np.load(tmp_path / "bright.npz")["images"]
    assert b.astype(int).sum() > a.astype(int).sum()
    assert json.loads((tmp_path / "bright.json").read_text())["postprocess"] == {"brightness": 1.5}


def test_solver_flags_and_the_fast_preset(tmp_path, chain_dirs):
    """--solver / --sigma-grid per stage, --preset fast, and the NFE of every stage in settings.json."""
    assert main(["sample", *models(chain_dirs), "--seeds", "0-1", "--npz", str(tmp_path / "a.npz"),
                 "--settings", str(tmp_path / "a.json"), "--solver", "dpmpp-2m,heun,dpmpp-3m-pc",
                 "--sigma-grid=-,rho,lambda", "--lambda-frequency", "1", "--steps", "6,4,5", "--s-noise", "0"]) == 0
    rec = json.loads((tmp_path / "a.json").read_text())
    assert [s["sampler"]["solver"] for s in rec["stages"]] == ["dpmpp-2m", "heun", "dpmpp-3m-pc"]
    assert [s["nfe"] for s in rec["stages"]] == [6, 7, 5] and rec["nfe"] == 18
    assert rec["stages"][2]["sampler"]["sigma_grid"] == "lambda"
    assert main(["sample", *models(chain_dirs), "--seeds", "0-1", "--npz", str(tmp_path / "b.npz"),
                 "--settings", str(tmp_path / "b.json"), "--preset", "fast"]) == 0
    rec = json.loads((tmp_path / "b.json").read_text())
    assert all(s["sampler"]["solver"] != "heun" for s in rec["stages"])
    assert rec["stages"][0]["nfe"] + rec["stages"][1]["nfe"] <= 20


@pytest.mark.parametrize("extra,match", [
    (["--solver", "euler"], "solver must be one of"),
    (["--solver", "dpmpp-3m", "--steps", "3"], "needs at least 3 steps"),
    (["--steps", "6,12"], "1 value or 3"),
    (["--truncation-sigma", "0.5,0.5,0.5"], "does not apply to stage 0"),
    ([], "nothing to write"),
])
def test_sample_errors(tmp_path, chain_dirs, capsys, extra, match):
    args = ["sample", *models(chain_dirs), *extra]
    if match != "nothing to write":
        args += ["--npz", str(tmp_path / "x.npz")]
    assert main(args) == 2
    assert match in capsys.readouterr().err
