"""`rdm eval` and the evaluation library: protocol checks, feature files, caching, chain mode,
the Inception path (random weights of the real layout) and the offline feature net."""

from __future__ import annotations

import hashlib
import re
import shutil
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from relay_diffusion.cli import main
from relay_diffusion.evaluation import FeatureSet, compute_metrics, load_feature_file
from relay_diffusion.metrics import FeatureNet, FeatureNetConfig, InceptionV3FID, train_feature_net
from relay_diffusion.metrics.classifier import bundled_feature_net_dir, load_feature_net, save_feature_net

DEMO = [str(p) for p in (bundled_feature_net_dir().parent / "fmnist-base-8",
                         bundled_feature_net_dir().parent / "fmnist-relay-8to32")]


@pytest.fixture(scope="module")
def feature_net_dir(tmp_path_factory):
    """An untrained feature net (random but fixed weights) for plumbing tests; BatchNorm
    statistics set from one batch of noise images so features are of order 1."""
    torch.manual_seed(0)
    net = FeatureNet(FeatureNetConfig(widths=(8, 16)))
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 1.0
    with torch.no_grad():
        net.train()(torch.randint(0, 200, (64, 1, 32, 32)))
    d = tmp_path_factory.mktemp("fn") / "net"
    save_feature_net(d, net.eval(), {"name": "random"})
    return d


