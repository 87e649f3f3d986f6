"""ADM U-Net and network presets (docs/method.md §7.1): parameter counts, shapes, attention, initialisation,
EDM state-dict naming, config round trips and argument checks."""

import dataclasses
import json
import math

import pytest
import torch

from relay_diffusion import EDMPrecond
from relay_diffusion.networks import ADMUNet, NETWORK_PRESETS, NetworkConfig, count_parameters
from relay_diffusion.networks.layers import attention, resample, resample_filter_2d

PAPER_COUNTS = {  # docs/method.md §7.1, in millions
    "imagenet64-stage1": 295.9,
    "imagenet256-stage2": 553.8,
    "celebahq64-stage1": 295.1,
    "celebahq256-stage2": 552.8,
}
TINY = ["tiny-8", "tiny-16", "tiny-32", "tiny-64"]


def meta_build(config: NetworkConfig) -> torch.nn.Module:
    with torch.device("meta"):  # shapes only: no memory, no random draws on real tensors
        return config.build()


@pytest.mark.parametrize("name", list(PAPER_COUNTS))
def test_paper_parameter_counts_and_meta_forward(name):
    cfg = NETWORK_PRESETS[name]
    net = meta_build(cfg)
    assert abs(count_parameters(net) - PAPER_COUNTS[name] * 1e6) < 0.05e6
    n, r = 2, cfg.img_resolution
    with torch.device("meta"):
        x, sigma = torch.randn(n, 3, r, r), torch.randn(n)
        labels = torch.zeros(n, cfg.label_dim) if cfg.label_dim else None
        aug = torch.zeros(n, cfg.augment_dim) if cfg.augment_dim else None
        out = net(x, sigma, labels, aug)
    assert out.shape == x.shape and out.device.type == "meta"


def test_paper_presets_options():
    p = NETWORK_PRESETS
    assert p["imagenet64-stage1"].label_dim == 1000 and p["imagenet64-stage1"].augment_dim == 0
    assert p["imagenet256-stage2"].label_dim == 1000 and p["imagenet256-stage2"].augment_dim == 9
    assert p["celebahq64-stage1"].label_dim == 0 and p["celebahq64-stage1"].dropout == 0.15
    assert p["celebahq256-stage2"].label_dim == 0 and p["celebahq256-stage2"].dropout == 0.2


@pytest.mark.parametrize("name", TINY)
def test_tiny_presets_small_and_forward_shapes(name):
    base = NETWORK_PRESETS[name]
    assert count_parameters(meta_build(base)) <= 5e6
    r = base.img_resolution
    for cfg in (base, dataclasses.replace(base.with_data(r, 1, 10), augment_dim=9)):
        net = cfg.build().eval()
        x = torch.randn(2, cfg.in_channels, r, r)
        labels = torch.eye(10)[:2] if cfg.label_dim else None
        aug = torch.randn(2, 9) if cfg.augment_dim else None
        with torch.no_grad():
            assert net(x, torch.randn(2), labels, aug).shape == x.shape
            assert net(x, torch.randn(2)).shape == x.shape  # labels may be omitted


def reference_attention(qkv: torch.Tensor, heads: int) -> torch.Tensor:
    """Plain float64 attention on EDM's qkv layout: [N, heads, d, (q,k,v), pixels]."""
    n, c3, h, w = qkv.shape
    d = c3 // (3 * heads)
    q, k, v = qkv.double().reshape(n, heads, d, 3, h * w).unbind(3)
    weights = torch.einsum("nhcq,nhck->nhqk", q, k / math.sqrt(d)).softmax(dim=-1)
    return torch.einsum("nhqk,nhck->nhcq", weights, v).reshape(n, heads * d, h, w)


@pytest.mark.parametrize("heads,d", [(1, 64), (3, 64), (2, 5)])
def test_sdpa_attention_matches_softmax_reference(heads, d):
    qkv = torch.randn(2, 3 * heads * d, 4, 3, dtype=torch.float64) * 2
    torch.testing.assert_close(attention(qkv, heads), reference_attention(qkv, heads), rtol=1e-10, atol=1e-10)
    out32 = attention(qkv.float(), heads)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), reference_attention(qkv, heads), rtol=1e-5, atol=1e-5)
    out16 = attention(qkv.bfloat16(), heads)  # computed in float32, returned in bfloat16
    assert out16.dtype == torch.bfloat16
    torch.testing.assert_close(out16.double(), reference_attention(qkv.bfloat16(), heads), rtol=2e-2, atol=2e-2)


