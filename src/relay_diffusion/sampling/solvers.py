"""Exponential-integrator solvers for the relay process, one frequency at a time (docs/solvers.md).

In the patch-DCT basis a relay stage's forward process is x_σ = d(σ) ⊙ x₀ + σ·n: d_k(σ) are the
blur factors of frequency k (d ≡ 1 for plain EDM), n has a fixed covariance (block noise
included). The solvers integrate the deterministic relay ODE of solvers.md §1, written for y = x/σ
as dy_k/dσ = (d/dσ)[d_k(σ)/σ] · x̂₀_k (Eq. 3). With block noise (a covariance that is not diagonal
across frequencies) this is not the probability-flow ODE of the forward process, whose drift
contains the inverse noise covariance and couples the frequencies, but another ODE with the same
marginals: the noise covariance drops out, and with λ_k = log(d_k/σ) every coefficient follows
DPM-Solver++'s data-prediction ODE in its own log-SNR (Eq. 4–5).

Each step integrates that exactly for x̂₀ polynomial in λ_k through the last q denoised images
(Eq. 6–9): q = 1 is DDIM per frequency (the official predictor with η = 0), q = 2 DPM-Solver++(2M)
(Eq. 8), q = 3 a third-order multistep. The "-pc" variants redo every step once x̂₀ at its end
is known — it is evaluated for the next step anyway — which adds one order at no cost (Eq. 10).
With η > 0 a scalar fraction κ = √(1−η²) of the noise is kept per step and ησ_{i+1}·(fresh relay
noise) added, as in the official sampler; the integral then runs in μ_k = λ_k + ρ (Eq. 11–12).
"""

from __future__ import annotations

import math
import torch

from ..relay import patch_dct, patch_idct

# name → (order of the multistep predictor, with the corrector of Eq. 10); "heun" is the official
# predictor–corrector step (two evaluations per step)
MULTISTEP = {"ddim": (1, False), "dpmpp-2m": (2, False), "dpmpp-3m": (3, False),
             "ddim-pc": (1, True), "dpmpp-2m-pc": (2, True), "dpmpp-3m-pc": (3, True)}
SOLVERS = ("heun",) + tuple(MULTISTEP)


def check_solver(solver: str, steps: int) -> tuple[int, bool]:
    """(multistep order, corrector) of `solver` ((0, False) for "heun"); ValueError for an
    unknown name or a grid with fewer steps than the order needs to be reached."""
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    order, corrector = MULTISTEP.get(solver, (0, False))
    if order > 1 and steps < order:
        raise ValueError(f"solver {solver!r} is a {order}-step method and needs at least {order} steps "
                         f"({order + 1} σ's in the grid), got {steps}; use more steps or a lower order")
    return order, corrector


def nfe(solver: str, num_sigmas: int) -> int:
    """Network evaluations of a grid of n σ's (the last one returns D(x; σ_n)): 2n − 1 for the
    Heun step (predictor + corrector), n for the single-evaluation multistep solvers."""
    return 2 * num_sigmas - 1 if solver == "heun" else num_sigmas


def _phi(k: int, h: torch.Tensor) -> torch.Tensor:
    """φ_k(−h) = Σ_j (−h)^j/(j+k)! for h ≥ 0 (Eq. 7), float64; a series near 0 avoids cancellation."""
    z = -h
    series = sum(z ** j / math.factorial(j + k) for j in range(12))
    exact = (torch.expm1(z) - sum(z ** j / math.factorial(j) for j in range(1, k))) / z ** k
    return torch.where(h < 0.25, series, exact)


def _exp_weights(h: torch.Tensor, nodes: list[torch.Tensor]) -> torch.Tensor:
    """Weights w_j with ∫₀ʰ e^{w−h} P(w) dw = Σ_j w_j P(t_j) for every polynomial P of degree
    < len(nodes) (Eq. 6): the moments ∫₀ʰ e^{w−h} wⁿ dw = n! hⁿ⁺¹ φ_{n+1}(−h) matched at the nodes
    t_j (per frequency, float64). Nodes are offsets in μ from the step's start; solved in t/h."""
    q = len(nodes)
    tau = torch.stack([t / h for t in nodes], -1)                          # [..., q]
    vander = torch.stack([tau ** n for n in range(q)], -2)                 # [..., n, j]
    moments = torch.stack([math.factorial(n) * h * _phi(n + 1, h) for n in range(q)], -1)
    return torch.linalg.solve(vander, moments).movedim(-1, 0)              # [q, ...]


