"""Sampler settings: the single home of every sampler default, and the one table of their names.

Each field carries its entry (`setting`): the help text, the official code's names, the CLI flag.
From that table come the official-name aliases (`ALIASES`), the names in error messages, the
per-stage flags of `rdm sample` / `eval` / `demo` and `rdm analyze schedule`, and the config
fields of the diffusers scheduler. Each sampler function takes a settings object (`settings=`)
and/or individual fields (or official names) as keywords (docs/method.md §11)."""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import torch

from ..relay import RelaySchedule
from .grids import RELAY_GRIDS, karras_sigmas, relay_grid
from .solvers import SOLVERS, nfe

CORRECTORS = ("noise", "denoised")


def setting(default, help: str, *, official: tuple = (), flag: str | None = None, flag_aliases: tuple = (),
            choices: tuple | None = None, scheduler: bool = True):
    """A settings field with its table entry. help: one line (CLI, docs); official: the official
    code's names for it (accepted as keywords and flags); flag: the CLI flag's name (default: the
    field's); flag_aliases: more flag spellings; choices: the allowed values of a name field;
    scheduler: a config field of the diffusers scheduler (guidance is the pipeline's instead)."""
    return dataclasses.field(default=default, metadata=dict(help=help, official=tuple(official), flag=flag,
                                                            flag_aliases=tuple(flag_aliases), choices=choices,
                                                            scheduler=scheduler))


def field_label(cls, name: str, what: str = "") -> str:
    """A field's name for messages, with what it is and its official names: e.g. field_label(
    RelaySamplerSettings, "eta", "η") = "eta (η; official: s_noise)"."""
    field = next((f for f in dataclasses.fields(cls) if f.name == name), None)
    official = field.metadata.get("official", ()) if field is not None else ()
    notes = [what] * bool(what) + [f"official: {', '.join(official)}"] * bool(official)
    return f"{name} ({'; '.join(notes)})" if notes else name


def _check_solver_name(solver: str) -> None:
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")