def _images(path, n, seed, shift=0, block=1):
    """n noise images 16×16 (constant over block×block squares), brightness + shift."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 200, (n, 16 // block, 16 // block, 1)).astype(np.int64) + shift
    x = x.repeat(block, axis=1).repeat(block, axis=2)
    np.savez(path, images=np.clip(x, 0, 255).astype(np.uint8))
    return path


def _eval(*args, capsys=None):
    code = main(["eval", *map(str, args)])
    return code


def test_set_against_itself_is_zero_and_shift_is_detected(tmp_path, feature_net_dir, capsys):
    a, b = _images(tmp_path / "a.npz", 200, 0), _images(tmp_path / "b.npz", 200, 1, block=2)
    common = ["--features", feature_net_dir, "--allow-small", "--cache-dir", tmp_path / "c",
              "--metrics", "fid,pr,kid,swd,spectral"]
    assert _eval("--samples", a, "--ref", a, *common, "--json", tmp_path / "same.json") == 0
    same = json.loads((tmp_path / "same.json").read_text())
    assert abs(same["fid"]) < 1e-6 and same["precision"] == 1 and same["recall"] == 1
    assert same["spectral"] < 1e-9       # SWD draws its patches at random: > 0 even for one set
    assert _eval("--samples", b, "--ref", a, *common, "--json", tmp_path / "diff.json") == 0
    diff = json.loads((tmp_path / "diff.json").read_text())
    assert diff["fid"] > 1e-3 and diff["swd"] > 1.5 * same["swd"] and diff["spectral"] > 0.05


def test_refuses_small_sets_and_says_why(tmp_path, feature_net_dir, capsys):
    a = _images(tmp_path / "a.npz", 50, 0)
    assert _eval("--samples", a, "--ref", a, "--features", feature_net_dir, "--no-cache") == 2
    err = capsys.readouterr().err
    assert "10,000" in err and "--allow-small" in err and "1/n" in err


def test_is_needs_enough_images_even_with_allow_small(tmp_path, feature_net_dir, capsys):
    a = _images(tmp_path / "a.npz", 5, 0)
    assert _eval("--samples", a, "--ref", a, "--features", feature_net_dir, "--no-cache",
                 "--allow-small", "--metrics", "is") == 2
    assert "is needs at least 10" in capsys.readouterr().err


def test_feature_files_round_trip_and_published_statistics(tmp_path, feature_net_dir, capsys):
    a, b = _images(tmp_path / "a.npz", 120, 1), _images(tmp_path / "b.npz", 120, 2, shift=30)
    common = ["--features", feature_net_dir, "--allow-small", "--no-cache", "--metrics", "fid,pr"]
    assert _eval("--samples", a, "--ref", b, *common, "--save-features", tmp_path / "fa.npz",
                 "--save-ref-features", tmp_path / "fb.npz", "--json", tmp_path / "r1.json") == 0
    fa, fb = load_feature_file(tmp_path / "fa.npz"), load_feature_file(tmp_path / "fb.npz")
    assert fa.count == 120 and fa.extractor == "feature-net:random" and fa.arrays["pool"].shape == (120, 16)
    # the statistics alone, as the ADM/RDM authors publish them (keys mu, sigma; nothing else)
    mu, sigma = fb.statistics("pool")
    np.savez(tmp_path / "published.npz", mu=mu, sigma=sigma)
    assert _eval("--samples", tmp_path / "fa.npz", "--ref", tmp_path / "published.npz", *common,
                 "--json", tmp_path / "r2.json") == 0
    r1, r2 = (json.loads((tmp_path / f"r{i}.json").read_text()) for i in (1, 2))
    assert r2["fid"] == pytest.approx(r1["fid"], rel=1e-5)        # float32 storage of activations
    assert "precision" not in r2 and "activations" in r2["skipped"]["pr"]
    # activations only ("arr_0" [N, D], like the RDM authors' 10k-image P/R file)
    np.savez(tmp_path / "acts.npz", arr_0=fb.arrays["pool"])
    assert _eval("--samples", tmp_path / "fa.npz", "--ref", tmp_path / "acts.npz", *common,
                 "--json", tmp_path / "r3.json") == 0
    r3 = json.loads((tmp_path / "r3.json").read_text())
    assert r3["precision"] == pytest.approx(r1["precision"]) and r3["recall"] == pytest.approx(r1["recall"])


def test_sets_from_different_networks_are_not_compared():
    a = FeatureSet("a", 3, "inception-2015-12-05", {"pool": np.zeros((3, 4))})
    b = FeatureSet("b", 3, "feature-net:x", {"pool": np.zeros((3, 4))})
    with pytest.raises(ValueError, match="different networks"):
        compute_metrics(a, b, ["fid"], allow_small=True)
    with pytest.raises(ValueError, match="unknown metric"):
        compute_metrics(a, a, ["fidd"], allow_small=True)


def test_cache_is_reused_and_follows_file_changes(tmp_path, feature_net_dir, monkeypatch):
    import relay_diffusion.evaluation.evaluate as ev

    a = _images(tmp_path / "a.npz", 60, 3)
    calls = []
    real = ev.extract_features
    monkeypatch.setattr(ev, "extract_features", lambda *x, **k: calls.append(1) or real(*x, **k))
    args = ["--samples", a, "--ref", a, "--features", feature_net_dir, "--allow-small",
            "--cache-dir", tmp_path / "c", "--metrics", "fid"]
    assert _eval(*args) == 0 and len(calls) == 1          # computed once, then a cache hit for --ref
    assert _eval(*args) == 0 and len(calls) == 1
    _images(a, 60, 4)                                      # new content → new fingerprint
    assert _eval(*args) == 0 and len(calls) == 2
    assert len(list((tmp_path / "c").glob("*.npz"))) == 2


def test_chain_mode_equals_sampling_to_disk(tmp_path, feature_net_dir):
    """Features of a chain evaluated in memory = features of the same seeds written by
    `rdm sample --npz` and read back."""
    seeds = "0-23"
    assert main(["sample", "--seeds", seeds, "--npz", str(tmp_path / "s.npz"), "--batch", "12"]) == 0
    common = ["--features", feature_net_dir, "--allow-small", "--no-cache", "--metrics", "fid"]
    assert _eval("--samples", tmp_path / "s.npz", "--ref", tmp_path / "s.npz", *common,
                 "--save-features", tmp_path / "disk.npz") == 0
    assert _eval("--model", DEMO[0], "--model", DEMO[1], "--seeds", seeds, "--batch", 8,
                 "--ref", tmp_path / "disk.npz", *common, "--save-features", tmp_path / "mem.npz",
                 "--json", tmp_path / "r.json") == 0
    disk, mem = load_feature_file(tmp_path / "disk.npz"), load_feature_file(tmp_path / "mem.npz")
    np.testing.assert_allclose(mem.arrays["pool"], disk.arrays["pool"], atol=1e-5)
    assert abs(json.loads((tmp_path / "r.json").read_text())["fid"]) < 1e-6


def test_inception_path_with_random_weights(tmp_path, monkeypatch, capsys):
    """The Inception extractor end to end (weights of the real layout, random values): all five
    metrics, sFID from the 2023-d spatial features; the hash check guards the file."""
    torch.manual_seed(0)
    weights = tmp_path / "inception.pth"
    torch.save(InceptionV3FID().state_dict(), weights)
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()
    a = _images(tmp_path / "a.npz", 12, 0)
    b = _images(tmp_path / "b.npz", 12, 1, shift=40)
    monkeypatch.setenv("RDM_INCEPTION", str(weights))
    common = ["--allow-small", "--no-cache", "--batch", 12]
    assert _eval("--samples", a, "--ref", b, *common) == 2        # not the published file
    assert "SHA-256" in capsys.readouterr().err
    assert _eval("--samples", a, "--ref", b, *common, "--inception-sha256", digest[:12],
                 "--metrics", "fid,sfid,is,pr", "--save-features", tmp_path / "f.npz",
                 "--json", tmp_path / "r.json") == 0
    r = json.loads((tmp_path / "r.json").read_text())
    assert {"fid", "sfid", "is", "precision", "recall"} <= set(r) and r["features"] == "inception-2015-12-05"
    f = load_feature_file(tmp_path / "f.npz")
    assert f.arrays["pool"].shape == (12, 2048) and f.arrays["spatial"].shape == (12, 2023)
    assert f.arrays["logits"].shape == (12, 1008)
    monkeypatch.delenv("RDM_INCEPTION")
    monkeypatch.setenv("RDM_CACHE", str(tmp_path / "empty"))
    assert _eval("--samples", a, "--ref", b, *common) == 2
    assert "RDM_INCEPTION" in capsys.readouterr().err


def test_train_features_learns_a_separable_toy_set(tmp_path, capsys):
    """Two classes (dark vs bright discs on noise) are learned to ≥ 95 %; the card and config
    report the measured test accuracy."""
    from relay_diffusion.data import convert_dataset

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:16, :16]
    disc = ((yy - 8) ** 2 + (xx - 8) ** 2 < 20)
    labels = rng.integers(0, 2, 400)
    images = rng.integers(60, 120, (400, 16, 16)).astype(np.uint8)
    images[:, disc] = np.where(labels[:, None] == 1, 230, 10).astype(np.uint8)
    np.savez(tmp_path / "toy.npz", images=images, labels=labels)
    convert_dataset(str(tmp_path / "toy.npz"), str(tmp_path / "toy.zip"), None)
    out = tmp_path / "net"
    assert main(["eval", "train-features", "--data", str(tmp_path / "toy.zip"), "--test-data",
                 str(tmp_path / "toy.zip"), "--outdir", str(out), "--widths", "8,16",
                 "--epochs", "2", "--batch", "32"]) == 0
    net = load_feature_net(out)
    assert net.info["test_accuracy"] >= 0.95
    assert f"{net.info['test_accuracy']:.2%}" in (out / "MODEL_CARD.md").read_text()


def test_train_features_needs_labels(tmp_path, capsys):
    from relay_diffusion.data import convert_dataset

    np.savez(tmp_path / "u.npz", images=np.zeros((4, 8, 8), np.uint8))
    convert_dataset(str(tmp_path / "u.npz"), str(tmp_path / "u.zip"), None)
    assert main(["eval", "train-features", "--data", str(tmp_path / "u.zip"), "--outdir",
                 str(tmp_path / "n")]) == 2
    assert "no class labels" in capsys.readouterr().err


def test_train_feature_net_api_rejects_unlabelled():
    with pytest.raises(ValueError, match="labels"):
        train_feature_net(torch.zeros(4, 1, 8, 8, dtype=torch.uint8), torch.full((4,), -1))


def test_adm_reference_batch_uses_published_statistics_and_image_activations(tmp_path, feature_net_dir):
    """An ADM-style reference .npz (images in arr_0 + published mu/sigma): FID comes from the
    published statistics, P/R from the images' activations."""
    a = _images(tmp_path / "a.npz", 120, 1)
    b = _images(tmp_path / "b.npz", 120, 2, block=2)
    common = ["--features", feature_net_dir, "--allow-small", "--no-cache", "--metrics", "fid,pr"]
    assert _eval("--samples", a, "--ref", b, *common, "--save-ref-features", tmp_path / "fb.npz",
                 "--json", tmp_path / "plain.json") == 0
    other = load_feature_file(tmp_path / "fb.npz").statistics("pool")
    images = np.load(b)["images"]
    np.savez(tmp_path / "adm.npz", arr_0=images, mu=other[0] + 1.0, sigma=other[1])   # shifted μ
    assert _eval("--samples", a, "--ref", tmp_path / "adm.npz", *common, "--json", tmp_path / "adm.json") == 0
    plain, adm = (json.loads((tmp_path / f"{n}.json").read_text()) for n in ("plain", "adm"))
    assert adm["precision"] == pytest.approx(plain["precision"]) and adm["recall"] == pytest.approx(plain["recall"])
    assert adm["fid"] > plain["fid"] + 1.0          # the shifted published μ was used


