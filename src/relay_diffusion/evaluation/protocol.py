"""The measurement protocol behind every quality claim (docs/evaluation.md, "Measurement
protocol"): which seeds choose settings and which seeds report results, and a paired bootstrap
that gives each metric, and each difference between two sample sets, a 95 % interval.

Seeds. Settings (solver, grid, preset, checkpoint) are chosen on `SELECTION` seeds; every number
stated as a result is measured on the disjoint `REPORT` seeds. `check_disjoint` refuses a choice
whose seeds overlap the seeds it is reported on.

Bootstrap. The samples of one seed set are resampled with replacement, B times; every arm measured
on the same seeds uses the same resamples (`Bootstrap.counts`: how often each seed is drawn), so
the difference of two arms' replicates is a paired bootstrap of their difference. The reference
set (real images) is held fixed: intervals describe the variation from the generated samples
at this sample count. A resample holds only ≈ 63 % distinct samples, which shifts its FID, KID
and recall (FID up, recall down) by far more than those estimators' own bias at n: the interval
is the replicates' central 95 % range re-centred on the full-sample value. In simulations the
replicates' spread matches the spread over fresh sample sets for FID, KID and precision; for
recall it is ≈ 1.8× larger, so recall's intervals are conservative (tests/test_protocol.py).

Every metric is computed from the resample as a multiset, with the same estimator as on the full
set: FID (Fréchet distance of weighted moments; with all counts 1 it is `frechet_distance` of
`feature_statistics`), KID (the unbiased MMD² U-statistic over all sample pairs, against the
whole reference), precision and recall (k-NN manifolds; a sample drawn twice is its own neighbour
at distance 0), and the per-image measures RMSE (to a per-seed target, e.g. the converged ODE),
the high-frequency power ratio and the spectral distance.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Iterable, Sequence

import numpy as np
import torch

from ..metrics.features import _as_features, feature_statistics

LEVEL = 0.95                          # every interval of the protocol
RESAMPLES = 1_000                     # bootstrap resamples per seed set (the minimum)
PR_NEIGHBOURS = 3                     # k of precision/recall, as in compute_metrics


# ------------------------------------------------------------------------------ seed sets

@dataclasses.dataclass(frozen=True)
class SeedSet:
    """A named range of sampling seeds: `seeds(n)` are its first n."""
    name: str
    start: int                        # first seed
    capacity: int                     # how many seeds the set holds

    def seeds(self, n: int) -> list[int]:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= self.capacity:
            raise ValueError(f"the {self.name} seed set holds 1 … {self.capacity:,} seeds, asked for {n!r}")
        return list(range(self.start, self.start + n))

    def describe(self, n: int) -> str:
        return f"{self.name} seeds {self.start:,}–{self.start + n - 1:,}"


SELECTION = SeedSet("selection", 0, 1_000_000)            # choose solvers, grids, presets, checkpoints
REPORT = SeedSet("report", 1_000_000, 1_000_000)          # every number a doc states as a result


def check_disjoint(chosen_on: Iterable[int], reported_on: Iterable[int], what: str = "a setting") -> None:
    """Refuse to report `what` on seeds it was chosen on (a preset picked on the report seeds
    would carry the selection's optimism into the result)."""
    common = set(int(s) for s in chosen_on) & set(int(s) for s in reported_on)
    if common:
        some = ", ".join(str(s) for s in sorted(common)[:5])
        raise ValueError(f"{what} was chosen on {len(common):,} of the seeds it is reported on "
                         f"(e.g. {some}); choose on SELECTION seeds, report on REPORT seeds")


# ------------------------------------------------------------------------------ bootstrap

@dataclasses.dataclass(frozen=True)
class Bootstrap:
    """B resamples (with replacement) of n samples, fixed by `seed`: the same resamples for
    every arm measured on the same n seeds, which is what pairs them."""
    n: int                            # samples per arm (the seeds 0 … n − 1 of a seed set)
    resamples: int = RESAMPLES        # B
    seed: int = 0                     # of the resampling draws

    def __post_init__(self):
        for name in ("n", "resamples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 2:
                raise ValueError(f"Bootstrap.{name} must be a whole number >= 2, got {v!r}")

    @functools.cached_property
    def counts(self) -> np.ndarray:
        """[B, n] int32: how often each sample is drawn in each resample (rows sum to n)."""
        rng = np.random.default_rng(self.seed)
        idx = rng.integers(0, self.n, size=(self.resamples, self.n))
        counts = np.zeros((self.resamples, self.n), dtype=np.int32)
        np.add.at(counts, (np.arange(self.resamples)[:, None], idx), 1)
        return counts

    def key(self) -> dict:
        return {"n": self.n, "resamples": self.resamples, "seed": self.seed}


@dataclasses.dataclass
class Estimate:
    """A metric on all samples (`value`) and on each bootstrap resample (`replicates`)."""
    value: float
    replicates: np.ndarray
    bootstrap: Bootstrap

    def interval(self, level: float = LEVEL) -> tuple[float, float]:
        """The replicates' central `level` range, moved to centre on `value` (see the module
        docstring: a resample's duplicates shift FID, KID and recall; the shift is not the
        estimator's bias at n, so it is taken out)."""
        a = (1 - level) / 2
        q_lo, q_hi = np.quantile(self.replicates - self.replicates.mean(), [a, 1 - a])
        return float(self.value + q_lo), float(self.value + q_hi)

    def __sub__(self, other: "Estimate") -> "Estimate":
        """The paired difference self − other (both measured on the same seeds and resamples)."""
        if self.bootstrap != other.bootstrap:
            raise ValueError(f"a paired difference needs the same resamples of the same seeds: "
                             f"{self.bootstrap.key()} vs {other.bootstrap.key()}")
        return Estimate(self.value - other.value, self.replicates - other.replicates, self.bootstrap)

    def measurable(self, level: float = LEVEL) -> bool:
        """For a difference: its interval excludes 0."""
        lo, hi = self.interval(level)
        return lo > 0 or hi < 0

    def summary(self, level: float = LEVEL) -> dict:
        return {"value": self.value, "ci95": list(self.interval(level))}


def describe_difference(diff: Estimate, digits: int = 3) -> str:
    """'−0.214 [−0.301, −0.129]', or 'no measurable difference (+0.012 [−0.040, +0.063])'."""
    lo, hi = diff.interval()
    text = f"{diff.value:+.{digits}f} [{lo:+.{digits}f}, {hi:+.{digits}f}]"
    return text if diff.measurable() else f"no measurable difference ({text})"


def weighted_mean(per_sample: np.ndarray, boot: Bootstrap) -> Estimate:
    """The mean of a per-sample measure ([n] or [n, k]; the replicates keep the trailing axis)."""
    x = np.asarray(per_sample, dtype=np.float64)
    if len(x) != boot.n:
        raise ValueError(f"{len(x)} per-sample values for a bootstrap of {boot.n}")
    return Estimate(x.mean(axis=0), boot.counts @ x / boot.n, boot)


def _map(est: Estimate, fn) -> Estimate:
    return Estimate(fn(est.value), fn(est.replicates), est.bootstrap)


# --------------------------------------------------------------------------- per metric

def _trace_sqrt_product(sigmas: np.ndarray, ref_sqrt: np.ndarray) -> np.ndarray:
    """Tr (Σ_b Σ_ref)^½ for a stack of Σ_b: the eigenvalues of Σ_ref^½ Σ_b Σ_ref^½ are those of
    Σ_b Σ_ref, and they are ≥ 0, so the trace is Σ √λ (no matrix square root per resample)."""
    lam = np.linalg.eigvalsh(ref_sqrt @ sigmas @ ref_sqrt)
    return np.sqrt(np.clip(lam, 0, None)).sum(axis=-1)


def fid(features, ref_mu, ref_sigma, boot: Bootstrap, chunk: int = 50) -> Estimate:
    """FID of the samples' features against the reference statistics, with replicates."""
    x = _as_features(features, "features", min_samples=2)
    if len(x) != boot.n:
        raise ValueError(f"{len(x)} feature rows for a bootstrap of {boot.n}")
    ref_mu, ref_sigma = np.asarray(ref_mu, np.float64), np.asarray(ref_sigma, np.float64)
    w, v = np.linalg.eigh(ref_sigma)
    ref_sqrt = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    center = x.mean(axis=0)
    xc = x - center                                     # moments about a fixed point: stable sums

    def fids(weights: np.ndarray) -> np.ndarray:        # [b, n] counts → [b] FID
        n = weights.sum(axis=1, keepdims=True)
        mean = weights @ xc / n                          # [b, d], about `center`
        second = np.stack([(xc * w[:, None]).T @ xc for w in weights])            # [b, d, d]
        sigma = (second - n[:, :, None] * mean[:, :, None] * mean[:, None, :]) / (n[:, :, None] - 1)
        diff = mean + center - ref_mu
        return ((diff ** 2).sum(axis=1) + np.trace(sigma, axis1=1, axis2=2) + np.trace(ref_sigma)
                - 2 * _trace_sqrt_product(sigma, ref_sqrt))

    value = float(fids(np.ones((1, boot.n)))[0])
    reps = np.concatenate([fids(boot.counts[i:i + chunk].astype(np.float64))
                           for i in range(0, boot.resamples, chunk)])
    return Estimate(value, reps, boot)


def _poly_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a @ b.T / a.shape[1] + 1.0) ** 3            # KID's cubic kernel (Bińkowski et al.)


def kid(features, reference, boot: Bootstrap, chunk: int = 1000) -> Estimate:
    """Unbiased MMD² (cubic polynomial kernel) between all samples and the whole reference,
    with replicates: over a resample, the pairs are those of distinct *draws* (a seed drawn
    twice pairs with its copy)."""
    x = _as_features(features, "features", min_samples=2)
    y = _as_features(reference, "reference", min_samples=2)
    c = boot.counts.astype(np.float64)                  # [B, n]
    n, m = boot.n, len(y)
    cross = np.zeros(n)                                 # mean kernel of each sample with the reference
    syy = 0.0
    for i in range(0, m, chunk):
        kyy = _poly_kernel(y[i:i + chunk], y)
        syy += kyy.sum() - np.trace(kyy, offset=i)
    syy /= m * (m - 1)
    quad_full, quad, diag = 0.0, np.zeros(boot.resamples), np.zeros(n)
    for i in range(0, n, chunk):
        kxx = _poly_kernel(x[i:i + chunk], x)           # rows i … i + chunk of K_xx
        quad += ((c @ kxx.T) * c[:, i:i + chunk]).sum(axis=1)     # cᵀ K c, block by block
        quad_full += kxx.sum()
        diag[i:i + chunk] = kxx[np.arange(len(kxx)), np.arange(i, i + len(kxx))]
        cross[i:i + chunk] = _poly_kernel(x[i:i + chunk], y).mean(axis=1)
    value = (quad_full - diag.sum()) / (n * (n - 1)) + syy - 2 * cross.mean()
    reps = (quad - c @ diag) / (n * (n - 1)) + syy - 2 * c @ cross / n
    return Estimate(float(value), reps, boot)


def _knn(query: torch.Tensor, points: torch.Tensor, k: int, exclude_self: bool, batch: int = 2000):
    """The k nearest `points` of every query row: (distances, indices), ascending."""
    dist, idx = [], []
    for s in range(0, len(query), batch):
        d = torch.cdist(query[s:s + batch], points)
        if exclude_self:
            d[torch.arange(len(d)), torch.arange(s, s + len(d))] = float("inf")
        v, i = d.topk(k, dim=1, largest=False)
        dist.append(v)
        idx.append(i)
    return torch.cat(dist).numpy(), torch.cat(idx).numpy()


def precision_recall(features, reference, boot: Bootstrap, k: int = PR_NEIGHBOURS,
                     neighbours: int = 48) -> tuple[Estimate, Estimate]:
    """Improved precision and recall (k-NN manifolds, Kynkäänniemi et al. 2019), with replicates.

    Precision: a sample is inside the reference manifold or not, whatever else is drawn, so its
    replicates are counts-weighted means. Recall: the samples' radii change with the resample;
    each radius is found among the sample's `neighbours` nearest other samples and its own
    copies, which holds the k-th neighbour of a resample unless fewer than k of those
    neighbours were drawn (probability < 10⁻⁹ for 48); then the 48th distance is used."""
    x = torch.from_numpy(_as_features(features, "features", min_samples=k + 1))
    y = torch.from_numpy(_as_features(reference, "reference", min_samples=k + 1))
    n, c = boot.n, boot.counts
    # precision: the reference manifold is fixed
    ref_radii = torch.from_numpy(_knn(y, y, k, exclude_self=True)[0][:, -1])
    inside = np.zeros(n, dtype=np.float64)
    for s in range(0, n, 2000):
        inside[s:s + 2000] = (torch.cdist(x[s:s + 2000], y) <= ref_radii[None]).any(dim=1).numpy()
    precision = weighted_mean(inside, boot)

    # recall: radius of sample i in a resample = k-th smallest of (its c_i − 1 copies at 0, each
    # neighbour j repeated c_j times)
    neighbours = min(neighbours, n - 1)
    nd, ni = _knn(x, x, neighbours, exclude_self=True)
    radius_cap = nd[:, -1]
    # pairs (reference r, sample i) with d(r, i) ≤ the largest radius i can have
    rows, cols, dists = [], [], []
    for s in range(0, len(y), 2000):
        d = torch.cdist(y[s:s + 2000], x).numpy()
        r, i = np.nonzero(d <= radius_cap[None])
        rows.append(r + s)
        cols.append(i)
        dists.append(d[r, i])
    rows, cols, dists = np.concatenate(rows), np.concatenate(cols), np.concatenate(dists)

    def recall_of(counts: np.ndarray) -> float:
        before = np.cumsum(counts[ni], axis=1) + (counts[:, None] - 1)    # draws up to each neighbour
        first = np.argmax(before >= k, axis=1)
        reached = before[np.arange(n), first] >= k
        radius = np.where(counts - 1 >= k, 0.0, np.where(reached, nd[np.arange(n), first], radius_cap))
        hit = (counts[cols] > 0) & (dists <= radius[cols])
        return np.bincount(rows[hit], minlength=len(y)).astype(bool).mean()

    recall_value = recall_of(np.ones(n, dtype=np.int64))
    recall_reps = np.array([recall_of(c[b].astype(np.int64)) for b in range(boot.resamples)])
    return precision, Estimate(float(recall_value), recall_reps, boot)


def rmse(samples: torch.Tensor, targets: torch.Tensor, boot: Bootstrap) -> Estimate:
    """Root mean square error to a per-seed target (e.g. the same seed's converged-ODE image),
    pixels in [−1, 1]: √(mean over seeds of each seed's mean squared error)."""
    if samples.shape != targets.shape:
        raise ValueError(f"samples {tuple(samples.shape)} and targets {tuple(targets.shape)} differ in shape")
    mse = (samples.double() - targets.double()).pow(2).flatten(1).mean(dim=1).numpy()
    return _map(weighted_mean(mse, boot), np.sqrt)


def spectra(real_images: torch.Tensor, sample_images: torch.Tensor, boot: Bootstrap,
            eps: float = 1e-12) -> dict[str, Estimate]:
    """The radial power spectrum's measures of metrics/offline.py, with replicates:
    "hf_power" (generated / real power in the upper half of the radial frequencies) and
    "spectral" (mean |log₁₀ P_real − log₁₀ P_gen| over radii ≥ 1)."""
    from ..metrics.offline import radial_power_spectra, radial_power_spectrum

    real = radial_power_spectrum(real_images).numpy()
    per_image = radial_power_spectra(sample_images).numpy()            # [n, R]
    upper = slice(len(real) // 2 + 1, None)
    mean = weighted_mean(per_image, boot)                              # replicates [B, R]
    return {
        "hf_power": _map(mean, lambda p: p[..., upper].sum(axis=-1) / real[upper].sum()),
        "spectral": _map(mean, lambda p: np.abs(np.log10(real[1:] + eps) - np.log10(p[..., 1:] + eps))
                         .mean(axis=-1)),
    }


def measure(features, boot: Bootstrap, reference_features, reference_stats=None,
            metrics: Sequence[str] = ("fid", "kid", "pr")) -> dict[str, Estimate]:
    """Feature metrics of one arm with replicates: "fid" (against `reference_stats` (μ, Σ), by
    default the statistics of `reference_features`), "kid", "precision" and "recall" (against
    `reference_features`)."""
    out = {}
    if "fid" in metrics:
        mu, sigma = reference_stats if reference_stats is not None else feature_statistics(reference_features)
        out["fid"] = fid(features, mu, sigma, boot)
    if "kid" in metrics:
        out["kid"] = kid(features, reference_features, boot)
    if "pr" in metrics:
        out["precision"], out["recall"] = precision_recall(features, reference_features, boot)
    return out
