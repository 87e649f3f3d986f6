"""`rdm sample` and the sampling API on bad or dangerous input: inputs never overwritten, outputs
checked before any sampling, seeds and labels checked instead of wrapped or truncated, memory
bounded, interruption leaving complete files, standard JSON, files that honour the umask."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pytest
import torch
from PIL import Image

from relay_diffusion.cli import main
from relay_diffusion.pipeline import bundled_demo_chain
from relay_diffusion.pipeline import RelayChain
from relay_diffusion.seeds import SEED_LIMIT, parse_seeds
from helpers.models import tiny_model


@pytest.fixture(scope="module")
def demo():
    return RelayChain.from_pretrained(bundled_demo_chain())


@pytest.fixture(scope="module")
def relay_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("relay") / "relay"
    tiny_model("relay", 32, 1, 3, 4, seed=0).save_pretrained(d)
    return str(d)


def low_res_folder(path, n=2, size=8, mode="RGB"):
    path.mkdir()
    for i in range(n):
        Image.new(mode, (size, size), (40 * i, 90, 200) if mode == "RGB" else 30000).save(path / f"{i:06d}.png")
    return {p.name: p.read_bytes() for p in path.iterdir()}


def files_under(path):
    return sorted(str(p.relative_to(path)) for p in path.rglob("*"))


def sample(*args):
    return main(["sample", "--steps", "4", *args])


# ---- inputs are never overwritten; outputs are checked before any sampling ---------------------

def test_outdir_equal_to_from_images_is_refused(tmp_path, relay_dir, capsys):
    src = tmp_path / "low"
    before = low_res_folder(src)
    spelled = tmp_path / "." / "low"                         # the same folder, spelled differently
    assert sample("--model", relay_dir, "--from-images", str(src), "--outdir", str(spelled)) == 2
    assert f"rdm: error: --outdir {spelled} is the --from-images folder" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


def test_grid_onto_an_input_image_is_refused(tmp_path, relay_dir, capsys):
    src = tmp_path / "low"
    before = low_res_folder(src)
    assert sample("--model", relay_dir, "--from-images", str(src), "--grid", str(src / "000000.png")) == 2
    assert "is one of the --from-images inputs; it would be overwritten" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in src.iterdir()} == before


@pytest.mark.parametrize("flag", ["--grid", "--npz", "--settings"])
def test_file_output_that_is_a_folder_fails_before_sampling(tmp_path, flag, capsys):
    (tmp_path / "taken").mkdir()
    target = tmp_path / ("taken.npz" if flag == "--npz" else "taken")
    target.mkdir(exist_ok=True)
    args = [flag, str(tmp_path / "taken")] + (["--outdir", str(tmp_path / "out")] if flag == "--settings" else [])
    assert sample("--seeds", "0-1", *args) == 2
    captured = capsys.readouterr()
    assert "is a folder; give a file name" in captured.err and "batch" not in captured.err
    assert not (tmp_path / "out").exists()


def test_outdir_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "f").write_text("mine")
    assert sample("--seeds", "0", "--outdir", str(tmp_path / "f")) == 2
    assert f"--outdir {tmp_path / 'f'} exists and is not a folder" in capsys.readouterr().err
    assert (tmp_path / "f").read_text() == "mine"


def test_file_outputs_into_missing_folders_and_npz_name(tmp_path, capsys):
    grid, npz = tmp_path / "a" / "b" / "grid.png", tmp_path / "c" / "images"
    assert sample("--seeds", "0-2", "--grid", str(grid), "--npz", str(npz)) == 0
    out = capsys.readouterr().out
    assert grid.exists() and (tmp_path / "c" / "images.npz").exists() and not npz.exists()
    assert f"{npz}.npz" in out                               # the file really written is reported
    with np.load(tmp_path / "c" / "images.npz") as z:
        assert z["seeds"].dtype == np.int64 and z["seeds"].tolist() == [0, 1, 2]
    assert files_under(tmp_path) == ["a", "a/b", "a/b/grid.png", "c", "c/images.npz"]   # no temporary files


def test_settings_json_is_standard_json(tmp_path):
    assert sample("--seeds", "0", "--outdir", str(tmp_path)) == 0
    text = (tmp_path / "settings.json").read_text()

    def refuse(name):
        raise AssertionError(f"non-standard JSON constant {name}")
    record = json.loads(text, parse_constant=refuse)
    assert record["stages"][0]["sampler"]["S_max"] == "inf"


# ---- seeds -------------------------------------------------------------------------------------

def test_seed_lists_are_lazy_and_32_bit():
    seeds = parse_seeds("0-999999999,5")
    assert len(seeds) == 1_000_000_001 and seeds[999_999_999] == 999_999_999 and seeds[-1] == 5
    assert seeds[3:6] == [3, 4, 5]
    with pytest.raises(ValueError, match="seed 4294967296 is outside 0…4,294,967,295"):
        parse_seeds(str(SEED_LIMIT))
    with pytest.raises(ValueError, match="the end is below the start"):
        parse_seeds("5-3")
    with pytest.raises(ValueError, match="bad seed list"):
        parse_seeds("-1")


def test_huge_seed_list_with_grid_is_refused_quickly(tmp_path, capsys):
    assert sample("--seeds", "0-999999999", "--grid", str(tmp_path / "g.png")) == 2
    assert "--grid/--npz keep all 1,000,000,000 images in memory" in capsys.readouterr().err
    assert files_under(tmp_path) == []


@pytest.mark.parametrize("seeds,error,match", [
    ([-1], ValueError, "seed -1 is outside"),
    ([SEED_LIMIT], ValueError, "seed 4294967296 is outside"),
    ([1.5], TypeError, "a seed must be an integer, got 1.5"),
    ([True], TypeError, "a seed must be an integer, got True"),
    ([torch.tensor(2.0)], TypeError, "torch.float32 tensor"),
    ("012", TypeError, "seeds must be a sequence of integers"),
    ([], ValueError, "need at least one seed"),
])
def test_chain_refuses_bad_seeds(demo, seeds, error, match):
    with pytest.raises(error, match=match):
        demo(seeds)


def test_numpy_and_tensor_integer_seeds_are_the_seed(demo):
    demo.settings = [dataclass_replace(s, num_steps=2) for s in demo.settings]
    a = demo([7, 8])
    b = demo([np.int64(7), torch.tensor(8)])
    assert torch.equal(a, b)


def dataclass_replace(settings, **kw):
    import dataclasses
    return dataclasses.replace(settings, **kw)


@pytest.mark.parametrize("labels,error,match", [
    (torch.tensor([1.0, 2.0]), TypeError, "class labels must be integers, got torch.float32"),
    (True, TypeError, "labels must be a mode"),
    ([0, 10], ValueError, r"class labels must be in \[0, 10\)"),
    ("uniform", ValueError, "labels must be one of"),
])
def test_chain_refuses_bad_labels(demo, labels, error, match):
    with pytest.raises(error, match=match):
        demo([0, 1], labels)


def test_chain_from_a_single_path_is_refused():
    with pytest.raises(TypeError, match=r"got the single path .* \(use \["):
        RelayChain.from_pretrained(str(bundled_demo_chain()[0]))


# ---- image inputs ------------------------------------------------------------------------------

def test_16_bit_inputs_are_refused_like_rdm_dataset(tmp_path, relay_dir, capsys):
    src = tmp_path / "low"
    low_res_folder(src, n=1, mode="I;16")
    assert sample("--model", relay_dir, "--from-images", str(src), "--outdir", str(tmp_path / "out")) == 2
    assert "unsupported image mode 'I;16'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or files_under(tmp_path / "out") == []


# ---- interruption, file modes ------------------------------------------------------------------

def test_ctrl_c_keeps_complete_images_and_says_how_many(tmp_path, monkeypatch, capsys):
    calls = []
    real = RelayChain.__call__

    def interrupted(self, seeds, *a, **kw):
        calls.append(len(seeds))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, seeds, *a, **kw)

    monkeypatch.setattr(RelayChain, "__call__", interrupted)
    assert sample("--seeds", "0-5", "--batch", "3", "--outdir", str(tmp_path), "--grid", str(tmp_path / "g.png")) == 130
    assert "interrupted: 3 complete images written to" in capsys.readouterr().err
    assert files_under(tmp_path) == ["000000", "000000/000000.png", "000000/000001.png", "000000/000002.png"]
    for p in (tmp_path / "000000").iterdir():
        Image.open(p).load()                                   # complete PNGs


@pytest.mark.parametrize("umask", [0o022, 0o002])
def test_model_and_snapshot_files_honour_the_umask(tmp_path, umask):
    from relay_diffusion.files import save_tensors
    old = os.umask(umask)
    try:
        tiny_model("base", 4, seed=0).save_pretrained(tmp_path / "m")
        save_tensors({"a": torch.zeros(2)}, tmp_path / "t.safetensors")
    finally:
        os.umask(old)
    for p in [*(tmp_path / "m").iterdir(), tmp_path / "t.safetensors"]:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p.name


@pytest.mark.parametrize("argv,message", [
    (["analyze", "schedule", "--blur-sigma-max", "nan"], "blur_sigma_max must be finite, got nan"),
    (["sample", "--seeds", "0", "--rho", "inf", "--grid", "GRID"], "rho must be finite, got inf"),
    (["sample", "--seeds", "0", "--s-block", "nan", "--grid", "GRID"], "block_scale (official: s_block) must be finite"),
])
def test_cli_refuses_non_finite_settings(tmp_path, argv, message, capsys):
    argv = [a.replace("GRID", str(tmp_path / "g.png")) for a in argv]
    assert main(argv) == 2
    assert f"rdm: error: {message}" in capsys.readouterr().err
    assert files_under(tmp_path) == []


def test_absurd_sizes_are_refused_at_once(tmp_path, capsys):
    """Each of these once ran for minutes or was killed for memory."""
    from PIL import Image
    src = tmp_path / "src"
    src.mkdir()
    Image.new("RGB", (8, 8)).save(src / "a.png")
    assert main(["analyze", "schedule", "--steps", "100000000"]) == 2
    assert "num_steps must be an integer from 2 to 10,000, got 100000000" in capsys.readouterr().err
    assert main(["dataset", "--source", str(src), "--dest", str(tmp_path / "d.zip"), "--resolution", "100000"]) == 2
    assert "resolution 100,000 is above the 16,384 this tool writes" in capsys.readouterr().err
    assert not (tmp_path / "d.zip").exists()


def test_a_huge_class_label_is_refused(tmp_path):
    from relay_diffusion.data.errors import DatasetError
    from relay_diffusion.data.labels import parse_dataset_json
    with pytest.raises(DatasetError, match=r"the label of a.png is 1,000,000,000,000; labels must be below 100,000"):
        parse_dataset_json(json.dumps({"labels": [["a.png", 10 ** 12]]}).encode(), "dataset.json")


# ---- progress ----------------------------------------------------------------------------------

def test_progress_lines_off_a_terminal_and_quiet(tmp_path, capsys):
    assert sample("--seeds", "0-19", "--batch", "2", "--outdir", str(tmp_path / "a")) == 0
    lines = [l for l in capsys.readouterr().err.splitlines() if l.startswith("sampling:")]
    assert len(lines) == 10 and lines[-1].startswith("sampling: 20/20 img") and "img/s  eta 0:00:00" in lines[-1]
    assert sample("--seeds", "0-19", "--batch", "2", "--outdir", str(tmp_path / "b"), "--quiet") == 0
    assert capsys.readouterr().err == ""


def test_progress_bar_on_a_terminal():
    import io
    from relay_diffusion.progress import Progress

    class Terminal(io.StringIO):
        def isatty(self):
            return True
    out = Terminal()
    with Progress(50, "sampling", stream=out) as bar:
        for _ in range(5):
            bar.update(10)
    text = out.getvalue()
    assert "sampling: 100%" in text and "50/50" in text and "img/s" in text
    quiet = Terminal()
    with Progress(50, "sampling", stream=quiet, quiet=True) as bar:
        bar.update(50)
    assert quiet.getvalue() == ""


def test_dataset_progress_and_quiet(tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(10):
        Image.new("L", (8, 8), 20 * i).save(src / f"{i}.png")
    assert main(["dataset", "--source", str(src), "--dest", str(tmp_path / "d.zip")]) == 0
    assert "converting: 10/10 img" in capsys.readouterr().err
    assert main(["dataset", "--source", str(src), "--dest", str(tmp_path / "e.zip"), "--quiet"]) == 0
    assert "converting" not in capsys.readouterr().err


def test_postprocess_factors_and_missing_eval_sets(tmp_path, capsys):
    assert sample("--seeds", "0", "--brightness", "nan", "--grid", str(tmp_path / "g.png")) == 2
    assert "--brightness must be a finite factor >= 0 (1 = unchanged), got nan" in capsys.readouterr().err
    assert not (tmp_path / "g.png").exists()
    assert main(["eval", "--samples", str(tmp_path / "none"), "--ref", str(tmp_path)]) == 2
    assert f"--samples {tmp_path / 'none'}: no such file or folder" in capsys.readouterr().err


@pytest.mark.parametrize("argv,message", [
    (["analyze", "schedule", "--cfg-scale", "nan"], "cfg_scale must be finite, got nan"),
    (["analyze", "schedule", "--truncation-t", "5"], "prob_length (the sampler's L; official: truncation_t) must be in (0, 2], got 5.0"),
    (["sample", "--seeds", "0", "--steps", "2.5", "--grid", "GRID"], "--steps takes a whole number per stage, got '2.5'"),
    (["sample", "--seeds", "0", "--cfg", "x", "--grid", "GRID"], "--cfg-scale takes a number per stage, got 'x'"),
    (["analyze", "snr", "--data", "DATA", "--outdir", "OUT", "--sigmas", "nan"],
     "--sigmas must be finite and > 0, got nan"),
])
def test_sweep_findings(tmp_path, tmp_path_factory, argv, message, capsys):
    data = tmp_path_factory.mktemp("data")
    Image.new("L", (16, 16), 100).save(data / "a.png")
    argv = [a.replace("GRID", str(tmp_path / "g.png")).replace("OUT", str(tmp_path / "out")).replace("DATA", str(data))
            for a in argv]
    assert main(argv) == 2
    assert f"rdm: error: {message}" in capsys.readouterr().err
    assert files_under(tmp_path) == []


def test_snr_of_flat_images_is_minus_infinity_not_a_crash(tmp_path):
    src = tmp_path / "flat"
    src.mkdir()
    for i in range(3):
        Image.new("L", (16, 16), 100).save(src / f"{i}.png")
    assert main(["analyze", "snr", "--data", str(src), "--outdir", str(tmp_path / "out"), "--no-plot"]) == 0
    rows = (tmp_path / "out" / "snr.csv").read_text().splitlines()
    assert any(row.endswith(",-inf") for row in rows[1:])
    json.loads((tmp_path / "out" / "summary.json").read_text(), parse_constant=lambda c: 1 / 0)


def test_ctrl_c_during_rdm_dataset_leaves_no_zip(tmp_path, monkeypatch, capsys):
    from relay_diffusion.data import convert
    src = tmp_path / "src"
    src.mkdir()
    for i in range(6):
        Image.new("L", (8, 8), 30 * i).save(src / f"{i}.png")
    real, calls = convert.encode_png, []

    def interrupted(*a, **kw):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **kw)

    monkeypatch.setattr(convert, "encode_png", interrupted)
    assert main(["dataset", "--source", str(src), "--dest", str(tmp_path / "out" / "d.zip"), "--quiet"]) == 130
    assert files_under(tmp_path / "out") == []                 # no zip, no .partial
    assert capsys.readouterr().err.strip().endswith("rdm: interrupted")


def test_eval_refuses_a_small_set_before_loading_anything(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("RDM_CACHE", str(tmp_path / "cache"))      # no Inception weights there
    src = tmp_path / "few"
    src.mkdir()
    for i in range(4):
        Image.new("L", (8, 8), 9 * i).save(src / f"{i}.png")
    assert main(["eval", "--samples", str(src), "--ref", str(src)]) == 2
    assert f"samples ({src}) has 4 images; the protocol needs at least 10,000" in capsys.readouterr().err
    demo = [a for d in bundled_demo_chain() for a in ("--model", str(d))]
    assert main(["eval", *demo, "--seeds", "0-99", "--ref", str(src)]) == 2
    assert "samples (seeds 0-99) has 100 images" in capsys.readouterr().err


def test_class_labels_on_an_unconditional_model_are_refused_not_ignored():
    from relay_diffusion.pipeline import class_labels
    assert class_labels([0, 1], 0, "balanced") is None and class_labels([0, 1], 0, "random") is None
    for labels in (3, [1, 2], torch.tensor([0, 1])):
        with pytest.raises(ValueError, match="this model is unconditional"):
            class_labels([0, 1], 0, labels)


def test_colour_edits_follow_the_official_celebahq_order():
    from PIL import ImageEnhance
    from relay_diffusion.pixels import enhance, to_pil
    u8 = torch.randint(0, 256, (1, 3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ours = np.asarray(enhance(u8, {"brightness": 1.05, "contrast": 0.9, "color": 0.99})[0])
    im = ImageEnhance.Contrast(to_pil(u8[0])).enhance(0.9)                  # generate_celebahq.py's order
    im = ImageEnhance.Color(ImageEnhance.Brightness(im).enhance(1.05)).enhance(0.99)
    assert np.array_equal(ours, np.asarray(im))


@pytest.mark.parametrize("argv, message", [
    (["--steps", "4,5,6"], "--steps takes 1 value or 2 (one per stage)"),
    (["--truncation-t", "1.05,-"], "does not apply to stage 0 (base)"),
])
def test_per_stage_flags_are_checked_before_any_weights_load(tmp_path, argv, message, capsys):
    """The stages' config.json files decide: a bad flag is reported even when the weights are
    unreadable, i.e. before any network is loaded."""
    import shutil

    dirs = []
    for d in bundled_demo_chain():
        shutil.copytree(d, tmp_path / d.name)
        for weights in (tmp_path / d.name).glob("*.safetensors"):
            weights.write_bytes(b"not weights")
        dirs += ["--model", str(tmp_path / d.name)]
    assert main(["sample", *dirs, "--seeds", "0", "--grid", str(tmp_path / "g.png"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert main(["sample", *dirs, "--seeds", "0", "--grid", str(tmp_path / "g.png")]) == 2    # the weights, now
    assert "not a readable safetensors file" in capsys.readouterr().err
