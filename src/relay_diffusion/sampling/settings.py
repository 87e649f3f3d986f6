"""Sampler settings: the single home of every sampler default. Each sampler function takes a
settings object (`settings=`) and/or individual fields as keywords; the official code's names are
accepted as aliases (`RelaySamplerSettings.ALIASES`, table in docs/method.md §11)."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from ..relay import RelaySchedule
from .grids import RELAY_GRIDS, karras_sigmas, relay_grid
from .solvers import SOLVERS, nfe

CORRECTORS = ("noise", "denoised")


def _check_solver_name(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")


def _check_numbers(settings, may_be_infinite: tuple = ()) -> None:
    """Every numeric field is a number, not NaN, and finite unless named in may_be_infinite
    (NaN passes every range test further down, so it is caught here by name)."""
    official = {new: old for old, new in getattr(settings, "ALIASES", {}).items()}
    for f in dataclasses.fields(settings):
        v = getattr(settings, f.name)
        if v is None or isinstance(v, str):
            continue
        name = f"{f.name} (official: {official[f.name]})" if f.name in official else f.name
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{name} must be a number, got {v!r}")
        if math.isnan(v) or (math.isinf(v) and f.name not in may_be_infinite):
            raise ValueError(f"{name} must be finite, got {v}")


def _check_eta(eta: float, corrector: str, solver: str) -> None:
    if not 0 <= eta <= 1:
        raise ValueError(f"eta (η; official: s_noise, sde_scale) must be in [0, 1], got {eta}")
    if corrector not in CORRECTORS:
        raise ValueError(f"corrector must be one of {CORRECTORS}, got {corrector!r}")
    if corrector != "noise" and solver != "heun":
        raise ValueError(f"corrector applies to solver='heun' only, got solver={solver!r}")


class _Settings:
    """What both settings classes share: official-name aliases and validated overrides."""

    ALIASES: ClassVar[dict] = {}

    @classmethod
    def from_dict(cls, values: dict):
        """Settings from a dict of field names or official aliases (e.g. a stored record)."""
        return cls().with_overrides(values)

    def with_overrides(self, overrides: dict):
        """A copy with fields replaced (by name or official alias), validated."""
        names = {f.name for f in dataclasses.fields(self)}
        out = {}
        for key, value in overrides.items():
            name = self.ALIASES.get(key, key)
            if name not in names:
                raise TypeError(f"{type(self).__name__} has no setting {key!r}; settings: {', '.join(sorted(names))}"
                                + (f"; official aliases: {', '.join(self.ALIASES)}" if self.ALIASES else ""))
            if name in out:
                raise TypeError(f"{key!r} is another name for {name!r}; give it once")
            out[name] = value
        return dataclasses.replace(self, **out)


@dataclasses.dataclass(frozen=True)
class RelaySamplerSettings(_Settings):
    """Settings of `relay_sampler`, and the guidance weight a chain wraps around its denoiser."""

    ALIASES: ClassVar[dict] = {"s_noise": "eta", "s_block": "block_scale", "truncation_t": "prob_length"}

    num_steps: int = 18               # grid size: nominal EDM grid before truncation ("truncated"),
                                      # σ's run ("rho", "lambda")
    sigma_min: float = 0.008          # last σ; the sampler returns D(x; σ_min)
    sigma_max: float = 80.0           # top of the nominal grid ("truncated" only)
    rho: float = 7.0                  # grid exponent (EDM Eq. 5)
    truncation_sigma: float = 0.9     # start: keep only σ < this ("truncated"), else σ₀ = this
    prob_length: float | None = None  # L of the sampler's u(σ) (official: truncation_t); None = the model's
    eta: float = 0.2                  # η: fresh-noise fraction per step (official: s_noise; paper Table 3: 0.2)
    block_scale: float | None = None  # α of the injected block noise (official: s_block); None = the model's
    corrector: str = "noise"          # Heun corrector: "noise" (official) or "denoised" (2nd order)
    solver: str = "heun"              # "heun" (official) or an exponential integrator (solvers.py)
    sigma_grid: str = "truncated"     # "truncated" (official), "rho" or "lambda" (grids.relay_grid)
    lambda_frequency: float = 0.0     # "lambda" grid: patch-DCT frequency radius whose λ is uniform
    cfg_scale: float = 1.0            # classifier-free guidance weight w (1 = off); applied by the
                                      # caller's guidance wrapper (RelayChain does), not by the sampler

    def __post_init__(self):
        _check_numbers(self)
        _check_solver_name(self.solver)
        if self.prob_length is not None and not 0 < self.prob_length <= 2:
            raise ValueError(f"prob_length (the sampler's L; official: truncation_t) must be in (0, 2], "
                             f"got {self.prob_length}")
        if self.sigma_grid not in RELAY_GRIDS:
            raise ValueError(f"sigma_grid must be one of {RELAY_GRIDS}, got {self.sigma_grid!r}")
        _check_eta(self.eta, self.corrector, self.solver)
        if self.block_scale is not None and self.block_scale < 0:
            raise ValueError(f"block_scale (official: s_block) must be >= 0, got {self.block_scale}")

    def sampling_schedule(self, schedule: RelaySchedule) -> RelaySchedule:
        """The forward process the sampler follows: the model's, with the settings' own L
        (prob_length) and injected α (block_scale) where set."""
        sch = schedule.for_sampling(self.prob_length)
        return sch if self.block_scale is None else dataclasses.replace(sch, block_scale=self.block_scale)

    def sigmas(self, schedule: RelaySchedule | None = None) -> torch.Tensor:
        """The σ's run; the "lambda" grid needs the model's schedule (for the sampler's u(σ))."""
        return relay_grid(self.sigma_grid, self.num_steps, self.sigma_min, self.sigma_max, self.rho,
                          self.truncation_sigma, schedule and schedule.for_sampling(self.prob_length),
                          self.lambda_frequency)

    def nfe(self, schedule: RelaySchedule | None = None) -> int:
        """Denoiser calls per image (each is two network evaluations under guidance)."""
        return nfe(self.solver, len(self.sigmas(schedule)))


@dataclasses.dataclass(frozen=True)
class BaseSamplerSettings(_Settings):
    """Settings of the stage-1 samplers: EDM's stochastic Heun (`edm_sampler`, method "edm") or the
    DDIM-η Heun of the official CelebA-HQ stage 1 (`sde_heun_sampler`, method "sde")."""

    ALIASES: ClassVar[dict] = {"sde_scale": "eta"}

    method: str = "edm"               # "edm" (Heun + churn) or "sde" (DDIM-η Heun)
    num_steps: int = 18               # grid size
    sigma_min: float = 0.002          # last σ before the final step
    sigma_max: float = 80.0           # start σ (pure noise)
    rho: float = 7.0                  # grid exponent (EDM Eq. 5)
    S_churn: float = 0.0              # edm: total churn
    S_min: float = 0.0                # edm: churn only for σ in [S_min, S_max]
    S_max: float = float("inf")
    S_noise: float = 1.0              # edm: noise inflation of the churn
    eta: float = 0.05                 # sde: η, fresh-noise fraction per step (official: sde_scale)
    corrector: str = "noise"          # sde, heun: "noise" (official) or "denoised"
    solver: str = "heun"              # "heun" (EDM / official) or an exponential integrator;
                                      # with "edm" deterministic (no churn), with "sde" η = eta
    cfg_scale: float = 1.0            # classifier-free guidance weight w (1 = off); applied by the
                                      # caller's guidance wrapper (RelayChain does), not by the sampler

    def __post_init__(self):
        if self.method not in ("edm", "sde"):
            raise ValueError(f"base sampler method must be 'edm' or 'sde', got {self.method!r}")
        _check_numbers(self, may_be_infinite=("S_min", "S_max"))
        _check_solver_name(self.solver)
        if self.S_churn < 0 or self.S_noise < 0:
            raise ValueError(f"S_churn and S_noise must be finite and >= 0, got {self.S_churn}, {self.S_noise}")
        if self.S_churn > 0 and self.solver != "heun":
            raise ValueError(f"S_churn applies to solver='heun' only, got solver={self.solver!r}")
        _check_eta(self.eta, self.corrector, self.solver)
        if self.method == "edm" and self.corrector != "noise":
            raise ValueError("corrector applies to method 'sde' only (EDM's Heun has one corrector)")

    def sigmas(self) -> torch.Tensor:
        return karras_sigmas(self.num_steps, self.sigma_min, self.sigma_max, self.rho)

    def nfe(self, schedule=None) -> int:
        """Denoiser calls per image (each is two network evaluations under guidance)."""
        return nfe(self.solver, self.num_steps)