def _check_numbers(settings, may_be_infinite: tuple = ()) -> None:
    """Every numeric field is a number, not NaN, and finite unless named in may_be_infinite
    (NaN passes every range test further down, so it is caught here by name)."""
    for f in dataclasses.fields(settings):
        v = getattr(settings, f.name)
        if v is None or isinstance(v, str):
            continue
        name = field_label(type(settings), f.name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ValueError(f"{name} must be a number, got {v!r}")
        if math.isnan(v) or (math.isinf(v) and f.name not in may_be_infinite):
            raise ValueError(f"{name} must be finite, got {v}")


def _check_eta(settings) -> None:
    if not 0 <= settings.eta <= 1:
        raise ValueError(f"{field_label(type(settings), 'eta', 'η')} must be in [0, 1], got {settings.eta}")
    if settings.corrector not in CORRECTORS:
        raise ValueError(f"corrector must be one of {CORRECTORS}, got {settings.corrector!r}")
    if settings.corrector != "noise" and settings.solver != "heun":
        raise ValueError(f"corrector applies to solver='heun' only, got solver={settings.solver!r}")


class _Settings:
    """What both settings classes share: official-name aliases and validated overrides."""

    ALIASES: ClassVar[dict] = {}             # official name → field, made from the table below each class

    @classmethod
    def _make_aliases(cls) -> None:
        cls.ALIASES = {old: f.name for f in dataclasses.fields(cls) for old in f.metadata.get("official", ())}

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

    num_steps: int = setting(18, "nominal σ-grid size (truncated: before truncation; rho, lambda: σ's run)",
                             flag="steps")
    sigma_min: float = setting(0.008, "smallest σ; the sampler returns D(x; σ_min)")
    sigma_max: float = setting(80.0, "top of the nominal grid (truncated grid only)")
    rho: float = setting(7.0, "grid exponent ρ (EDM Eq. 5)")
    truncation_sigma: float = setting(0.9, "start: keep only σ below this (truncated), else σ₀ = this")
    prob_length: float | None = setting(None, "L of the sampler's u(σ) (default: the model's)",
                                        official=("truncation_t",))
    eta: float = setting(0.2, "η, the fresh-noise fraction per step (paper Table 3: 0.2)", official=("s_noise",))
    block_scale: float | None = setting(None, "α of the injected block noise (default: the model's)",
                                        official=("s_block",))
    corrector: str = setting("noise", "Heun corrector: noise (official) or denoised (2nd order)",
                             choices=CORRECTORS)
    solver: str = setting("heun", f"{', '.join(SOLVERS)} (heun = official; docs/solvers.md)", choices=SOLVERS)
    sigma_grid: str = setting("truncated", f"{', '.join(RELAY_GRIDS)}: the official truncated grid, or --steps "
                                           "σ's from truncation_sigma down (ρ-spaced / uniform in λ)",
                              choices=RELAY_GRIDS)
    lambda_frequency: float = setting(0.0, "lambda grid: patch-DCT frequency radius whose λ is uniform (0 = DC)")
    # applied by the caller's guidance wrapper (RelayChain does), not by the sampler
    cfg_scale: float = setting(1.0, "classifier-free guidance weight w (1 = off)", flag_aliases=("--cfg",),
                               scheduler=False)

    def __post_init__(self):
        _check_numbers(self)
        _check_solver_name(self.solver)
        if self.prob_length is not None and not 0 < self.prob_length <= 2:
            label = field_label(type(self), "prob_length", "the sampler's L")
            raise ValueError(f"{label} must be in (0, 2], "
                             f"got {self.prob_length}")
        if self.sigma_grid not in RELAY_GRIDS:
            raise ValueError(f"sigma_grid must be one of {RELAY_GRIDS}, got {self.sigma_grid!r}")
        _check_eta(self)
        if self.block_scale is not None and self.block_scale < 0:
            raise ValueError(f"{field_label(type(self), 'block_scale')} must be >= 0, got {self.block_scale}")

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

    method: str = setting("edm", "edm (Heun + churn) or sde (DDIM-η Heun)", choices=("edm", "sde"))
    num_steps: int = setting(18, "σ-grid size", flag="steps")
    sigma_min: float = setting(0.002, "last σ before the final step")
    sigma_max: float = setting(80.0, "start σ (pure noise)")
    rho: float = setting(7.0, "grid exponent ρ (EDM Eq. 5)")
    S_churn: float = setting(0.0, "total churn S_churn (method edm)", flag="churn")
    S_min: float = setting(0.0, "churn only for σ ≥ S_min (method edm)", flag="churn_min")
    S_max: float = setting(float("inf"), "churn only for σ ≤ S_max (method edm)", flag="churn_max")
    S_noise: float = setting(1.0, "noise inflation S_noise of the churn (method edm)", flag="churn_noise")
    eta: float = setting(0.05, "η, the fresh-noise fraction per step (method sde)", official=("sde_scale",))
    corrector: str = setting("noise", "Heun corrector of method sde: noise (official) or denoised",
                             choices=CORRECTORS)
    solver: str = setting("heun", "heun (EDM's / official) or an exponential integrator (method edm: "
                                  "deterministic; sde: η = eta)", choices=SOLVERS)
    # applied by the caller's guidance wrapper (RelayChain does), not by the sampler
    cfg_scale: float = setting(1.0, "classifier-free guidance weight w (1 = off)", flag_aliases=("--cfg",),
                               scheduler=False)

    def __post_init__(self):
        if self.method not in ("edm", "sde"):
            raise ValueError(f"base sampler method must be 'edm' or 'sde', got {self.method!r}")
        _check_numbers(self, may_be_infinite=("S_min", "S_max"))
        _check_solver_name(self.solver)
        if self.S_churn < 0 or self.S_noise < 0:
            raise ValueError(f"S_churn and S_noise must be finite and >= 0, got {self.S_churn}, {self.S_noise}")
        if self.S_churn > 0 and self.solver != "heun":
            raise ValueError(f"S_churn applies to solver='heun' only, got solver={self.solver!r}")
        _check_eta(self)
        if self.method == "edm" and self.corrector != "noise":
            raise ValueError("corrector applies to method 'sde' only (EDM's Heun has one corrector)")

    def sigmas(self, schedule=None) -> torch.Tensor:
        """The σ grid (EDM Eq. 5); `schedule` is accepted for symmetry with the relay settings."""
        return karras_sigmas(self.num_steps, self.sigma_min, self.sigma_max, self.rho)

    def nfe(self, schedule=None) -> int:
        """Denoiser calls per image (each is two network evaluations under guidance)."""
        return nfe(self.solver, self.num_steps)


for _cls in (RelaySamplerSettings, BaseSamplerSettings):
    _cls._make_aliases()
