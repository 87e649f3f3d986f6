"""FID Inception-v3 port: exact checkpoint layout, feature shapes and ordering, input handling,
and safe weight loading (hash check, search order, no arbitrary unpickling). Random weights only."""

from __future__ import annotations

import shutil

import pytest
import torch

from relay_diffusion.metrics.inception import (WEIGHTS_FILENAME, WEIGHTS_URL, InceptionV3FID, inception_weights_path,
                                               load_inception)

# Every BasicConv2d of pytorch-fid's pt_inception-2015-12-05-6726825d.pth (torchvision Inception3
# names, FID variant, no AuxLogits): name, out channels, in channels, kernel h, kernel w.
# Written out by hand from torchvision's Inception3 / pytorch-fid's fid_inception_v3.
EXPECTED_CONVS = """
Conv2d_1a_3x3 32 3 3 3
Conv2d_2a_3x3 32 32 3 3
Conv2d_2b_3x3 64 32 3 3
Conv2d_3b_1x1 80 64 1 1
Conv2d_4a_3x3 192 80 3 3
Mixed_5b.branch1x1 64 192 1 1
Mixed_5b.branch5x5_1 48 192 1 1
Mixed_5b.branch5x5_2 64 48 5 5
Mixed_5b.branch3x3dbl_1 64 192 1 1
Mixed_5b.branch3x3dbl_2 96 64 3 3
Mixed_5b.branch3x3dbl_3 96 96 3 3
Mixed_5b.branch_pool 32 192 1 1
Mixed_5c.branch1x1 64 256 1 1
Mixed_5c.branch5x5_1 48 256 1 1
Mixed_5c.branch5x5_2 64 48 5 5
Mixed_5c.branch3x3dbl_1 64 256 1 1
Mixed_5c.branch3x3dbl_2 96 64 3 3
Mixed_5c.branch3x3dbl_3 96 96 3 3
Mixed_5c.branch_pool 64 256 1 1
Mixed_5d.branch1x1 64 288 1 1
Mixed_5d.branch5x5_1 48 288 1 1
Mixed_5d.branch5x5_2 64 48 5 5
Mixed_5d.branch3x3dbl_1 64 288 1 1
Mixed_5d.branch3x3dbl_2 96 64 3 3
Mixed_5d.branch3x3dbl_3 96 96 3 3
Mixed_5d.branch_pool 64 288 1 1
Mixed_6a.branch3x3 384 288 3 3
Mixed_6a.branch3x3dbl_1 64 288 1 1
Mixed_6a.branch3x3dbl_2 96 64 3 3
Mixed_6a.branch3x3dbl_3 96 96 3 3
Mixed_6b.branch1x1 192 768 1 1
Mixed_6b.branch7x7_1 128 768 1 1
Mixed_6b.branch7x7_2 128 128 1 7
Mixed_6b.branch7x7_3 192 128 7 1
Mixed_6b.branch7x7dbl_1 128 768 1 1
Mixed_6b.branch7x7dbl_2 128 128 7 1
Mixed_6b.branch7x7dbl_3 128 128 1 7
Mixed_6b.branch7x7dbl_4 128 128 7 1
Mixed_6b.branch7x7dbl_5 192 128 1 7
Mixed_6b.branch_pool 192 768 1 1
Mixed_6c.branch1x1 192 768 1 1
Mixed_6c.branch7x7_1 160 768 1 1
Mixed_6c.branch7x7_2 160 160 1 7
Mixed_6c.branch7x7_3 192 160 7 1
Mixed_6c.branch7x7dbl_1 160 768 1 1
Mixed_6c.branch7x7dbl_2 160 160 7 1
Mixed_6c.branch7x7dbl_3 160 160 1 7
Mixed_6c.branch7x7dbl_4 160 160 7 1
Mixed_6c.branch7x7dbl_5 192 160 1 7
Mixed_6c.branch_pool 192 768 1 1
Mixed_6d.branch1x1 192 768 1 1
Mixed_6d.branch7x7_1 160 768 1 1
Mixed_6d.branch7x7_2 160 160 1 7
Mixed_6d.branch7x7_3 192 160 7 1
Mixed_6d.branch7x7dbl_1 160 768 1 1
Mixed_6d.branch7x7dbl_2 160 160 7 1
Mixed_6d.branch7x7dbl_3 160 160 1 7
Mixed_6d.branch7x7dbl_4 160 160 7 1
Mixed_6d.branch7x7dbl_5 192 160 1 7
Mixed_6d.branch_pool 192 768 1 1
Mixed_6e.branch1x1 192 768 1 1
Mixed_6e.branch7x7_1 192 768 1 1
Mixed_6e.branch7x7_2 192 192 1 7
Mixed_6e.branch7x7_3 192 192 7 1
Mixed_6e.branch7x7dbl_1 192 768 1 1
Mixed_6e.branch7x7dbl_2 192 192 7 1
Mixed_6e.branch7x7dbl_3 192 192 1 7
Mixed_6e.branch7x7dbl_4 192 192 7 1
Mixed_6e.branch7x7dbl_5 192 192 1 7
Mixed_6e.branch_pool 192 768 1 1
Mixed_7a.branch3x3_1 192 768 1 1
Mixed_7a.branch3x3_2 320 192 3 3
Mixed_7a.branch7x7x3_1 192 768 1 1
Mixed_7a.branch7x7x3_2 192 192 1 7
Mixed_7a.branch7x7x3_3 192 192 7 1
Mixed_7a.branch7x7x3_4 192 192 3 3
Mixed_7b.branch1x1 320 1280 1 1
Mixed_7b.branch3x3_1 384 1280 1 1
Mixed_7b.branch3x3_2a 384 384 1 3
Mixed_7b.branch3x3_2b 384 384 3 1
Mixed_7b.branch3x3dbl_1 448 1280 1 1
Mixed_7b.branch3x3dbl_2 384 448 3 3
Mixed_7b.branch3x3dbl_3a 384 384 1 3
Mixed_7b.branch3x3dbl_3b 384 384 3 1
Mixed_7b.branch_pool 192 1280 1 1
Mixed_7c.branch1x1 320 2048 1 1
Mixed_7c.branch3x3_1 384 2048 1 1
Mixed_7c.branch3x3_2a 384 384 1 3
Mixed_7c.branch3x3_2b 384 384 3 1
Mixed_7c.branch3x3dbl_1 448 2048 1 1
Mixed_7c.branch3x3dbl_2 384 448 3 3
Mixed_7c.branch3x3dbl_3a 384 384 1 3
Mixed_7c.branch3x3dbl_3b 384 384 3 1
Mixed_7c.branch_pool 192 2048 1 1
"""


