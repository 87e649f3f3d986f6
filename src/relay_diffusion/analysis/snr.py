"""Per-frequency SNR of a dataset under i.i.d. and block noise: the paper's frequency analysis
(Fig. 2, §3.1; docs/analysis.md).

Conventions (docs/analysis.md):
- Images are in [−1, 1]; the top resolution R is the largest one analysed, and a resolution M
  is obtained from the data by box averaging (the patch mean that a relay stage's nearest-
  upsampled start state keeps, docs/analysis.md).
- Spectra use the global orthonormal 2-D DCT-II. Coefficient (k, l) of an M×M image has the
  same physical frequency as (k, l) of the R×R one, so every resolution is put on the common
  axis f = |(k, l)| / R (f = 1: Nyquist of R). This is Fig. 2's "upsample to the 256-point grid":
  nearest upsampling by t multiplies coefficient k < M of both signal and noise by h_t(k)
  (docs/analysis.md), so the SNR of a k < M coefficient is the same on both grids, and the powers we
  report are multiplied by h_t(k)² h_t(l)² to be comparable across resolutions. Coefficients
  k ≥ M of an upsampled image carry no genuine content (the "meaningless" high band) and are
  left out.
- Noise powers are exact, not sampled: the DCT of unit-variance noise with covariance A⊗A has
  per-coefficient variance diag(C A Cᵀ)_k · diag(C A Cᵀ)_l.
"""

from __future__ import annotations

import math
from typing import Iterable

import torch
import torch.nn.functional as F

from ..relay import NOISE_MIXTURES, block_axis_covariance, dct_matrix, patch_dct

NOISE_KINDS = ("iid", "block", "relay")


# --------------------------------------------------------------------------------------------
# Noise spectra (per axis; the 2-D spectrum is the outer product because Cov = A ⊗ A).


def upsample_gain(n: int, factor: int) -> torch.Tensor:
    """h(k)² for k < n: power gain of DCT coefficient k when an n-point signal is nearest-
    upsampled by `factor` (exact): h(0)² = s, h(k)² = sin²(πk/2n) / (s sin²(πk/2sn))."""
    s = factor
    k = torch.arange(n, dtype=torch.float64)
    if s == 1:
        return torch.ones(n, dtype=torch.float64)
    gain = torch.sin(math.pi * k / (2 * n)) ** 2 / (s * torch.sin(math.pi * k / (2 * s * n)) ** 2)
    gain[0] = float(s)
    return gain


def noise_power_1d(n: int, kind: str, block_size: int) -> torch.Tensor:
    """Per-coefficient variance along one axis of unit-variance noise at resolution n:
    "iid" → 1 (the DCT is orthonormal); "block" → diag(C A Cᵀ), exact including the torus
    wrap-around of Block[s] (which the DCT's mirror boundary does not share, see
    `block_power_stationary`)."""
    if kind == "iid" or block_size == 1:
        return torch.ones(n, dtype=torch.float64)
    c = dct_matrix(n)
    return ((c @ block_axis_covariance(n, block_size)) * c).sum(1)


def block_power_stationary(n: int, block_size: int) -> torch.Tensor:
    """Closed form F_s(ω)/s, ω = πk/n, F_s = sin²(sω/2)/sin²(ω/2) (paper §3.2): Block[s]'s power
    spectrum if the DCT diagonalised its circulant covariance. For k < n/s it equals
    `upsample_gain(n/s, s)` exactly — block noise at sN "is" i.i.d. noise at N brought to the
    sN grid (Fig. 2c). The exact DCT power differs only at odd k, by the wrap-around:
    ≈ −4(s²−1)/(3sn) relative (−16 % at n = 32, −2 % at n = 256, s = 4)."""
    s = block_size
    w = math.pi * torch.arange(n, dtype=torch.float64) / n
    power = torch.sin(s * w / 2) ** 2 / (s * torch.sin(w / 2) ** 2)
    power[0] = float(s)
    return power


