"""The relay operator: patch-wise DCT, patch-wise blurring, block noise, and the schedule tying
them to the noise level σ (paper §3.2–3.3).

Every function is batched over [B, C, H, W], works for any dtype/device and any H×W divisible by
the patch size p (p = 1 and p = H included). Losses and samplers use only this module for the
relay corruption, so training and sampling cannot drift apart.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Callable

import torch

from ._validate import check_blur_sigma, check_finite, check_image, check_patch, check_positive

RandnLike = Callable[[torch.Tensor], torch.Tensor]
NOISE_MIXTURES = ("official", "paper")
BLOCK_KINDS = ("block", "nearest")


# --------------------------------------------------------------------------------------------
# Patch-wise linear maps: Y = alpha · A X Bᵀ + beta · X for every p×p patch X.


@functools.lru_cache(maxsize=64)
def dct_matrix(p: int, dtype: torch.dtype = torch.float64, device: str = "cpu") -> torch.Tensor:
    """Orthonormal DCT-II matrix M (p×p): coefficients of a length-p signal x are M @ x."""
    n = torch.arange(p, dtype=torch.float64)
    m = torch.cos(math.pi * (2 * n[None, :] + 1) * n[:, None] / (2 * p)) * math.sqrt(2.0 / p)
    m[0] /= math.sqrt(2.0)
    return m.to(dtype=dtype, device=device)


def _dct(p: int, like: torch.Tensor) -> torch.Tensor:
    return dct_matrix(p, like.dtype, str(like.device))


def _row_group(p: int, width: int) -> int:
    """How many patches to transform in one matmul along W: a 16-wide block-diagonal map is far
    faster on CPU than a 4-wide one (contraction length 4 starves the GEMM)."""
    per_row = width // p
    t = max(1, 16 // p)
    while per_row % t:
        t -= 1
    return t


def _patch_linear(x: torch.Tensor, a: torch.Tensor, b: torch.Tensor, p: int,
                  alpha: float = 1.0, beta: float = 0.0) -> torch.Tensor:
    """alpha · A X Bᵀ + beta · X on every p×p patch X of x (no validation).

    a, b: [p, p] (shared by the batch) or [N, p, p] (one per sample).
    Two GEMM passes: along W with a block-diagonal copy of B, along H with A (beta fused in).
    """
    n, c, h, w = x.shape
    if p == 1:
        return x * (alpha * a.reshape(-1, 1, 1, 1) * b.reshape(-1, 1, 1, 1) + beta)
    batched = a.dim() == 3
    t = _row_group(p, w)
    eye = torch.eye(t, dtype=x.dtype, device=x.device)
    bt = torch.kron(eye, b.contiguous()).transpose(-1, -2)         # [(N,) tp, tp]
    xin = x.contiguous()
    if batched:
        y = torch.bmm(xin.view(n, -1, t * p), bt)                  # W axis, per sample
    else:
        y = (xin.view(-1, t * p) @ bt)
    rows = n * c * (h // p)
    y = y.view(rows, p, w)
    a_rows = (a[:, None].expand(n, c * (h // p), p, p) if batched else a.expand(1, p, p))
    a_rows = a_rows.reshape(-1, p, p).expand(rows, p, p)
    if beta == 0.0:
        out = torch.bmm(a_rows, y) if alpha == 1.0 else torch.bmm(a_rows, y).mul_(alpha)
    else:                                                           # H axis + beta·X in one op
        out = torch.baddbmm(xin.view(rows, p, w), a_rows, y, beta=beta, alpha=alpha)
    return out.view(n, c, h, w)


def patch_dct(x: torch.Tensor, p: int) -> torch.Tensor:
    """Orthonormal 2-D DCT-II of every non-overlapping p×p patch; coefficient (k, l) of patch
    (i, j) is stored at pixel (i·p + k, j·p + l). p = H = W gives the global 2-D DCT."""
    check_image(x, p, "x")
    m = _dct(p, x)
    return _patch_linear(x, m, m, p)


def patch_idct(u: torch.Tensor, p: int) -> torch.Tensor:
    """Inverse of `patch_dct` (exact: the DCT matrix is orthonormal)."""
    check_image(u, p, "u")
    mt = _dct(p, u).T
    return _patch_linear(u, mt, mt, p)


# --------------------------------------------------------------------------------------------
# Patch-wise heat dissipation (docs/method.md §3.1–3.2): α_kl(σ_B) = (1−m)·exp(−π²(k²+l²)/p² · σ_B²/2) + m.


def _decay_1d(blur_sigma: torch.Tensor, p: int) -> torch.Tensor:
    """exp(−π²k²/p² · σ_B²/2) for k < p, shape [..., p]: the heat kernel is separable in (k, l)."""
    k = torch.arange(p, dtype=blur_sigma.dtype, device=blur_sigma.device)
    return torch.exp(-(math.pi * k / p) ** 2 * (blur_sigma[..., None] ** 2 / 2))


def blur_factors(blur_sigma: torch.Tensor | float, p: int, min_scale: float = 1e-3) -> torch.Tensor:
    """Per-frequency blur factors α_kl (shape [..., p, p]) for blur level(s) σ_B ≥ 0."""
    sb = torch.as_tensor(blur_sigma, dtype=torch.float64)
    check_patch(p)
    check_blur_sigma(sb)
    g = _decay_1d(sb, p)
    return (1 - min_scale) * g[..., :, None] * g[..., None, :] + min_scale


def blur(x: torch.Tensor, blur_sigma: torch.Tensor | float, p: int,
         min_scale: float = 1e-3, *, check: bool = True) -> torch.Tensor:
    """Patch-wise blurring: scale patch-DCT coefficient (k, l) by α_kl(σ_B) (docs/method.md §3.1–3.2).

    blur_sigma: one σ_B ≥ 0 for the batch, or a [B] tensor (one per sample). σ_B = 0 is the
    identity; a large σ_B leaves each patch at its mean plus m times its detail (σ_B must be finite).
    check=False skips the input checks (and their device synchronisation) in hot loops whose
    caller has checked already.

    U⁻¹(α ⊙ U X) = (1−m)·K X Kᵀ + m·X with K = Mᵀ diag(g) M, because α = (1−m)·g gᵀ + m·11ᵀ and
    the all-ones table is the identity map. Two GEMM passes instead of DCT + scale + IDCT.
    """
    if check:
        check_image(x, p, "x")
        if torch.is_tensor(blur_sigma) and blur_sigma.dim() > 0:
            if blur_sigma.shape != (x.shape[0],):
                raise ValueError(f"blur_sigma must be a scalar or have shape [{x.shape[0]}], "
                                 f"got {tuple(blur_sigma.shape)}")
        check_blur_sigma(blur_sigma)
        if not 0 <= min_scale <= 1:
            raise ValueError(f"min_scale must be in [0, 1], got {min_scale}")
    if p == 1 or (not torch.is_tensor(blur_sigma) and blur_sigma == 0):
        return x
    sb = torch.as_tensor(blur_sigma, dtype=torch.float64, device=x.device)
    m = _dct(p, x).to(torch.float64)
    k = m.T @ (_decay_1d(sb, p)[..., :, None] * m)                 # [p,p] or [B,p,p]
    k = k.to(x.dtype)
    return _patch_linear(x, k, k, p, alpha=1.0 - min_scale, beta=min_scale)


# --------------------------------------------------------------------------------------------
# Block noise (docs/method.md §2.2–2.4): Block[s](ε)_xy = (1/s) Σ_{i,j<s} ε_{x−i, y−j}, indices wrapping around.


def _roll_add(a: torch.Tensor, b: torch.Tensor, shift: int, dim: int, out: torch.Tensor) -> torch.Tensor:
    """out = a + roll(b, shift, dim) in one pass (no rolled copy); out must not alias a or b."""
    n = a.shape[dim]
    torch.add(a.narrow(dim, shift, n - shift), b.narrow(dim, 0, n - shift),
              out=out.narrow(dim, shift, n - shift))
    torch.add(a.narrow(dim, 0, shift), b.narrow(dim, n - shift, shift), out=out.narrow(dim, 0, shift))
    return out


def _circular_box_sum(x: torch.Tensor, s: int, dim: int, spare: list, recycle_input: bool) -> torch.Tensor:
    """y_i = Σ_{j<s} x_{i−j mod n} by doubling: O(log s) passes (2 for s = 4), not s rolls.

    Work buffers come from and go back to `spare` (fresh memory costs page faults on CPU);
    with recycle_input, x itself is handed back once it is no longer read.
    """
    def take():
        return spare.pop() if spare else torch.empty_like(x)

    def release(t):
        if t is not x or recycle_input:
            spare.append(t)

    result, offset = None, 0
    window, width = x, 1                      # window_i = Σ_{j<width} x_{i−j}
    while True:
        if s & width:                         # append this power-of-two run after `offset`
            if result is None:
                result = window
            else:
                merged = _roll_add(result, window, offset, dim, take())
                release(result)
                result = merged
            offset += width
        if 2 * width > s:
            if window is not result:
                release(window)
            return result
        doubled = _roll_add(window, window, width, dim, take())
        if window is not result:
            release(window)
        window, width = doubled, 2 * width


def _block_sum(eps: torch.Tensor, s: int, kind: str) -> tuple[torch.Tensor, float]:
    """(field, scale) with Block[s](eps) = scale·field; field is a fresh tensor we may overwrite."""
    if kind == "nearest":
        return upsample_nearest(eps[:, :, ::s, ::s], s), 1.0
    if s == 1:
        return eps.clone(), 1.0
    spare: list = []
    rows = _circular_box_sum(eps, s, 3, spare, recycle_input=False)
    return _circular_box_sum(rows, s, 2, spare, recycle_input=rows is not eps), 1.0 / s


def block_noise(eps: torch.Tensor, block_size: int, kind: str = "block") -> torch.Tensor:
    """Turn an i.i.d. N(0, 1) field `eps` [B, C, H, W] into unit-variance correlated noise.

    kind="block": the paper's Block[s] — circular s×s moving sum divided by s; covariance
    (s−|dx|)(s−|dy|)/s² with wrap-around (docs/method.md §2.2–2.3). Identical to the official s²-roll code.
    kind="nearest": the top-left value of every s×s cell, repeated over the cell (nearest-
    upsampled low-resolution i.i.d. noise; for experiments, not what RDM trains with).
    """
    check_image(eps, block_size, "eps")
    if kind not in BLOCK_KINDS:
        raise ValueError(f"kind must be one of {BLOCK_KINDS}, got {kind!r}")
    field, scale = _block_sum(eps, block_size, kind)
    return field.mul_(scale) if scale != 1.0 else field


def upsample_nearest(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling by an integer factor: the fully blurred start of a relay stage."""
    if x.dim() != 4:
        raise ValueError(f"expected a 4-D [B, C, H, W] tensor, got shape {tuple(x.shape)}")
    check_patch(factor, "factor")
    n, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(n, c, h, factor, w, factor).reshape(n, c, h * factor, w * factor)