def expected_layout(with_counters: bool = True) -> dict[str, tuple]:
    table = {"fc.weight": (1008, 2048), "fc.bias": (1008,)}
    for line in EXPECTED_CONVS.strip().splitlines():
        name, cout, cin, kh, kw = line.split()
        cout, cin, kh, kw = int(cout), int(cin), int(kh), int(kw)
        table[f"{name}.conv.weight"] = (cout, cin, kh, kw)
        for stat in ("weight", "bias", "running_mean", "running_var"):
            table[f"{name}.bn.{stat}"] = (cout,)
        if with_counters:
            table[f"{name}.bn.num_batches_tracked"] = ()
    return table


class NotATensor:  # module level so that torch.save can pickle it
    pass


@pytest.fixture(scope="module")
def random_state():
    """A state dict with the checkpoint's layout and O(1) activations: random init, BN running
    statistics calibrated on one random batch (positive variances), random affine BN params."""
    torch.manual_seed(0)
    net = InceptionV3FID()
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average: after one batch = that batch's statistics
            torch.nn.init.uniform_(m.weight, 0.5, 1.5)
            torch.nn.init.uniform_(m.bias, -0.2, 0.2)
    net.train()
    net(torch.rand(4, 3, 32, 32) * 255)  # the kind of input the tests use
    return {k: v.clone() for k, v in net.state_dict().items()}


