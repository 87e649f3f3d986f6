"""Inception-v3 feature network for FID, sFID, IS and precision/recall, in plain PyTorch.

Architecture: Szegedy et al., "Rethinking the Inception Architecture for Computer Vision", CVPR
2016, in the variant of TensorFlow's ``inception-2015-12-05`` graph (``classify_image_graph_def.pb``)
used by the TF FID code (Heusel et al. 2017) and the ADM evaluator (Dhariwal & Nichol 2021), as
ported to PyTorch by pytorch-fid (M. Seitzer). The parameter names and shapes are exactly those of
pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth`` (torchvision's ``Inception3`` layout with
1008 classes and no auxiliary head), so that file loads with ``strict=True``. Differences from
torchvision's Inception3 that the TF graph dictates: the average pools inside the mixed blocks
exclude padding from the mean (``count_include_pad=False``), and the pool branch of the last block
(Mixed_7c) is a max pool.

Input convention (documented choice). Images are (N, 3, H, W) or (N, 1, H, W) uint8 or float
tensors in [0, 255]. They are resized to 299×299 with ``F.interpolate(mode="bilinear",
align_corners=False)`` and mapped to [-1, 1] as ``x / 127.5 - 1`` — exactly what pytorch-fid does
(it takes [0, 1] inputs and applies ``2x - 1``). The TF graph itself differs slightly in both steps:
its ``ResizeBilinear`` is TF1's legacy (corner-anchored, non-half-pixel) bilinear resize, and it
normalises with ``(x - 128) / 128`` (graph ops ``Sub``/``Mul``). Features therefore match
pytorch-fid, and are close to but not bit-identical with the TF/ADM evaluator; absolute FID values
differ from TF numbers by a small amount.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..files import cache_dir, sha256_file

__all__ = ["InceptionV3FID", "load_inception", "inception_weights_path",
           "WEIGHTS_FILENAME", "WEIGHTS_URL", "WEIGHTS_SHA256_PREFIX"]

WEIGHTS_FILENAME = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = "https://github.com/mseitzer/pytorch-fid/releases/download/fid_weights/" + WEIGHTS_FILENAME
# pytorch-fid / torch.hub convention: the hex suffix of the file name is a SHA-256 prefix.
WEIGHTS_SHA256_PREFIX = "6726825d"
INPUT_SIZE = 299
SPATIAL_CHANNELS = 7  # ADM's evaluator keeps mixed_6/conv[..., :7] → 7·17·17 = 2023 sFID features


class BasicConv2d(nn.Module):
    """Convolution without bias, BatchNorm (eps 1e-3 as in the TF graph), ReLU."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class MixedBlock(nn.Module):
    """One Inception "mixed" layer: parallel towers of BasicConv2d whose outputs are concatenated.

    ``towers`` is a list of towers; a tower is a list of steps applied in sequence; a step is either
    a conv spec ``(name, cin, cout, kernel[, stride])`` or a list of such specs applied in parallel
    to the step's input and concatenated (InceptionE's 1×3 / 3×1 split). Convs are registered under
    their torchvision names directly on the block, which gives the checkpoint's flat key layout.
    Stride-1 convs use "same" padding, stride-2 convs none (as everywhere in this network).
    ``pool`` selects the pool branch, always last in the concatenation:
    "avg" / "max": 3×3 stride-1 pool followed by the 1×1 conv ``branch_pool`` (``pool_features``
    outputs); the average excludes the zero padding, as TF's does. "reduce": 3×3 stride-2 max pool
    with no conv (the grid-reduction blocks Mixed_6a and Mixed_7a).
    """

    def __init__(self, cin: int, towers: list, pool: str, pool_features: int = 0):
        super().__init__()
        self.towers = []  # names only; the modules themselves are registered as attributes
        for tower in towers:
            steps = []
            for step in tower:
                group = step if isinstance(step, list) else [step]
                for name, c_in, c_out, kernel, *stride in group:
                    stride = stride[0] if stride else 1
                    k = (kernel, kernel) if isinstance(kernel, int) else kernel
                    pad = (k[0] // 2, k[1] // 2) if stride == 1 else 0
                    self.add_module(name, BasicConv2d(c_in, c_out, k, stride, pad))
                steps.append([spec[0] for spec in group])
            self.towers.append(steps)
        if pool not in ("avg", "max", "reduce"):
            raise ValueError(f"unknown pool branch {pool!r}")
        self.pool = pool
        if pool != "reduce":
            self.branch_pool = BasicConv2d(cin, pool_features, 1)

    def branches(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Per-branch outputs in concatenation order (exposed so intermediate maps can be read)."""
        outs = []
        for tower in self.towers:
            y = x
            for names in tower:
                parts = [getattr(self, name)(y) for name in names]
                y = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
            outs.append(y)
        if self.pool == "avg":
            outs.append(self.branch_pool(F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)))
        elif self.pool == "max":
            outs.append(self.branch_pool(F.max_pool2d(x, 3, 1, 1)))
        else:
            outs.append(F.max_pool2d(x, 3, 2))
        return outs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat(self.branches(x), 1)


def _block_a(cin: int, pool_features: int) -> MixedBlock:   # 35×35 grid: Mixed_5b/5c/5d
    return MixedBlock(cin, [
        [("branch1x1", cin, 64, 1)],
        [("branch5x5_1", cin, 48, 1), ("branch5x5_2", 48, 64, 5)],
        [("branch3x3dbl_1", cin, 64, 1), ("branch3x3dbl_2", 64, 96, 3), ("branch3x3dbl_3", 96, 96, 3)],
    ], "avg", pool_features)


def _block_b(cin: int) -> MixedBlock:                        # 35 → 17 reduction: Mixed_6a
    return MixedBlock(cin, [
        [("branch3x3", cin, 384, 3, 2)],
        [("branch3x3dbl_1", cin, 64, 1), ("branch3x3dbl_2", 64, 96, 3), ("branch3x3dbl_3", 96, 96, 3, 2)],
    ], "reduce")


def _block_c(cin: int, c7: int) -> MixedBlock:               # 17×17 grid: Mixed_6b..6e
    row, col = (1, 7), (7, 1)
    return MixedBlock(cin, [
        [("branch1x1", cin, 192, 1)],
        [("branch7x7_1", cin, c7, 1), ("branch7x7_2", c7, c7, row), ("branch7x7_3", c7, 192, col)],
        [("branch7x7dbl_1", cin, c7, 1), ("branch7x7dbl_2", c7, c7, col), ("branch7x7dbl_3", c7, c7, row),
         ("branch7x7dbl_4", c7, c7, col), ("branch7x7dbl_5", c7, 192, row)],
    ], "avg", 192)


def _block_d(cin: int) -> MixedBlock:                        # 17 → 8 reduction: Mixed_7a
    return MixedBlock(cin, [
        [("branch3x3_1", cin, 192, 1), ("branch3x3_2", 192, 320, 3, 2)],
        [("branch7x7x3_1", cin, 192, 1), ("branch7x7x3_2", 192, 192, (1, 7)),
         ("branch7x7x3_3", 192, 192, (7, 1)), ("branch7x7x3_4", 192, 192, 3, 2)],
    ], "reduce")


def _block_e(cin: int, pool: str) -> MixedBlock:             # 8×8 grid: Mixed_7b (avg), Mixed_7c (max)
    return MixedBlock(cin, [
        [("branch1x1", cin, 320, 1)],
        [("branch3x3_1", cin, 384, 1),
         [("branch3x3_2a", 384, 384, (1, 3)), ("branch3x3_2b", 384, 384, (3, 1))]],
        [("branch3x3dbl_1", cin, 448, 1), ("branch3x3dbl_2", 448, 384, 3),
         [("branch3x3dbl_3a", 384, 384, (1, 3)), ("branch3x3dbl_3b", 384, 384, (3, 1))]],
    ], pool, 192)


class InceptionV3FID(nn.Module):
    """The FID Inception-v3 (TF graph inception-2015-12-05 as ported by pytorch-fid), randomly
    initialised; use :func:`load_inception` for the real weights.

    ``features(images)`` (also ``forward``) returns, from a single pass:

    - ``"pool"`` (N, 2048): the final 8×8 average pool (TF ``pool_3``) — FID, precision/recall.
    - ``"spatial"`` (N, 2023): ADM's sFID features (TF ``mixed_6/conv:0``, first 7 channels).
    - ``"logits"`` (N, 1008): ``fc(pool)`` — TF ``softmax/logits`` (weights and bias).
    - ``"logits_unbiased"`` (N, 1008): ``pool @ fc.weight.T`` without the bias. The reference IS
      code (improved-gan's ``inception_score``, and ADM's evaluator) takes the ``softmax/logits/
      MatMul`` weights only and drops the bias, so use these to reproduce published IS values.

    sFID layer. ADM reads tensor ``mixed_6/conv:0``. In the TF graph the mixed layers are named
    ``mixed, mixed_1, ..., mixed_10`` = Mixed_5b, 5c, 5d, 6a, 6b, 6c, 6d, 6e, 7a, 7b, 7c, so
    ``mixed_6`` is Mixed_6d (17×17×768). Inside a mixed layer the lone 1×1 tower is scope ``conv``
    and the others ``tower``, ``tower_1``, ``tower_2`` (pool). A conv scope ``X`` holds ops
    ``X/conv2d_params, X/Conv2D, X/batchnorm, X/CheckNumerics, X/control_dependency`` and the ReLU
    op named ``X`` itself, so ``mixed_6/conv:0`` is the post-BN-ReLU output of Mixed_6d.branch1x1
    (192 channels, 17×17). Evidence: the graph's op listing (``conv/Conv2D``, ``conv/batchnorm``,
    ``conv/CheckNumerics``, ``conv/control_dependency``, ``conv``), and the TF→PyTorch weight map
    used to build torch-fidelity's port, which maps ``mixed_6/conv/conv2d_params`` to
    ``Mixed_6d.branch1x1.conv`` (and ``mixed_7/...`` to Mixed_6e). Residual uncertainty: this was
    not checked numerically against the TF graph here (no TF, no weights); at least one third-party
    port uses Mixed_6e.branch1x1 instead, which the naming above contradicts.
    Flatten order: TF tensors are NHWC and ADM slices ``[..., :7]`` then reshapes per sample, so the
    2023 features are ordered (h, w, c); we permute to NHWC before flattening to match.
    """

    def __init__(self):
        super().__init__()
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, 3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = BasicConv2d(64, 80, 1)
        self.Conv2d_4a_3x3 = BasicConv2d(80, 192, 3)
        self.Mixed_5b = _block_a(192, 32)
        self.Mixed_5c = _block_a(256, 64)
        self.Mixed_5d = _block_a(288, 64)
        self.Mixed_6a = _block_b(288)
        self.Mixed_6b = _block_c(768, 128)
        self.Mixed_6c = _block_c(768, 160)
        self.Mixed_6d = _block_c(768, 160)
        self.Mixed_6e = _block_c(768, 192)
        self.Mixed_7a = _block_d(768)
        self.Mixed_7b = _block_e(1280, "avg")
        self.Mixed_7c = _block_e(2048, "max")  # max-pool branch: a quirk of the TF graph (see pytorch-fid)
        self.fc = nn.Linear(2048, 1008)        # 1008 = the graph's 1000 ImageNet classes + 8 unused

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 255] images (uint8 or float, 1 or 3 channels) → 299×299 in [-1, 1] (see module doc)."""
        if images.ndim != 4 or images.shape[1] not in (1, 3):
            raise ValueError(f"expected images of shape (N, 3, H, W) or (N, 1, H, W); got {tuple(images.shape)}")
        x = images.to(device=self.fc.weight.device, dtype=self.fc.weight.dtype)
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
            x = F.interpolate(x, size=(INPUT_SIZE, INPUT_SIZE), mode="bilinear", align_corners=False)
        return x / 127.5 - 1

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = self.preprocess(images)
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, 2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, 2)
        for block in (self.Mixed_5b, self.Mixed_5c, self.Mixed_5d, self.Mixed_6a, self.Mixed_6b, self.Mixed_6c):
            x = block(x)
        parts = self.Mixed_6d.branches(x)  # parts[0] = branch1x1 = TF mixed_6/conv
        spatial = parts[0][:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1).flatten(1)
        x = torch.cat(parts, 1)
        for block in (self.Mixed_6e, self.Mixed_7a, self.Mixed_7b, self.Mixed_7c):
            x = block(x)
        pool = x.mean(dim=(2, 3))
        unbiased = pool @ self.fc.weight.T
        return {"pool": pool, "spatial": spatial, "logits": unbiased + self.fc.bias, "logits_unbiased": unbiased}

    forward = features