def _labelled_zip(tmp_path, n=8, size=8):
    from relay_diffusion.data import convert_dataset

    np.savez(tmp_path / "l.npz", images=np.arange(n * size * size, dtype=np.uint8).reshape(n, size, size),
             labels=np.arange(n) % 2)
    convert_dataset(str(tmp_path / "l.npz"), str(tmp_path / "l.zip"), None)
    return str(tmp_path / "l.zip")


@pytest.mark.parametrize("argv,message", [
    (["--epochs", "0"], "epochs must be a whole number in [1, 10,000], got 0"),
    (["--lr", "nan"], "lr must be finite"),
    (["--lr", "0"], "lr must be > 0"),
    (["--weight-decay", "-1"], "weight_decay must be >= 0"),
    (["--batch", "0"], "batch must be a whole number >= 1"),
    (["--shift", "-2"], "shift must be a whole number in [0, 64]"),
    (["--widths", "8,8,8,8,8"], "resolution must be a whole number in [16, 16,384], got 8"),
    (["--block", "dense"], "block must be one of 'plain', 'residual', got 'dense'"),
])
def test_train_features_refuses_bad_settings_and_writes_nothing(tmp_path, capsys, argv, message):
    data = _labelled_zip(tmp_path)
    assert main(["eval", "train-features", "--data", data, "--outdir", str(tmp_path / "net"), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rdm: error:") and message in err
    assert not (tmp_path / "net").exists()


def test_train_features_protects_its_outdir(tmp_path, capsys):
    data = _labelled_zip(tmp_path)
    with pytest.raises(SystemExit):
        main(["eval", "train-features", "--data", data, "--outdir", str(tmp_path / "n"), "--widths", "8,x"])
    assert "expected positive integers separated by commas, got '8,x'" in capsys.readouterr().err
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep")
    fast = ["--widths", "4", "--epochs", "1", "--batch", "8"]
    assert main(["eval", "train-features", "--data", data, "--outdir", str(other), *fast]) == 2
    assert "is not empty and holds no feature net" in capsys.readouterr().err
    assert (other / "notes.txt").read_text() == "keep"
    (tmp_path / "file").write_text("keep")
    assert main(["eval", "train-features", "--data", data, "--outdir", str(tmp_path / "file"), *fast]) == 2
    assert "exists and is not a folder" in capsys.readouterr().err
    net = tmp_path / "net"
    assert main(["eval", "train-features", "--data", data, "--outdir", str(net), *fast]) == 0
    assert (net / "MODEL_CARD.md").is_file() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert main(["eval", "train-features", "--data", data, "--outdir", str(net), *fast]) == 2
    assert "already holds a feature net; pass --force" in capsys.readouterr().err
    assert main(["eval", "train-features", "--data", data, "--outdir", str(net), *fast, "--force"]) == 0


@pytest.mark.parametrize("kwargs,message", [
    (dict(widths=()), "at least one stage"),
    (dict(widths=(8, 0)), "every width must be a whole number in [1, 4,096], got 0"),
    (dict(channels=2), "channels must be 1 (grey) or 3 (RGB)"),
    (dict(num_classes=0), "num_classes must be a whole number in [1, 100,000]"),
    (dict(dropout=1.0), "dropout must be in [0, 1)"),
    (dict(resolution=32.5), "resolution must be a whole number"),
    (dict(block="dense"), "block must be one of 'plain', 'residual', got 'dense'"),
])
def test_feature_net_config_refuses_bad_values(kwargs, message):
    from relay_diffusion.metrics.classifier import FeatureNetConfig
    with pytest.raises(ValueError, match=re.escape(message)):
        FeatureNetConfig(**kwargs)


def test_train_feature_net_api_checks_its_tensors():
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"one integer label per image \(4\), got torch.float32"):
        train_feature_net(images, torch.zeros(4))
    with pytest.raises(ValueError, match="non-empty"):
        train_feature_net(images[:0], torch.zeros(0, dtype=torch.long))
    with pytest.raises(ValueError, match=r"test labels must be in \[0, 2\)"):
        train_feature_net(images, torch.tensor([0, 1, 0, 1]), images, torch.tensor([0, 1, 2, 0]))
    with pytest.raises(ValueError, match="both test_images and test_labels"):
        train_feature_net(images, torch.tensor([0, 1, 0, 1]), images)


def test_ctrl_c_during_eval_keeps_only_complete_files(tmp_path, monkeypatch, capsys):
    """Interrupted while extracting the reference: exit 130, the samples' features (cache and
    --save-features) are complete files, nothing else (no results JSON, no temporary files)."""
    from relay_diffusion.evaluation import sets

    src = tmp_path / "imgs"
    src.mkdir()
    for i in range(6):
        Image.new("L", (8, 8), 40 * i).save(src / f"{i}.png")
    ref = tmp_path / "ref"
    shutil.copytree(src, ref)
    real = sets.ImageSet.batches

    def batches(self, batch):
        if Path(self.path) == ref:
            raise KeyboardInterrupt
        return real(self, batch)

    monkeypatch.setattr(sets.ImageSet, "batches", batches)
    out = tmp_path / "out"
    code = main(["eval", "--samples", str(src), "--ref", str(ref), "--features", "fmnist", "--allow-small",
                 "--cache-dir", str(out / "cache"), "--save-features", str(out / "s.npz"),
                 "--json", str(out / "r.json"), "--quiet"])
    assert code == 130 and capsys.readouterr().err.strip().endswith("rdm: interrupted")
    names = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    assert len(names) == 2 and names[1] == "s.npz" and names[0].startswith("cache/")
    assert load_feature_file(out / "s.npz").count == 6
    assert load_feature_file(out / names[0]).count == 6


def test_feature_set_and_compute_metrics_refuse_bad_input(tmp_path):
    pool = np.random.default_rng(0).normal(size=(50, 8))
    fs = FeatureSet("x", 50, "fmnist", {"pool": pool})
    with pytest.raises(ValueError, match=re.escape("'pool' activations must be [count = 10, D], got shape (50, 8)")):
        FeatureSet("n", 10, "fmnist", {"pool": pool})
    with pytest.raises(TypeError, match="arrays and stats must be dicts"):
        FeatureSet("n", 50, "fmnist", pool)
    with pytest.raises(ValueError, match="count must be a whole number >= 0"):
        FeatureSet("n", -1, "fmnist")
    with pytest.raises(ValueError, match=re.escape("statistics must be (mu [D], sigma [D, D])")):
        FeatureSet("n", 0, "fmnist", stats={"pool": (np.zeros(3), np.zeros((3, 2)))})
    with pytest.raises(ValueError, match="is a folder; give the feature file's name"):
        fs.save(tmp_path)
    assert list(tmp_path.iterdir()) == []
    # a metric name as a string is that metric (or a comma list), not a sequence of letters
    assert compute_metrics(fs, fs, "fid", allow_small=True) == {"fid": 0.0}
    assert set(compute_metrics(fs, fs, "fid,kid", allow_small=True)) >= {"fid", "kid"}
    with pytest.raises(ValueError, match="no metrics asked for"):
        compute_metrics(fs, fs, [], allow_small=True)