def test_resampling_is_box_average_and_nearest_neighbour():
    x = torch.randn(2, 3, 4, 6)
    f = resample_filter_2d()
    assert f.shape == (1, 1, 2, 2) and torch.all(f == 0.25)
    torch.testing.assert_close(resample(x, f, "down"), torch.nn.functional.avg_pool2d(x, 2))
    torch.testing.assert_close(resample(x, f, "up"), x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    # the box path (pooling / nearest upsampling) equals the depthwise convolution it replaces
    assert torch.equal(resample(x, f, "up", box=True), resample(x, f, "up"))
    torch.testing.assert_close(resample(x, f, "down", box=True), resample(x, f, "down"), rtol=0, atol=1e-6)


def test_loading_another_resample_filter_leaves_the_box_path():
    from relay_diffusion.networks.layers import Conv2d, Resample
    x = torch.randn(2, 4, 6, 6)
    for layer in (Resample("down"), Conv2d(4, 4, 3, mode="up")):
        assert layer.box_filter
        state = layer.state_dict()
        state["resample_filter"] = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]])
        layer.load_state_dict(state)
        assert not layer.box_filter               # the loaded filter is honoured, not replaced by a box
        mode = layer.mode
        expected = resample(x, state["resample_filter"], mode)
        if isinstance(layer, Conv2d):
            expected = torch.nn.functional.conv2d(expected, layer.weight, layer.bias, padding=1)
        torch.testing.assert_close(layer(x), expected)
        state["resample_filter"] = resample_filter_2d()
        layer.load_state_dict(state)
        assert layer.box_filter


def test_initial_output_is_exactly_zero_and_init_is_seeded():
    cfg = NETWORK_PRESETS["tiny-16"].with_data(16, 3, 5)
    torch.manual_seed(1)
    net = cfg.build()
    x = torch.randn(2, 3, 16, 16)
    out = net(x, torch.randn(2), torch.eye(5)[:2])
    assert torch.equal(out, torch.zeros_like(x))
    assert torch.equal(net.out_conv.weight, torch.zeros_like(net.out_conv.weight))
    torch.manual_seed(1)
    again = cfg.build()
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), again.state_dict().values()))
    # kaiming-uniform × sqrt(1/3): |w| ≤ 1/sqrt(fan_in); class embedding ~ N(0, 1).
    w = net.enc["16x16_block0"].conv0.weight
    assert w.abs().max() <= 1 / math.sqrt(w[0].numel()) and w.abs().max() > 0.9 / math.sqrt(w[0].numel())
    assert 0.8 < net.map_label.weight.std() < 1.2


@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_forward_equals_the_autograd_forward_bit_for_bit(channels_last):
    """Without autograd the residual blocks write their element-wise tail into their own fresh
    tensors (layers.ResBlock): the outputs are the same bit for bit, with attention and
    resampling blocks included, and the input is left untouched."""
    cfg = NETWORK_PRESETS["tiny-16"].with_data(16, 3, 5)
    torch.manual_seed(2)
    net = cfg.build()
    with torch.no_grad():
        for p in net.parameters():                        # no zero-initialised layers: every path counts
            p.add_(0.1 * torch.randn_like(p))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    x = torch.randn(2, 3, 16, 16).contiguous(memory_format=fmt)
    x0, sigma, labels = x.clone(), torch.randn(2), torch.eye(5)[:2]
    with_autograd = net(x, sigma, labels)
    assert with_autograd.requires_grad
    with torch.no_grad():
        inference = net(x, sigma, labels)
    with torch.inference_mode():
        assert torch.equal(net(x, sigma, labels), inference)
    assert torch.equal(inference, with_autograd.detach()) and inference.abs().max() > 0
    assert torch.equal(x, x0)


def test_no_label_equals_zero_label_and_precond_wrapping():
    cfg = NETWORK_PRESETS["tiny-8"].with_data(8, 3, 4)
    net = cfg.build().eval()
    with torch.no_grad():  # give the zero-initialised layers weights so that outputs are non-trivial
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
        x, s = torch.randn(2, 3, 8, 8), torch.randn(2)
        assert torch.equal(net(x, s, None), net(x, s, torch.zeros(2, 4)))
        assert not torch.allclose(net(x, s, None), net(x, s, torch.eye(4)[:2]))
        d = EDMPrecond(net, label_dim=4)(x, torch.tensor([0.5, 2.0]), torch.eye(4)[:2])
    assert d.shape == x.shape and torch.isfinite(d).all()


# Key names of EDM's DhariwalUNet for img_resolution=8, model_channels=64, channel_mult=[1,1],
# num_blocks=1, attn_resolutions=[4], label_dim=4, augment_dim=9 (written out from EDM's layer
# definitions: per block norm0, conv0, affine, norm1, conv1, skip, norm2, qkv, proj).
_RES = "norm0.weight norm0.bias conv0.weight conv0.bias {f}affine.weight affine.bias norm1.weight norm1.bias " \
       "conv1.weight conv1.bias"