@pytest.fixture(scope="module")
def weights_file(random_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "random_inception.pth"
    torch.save(random_state, path)
    return path


@pytest.fixture(scope="module")
def net(weights_file):
    return load_inception(weights_file, check_hash=False)


@pytest.fixture
def isolated_env(monkeypatch, tmp_path):
    """No weights anywhere: empty cache dir, no RDM_INCEPTION."""
    monkeypatch.delenv("RDM_INCEPTION", raising=False)
    monkeypatch.setenv("RDM_CACHE", str(tmp_path / "empty_cache"))
    return monkeypatch


def test_state_dict_layout_matches_checkpoint_table(net, random_state):
    expected = expected_layout()
    actual = {k: tuple(v.shape) for k, v in InceptionV3FID().state_dict().items()}
    assert sorted(actual) == sorted(expected)
    for key, shape in expected.items():
        assert actual[key] == shape, key
    assert len(EXPECTED_CONVS.strip().splitlines()) == 94
    # torchvision's documented 27,161,264 parameters minus AuxLogits (3,326,696) plus 8 more classes
    assert sum(p.numel() for p in net.parameters()) == 23_850_960
    assert all(not p.requires_grad for p in net.parameters()) and not net.training


def test_loads_checkpoint_without_batchnorm_counters(random_state, tmp_path):
    state = {k: v for k, v in random_state.items() if not k.endswith("num_batches_tracked")}
    assert set(state) == set(expected_layout(with_counters=False))
    torch.save(state, tmp_path / "old.pth")
    load_inception(tmp_path / "old.pth", check_hash=False)
    state["fc.extra"] = torch.zeros(1)
    torch.save(state, tmp_path / "extra.pth")
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_inception(tmp_path / "extra.pth", check_hash=False)


@pytest.mark.parametrize("size", [32, 64])
def test_output_shapes(net, size):
    out = net.features(torch.randint(0, 256, (2, 3, size, size), dtype=torch.uint8))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "pool": (2, 2048), "spatial": (2, 2023), "logits": (2, 1008), "logits_unbiased": (2, 1008)}
    assert all(torch.isfinite(v).all() for v in out.values())
    assert out["pool"].std() > 1e-3  # calibrated random weights: activations did not vanish
    scale = out["logits"].abs().max()
    torch.testing.assert_close(out["logits"] - out["logits_unbiased"], net.fc.bias.expand(2, -1),
                               rtol=0, atol=1e-5 * scale)
    torch.testing.assert_close(out["logits"], net.fc(out["pool"]), rtol=1e-5, atol=1e-5 * scale)


def test_spatial_is_mixed_6d_branch1x1_in_nhwc_order(net):
    captured = {}
    handle = net.Mixed_6d.branch1x1.register_forward_hook(lambda m, i, o: captured.setdefault("map", o))
    try:
        out = net(torch.rand(2, 3, 40, 40) * 255)
    finally:
        handle.remove()
    fmap = captured["map"]
    assert fmap.shape == (2, 192, 17, 17)
    torch.testing.assert_close(out["spatial"], fmap[:, :7].permute(0, 2, 3, 1).reshape(2, -1), rtol=0, atol=0)
    # (h, w, c) order: the first 7 entries are the 7 channels at pixel (0, 0)
    torch.testing.assert_close(out["spatial"][:, :7], fmap[:, :7, 0, 0], rtol=0, atol=0)


def test_deterministic_and_batch_independent(net):
    x = torch.rand(3, 3, 32, 32) * 255
    a, b = net(x), net(x)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    singles = [net(x[i:i + 1]) for i in range(3)]
    for k in a:  # 1e-5 relative to the feature scale (batched matmuls may sum in another order)
        torch.testing.assert_close(a[k], torch.cat([s[k] for s in singles]), rtol=1e-5,
                                   atol=1e-5 * float(a[k].abs().max()))


