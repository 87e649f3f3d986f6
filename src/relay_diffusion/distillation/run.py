"""`distill`: progressive distillation of one stage in rounds (docs/distillation.md), each round a
run of the training loop (`training.train`: optimizer, EMA, snapshots, resume, run lock,
processes) with the round's `DistillationLoss`.

    OUT/distill.json          what was asked (a re-run with other settings is refused)
    OUT/round-1/ …            one training run per round: config.json, log, snapshot-*/
    OUT/model/                the final student: a model directory like any other, whose
                              config.json records its σ grid (`distilled`); `rdm sample` runs it
                              with its own steps
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

from ..distributed import init_distributed, shutdown_distributed
from ..files import atomic_directory, read_json, write_json
from ..models import read_config
from ..sampling.presets import CHAIN_RECIPES, chain_recipe
from ..training.checkpoint import list_snapshots
from ..training.config import TrainConfig

MODEL_FILES = ("config.json", "model.safetensors", "ema.safetensors")


@dataclasses.dataclass
class DistillConfig:
    teacher: str = ""                  # model directory of the trained stage to distil
    data: str = ""                     # images like the teacher's training data (EDM zip or folder)
    outdir: str = ""                   # rounds and the final model (see the module's docstring)
    steps: int = 1                     # network evaluations per image of the final student (N)
    teacher_steps: int = 16            # evaluations of the first teacher on its grid: N·2^rounds
    preset: str = "fast"               # chain recipe whose σ grid the rounds halve (and whose solver
                                       # the first teacher takes; later teachers take ddim steps)
    round_images: int = 20_000         # training images per round
    batch: int = 32                    # images per optimisation step
    lr: float = 1e-4                   # Adam learning rate (no warm-up: the student starts trained)
    eps: float = 1e-8                  # Adam epsilon
    ema_halflife: int = 2_000          # EMA half-life in images
    label_dropout: float = 0.0         # for a conditional teacher: P(a sample is distilled unconditionally)
    guidance_range: tuple = ()         # (w_lo, w_hi): also distil classifier-free guidance, the scale as
                                       # the student's input (one evaluation per step at any w there;
                                       # costs accuracy near w_lo, docs/distillation.md §6)
    relay_starts: str = ""             # relay teacher: model directory of a base stage (e.g. a distilled
                                       # one) whose samples start the student's first step, so that it
                                       # learns the starts it will be given in a chain; "" = box-downsampled
                                       # training images (docs/distillation.md §5)
    seed: int = 0                      # every random draw derives from it
    status_every: int = 2_000          # images between status lines
    snapshot_every: int = 10_000       # images between snapshots (each round also ends with one)
    precision: str = "fp32"            # network math (as rdm train --precision)
    device: str = "auto"               # "auto", "cpu", "cuda", …

    def validate(self) -> "DistillConfig":
        for name in ("teacher", "data", "outdir"):
            if not getattr(self, name):
                raise ValueError(f"no {name} given (--{name})")
        if self.steps < 1 or self.teacher_steps <= self.steps:
            raise ValueError(f"need 1 ≤ steps < teacher_steps, got steps {self.steps}, teacher_steps "
                             f"{self.teacher_steps}")
        ratio = self.teacher_steps // self.steps
        if self.teacher_steps % self.steps or ratio & (ratio - 1):
            raise ValueError(f"steps {self.steps} must be the teacher's {self.teacher_steps} halved a whole number of "
                             f"times (teacher_steps = steps × 2^rounds)")
        if self.preset not in CHAIN_RECIPES:
            raise ValueError(f"unknown preset {self.preset!r}; choose from {', '.join(sorted(CHAIN_RECIPES))}")
        for name in ("round_images", "batch", "status_every", "snapshot_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.label_dropout <= 1:
            raise ValueError(f"label_dropout must be in [0, 1], got {self.label_dropout}")
        self.guidance_range = tuple(float(w) for w in self.guidance_range)
        if self.guidance_range and not (len(self.guidance_range) == 2
                                        and 0 <= self.guidance_range[0] <= self.guidance_range[1]):
            raise ValueError(f"guidance_range must be two scales w_lo ≤ w_hi, both ≥ 0, got {self.guidance_range}")
        return self

    @property
    def rounds(self) -> int:
        return (self.teacher_steps // self.steps).bit_length() - 1


def teacher_grid(cfg: DistillConfig) -> tuple[list[float], str]:
    """The first teacher's σ grid (teacher_steps σ's of the preset's grid for this stage) and its solver."""
    teacher = read_config(cfg.teacher)
    if teacher.distilled:
        raise ValueError(f"{cfg.teacher} is itself distilled; give the model it was distilled from")
    recipe = chain_recipe(cfg.preset, [teacher.kind.settings])[0]
    settings = recipe.with_overrides({"num_steps": cfg.teacher_steps})
    grid = settings.sigmas(teacher.schedule).tolist()
    if len(grid) != cfg.teacher_steps:
        raise ValueError(f"the {cfg.preset} recipe's grid for a {teacher.stage} stage has {len(grid)} σ's at "
                         f"num_steps {cfg.teacher_steps}, not {cfg.teacher_steps}")
    solver = recipe.solver if recipe.solver != "heun" else "ddim-pc"
    return grid, solver


