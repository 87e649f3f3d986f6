"""Image-distribution metrics that need no downloaded network weights.

All functions accept image batches as ``torch.Tensor`` of shape ``[N, C, H, W]``
either floating point in ``[-1, 1]`` or ``uint8`` in ``[0, 255]`` (converted via
``x / 127.5 - 1``).

* :func:`sliced_wasserstein_distance` -- the multi-scale sliced Wasserstein
  distance (SWD) of Karras et al., "Progressive Growing of GANs" (ICLR 2018),
  appendix D: Laplacian pyramid, random 7x7 neighbourhoods per level,
  per-channel descriptor normalisation, sliced Wasserstein distance with random
  unit directions; values reported multiplied by ``1e3`` as in ProGAN.
* :func:`radial_power_spectrum` / :func:`spectral_distance` -- radially
  averaged power spectra and the mean absolute difference of their log10.
"""

from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F

__all__ = [
    "sliced_wasserstein_distance",
    "radial_power_spectrum",
    "radial_power_spectra",
    "high_frequency_power",
    "spectral_distance",
]

_MIN_SWD_RES = 16


def _as_float_images(x, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name} must be 4-D [N, C, H, W], got shape {tuple(x.shape)}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must contain at least one image and one channel, got shape {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        return x.to(torch.float32) / 127.5 - 1.0
    if x.dtype == torch.bool or not (x.is_floating_point()):
        raise ValueError(f"{name} must be uint8 or floating point, got {x.dtype}")
    x = x.to(torch.float64 if x.dtype == torch.float64 else torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains non-finite values")
    return x


def _check_pair(real, fake):
    r = _as_float_images(real, "real")
    f = _as_float_images(fake, "fake")
    if r.shape[1:] != f.shape[1:]:
        raise ValueError(
            f"real and fake must have the same C, H, W; got {tuple(r.shape[1:])} vs {tuple(f.shape[1:])}"
        )
    dtype = torch.promote_types(r.dtype, f.dtype)
    return r.to(dtype), f.to(dtype)


# --------------------------------------------------------------------------- SWD

def _gauss_kernel(c: int, dtype) -> torch.Tensor:
    k1 = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=dtype) / 16.0
    k2 = torch.outer(k1, k1)
    return k2.expand(c, 1, 5, 5).contiguous()


def _blur(x: torch.Tensor) -> torch.Tensor:
    c = x.shape[1]
    pad_mode = "reflect" if min(x.shape[-2:]) > 2 else "replicate"
    xp = F.pad(x, (2, 2, 2, 2), mode=pad_mode)
    return F.conv2d(xp, _gauss_kernel(c, x.dtype), groups=c)


def _pyr_down(x: torch.Tensor) -> torch.Tensor:
    return _blur(x)[:, :, ::2, ::2]


def _pyr_up(x: torch.Tensor, size) -> torch.Tensor:
    n, c, h, w = x.shape
    up = torch.zeros(n, c, size[0], size[1], dtype=x.dtype)
    up[:, :, ::2, ::2] = x[:, :, : (size[0] + 1) // 2, : (size[1] + 1) // 2]
    return _blur(up) * 4.0


def _num_levels(h: int, w: int, pyramid_levels) -> int:
    n = 1
    while min(h, w) // (2 ** n) >= _MIN_SWD_RES:
        n += 1
    if pyramid_levels is not None:
        n = min(n, int(pyramid_levels))
    return n


def _laplacian_pyramid(x: torch.Tensor, levels: int):
    pyr = []
    g = x
    for _ in range(levels - 1):
        down = _pyr_down(g)
        pyr.append(g - _pyr_up(down, g.shape[-2:]))
        g = down
    pyr.append(g)
    return pyr


def _sample_descriptors(level: torch.Tensor, total: int, patch_size: int, gen) -> torch.Tensor:
    """``total`` random ``patch_size``-square neighbourhoods, flattened -> [total, C, p, p]."""
    n, c, h, w = level.shape
    img = torch.arange(total) % n
    img = img[torch.randperm(total, generator=gen)]
    ys = torch.randint(0, h - patch_size + 1, (total,), generator=gen)
    xs = torch.randint(0, w - patch_size + 1, (total,), generator=gen)
    off = torch.arange(patch_size)
    yy = (ys[:, None] + off[None, :])[:, :, None]  # [T, p, 1]
    xx = (xs[:, None] + off[None, :])[:, None, :]  # [T, 1, p]
    lv = level.permute(0, 2, 3, 1)  # [N, H, W, C]
    patches = lv[img[:, None, None], yy, xx]  # [T, p, p, C]
    return patches.permute(0, 3, 1, 2).contiguous()


def _normalise(desc: torch.Tensor) -> torch.Tensor:
    mean = desc.mean(dim=(0, 2, 3), keepdim=True)
    std = desc.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-8)
    return ((desc - mean) / std).reshape(desc.shape[0], -1)


def _swd(a: torch.Tensor, b: torch.Tensor, num_projections: int, gen, chunk: int = 128) -> float:
    d = a.shape[1]
    total = 0.0
    done = 0
    while done < num_projections:
        k = min(chunk, num_projections - done)
        dirs = torch.randn(d, k, generator=gen, dtype=torch.float64).to(a.dtype)
        dirs = dirs / dirs.norm(dim=0, keepdim=True)
        # [k, M] contiguous rows: sorting along the last dim is much faster.
        pa, _ = torch.sort((a @ dirs).t().contiguous(), dim=1)
        pb, _ = torch.sort((b @ dirs).t().contiguous(), dim=1)
        total += (pa - pb).abs().mean(dim=1).sum().item()
        done += k
    return total / num_projections


def sliced_wasserstein_distance(
    real,
    fake,
    *,
    patch_size: int = 7,
    patches_per_image: int = 64,
    num_projections: int = 512,
    pyramid_levels=None,
    seed: int = 0,
) -> Dict[str, object]:
    """Multi-scale sliced Wasserstein distance (ProGAN, Karras et al. 2018, app. D).

    Each image set is decomposed into a Laplacian pyramid (5-tap binomial
    ``[1, 4, 6, 4, 1] / 16`` blur, 2x decimation) from full resolution down to
    the coarsest level with a side of at least 16 pixels (or at most
    ``pyramid_levels`` levels).  The coarsest level is the low-pass residual.
    From every level ``M = patches_per_image * min(N_real, N_fake)`` random
    ``patch_size x patch_size`` neighbourhoods are drawn from each set (spread
    evenly over the images, so with equal set sizes each image gives exactly
    ``patches_per_image``), so both sets always contribute the same number of
    descriptors.  Each set's descriptors are normalised per channel by that
    set's own mean and standard deviation, then the sliced Wasserstein distance
    is computed with ``num_projections`` random unit directions (sort both
    projected sets, mean absolute difference), averaged over directions.

    All randomness comes from a ``torch.Generator`` seeded with ``seed``.

    Returns ``{"per_level": {res: swd, ...}, "mean": mean_swd}`` with values
    multiplied by ``1e3`` as in ProGAN's reporting; ``res`` is the level's side
    length (int) for square images, otherwise the tuple ``(h, w)``; ordered
    from finest to coarsest.
    """
    r, f = _check_pair(real, fake)
    _, c, h, w = r.shape
    if min(h, w) < _MIN_SWD_RES:
        raise ValueError(f"SWD needs H, W >= {_MIN_SWD_RES}, got {h}x{w}")
    if not (isinstance(patch_size, int) and 1 <= patch_size <= _MIN_SWD_RES):
        raise ValueError(f"patch_size must be an int in [1, {_MIN_SWD_RES}], got {patch_size!r}")
    if not (isinstance(patches_per_image, int) and patches_per_image >= 1):
        raise ValueError(f"patches_per_image must be a positive int, got {patches_per_image!r}")
    if not (isinstance(num_projections, int) and num_projections >= 1):
        raise ValueError(f"num_projections must be a positive int, got {num_projections!r}")
    if pyramid_levels is not None and not (isinstance(pyramid_levels, int) and pyramid_levels >= 1):
        raise ValueError(f"pyramid_levels must be None or a positive int, got {pyramid_levels!r}")
    if min(r.shape[0], f.shape[0]) < 2:
        raise ValueError("SWD needs at least 2 images in each set")
    total = patches_per_image * min(r.shape[0], f.shape[0])
    if total < 2:
        raise ValueError(f"SWD needs at least 2 patches per set, got {total}")

    gen = torch.Generator().manual_seed(int(seed))
    levels = _num_levels(h, w, pyramid_levels)
    pyr_r = _laplacian_pyramid(r, levels)
    pyr_f = _laplacian_pyramid(f, levels)
    per_level = {}
    for lr, lf in zip(pyr_r, pyr_f):
        lh, lw = lr.shape[-2:]
        da = _normalise(_sample_descriptors(lr, total, patch_size, gen))
        db = _normalise(_sample_descriptors(lf, total, patch_size, gen))
        key = int(lh) if lh == lw else (int(lh), int(lw))
        per_level[key] = _swd(da, db, num_projections, gen) * 1e3
    mean = sum(per_level.values()) / len(per_level)
    return {"per_level": per_level, "mean": mean}


# ------------------------------------------------------------------ spectrum

def radial_power_spectra(images) -> torch.Tensor:
    """Radially averaged power spectrum of every image: [N, floor(min(H, W)/2) + 1] float64.

    For each image the per-channel spatial mean is subtracted, ``|FFT2|^2 / (H W)``
    is computed per channel and averaged over channels; the 2-D spectrum is
    then averaged over rings of integer radius ``r = round(sqrt(fy^2 + fx^2))``
    (``fy, fx`` integer frequencies) for ``r = 0 .. floor(min(H, W) / 2)``
    (frequencies beyond that radius are ignored). With the ``1/(H W)``
    normalisation, white noise of variance ``s^2`` has a flat spectrum at ``s^2``
    (bin 0 is ~0 because of the mean subtraction). Per image, so that a bootstrap
    over images can reweight them (evaluation/protocol.py).
    """
    x = _as_float_images(images, "images").to(torch.float64)
    _, _, h, w = x.shape
    if min(h, w) < 2:
        raise ValueError(f"radial_power_spectrum needs H, W >= 2, got {h}x{w}")
    x = x - x.mean(dim=(2, 3), keepdim=True)
    power = (torch.fft.fft2(x).abs() ** 2).mean(dim=1) / (h * w)  # [N, H, W]
    fy = torch.fft.fftfreq(h, d=1.0 / h, dtype=torch.float64)
    fx = torch.fft.fftfreq(w, d=1.0 / w, dtype=torch.float64)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2).round().long()
    rmax = min(h, w) // 2
    mask = radius <= rmax
    ring = torch.zeros(rmax + 1, int(mask.sum()), dtype=torch.float64)   # ring membership, averaging
    ring[radius[mask], torch.arange(int(mask.sum()))] = 1.0
    ring /= ring.sum(dim=1, keepdim=True)
    return power[:, mask] @ ring.T


