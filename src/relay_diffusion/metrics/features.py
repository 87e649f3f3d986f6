"""Feature-space metrics following the ADM / RDM evaluation protocol.

All functions take precomputed features (e.g. Inception pool3 activations or
logits) as 2-D arrays of shape ``(n_samples, dim)``; numpy arrays and torch
tensors are both accepted. Computation is done in float64.

References:
    FID: Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge
        to a Local Nash Equilibrium", NeurIPS 2017.
    IS: Salimans et al., "Improved Techniques for Training GANs", NeurIPS 2016.
    KID: Bińkowski et al., "Demystifying MMD GANs", ICLR 2018.
    P/R: Kynkäänniemi et al., "Improved Precision and Recall Metric for
        Assessing Generative Models", NeurIPS 2019.
    ADM: Dhariwal & Nichol, "Diffusion Models Beat GANs on Image Synthesis",
        NeurIPS 2021 (evaluation suite and reference-statistics format).
"""

from __future__ import annotations

import os
from typing import Tuple, Union

import numpy as np
import torch
from scipy import linalg

ArrayLike = Union[np.ndarray, torch.Tensor]

__all__ = [
    "feature_statistics",
    "frechet_distance",
    "precision_recall",
    "inception_score",
    "kernel_inception_distance",
    "save_statistics",
    "load_statistics",
]


def _as_features(x: ArrayLike, name: str, min_samples: int = 1) -> np.ndarray:
    """Convert to a finite float64 numpy array of shape (n, d)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, dim); got shape {x.shape}")
    if x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one feature dimension")
    if x.shape[0] < min_samples:
        raise ValueError(
            f"{name} needs at least {min_samples} samples; got {x.shape[0]}"
        )
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or Inf")
    return x


def _check_same_dim(a: np.ndarray, b: np.ndarray, na: str, nb: str) -> None:
    if a.shape[1] != b.shape[1]:
        raise ValueError(
            f"{na} and {nb} have different feature dims: {a.shape[1]} vs {b.shape[1]}"
        )


def feature_statistics(features: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (divisor n-1) of features, as used for FID.

    Args:
        features: array of shape (n, d) with n >= 2.

    Returns:
        ``(mu, sigma)``: float64 arrays of shape (d,) and (d, d).
    """
    x = _as_features(features, "features", min_samples=2)
    mu = x.mean(axis=0)
    sigma = np.atleast_2d(np.cov(x, rowvar=False))  # ddof=1
    return mu, sigma


def frechet_distance(
    mu1: ArrayLike,
    sigma1: ArrayLike,
    mu2: ArrayLike,
    sigma2: ArrayLike,
    eps: float = 1e-6,
) -> float:
    """Fréchet distance between Gaussians N(mu1, sigma1) and N(mu2, sigma2).

    ``d² = ||mu1 - mu2||² + Tr(sigma1 + sigma2 - 2 (sigma1 sigma2)^{1/2})``
    (Heusel et al., 2017). Mirrors pytorch-fid / ADM: if the matrix square root
    is not finite (near-singular product), ``eps * I`` is added to both
    covariances; a non-negligible imaginary component raises ``ValueError``. A tiny negative
    result from round-off (above −1e-6·(1 + Tr σ1 + Tr σ2)) is returned as 0.
    """
    mu1 = np.atleast_1d(np.asarray(_to_numpy(mu1), dtype=np.float64))
    mu2 = np.atleast_1d(np.asarray(_to_numpy(mu2), dtype=np.float64))
    sigma1 = np.atleast_2d(np.asarray(_to_numpy(sigma1), dtype=np.float64))
    sigma2 = np.atleast_2d(np.asarray(_to_numpy(sigma2), dtype=np.float64))
    if mu1.ndim != 1 or mu2.ndim != 1:
        raise ValueError("mu1 and mu2 must be 1-D")
    if mu1.shape != mu2.shape:
        raise ValueError(f"mean shapes differ: {mu1.shape} vs {mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(
            f"covariances must have shape ({d}, {d}); got {sigma1.shape} and {sigma2.shape}"
        )
    for name, arr in (("mu1", mu1), ("mu2", mu2), ("sigma1", sigma1), ("sigma2", sigma2)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name} contains NaN or Inf")

    diff = mu1 - mu2
    covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():
        # Near-singular product: regularise as pytorch-fid does.
        offset = np.eye(d) * eps
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    if np.iscomplexobj(covmean):
        if not np.allclose(np.diagonal(covmean).imag, 0, atol=1e-3):
            m = np.max(np.abs(covmean.imag))
            raise ValueError(f"sqrtm has a large imaginary component {m}")
        covmean = covmean.real
    d2 = float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * np.trace(covmean))
    # d² ≥ 0 exactly; the sqrtm round-off can leave e.g. −1.8e-05 for a set against itself
    tolerance = 1e-6 * (1.0 + np.trace(sigma1) + np.trace(sigma2))
    return 0.0 if -tolerance < d2 < 0 else d2


