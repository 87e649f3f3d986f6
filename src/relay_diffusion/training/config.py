"""Training configuration: one dataclass, serialised to `config.json` in every run directory.

Durations and intervals are counted in training images (EDM's "kimg", but plain integers), so
they do not change when the batch size does.
"""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Optional

from ..stages import STAGE_KINDS
from ..networks.runtime import PRECISIONS
from ..relay import RelaySchedule

OPTIMIZERS = ("adam", "adamw")
ALIASES = {"truncate_sigma": "train_sigma_min"}       # official name → ours
RETIRED = ("workers",)                                 # read from older run configs and ignored
# RelaySchedule fields that a flat config (older runs, presets, flags) may set; P_mean and P_std
# are TrainConfig's own
SCHEDULE_FIELDS = tuple(f.name for f in dataclasses.fields(RelaySchedule) if f.name not in ("P_mean", "P_std"))


@dataclasses.dataclass
class TrainConfig:
    # what to train
    stage: str = "base"                  # a kind of stages.STAGE_KINDS: base (EDM loss from pure noise)
                                         # or relay (blur + noise loss)
    data: str = ""                       # EDM zip or image folder (see `rdm dataset`)
    outdir: str = ""                     # run directory: config, stats, samples, snapshots
    network: str = "tiny-32"             # network preset (relay_diffusion.networks.NETWORK_PRESETS)
    resolution: Optional[int] = None     # train at this size; None = the dataset's. A smaller size
                                         # divides the data size and is made by box averaging
    cond: bool = False                   # class-conditional (needs dataset labels)
    # optimisation
    duration: int = 1_000_000            # training images in total
    batch: int = 64                      # total batch over all processes and accumulation rounds
    batch_gpu: Optional[int] = None      # per-process micro-batch; None = batch / processes
    lr: float = 1e-3                     # peak learning rate
    lr_rampup: int = 100_000             # images of linear learning-rate warm-up (EDM: 10M)
    optimizer: str = "adam"              # "adam" (EDM/RDM) or "adamw"
    weight_decay: float = 0.0            # AdamW decoupled weight decay
    betas: tuple = (0.9, 0.999)          # Adam betas
    eps: float = 1e-8                    # Adam epsilon
    grad_clip: float = 0.0               # max gradient norm; 0 = off
    ema_halflife: int = 50_000           # EMA half-life in images (RDM stage 2: 500k; EDM IN-64: 50M)
    ema_rampup: float = 0.05             # half-life ≤ this × images seen (EDM's ramp-up)
    dropout: Optional[float] = None      # network dropout; None = the network preset's
    label_dropout: float = 0.0           # P(train a sample unconditionally), for CFG
    xflip: bool = False                  # random horizontal flips (dataset doubled, as EDM)
    # diffusion (EDM constants; the relay stage's forward process of paper §3.3)
    sigma_data: float = 0.5              # σ_d of images in [−1, 1]
    P_mean: float = -1.2                 # ln σ ~ N(P_mean, P_std²) (both stages; the schedule's follow)
    P_std: float = 1.2
    schedule: RelaySchedule = dataclasses.field(default_factory=RelaySchedule)
                                         # relay: blur, block noise, L (docs/method.md §3); ImageNet
                                         # values by default
    train_sigma_min: float = 7.5e-3      # relay: smallest trained σ (official: truncate_sigma)
    # distillation (docs/distillation.md): one round of progressive distillation when teacher is set
    teacher: str = ""                    # the teacher's model directory ("" = ordinary training); its
                                         # stage, network, classes and schedule are the student's
    teacher_grid: tuple = ()             # the teacher's σ's this round (2N); the student takes every other
    teacher_solver: str = "ddim"         # the teacher's steps (Eq. D5): its best solver in round 1
    guidance_range: tuple = ()           # (w_lo, w_hi): the student also learns guided sampling at any w
                                         # there, as an input (Eq. D6); () = no guidance distillation
    relay_starts: str = ""               # relay distillation: model directory of the base stage whose samples
                                         # start the student's first step ("" = the box-downsampled images)
    # execution
    precision: str = "fp32"              # network math: "fp32", "bf16" (CUDA or CPU) or "fp16" (CUDA) autocast,
                                         # or "auto" (bf16 where the hardware has it, else fp32)
    channels_last: bool = False          # NHWC weights and activations (docs/speed.md)
    compile: bool = False                # torch.compile the network
    seed: int = 0                        # every random draw derives from it (per step and sample)
    cache: bool = True                   # hold the dataset in memory as uint8 when it fits in 4 GiB
    status_every: int = 10_000           # images between status lines / stats.jsonl records
    snapshot_every: int = 100_000        # images between snapshots (model + training state)
    sample_every: int = 100_000          # images between sample grids (0 = never)
    keep_snapshots: int = 3              # keep the newest k snapshots
    device: str = "auto"                 # "auto" (CUDA if present), "cpu", "cuda", "cuda:1", …

    def __post_init__(self):
        if isinstance(self.schedule, dict):
            self.schedule = RelaySchedule(**self.schedule)
        if not isinstance(self.schedule, RelaySchedule):
            raise TypeError(f"schedule must be a RelaySchedule, got {type(self.schedule).__name__}")
        if (self.schedule.P_mean, self.schedule.P_std) != (self.P_mean, self.P_std):
            self.schedule = dataclasses.replace(self.schedule, P_mean=self.P_mean, P_std=self.P_std)

    # fields that may change when a run is resumed
    RESUMABLE_CHANGES = ("duration", "status_every", "snapshot_every", "sample_every",
                         "keep_snapshots", "cache", "device", "compile", "channels_last")

    def validate(self) -> "TrainConfig":
        def need(cond, msg):
            if not cond:
                raise ValueError(msg)
        need(self.stage in STAGE_KINDS, f"stage must be one of {tuple(STAGE_KINDS)}, got {self.stage!r}")
        need(bool(self.data), "no dataset given (--data)")
        need(bool(self.outdir), "no output directory given (--outdir)")
        need(self.precision in PRECISIONS, f"precision must be one of {PRECISIONS}")
        need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}")
        for name in ("duration", "batch", "lr_rampup", "status_every", "snapshot_every"):
            need(getattr(self, name) >= (0 if name == "lr_rampup" else 1), f"{name} must be positive")
        need(self.batch_gpu is None or self.batch_gpu >= 1, "batch_gpu must be positive")
        need(self.lr > 0, "lr must be > 0")
        need(self.ema_halflife >= 0, "ema_halflife must be >= 0")
        need(self.keep_snapshots >= 1, "keep_snapshots must be >= 1")
        need(0 <= self.label_dropout <= 1, "label_dropout must be in [0, 1]")
        need(self.label_dropout == 0 or self.cond, "label_dropout needs a conditional model (--cond)")
        need(self.resolution is None or self.resolution >= 1, "resolution must be positive")
        if self.teacher:
            need(len(self.teacher_grid) >= 2 and len(self.teacher_grid) % 2 == 0,
                 f"a distillation round needs an even teacher grid of ≥ 2 σ's, got {len(self.teacher_grid)}")
            need(not self.teacher_solver.startswith("heun") and self.teacher_solver != "heun",
                 "the teacher's solver must take one evaluation per σ (ddim, ddim-pc, dpmpp-2m-pc, …)")
        need(not self.guidance_range or bool(self.teacher), "guidance_range is for distillation (needs teacher)")
        need(not self.relay_starts or bool(self.teacher), "relay_starts is for distillation (needs teacher)")
        need(not self.guidance_range or (len(self.guidance_range) == 2
                                         and 0 <= self.guidance_range[0] <= self.guidance_range[1]),
             f"guidance_range must be two scales w_lo ≤ w_hi, both ≥ 0, got {self.guidance_range}")
        return self

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """A config from JSON-like values. Also reads the flat relay fields of older run configs
        and presets (up_scale, block_scale, …: into `schedule`) and the official name
        truncate_sigma (= train_sigma_min)."""
        d = dict(d)
        for old, new in ALIASES.items():
            if old in d:
                if new in d:
                    raise ValueError(f"{old} is another name for {new}; give it once")
                d[new] = d.pop(old)
        for name in RETIRED:
            d.pop(name, None)
        schedule = d.pop("schedule", None) or RelaySchedule()
        if isinstance(schedule, dict):
            schedule = RelaySchedule(**schedule)
        flat = {k: d.pop(k) for k in list(d) if k in SCHEDULE_FIELDS}
        if flat:
            schedule = dataclasses.replace(schedule, **flat)
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown training option(s): {', '.join(unknown)}")
        for name in ("betas", "teacher_grid", "guidance_range"):
            if name in d:
                d[name] = tuple(d[name])
        return cls(schedule=schedule, **d)

    def differences(self, other: "TrainConfig") -> list:
        """Names of fields that differ and may not change on resume."""
        a, b = dataclasses.asdict(self), dataclasses.asdict(other)
        return [k for k in a if a[k] != b[k] and k not in self.RESUMABLE_CHANGES]


_SUFFIX = {"": 1, "k": 10 ** 3, "m": 10 ** 6, "g": 10 ** 9, "ki": 2 ** 10, "mi": 2 ** 20, "gi": 2 ** 30}


def parse_images(text: str | int) -> int:
    """'200000', '200k', '1.5M', '64Ki' → number of images."""
    if isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([kKmMgG]i?)?\s*", str(text))
    if not m:
        raise ValueError(f"not an image count: {text!r} (examples: 200000, 200k, 1.5M, 64Ki)")
    value = float(m.group(1)) * _SUFFIX[(m.group(2) or "").lower()]
    if value != int(value):
        raise ValueError(f"image count must be a whole number: {text!r}")
    return int(value)