def test_uint8_float_and_grey_inputs(net):
    img = torch.randint(0, 256, (1, 3, 32, 32), dtype=torch.uint8)
    a, b = net(img), net(img.float())
    grey = torch.randint(0, 256, (1, 1, 32, 32), dtype=torch.uint8)
    c, d = net(grey), net(grey.repeat(1, 3, 1, 1))
    for k in a:
        assert torch.equal(a[k], b[k]), k
        assert torch.equal(c[k], d[k]), k
    with pytest.raises(ValueError, match="shape"):
        net(torch.zeros(1, 4, 32, 32))


def test_preprocess_resizes_bilinear_and_scales_to_unit_range(net):
    white = net.preprocess(torch.full((1, 3, 8, 8), 255, dtype=torch.uint8))
    torch.testing.assert_close(white, torch.ones(1, 3, 299, 299))
    x = torch.rand(1, 3, 299, 299) * 255
    torch.testing.assert_close(net.preprocess(x), x / 127.5 - 1)  # already 299: no resampling
    small = torch.rand(1, 3, 32, 32) * 255
    ref = torch.nn.functional.interpolate(small / 255, size=(299, 299), mode="bilinear", align_corners=False) * 2 - 1
    torch.testing.assert_close(net.preprocess(small), ref)  # pytorch-fid's order of operations


def test_hash_check(weights_file, isolated_env):
    with pytest.raises(ValueError, match="SHA-256") as err:
        load_inception(weights_file)
    assert str(weights_file) in str(err.value)
    import hashlib
    digest = hashlib.sha256(weights_file.read_bytes()).hexdigest()
    assert digest in str(err.value)
    load_inception(weights_file, check_hash=digest[:8])  # an explicit prefix is honoured


def test_env_var_and_cache_dir(weights_file, isolated_env, tmp_path):
    isolated_env.setenv("RDM_INCEPTION", str(weights_file))
    assert inception_weights_path() == weights_file
    load_inception(check_hash=False)
    with pytest.raises(ValueError, match="SHA-256"):
        load_inception()

    isolated_env.delenv("RDM_INCEPTION")
    cache = tmp_path / "cache"
    cache.mkdir()
    shutil.copy(weights_file, cache / WEIGHTS_FILENAME)
    isolated_env.setenv("RDM_CACHE", str(cache))
    assert inception_weights_path() == cache / WEIGHTS_FILENAME
    load_inception(check_hash=False)

    isolated_env.delenv("RDM_CACHE")
    isolated_env.setenv("XDG_CACHE_HOME", str(tmp_path))
    (tmp_path / "relay_diffusion").mkdir()
    shutil.copy(weights_file, tmp_path / "relay_diffusion" / WEIGHTS_FILENAME)
    assert inception_weights_path() == tmp_path / "relay_diffusion" / WEIGHTS_FILENAME


def test_missing_file_message(isolated_env, tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        load_inception()
    msg = str(err.value)
    assert WEIGHTS_URL in msg and "RDM_INCEPTION" in msg and "RDM_CACHE" in msg
    assert str(tmp_path / "empty_cache" / WEIGHTS_FILENAME) in msg
    with pytest.raises(FileNotFoundError, match="RDM_INCEPTION"):
        load_inception(tmp_path / "nope.pth", check_hash=False)


def test_refuses_arbitrary_pickles(random_state, tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({**random_state, "extra": NotATensor()}, path)
    with pytest.raises(ValueError, match="refusing"):
        load_inception(path, check_hash=False)


def test_safetensors(net, random_state, tmp_path):
    from safetensors.torch import save_file            # a dependency, not an optional extra

    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in random_state.items()}, str(path))
    other = load_inception(path, check_hash=False)
    x = torch.rand(1, 3, 32, 32) * 255
    assert torch.equal(other(x)["pool"], net(x)["pool"])