def round_config(cfg: DistillConfig, k: int, teacher: str, grid: list[float], solver: str) -> TrainConfig:
    """Round k's training run (1-based): the teacher's grid halved k − 1 times. Stage, resolution
    and network come from the teacher; `cond` is stated here too so that the run's own checks
    (label dropout needs a conditional model) see the teacher's."""
    cond = read_config(teacher).label_dim > 0
    teacher = str(Path(teacher).resolve())
    return TrainConfig(data=cfg.data, outdir=str(Path(cfg.outdir) / f"round-{k}"), duration=cfg.round_images,
                       cond=cond,
                       batch=cfg.batch, lr=cfg.lr, eps=cfg.eps, lr_rampup=0, ema_halflife=cfg.ema_halflife, ema_rampup=0.0,
                       label_dropout=cfg.label_dropout, guidance_range=tuple(cfg.guidance_range),
                       seed=cfg.seed + k - 1, status_every=cfg.status_every,
                       snapshot_every=cfg.snapshot_every, sample_every=0, keep_snapshots=2,
                       precision=cfg.precision, device=cfg.device, dropout=0.0, teacher=teacher,
                       relay_starts=str(Path(cfg.relay_starts).resolve()) if cfg.relay_starts else "",
                       teacher_grid=tuple(grid[::2 ** (k - 1)]), teacher_solver=solver if k == 1 else "ddim")


def distill(cfg: DistillConfig, echo=print) -> Path:
    """Run (or resume) every round; returns the final model directory, OUT/model. Under torchrun
    every process runs it; the process group is joined once for all rounds."""
    cfg.validate()
    d, _ = init_distributed(cfg.device)
    try:
        return _distill(cfg, d, echo if d.is_main else (lambda s: None))
    finally:
        shutdown_distributed()


def _distill(cfg: DistillConfig, d, echo) -> Path:
    from ..training.loop import prepare, train

    out = Path(cfg.outdir)
    record = out / "distill.json"
    if record.exists() and _comparable(read_json(record, "distillation config")) != _comparable(_record(cfg)):
        raise ValueError(f"{out} holds a distillation with other settings; resume it with the same command "
                         "or choose a new --outdir")
    grid, solver = teacher_grid(cfg)
    teacher = read_config(cfg.teacher)
    if (cfg.label_dropout or cfg.guidance_range) and not teacher.label_dim:
        raise ValueError("--label-dropout and --guidance-range need a class-conditional teacher")
    prepare(round_config(cfg, 1, cfg.teacher, grid, solver))       # data, classes, sizes: before writing
    if d.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(record, _record(cfg))
    source = cfg.teacher
    for k in range(1, cfg.rounds + 1):
        rc = round_config(cfg, k, source, grid, solver)
        echo(f"round {k} of {cfg.rounds}: {len(rc.teacher_grid)} teacher σ's ({rc.teacher_solver}) → "
             f"{len(rc.teacher_grid) // 2} student steps")
        train(rc, echo=echo)
        source = str(list_snapshots(rc.outdir)[-1])
    final = out / "model"
    if d.is_main:
        with atomic_directory(final) as tmp:
            for name in MODEL_FILES:
                if (Path(source) / name).exists():
                    shutil.copy2(Path(source) / name, tmp / name)
    d.barrier()
    echo(f"wrote {final}: {cfg.steps} evaluation(s) per image")
    return final


PATH_FIELDS = ("teacher", "data", "outdir", "relay_starts")


def _resolved(record: dict) -> dict:
    return {**record, **{k: str(Path(record[k]).resolve()) for k in PATH_FIELDS if record.get(k)}}


def _record(cfg: DistillConfig) -> dict:
    """distill.json: the config, its paths absolute (a resume from another folder is the same run)."""
    return _resolved({k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()})


def _comparable(record: dict) -> dict:
    """A record without the fields a resume may change (as rdm train: where snapshots and status
    lines fall, the device) and with its paths resolved; a record from before relay_starts existed
    had none."""
    out = {k: v for k, v in record.items() if k not in ("status_every", "snapshot_every", "device")}
    return _resolved({"relay_starts": "", **out})