_PLAIN, _RESAMPLED = _RES.format(f=""), _RES.format(f="conv0.resample_filter ")
_SKIP_CONV, _SKIP_RESAMPLE = "skip.weight skip.bias", "skip.resample_filter"
_ATTN = "norm2.weight norm2.bias qkv.weight qkv.bias proj.weight proj.bias"
EXPECTED_BLOCKS = [
    ("enc.8x8_block0", _PLAIN),
    ("enc.4x4_down", f"{_RESAMPLED} {_SKIP_RESAMPLE}"),
    ("enc.4x4_block0", f"{_PLAIN} {_ATTN}"),
    ("dec.4x4_in0", f"{_PLAIN} {_ATTN}"),
    ("dec.4x4_in1", _PLAIN),
    ("dec.4x4_block0", f"{_PLAIN} {_SKIP_CONV} {_ATTN}"),
    ("dec.4x4_block1", f"{_PLAIN} {_SKIP_CONV} {_ATTN}"),
    ("dec.8x8_up", f"{_RESAMPLED} {_SKIP_RESAMPLE}"),
    ("dec.8x8_block0", f"{_PLAIN} {_SKIP_CONV}"),
    ("dec.8x8_block1", f"{_PLAIN} {_SKIP_CONV}"),
]
EXPECTED_KEYS = (
    "map_augment.weight map_layer0.weight map_layer0.bias map_layer1.weight map_layer1.bias map_label.weight "
    "enc.8x8_conv.weight enc.8x8_conv.bias".split()
    + [f"{block}.{leaf}" for block, leaves in EXPECTED_BLOCKS for leaf in leaves.split()]
    + "out_norm.weight out_norm.bias out_conv.weight out_conv.bias".split()
)


def test_state_dict_keys_follow_edm_naming():
    net = ADMUNet(img_resolution=8, in_channels=3, out_channels=2, label_dim=4, augment_dim=9, model_channels=64,
                  channel_mult=[1, 1], num_blocks=1, attn_resolutions=[4], dropout=0.0)
    sd = net.state_dict()
    assert list(sd) == EXPECTED_KEYS
    shapes = {"map_augment.weight": (64, 9), "map_label.weight": (256, 4), "map_layer0.weight": (256, 64),
              "enc.8x8_conv.weight": (64, 3, 3, 3), "enc.4x4_block0.affine.weight": (128, 256),
              "enc.4x4_block0.qkv.weight": (192, 64, 1, 1), "dec.4x4_block0.skip.weight": (64, 128, 1, 1),
              "dec.4x4_block0.conv0.weight": (64, 128, 3, 3), "dec.8x8_up.skip.resample_filter": (1, 1, 2, 2),
              "out_conv.weight": (2, 64, 3, 3)}
    assert {k: tuple(sd[k].shape) for k in shapes} == shapes
    assert net.enc["8x8_block0"].norm0.num_groups == 16  # min(32, 64 // 4)
    assert net.dec["4x4_in0"].num_heads == 1
    clone = ADMUNet(8, 3, 2, 4, 9, 64, [1, 1], 4, 1, [4], 0.0)
    clone.load_state_dict(sd)  # strict: same keys, same shapes


@pytest.mark.parametrize("name", list(NETWORK_PRESETS))
def test_config_json_round_trip(name):
    cfg = NETWORK_PRESETS[name]
    back = NetworkConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert back == cfg and isinstance(back.channel_mult, tuple)


def test_with_data_and_from_dict_rejects_unknown_keys():
    cfg = NETWORK_PRESETS["tiny-32"].with_data(32, 1, 10)
    assert (cfg.img_resolution, cfg.in_channels, cfg.out_channels, cfg.label_dim) == (32, 1, 1, 10)
    with pytest.raises(ValueError, match="unknown NetworkConfig keys.*'model_chanels'"):
        NetworkConfig.from_dict({**cfg.to_dict(), "model_chanels": 64})


@pytest.mark.parametrize("kwargs,match", [
    (dict(img_resolution=20), "divisible by 2\\*\\*\\(levels-1\\) = 8"),
    (dict(label_dropout=0.1), "loss's label_dropout"),
    (dict(model_channels=16), "attention at"),
    (dict(channel_mult=[]), "at least one level"),
    (dict(num_blocks=0), "num_blocks"),
    (dict(dropout=1.0), "dropout"),
])
def test_bad_arguments_raise(kwargs, match):
    args = dict(img_resolution=32, in_channels=3, out_channels=3, model_channels=64, channel_mult=[1, 1, 1, 1],
                num_blocks=1, attn_resolutions=[4])
    with pytest.raises(ValueError, match=match):
        with torch.device("meta"):
            ADMUNet(**{**args, **kwargs})


def test_bad_config_and_inputs_raise():
    with pytest.raises(ValueError, match="arch"):
        NetworkConfig(arch="ddpmpp")
    net = NETWORK_PRESETS["tiny-8"].with_data(8, 3, 4).build()
    with pytest.raises(ValueError, match="x must be"):
        net(torch.randn(2, 1, 8, 8), torch.randn(2))
    with pytest.raises(ValueError, match="class_labels"):
        net(torch.randn(2, 3, 8, 8), torch.randn(2), torch.zeros(2, 5))
    with pytest.raises(ValueError, match="divisible"):
        net(torch.randn(2, 3, 7, 8), torch.randn(2))