def noise_power(n: int, kind: str, block_size: int = 4, block_scale: float = 0.15,
                mixture: str = "official") -> torch.Tensor:
    """Per-coefficient variance [n, n] of unit-σ noise at resolution n.

    iid: ε; block: Block[s](ε) (unit per-pixel variance); relay: RDM's mixture ε + α·Block[s](ε')
    (docs/method.md §2.4), divided by 1 + α² for the paper's normalised mixture."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise kind must be one of {NOISE_KINDS}, got {kind!r}")
    if mixture not in NOISE_MIXTURES:
        raise ValueError(f"mixture must be one of {NOISE_MIXTURES}, got {mixture!r}")
    if kind == "iid":
        return torch.ones(n, n, dtype=torch.float64)
    v = noise_power_1d(n, "block", block_size)
    block = v[:, None] * v[None, :]
    if kind == "block":
        return block
    mix = 1 + block_scale ** 2 * block
    return mix / (1 + block_scale ** 2) if mixture == "paper" else mix


# --------------------------------------------------------------------------------------------
# Signal spectra.


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] → float64 in [−1, 1] (EDM's convention); float input is kept."""
    if images.dtype == torch.uint8:
        return images.to(torch.float64) / 127.5 - 1
    return images.to(torch.float64)


def signal_spectra(batches: Iterable[torch.Tensor], resolutions: Iterable[int]
                   ) -> tuple[dict[int, torch.Tensor], int]:
    """Mean squared global-DCT coefficient E[c_kl(x_M)²] [M, M] of the box-downsampled images
    x_M at every resolution M, averaged over images and channels. Returns (spectra, #images).

    batches: [B, C, H, W] tensors (uint8 0…255 or float in [−1, 1]); every M must divide H."""
    resolutions = sorted(set(resolutions))
    sums = {m: torch.zeros(m, m, dtype=torch.float64) for m in resolutions}
    count = 0
    for batch in batches:
        x = to_unit_range(batch)
        h = x.shape[-1]
        for m in resolutions:
            if h % m:
                raise ValueError(f"resolution {m} does not divide the image size {h}")
            xm = F.avg_pool2d(x, h // m) if h != m else x
            c = patch_dct(xm, m)
            # a coefficient at the transform's rounding level is 0: a flat image has no AC power
            # (−∞ dB), not 1e-32 that depends on the CPU's order of summation
            tiny = m * torch.finfo(c.dtype).eps * xm.abs().amax(dim=(-2, -1), keepdim=True)
            c = torch.where(c.abs() <= tiny, torch.zeros_like(c), c)
            sums[m] += c.pow(2).sum(dim=(0, 1)) / x.shape[1]
        count += x.shape[0]
    if count == 0:
        raise ValueError("no images to analyse")
    return {m: s / count for m, s in sums.items()}, count


# --------------------------------------------------------------------------------------------
# Fig. 2 (b, c): radially binned SNR on the common frequency axis.


def frequency_radius(m: int, top: int) -> torch.Tensor:
    """f = |(k, l)| / R of every coefficient of an m×m image, on the common axis of R = top."""
    k = torch.arange(m, dtype=torch.float64)
    return torch.sqrt(k[:, None] ** 2 + k[None, :] ** 2) / top


def snr_rows(spectra: dict[int, torch.Tensor], sigmas: Iterable[float], block_size: int = 4,
             kinds: Iterable[str] = ("iid", "block"), bins: int = 16, block_scale: float = 0.15,
             mixture: str = "official") -> list[dict]:
    """One row per (resolution, noise kind, σ, frequency bin), powers on the common grid.

    The DC coefficient is its own row (freq_bin_lo = freq_bin_hi = 0): the dataset mean would
    otherwise swamp the lowest bin. AC bins split f ∈ (0, √2] into `bins` equal parts; a bin
    reports the mean signal and mean noise power of its coefficients and their ratio in dB.
    Block/relay noise is skipped at resolutions that s does not divide (Block[s] needs s | M)."""
    top = max(spectra)
    edges = torch.linspace(0, math.sqrt(2), bins + 1, dtype=torch.float64)
    rows = []
    for m in sorted(spectra, reverse=True):
        gain1 = upsample_gain(m, top // m)
        gain = gain1[:, None] * gain1[None, :]                     # Fig. 2: onto the R grid
        signal = spectra[m] * gain
        f = frequency_radius(m, top)
        for kind in kinds:
            if kind != "iid" and m % block_size:
                continue
            s = 1 if kind == "iid" else block_size
            unit_noise = noise_power(m, kind, block_size, block_scale, mixture) * gain
            for sigma in sigmas:
                noise = sigma ** 2 * unit_noise
                groups = [(0.0, 0.0, f == 0)]
                groups += [(float(lo), float(hi), (f > lo) & (f <= hi))
                           for lo, hi in zip(edges[:-1], edges[1:])]
                for lo, hi, mask in groups:
                    if not mask.any():
                        continue
                    sp, npow = float(signal[mask].mean()), float(noise[mask].mean())
                    rows.append(dict(resolution=m, noise=kind, s=s, sigma=float(sigma),
                                     freq_bin_lo=lo, freq_bin_hi=hi, signal_power=sp,
                                     noise_power=npow, snr_db=_decibels(sp, npow)))
    return rows


# --------------------------------------------------------------------------------------------
# "Which σ' at resolution sN matches σ at N?"


def band_mask(n: int, band: float) -> torch.Tensor:
    """The low band used for matching: AC coefficients with |(k, l)| < band·n, i.e. below
    `band` times the Nyquist of the low resolution n (f < band/s on the sN axis). DC is left
    out: it matches exactly for block noise (v(0) = s = h(0)², no box attenuation) and carries
    the dataset mean rather than structure."""
    f = frequency_radius(n, n)
    return (f > 0) & (f < band)


def match_sigma(spectra: dict[int, torch.Tensor], low: int, block_size: int, band: float = 0.5,
                kind: str = "block", block_scale: float = 0.15, mixture: str = "official") -> dict:
    """σ'/σ such that σ' with `kind` noise at sN = s·low gives the same mean low-band log-SNR
    as σ with i.i.d. noise at `low` (the ratio does not depend on σ: SNR ∝ 1/σ² everywhere).

    Per coefficient, SNR_N = P_N/σ² and SNR_sN = P_sN/(σ'² n_kind), hence
    ln(σ'/σ) = ½ mean_band[ln P_sN − ln n_kind − ln P_N]. Expected (docs/analysis.md): ≈ s for i.i.d.
    noise (the same σ leaves s² more SNR at sN), ≈ 1 for block noise; both are raised slightly by
    the box-down/nearest-up attenuation of the N signal, r(f) = sin²(πsf/2)/(s² sin²(πf/2)) per
    axis, and the ratio of the two answers is exactly √(geomean of the block noise power)."""
    high = low * block_size
    for m in (low, high):
        if m not in spectra:
            raise ValueError(f"resolution {m} was not analysed")
    if not 0 < band <= 1:
        raise ValueError(f"band must be in (0, 1], got {band}")
    mask = band_mask(low, band)
    if not mask.any():
        raise ValueError(f"the band |k| < {band}·{low} has no AC coefficient; raise --band")
    p_low = spectra[low][mask]
    p_high = spectra[high][:low, :low][mask]
    n_high = noise_power(high, kind, block_size, block_scale, mixture)[:low, :low][mask]
    log_ratio = 0.5 * float((p_high.log() - n_high.log() - p_low.log()).mean())
    return dict(low=low, high=high, kind=kind, ratio=math.exp(log_ratio), band=band,
                coefficients=int(mask.sum()))


def match_table(spectra: dict[int, torch.Tensor], sigmas: Iterable[float], block_size: int,
                band: float = 0.5, kinds: Iterable[str] = ("block", "iid"), block_scale: float = 0.15,
                mixture: str = "official") -> list[dict]:
    """`match_sigma` for every analysed pair (N, sN) and every σ: rows with sigma, sigma_<kind>
    and ratio_<kind> for each kind."""
    out = []
    for low in sorted(spectra):
        if low * block_size not in spectra or block_size == 1:
            continue
        found = {k: match_sigma(spectra, low, block_size, band, k, block_scale, mixture) for k in kinds}
        for sigma in sigmas:
            row = dict(low=low, high=low * block_size, s=block_size, band=band, sigma=float(sigma),
                       coefficients=next(iter(found.values()))["coefficients"])
            for k, m in found.items():
                row[f"sigma_{k}"] = float(sigma) * m["ratio"]
                row[f"ratio_{k}"] = m["ratio"]
            out.append(row)
    return out


def _decibels(signal: float, noise: float) -> float:
    """10·log10(signal / noise), with the limits where a power is zero (or round-off below it):
    no signal in the band (flat images) is −inf dB, no noise +inf dB."""
    if signal <= 0:
        return -math.inf
    if noise <= 0:
        return math.inf
    return 10 * math.log10(signal / noise)
