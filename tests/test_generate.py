"""`sample_images` (generate.py): the library behind rdm sample, rdm eval --model and the demo
page — images independent of batching and process split, EDM's file layout, atomic writes,
Ctrl-C, and one run record."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from relay_diffusion.distributed import Dist
from relay_diffusion.generate import image_path, run_record, sample_images
from relay_diffusion.pixels import to_uint8
from relay_diffusion.pipeline import RelayChain, bundled_demo_chain
from relay_diffusion.sampling.presets import chain_recipe


@pytest.fixture(scope="module")
def chain():
    fast = chain_recipe("fast")
    return RelayChain.from_pretrained(bundled_demo_chain(), [s.with_overrides({"num_steps": 4}) for s in fast])


def png(path) -> torch.Tensor:
    return torch.from_numpy(__import__("numpy").asarray(Image.open(path)).copy())[None]


def test_images_equal_the_chain_whatever_the_batching_and_split(chain, tmp_path):
    seeds = [5, 1003, 7, 2, 11]
    expected = to_uint8(chain(seeds, "balanced"))
    one = sample_images(chain, seeds, batch=2, keep=True, out=tmp_path / "a")
    assert torch.equal(one.images, expected) and one.written == 5 and not one.interrupted
    assert one.labels.tolist() == [s % 10 for s in seeds]
    assert torch.equal(png(tmp_path / "a" / "001000" / "001003.png"), expected[1])
    # process 1 of 2 samples positions 1 and 3 only, batched differently, and writes just those
    part = sample_images(chain, seeds, batch=1, out=tmp_path / "b", dist=Dist(rank=1, world_size=2))
    files = sorted(p.relative_to(tmp_path / "b").as_posix() for p in (tmp_path / "b").rglob("*.png"))
    assert part.images is None and files == ["000000/000002.png", "001000/001003.png"]
    assert torch.equal(png(tmp_path / "b" / "000000" / "000002.png"), expected[3])


def test_labels_names_edits_and_on_batch(chain, tmp_path):
    seen = []
    run = sample_images(chain, [3, 4], labels=[9, 0], names=["x", "y"], out=tmp_path, keep=True,
                        edits={"brightness": 1.0}, on_batch=lambda idx, u8: seen.append((idx, u8.shape[0])))
    assert run.labels.tolist() == [9, 0] and seen == [([0, 1], 2)]
    assert torch.equal(run.images, to_uint8(chain([3, 4], [9, 0])))            # factor 1 changes nothing
    assert torch.equal(png(tmp_path / "y.png"), run.images[1])
    assert image_path(tmp_path, 123456) == tmp_path / "123000" / "123456.png"
    with pytest.raises(ValueError, match="1 names for 2 seeds"):
        sample_images(chain, [3, 4], names=["x"], out=tmp_path)
    with pytest.raises(ValueError, match=r"class labels must be in \[0, 10\)"):
        sample_images(chain, [3, 4], labels=10, out=tmp_path)                 # before anything is sampled


def test_ctrl_c_leaves_only_complete_images(chain, tmp_path):
    def stop(idx, _):
        raise KeyboardInterrupt
    run = sample_images(chain, [0, 1, 2, 3], batch=2, out=tmp_path, keep=True, on_batch=stop)
    assert run.interrupted and run.written == 2 and run.images is None
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["000000", "000000.png", "000001.png"]


def test_run_record_says_what_made_the_images(chain):
    record = run_record(chain, bundled_demo_chain(), seeds="0-3")
    assert [s["stage"] for s in record["stages"]] == ["base", "relay"]
    assert [s["nfe"] for s in record["stages"]] == chain.nfe() and record["nfe"] == sum(chain.nfe())
    assert record["stages"][1]["schedule"]["up_scale"] == 4 and record["stages"][0]["schedule"] is None
    assert record["stages"][0]["sampler"]["num_steps"] == 4 and record["seeds"] == "0-3"
    assert record["runtime"]["precision"] == "fp32" and record["models"][1].endswith("fmnist-relay-8to32")