def _to_numpy(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    return x


def _kth_nn_radii(x: torch.Tensor, k: int, batch: int) -> torch.Tensor:
    """Distance from each row of x to its k-th nearest neighbour (self excluded)."""
    radii = torch.empty(x.shape[0], dtype=x.dtype)
    for start in range(0, x.shape[0], batch):
        d = torch.cdist(x[start : start + batch], x)
        # k+1 smallest includes the zero self-distance.
        radii[start : start + batch] = d.kthvalue(k + 1, dim=1).values
    return radii


def _coverage(query: torch.Tensor, ref: torch.Tensor, ref_radii: torch.Tensor, batch: int) -> float:
    """Fraction of query points within the radius of at least one ref point."""
    inside = 0
    for qs in range(0, query.shape[0], batch):
        q = query[qs : qs + batch]
        hit = torch.zeros(q.shape[0], dtype=torch.bool)
        for rs in range(0, ref.shape[0], batch):
            d = torch.cdist(q, ref[rs : rs + batch])
            hit |= (d <= ref_radii[rs : rs + batch].unsqueeze(0)).any(dim=1)
        inside += int(hit.sum())
    return inside / query.shape[0]


def precision_recall(
    real: ArrayLike, fake: ArrayLike, k: int = 3, batch: int = 10000
) -> Tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al., 2019).

    Each set's manifold is the union of balls around its samples with radius
    equal to the distance to the k-th nearest neighbour (excluding the sample
    itself). Precision is the fraction of fake samples inside the real
    manifold; recall is the fraction of real samples inside the fake manifold.
    Pairwise distances are computed in ``batch x batch`` blocks.

    Returns:
        ``(precision, recall)`` as floats in [0, 1].
    """
    if int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer; got {k}")
    if int(batch) != batch or batch < 1:
        raise ValueError(f"batch must be a positive integer; got {batch}")
    k, batch = int(k), int(batch)
    r = _as_features(real, "real", min_samples=k + 1)
    f = _as_features(fake, "fake", min_samples=k + 1)
    _check_same_dim(r, f, "real", "fake")
    rt, ft = torch.from_numpy(r), torch.from_numpy(f)
    real_radii = _kth_nn_radii(rt, k, batch)
    fake_radii = _kth_nn_radii(ft, k, batch)
    precision = _coverage(ft, rt, real_radii, batch)
    recall = _coverage(rt, ft, fake_radii, batch)
    return precision, recall


def inception_score(logits: ArrayLike, splits: int = 10) -> Tuple[float, float]:
    """Inception Score (Salimans et al., 2016) from classifier logits.

    The samples are cut into ``splits`` consecutive chunks; for each chunk
    ``IS = exp(mean_i KL(p(y|x_i) || p(y)))`` with ``p(y)`` the chunk's mean
    prediction. Returns the mean and (population) std over chunks, as in ADM.
    """
    x = _as_features(logits, "logits", min_samples=1)
    if int(splits) != splits or splits < 1:
        raise ValueError(f"splits must be a positive integer; got {splits}")
    splits = int(splits)
    if x.shape[0] < splits:
        raise ValueError(f"need at least splits={splits} samples; got {x.shape[0]}")
    logp = torch.log_softmax(torch.from_numpy(x), dim=1).numpy()
    scores = []
    for chunk in np.array_split(logp, splits, axis=0):
        p = np.exp(chunk)
        log_py = np.log(p.mean(axis=0) + 1e-300)
        kl = (p * (chunk - log_py)).sum(axis=1).mean()
        scores.append(np.exp(kl))
    return float(np.mean(scores)), float(np.std(scores))


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1.0) ** 3
    kyy = (y @ y.T / d + 1.0) ** 3
    kxy = (x @ y.T / d + 1.0) ** 3
    m, n = x.shape[0], y.shape[0]
    sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(sxx + syy - 2.0 * kxy.mean())


def kernel_inception_distance(
    real: ArrayLike,
    fake: ArrayLike,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 0,
) -> Tuple[float, float]:
    """Kernel Inception Distance (Bińkowski et al., 2018).

    Unbiased MMD² with the cubic polynomial kernel ``k(x, y) = (x·y/d + 1)³``,
    averaged over ``subsets`` random subsets of ``subset_size`` samples drawn
    without replacement from each set (as in torch-fidelity).

    Returns:
        ``(mean, std)`` of the per-subset MMD² estimates.
    """
    r = _as_features(real, "real", min_samples=2)
    f = _as_features(fake, "fake", min_samples=2)
    _check_same_dim(r, f, "real", "fake")
    if int(subsets) != subsets or subsets < 1:
        raise ValueError(f"subsets must be a positive integer; got {subsets}")
    if int(subset_size) != subset_size or subset_size < 2:
        raise ValueError(f"subset_size must be an integer >= 2; got {subset_size}")
    subset_size = int(subset_size)
    if subset_size > min(r.shape[0], f.shape[0]):
        raise ValueError(
            f"subset_size={subset_size} exceeds the number of samples "
            f"(real {r.shape[0]}, fake {f.shape[0]})"
        )
    rng = np.random.default_rng(seed)
    vals = []
    for _ in range(int(subsets)):
        xi = rng.choice(r.shape[0], subset_size, replace=False)
        yi = rng.choice(f.shape[0], subset_size, replace=False)
        vals.append(_mmd2_unbiased(r[xi], f[yi]))
    return float(np.mean(vals)), float(np.std(vals))


def save_statistics(path: Union[str, os.PathLike], mu: ArrayLike, sigma: ArrayLike) -> None:
    """Save FID statistics to ``.npz`` with keys ``'mu'`` and ``'sigma'``."""
    mu = np.asarray(_to_numpy(mu), dtype=np.float64)
    sigma = np.asarray(_to_numpy(sigma), dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(
            f"expected mu of shape (d,) and sigma of shape (d, d); got {mu.shape}, {sigma.shape}"
        )
    with open(path, "wb") as fh:  # file handle: np.savez won't append '.npz'
        np.savez(fh, mu=mu, sigma=sigma)


def load_statistics(path: Union[str, os.PathLike]) -> Tuple[np.ndarray, np.ndarray]:
    """Load ``(mu, sigma)`` from a ``.npz`` file (ADM/RDM reference format)."""
    with np.load(path, allow_pickle=False) as data:
        missing = [key for key in ("mu", "sigma") if key not in data.files]
        if missing:
            raise ValueError(
                f"{os.fspath(path)} lacks key(s) {missing}; found {sorted(data.files)}"
            )
        mu = np.asarray(data["mu"], dtype=np.float64)
        sigma = np.asarray(data["sigma"], dtype=np.float64)
    if mu.ndim != 1 or sigma.shape != (mu.shape[0], mu.shape[0]):
        raise ValueError(
            f"bad statistics shapes in {os.fspath(path)}: mu {mu.shape}, sigma {sigma.shape}"
        )
    return mu, sigma