def radial_power_spectrum(images) -> torch.Tensor:
    """The set's mean of `radial_power_spectra`: float64, length ``floor(min(H, W)/2) + 1``."""
    return radial_power_spectra(images).mean(dim=0)


def high_frequency_power(real, fake) -> float:
    """Σ P_fake(r) / Σ P_real(r) over the upper half of the radial frequencies (1 = the real
    images' high-frequency power; below 1, the samples lack fine texture)."""
    pr, pf = radial_power_spectrum(real), radial_power_spectrum(fake)
    upper = slice(len(pr) // 2 + 1, None)
    return float(pf[upper].sum() / pr[upper].sum())


def spectral_distance(real, fake, *, eps: float = 1e-12) -> float:
    """Spectral distance between two image sets.

    Defined as ``mean_{r >= 1} |log10(P_real(r) + eps) - log10(P_fake(r) + eps)|``
    where ``P`` is :func:`radial_power_spectrum` of each set (bin 0, the DC term,
    is excluded because it is removed by the mean subtraction).  It is 0 for
    identical spectra; a value of 0.1 means the spectra differ on average by a
    factor of about ``10**0.1 = 1.26`` per frequency ring.
    """
    r, f = _check_pair(real, fake)
    if min(r.shape[-2:]) < 2:
        raise ValueError(f"spectral_distance needs H, W >= 2, got {tuple(r.shape[-2:])}")
    pr = radial_power_spectrum(r)[1:]
    pf = radial_power_spectrum(f)[1:]
    return float((torch.log10(pr + eps) - torch.log10(pf + eps)).abs().mean().item())