def _dpmpp_2m(h: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Eq. 8, DPM-Solver++(2M): weights of x̂₀ at the step's start and one step back."""
    base, r = -torch.expm1(-h), h0 / h
    return torch.stack([base * (1 + 0.5 / r), -base * (0.5 / r)])


# The quadratic of Eq. 9 extrapolates: where a frequency's step in μ is longer than 1.25 × either
# of its two previous steps (few-step grids, a blur factor that starts to move), its error
# amplification makes the relay stage unstable, and that frequency takes the 2M step instead
# (docs/solvers.md §2.2). Every smooth grid has step ratios → 1, so the order stays 3.
MAX_STEP_RATIO = 1.25


def multistep_coefficients(log_factors: torch.Tensor, sigmas: list[float], order: int, eta: float,
                           corrector: bool = False) -> list[tuple[float, torch.Tensor]]:
    """Per step i (σ_i → σ_{i+1}, i < n − 1): (a_i, T_i) with

        x_{i+1} = a_i · x_i + U⁻¹[ Σ_j T_i[j] ⊙ U x̂₀_{i−j} ] + η σ_{i+1} · fresh noise,

    log_factors: [n, p, p] float64 log d_k(σ_i) (zeros for EDM); T_i: [q_i, p, p] float64 with
    q_i = min(order, i + 1) (lower orders while the history fills; order 1 when η = 1, where no
    noise is kept). Exact for x̂₀ polynomial of degree q_i − 1 in μ_k (Eq. 5–12). corrector=True:
    the tables of the corrector (Eq. 10), which also use x̂₀_{i+1} (T_i[0]) and one node more."""
    n = len(sigmas)
    kappa = math.sqrt(max(0.0, 1 - eta ** 2))
    rho_step = -math.log(kappa) if kappa > 0 else math.inf         # Eq. 12: ρ grows by −log κ
    sig = torch.tensor(sigmas, dtype=torch.float64)
    mu = log_factors - torch.log(sig)[:, None, None]               # λ_k(σ_i), Eq. 4 (ρ added below)
    steps = []
    for i in range(n - 1):
        h = mu[i + 1] - mu[i] + rho_step                           # step in μ_k, > 0
        q = 1 if kappa == 0 else min(order, i + 1)
        past = [mu[i] - mu[i - j] + j * rho_step for j in range(q)]   # 0, H₀, H₀ + H₁, …
        if corrector and kappa > 0:
            weights = _exp_weights(h, [h] + [-t for t in past])
        elif q == 1:                                               # DDIM: h φ₁(−h) = 1 − e^{−h}
            weights = -torch.expm1(-h)[None]
        elif q == 2 and order == 2:
            weights = _dpmpp_2m(h, past[1])
        elif q == 2:                                               # dpmpp-3m warm-up (corrected)
            weights = _exp_weights(h, [-t for t in past])
        else:                                                      # Eq. 9, where it is stable
            h0, h1 = past[1], past[2] - past[1]
            stable = (h <= MAX_STEP_RATIO * h0) & (h <= MAX_STEP_RATIO * h1)
            weights = torch.where(stable, _exp_weights(h, [-t for t in past]),
                                  torch.cat([_dpmpp_2m(h, h0), torch.zeros_like(h)[None]]))
        steps.append((kappa * sigmas[i + 1] / sigmas[i], weights * torch.exp(log_factors[i + 1])))
    return steps


class FrequencyBasis:
    """Where the per-frequency tables act: the p×p patch DCT of a relay stage (p = up-scale), or
    the pixels themselves for plain EDM (p = 1, a 1×1 table)."""

    def __init__(self, p: int):
        self.p = p

    def analyse(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.p == 1 else patch_dct(x, self.p)

    def synthesise(self, u: torch.Tensor) -> torch.Tensor:
        return u if self.p == 1 else patch_idct(u, self.p)

    def combine(self, tables: torch.Tensor, coeffs: list[torch.Tensor]) -> torch.Tensor:
        """Σ_j tables[j] ⊙ coeffs[j], each [p, p] table tiled over every patch."""
        p = self.p
        out = None
        for t, u in zip(tables, coeffs):
            b, c, h, w = u.shape
            term = (u.view(b, c, h // p, p, w // p, p) * t.to(u)[None, None, None, :, None, :]).view(b, c, h, w)
            out = term if out is None else out.add_(term)
        return out