def _missing_weights(reason: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"{reason}. The FID Inception weights are never downloaded automatically. Get "
        f"{WEIGHTS_FILENAME} from {WEIGHTS_URL} (pytorch-fid's release) and either pass its path "
        f"explicitly (`rdm eval --inception PATH`, or path=... in Python), or set the environment variable RDM_INCEPTION to its path, or put "
        f"it at {cache_dir() / WEIGHTS_FILENAME} (cache dir = $RDM_CACHE, else "
        f"$XDG_CACHE_HOME/relay_diffusion, else ~/.cache/relay_diffusion).")


def inception_weights_path(path: str | os.PathLike | None = None) -> Path:
    """Where the weights are: explicit ``path``, else ``$RDM_INCEPTION``, else the cache file."""
    if path is not None:
        source, p = "the given path", Path(path)
    elif os.environ.get("RDM_INCEPTION"):
        source, p = "RDM_INCEPTION", Path(os.environ["RDM_INCEPTION"])
    else:
        source, p = "the cache", cache_dir() / WEIGHTS_FILENAME
    if not p.is_file():
        raise _missing_weights(f"Inception weights not found at {p} ({source})")
    return p


def load_inception(path: str | os.PathLike | None = None, device="cpu",
                   check_hash: bool | str = True) -> InceptionV3FID:
    """Build :class:`InceptionV3FID` with pytorch-fid's weights, in eval mode without gradients.

    ``path`` is resolved by :func:`inception_weights_path`. ``check_hash``: True requires the file's
    SHA-256 to start with ``6726825d`` (the original ``.pth``), a hex string requires that prefix
    instead (e.g. for a ``.safetensors`` conversion), False skips the check. The ``.pth`` is read
    with ``weights_only=True`` (no arbitrary unpickling); ``.safetensors`` files with the same keys
    are accepted. Keys and shapes must match exactly (``strict=True``).
    """
    p = inception_weights_path(path)
    if check_hash:
        prefix = WEIGHTS_SHA256_PREFIX if check_hash is True else str(check_hash).lower()
        digest = sha256_file(p)
        if not digest.startswith(prefix):
            raise ValueError(f"{p}: SHA-256 is {digest}, expected it to start with {prefix} "
                             f"(wrong or corrupted file; pass check_hash=False to skip this check)")
    if p.suffix == ".safetensors":
        from safetensors.torch import load_file
        state = load_file(str(p), device="cpu")
    else:
        try:
            state = torch.load(p, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as e:
            raise ValueError(f"{p}: refusing to load, not a plain tensor state dict: {e}") from e
    if not isinstance(state, dict):
        raise ValueError(f"{p}: expected a state dict, got {type(state).__name__}")
    net = InceptionV3FID()
    # BatchNorm's step counter is unused in eval; files written before it existed lack it.
    for key, value in net.state_dict().items():
        if key.endswith("num_batches_tracked"):
            state.setdefault(key, value)
    net.load_state_dict(state, strict=True)
    return net.to(device).eval().requires_grad_(False)