def relay_noise(eps: torch.Tensor, eps_block: torch.Tensor | None, block_scale: float,
                block_size: int, mixture: str = "official", kind: str = "block") -> torch.Tensor:
    """Unit-σ relay noise from two independent i.i.d. fields (docs/method.md §2.4).

    official: ε + α·Block(ε')               (per-pixel std √(1+α²); what released models use)
    paper:    (ε + α·Block(ε')) / √(1+α²)   (per-pixel std 1)
    """
    if mixture not in NOISE_MIXTURES:
        raise ValueError(f"mixture must be one of {NOISE_MIXTURES}, got {mixture!r}")
    if kind not in BLOCK_KINDS:
        raise ValueError(f"kind must be one of {BLOCK_KINDS}, got {kind!r}")
    if block_scale == 0:
        n = eps
    else:
        if eps_block is None:
            raise ValueError("block_scale > 0 needs a second i.i.d. field eps_block")
        check_image(eps_block, block_size, "eps_block")
        field, scale = _block_sum(eps_block, block_size, kind)
        n = torch.add(eps, field, alpha=block_scale * scale, out=field)     # one pass
    if mixture == "paper":
        n = n / math.sqrt(1 + block_scale ** 2)
    return n


def block_axis_covariance(n: int, block_size: int) -> torch.Tensor:
    """One axis of Block[s]'s covariance (paper §3.2): the overlap of two circular length-s
    windows divided by s, so that `block_noise_covariance(n, n, s)` = A ⊗ A."""
    member = torch.zeros(n, n, dtype=torch.float64)     # member[i, k] = 1: pixel k in the window of pixel i
    idx = torch.arange(n)
    for j in range(block_size):
        member[idx, (idx - j) % n] = 1.0
    return member @ member.T / block_size


def block_noise_covariance(height: int, width: int, block_size: int, kind: str = "block") -> torch.Tensor:
    """Exact covariance matrix (HW × HW, float64) of `block_noise(·, block_size, kind)`.

    block: overlap count of the two circular windows (the paper's formula when s ≤ H/2, W/2;
    exact for any s ≤ H, W). nearest: 1 inside an s×s cell, 0 across cells."""
    if kind not in BLOCK_KINDS:
        raise ValueError(f"kind must be one of {BLOCK_KINDS}, got {kind!r}")
    if kind == "nearest":
        cy, cx = torch.arange(height) // block_size, torch.arange(width) // block_size
        return torch.kron((cy[:, None] == cy[None]).double(), (cx[:, None] == cx[None]).double())

    return torch.kron(block_axis_covariance(height, block_size), block_axis_covariance(width, block_size))


# --------------------------------------------------------------------------------------------
# The schedule (docs/method.md §3.3–3.4): u ∈ [0, 1] ↔ σ ↔ σ_B, and the forward corruption.


@dataclasses.dataclass(frozen=True)
class RelaySchedule:
    """Forward process of a relay stage: x_σ = blur(x₀; σ_B(σ)) + σ·(ε + α·Block[s](ε')).

    u ~ U(0, 1) is the training time; σ(u) is EDM's log-normal truncated at its L-quantile and
    σ_B(u) = σ_B,max · sin²(πu/2) (Hoogeboom & Salimans' blur schedule), so blur grows with noise.
    """

    up_scale: int = 4               # s: patch size = block-noise kernel = upsampling factor
    blur_sigma_max: float = 3.0     # σ_B,max in pixels of heat: ImageNet-256 3.0, CelebA-HQ-256 2.0
    prob_length: float = 0.93       # L: σ ≤ its L-quantile; ImageNet 0.93, CelebA-HQ 0.89 (README)
    min_scale: float = 1e-3         # m: floor of every blur factor
    block_scale: float = 0.15       # α: block-noise weight; 0.15 in every paper experiment
    noise_mixture: str = "official"  # "official" σ(ε+αB) or the paper's σ(ε+αB)/√(1+α²)
    block_kind: str = "block"       # B: "block" (paper) or "nearest" (upsampled low-res noise)
    P_mean: float = -1.2            # EDM log-normal: ln σ ~ N(P_mean, P_std²)
    P_std: float = 1.2

    def __post_init__(self):
        check_patch(self.up_scale, "up_scale")
        for name in ("blur_sigma_max", "prob_length", "min_scale", "block_scale", "P_mean", "P_std"):
            check_finite(getattr(self, name), name)
        if self.blur_sigma_max < 0:
            raise ValueError(f"blur_sigma_max must be >= 0, got {self.blur_sigma_max}")
        if not 0 < self.prob_length <= 2:
            raise ValueError(f"prob_length must be in (0, 2], got {self.prob_length}")
        if not 0 <= self.min_scale <= 1:
            raise ValueError(f"min_scale must be in [0, 1], got {self.min_scale}")
        if self.block_scale < 0:
            raise ValueError(f"block_scale must be >= 0, got {self.block_scale}")
        if self.block_kind not in BLOCK_KINDS:
            raise ValueError(f"block_kind must be one of {BLOCK_KINDS}, got {self.block_kind!r}")
        if self.noise_mixture not in NOISE_MIXTURES:
            raise ValueError(f"noise_mixture must be one of {NOISE_MIXTURES}, got {self.noise_mixture!r}")
        if self.P_std <= 0:
            raise ValueError(f"P_std must be > 0, got {self.P_std}")

    # u ↔ σ: u·L = Φ((ln σ − P_mean)/P_std)
    def sigma(self, u: torch.Tensor | float, *, check: bool = True) -> torch.Tensor:
        """σ(u); check=False skips the range check (and its device synchronisation) for callers
        whose u is valid by construction."""
        u = torch.as_tensor(u, dtype=torch.float64) if not torch.is_tensor(u) else u
        if check and ((u <= 0) | (u * self.prob_length >= 1)).any():
            raise ValueError(f"u must be in (0, 1/prob_length), got {u}")
        return torch.exp(self.P_mean + self.P_std * torch.special.ndtri(u * self.prob_length))

    def u(self, sigma: torch.Tensor | float) -> torch.Tensor:
        sigma = check_positive(sigma, "sigma")
        return torch.special.ndtr((torch.log(sigma) - self.P_mean) / self.P_std) / self.prob_length

    @property
    def sigma_top(self) -> float:
        """σ at u = 1: the largest noise level the relay model is trained on (∞ when L ≥ 1)."""
        return float(self.sigma(1.0)) if self.prob_length < 1 else math.inf

    def blur_sigma(self, u: torch.Tensor | float) -> torch.Tensor:
        """σ_B,max · sin²(πu/2), u clamped to [0, 1] so that σ > σ_top cannot un-blur (docs/method.md §3.4)."""
        u = torch.as_tensor(u, dtype=torch.float64) if not torch.is_tensor(u) else u
        return self.blur_sigma_max * torch.sin(math.pi / 2 * u.clamp(0, 1)) ** 2

    def blur_sigma_at(self, sigma: torch.Tensor | float) -> torch.Tensor:
        return self.blur_sigma(self.u(sigma))

    def factors(self, sigma: torch.Tensor | float) -> torch.Tensor:
        """Per-frequency factors α_kl at noise level σ, shape [..., s, s]; (0, 0) is always 1."""
        return blur_factors(self.blur_sigma_at(sigma), self.up_scale, self.min_scale)

    def frequency_factor(self, sigma: torch.Tensor | float, frequency: float) -> torch.Tensor:
        """α at noise level σ of a patch-DCT frequency of radius f = √(k² + l²) (f = 0: the DC)."""
        sb = self.blur_sigma_at(sigma)
        decay = torch.exp(-(math.pi * frequency / self.up_scale) ** 2 * sb ** 2 / 2)
        return (1 - self.min_scale) * decay + self.min_scale

    def blur(self, x: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
        """The clean image blurred to the level the forward process reaches at σ."""
        check_image(x, self.up_scale, "x")
        return blur(x, self._blur_arg(sigma), self.up_scale, self.min_scale, check=False)

    def _blur_arg(self, sigma):
        sb = self.blur_sigma_at(sigma)
        return float(sb) if sb.dim() == 0 else sb

    def noise(self, like: torch.Tensor, randn_like: RandnLike = torch.randn_like) -> torch.Tensor:
        """Unit-σ relay noise shaped like `like`. Draw order: ε, then the block field ε' (skipped
        when block_scale = 0)."""
        eps = randn_like(like)
        eps_block = randn_like(like) if self.block_scale > 0 else None
        return relay_noise(eps, eps_block, self.block_scale, self.up_scale, self.noise_mixture,
                           self.block_kind)

    def noise_covariance(self, height: int, width: int) -> torch.Tensor:
        """Covariance C of `noise` over an H×W image (per channel): I + α²·Cov(Block), ÷(1+α²)
        for the paper mixture. x_σ has covariance σ²C around the blurred image."""
        cov = torch.eye(height * width, dtype=torch.float64)
        cov = cov + self.block_scale ** 2 * block_noise_covariance(height, width, self.up_scale,
                                                                   self.block_kind)
        return cov / (1 + self.block_scale ** 2) if self.noise_mixture == "paper" else cov

    def corrupt(self, x0: torch.Tensor, sigma: torch.Tensor | float, randn_like: RandnLike = torch.randn_like,
                *, u: torch.Tensor | None = None, check: bool = True) -> torch.Tensor:
        """Forward corruption x_σ = blur(x₀; σ_B) + σ·noise (paper §3.3). sigma: float or [B]
        tensor. u: the training time behind σ when the caller drew it (the relay loss): σ_B then
        comes from u directly, not through u(σ). check=False skips the input checks (and their
        device synchronisation) for a caller whose inputs are valid by construction."""
        if check:
            check_image(x0, self.up_scale, "x0")
            sig = check_positive(sigma, "sigma")
        else:
            sig = sigma if torch.is_tensor(sigma) else torch.as_tensor(sigma, dtype=torch.float64)
        sig_b = sig.to(x0.device, x0.dtype).reshape(-1, 1, 1, 1) if sig.dim() else float(sig)
        blur_sigma = self._blur_arg(sig) if u is None else self.blur_sigma(u)
        return blur(x0, blur_sigma, self.up_scale, self.min_scale, check=False) + sig_b * self.noise(x0, randn_like)

    def for_sampling(self, prob_length: float | None) -> "RelaySchedule":
        """The same schedule with the sampler's own L (`RelaySamplerSettings.prob_length`, the
        official truncation_t; docs/method.md §3.4); None keeps the model's."""
        if prob_length is None:
            return self
        if not 0 < prob_length <= 2:                      # NaN included
            raise ValueError(f"prob_length must be in (0, 2] (the sampler's L), got {prob_length}")
        return dataclasses.replace(self, prob_length=prob_length)
