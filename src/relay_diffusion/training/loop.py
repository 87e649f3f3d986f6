"""The training loop for base (EDM) and relay stages: CPU, one GPU, or many processes (DDP).

Determinism: the images of step k, every sample's noise (seeded by (seed, step, position in the
global batch)) and the dropout masks (seeded by (seed, step, rank, round)) depend only on the
configuration, so an interrupted run resumed from its last snapshot ends bit-identical to an
uninterrupted one, and N processes with batch b each train like one process with batch N·b.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import json
import math
import time
from pathlib import Path

import torch

from ..data import ImageDataset
from ..distributed import Dist, init_distributed, shutdown_distributed
from ..data.labels import one_hot
from ..pixels import save_image_grid
from ..networks import NETWORK_PRESETS, count_parameters
from ..networks.runtime import RuntimeOptions
from ..precond import EDMPrecond
from ..relay import RelaySchedule, upsample_nearest
from ..distillation.loss import DistillationLoss, sampled_starts
from ..distillation.targets import StepFrame
from ..models import ModelConfig, RelayModel, read_config
from ..pipeline import RelayChain
from ..seeds import SeededNoise
from ..stages import stage_kind
from .batches import BatchSchedule, ImageSource, mix_seed
from .checkpoint import list_snapshots, load_snapshot, save_snapshot
from .config import TrainConfig
from .rundir import RunLock, check_resume, record_run


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must act on (e.g. a non-finite loss)."""


# --------------------------------------------------------------------------------------------
# Set-up: everything derived from the config and the dataset, checked before any training.


@dataclasses.dataclass
class Setup:
    cfg: TrainConfig
    dataset: object
    resolution: int
    channels: int
    label_dim: int
    network_config: object
    schedule: RelaySchedule | None

    @property
    def model_config(self) -> ModelConfig:
        """What a snapshot's config.json says (models.ModelConfig)."""
        names = getattr(self.dataset, "label_names", None) if self.label_dim else None
        return ModelConfig(self.cfg.stage, self.resolution, self.channels, self.network_config, self.label_dim,
                           self.cfg.sigma_data, self.schedule, distilled=self.distilled,
                           class_names=list(names) if names and len(names) == self.label_dim else None)

    @property
    def distilled(self) -> dict | None:
        """A distillation round's record for the student's config.json: the σ grid it samples on
        with `ddim` steps, and its teacher."""
        if not self.cfg.teacher:
            return None
        record = {"grid": list(self.cfg.teacher_grid[::2]), "solver": "ddim",        # the student's steps (Eq. D1)
                  "teacher": str(Path(self.cfg.teacher).resolve()),
                  "teacher_grid": list(self.cfg.teacher_grid), "teacher_solver": self.cfg.teacher_solver}
        if self.cfg.relay_starts:
            record["relay_starts"] = str(Path(self.cfg.relay_starts).resolve())
        return {**record, "guidance": list(self.cfg.guidance_range)} if self.cfg.guidance_range else record


def prepare(cfg: TrainConfig, dataset=None) -> Setup:
    """Resolve the config against the dataset (opened from cfg.data unless given); raise
    ValueError on anything inconsistent."""
    cfg.validate()
    if cfg.teacher:                                  # a distillation round: the student is the teacher's
        teacher = read_config(cfg.teacher)
        sch = teacher.schedule or cfg.schedule         # P_mean/P_std too: they shape the schedule's u(σ)
        cfg = dataclasses.replace(cfg, stage=teacher.stage, resolution=teacher.resolution, cond=teacher.label_dim > 0,
                                  schedule=sch, P_mean=sch.P_mean, P_std=sch.P_std, sigma_data=teacher.sigma_data)
    if not cfg.teacher and cfg.network not in NETWORK_PRESETS:
        raise ValueError(f"unknown network preset {cfg.network!r}; choose from {', '.join(sorted(NETWORK_PRESETS))}")
    dataset = dataset if dataset is not None else ImageDataset(cfg.data)
    data_res = dataset.resolution
    res = cfg.resolution or data_res
    if res > data_res or data_res % res:
        raise ValueError(f"training resolution {res} must divide the dataset resolution {data_res} "
                         f"(smaller sizes are made by {data_res // max(res, 1)}×{data_res // max(res, 1)} box averaging)")
    if cfg.cond and not dataset.has_labels:
        raise ValueError(f"--cond needs class labels, but {cfg.data} has none")
    label_dim = dataset.label_dim if cfg.cond else 0
    kind = stage_kind(cfg.stage)
    schedule = cfg.schedule if kind.continues else None
    if schedule is not None:
        if res % schedule.up_scale:
            raise ValueError(f"{cfg.stage} resolution {res} is not divisible by up_scale {schedule.up_scale}")
    kind.loss(cfg, schedule)                                            # validates prob_length etc.
    ncfg = NETWORK_PRESETS[cfg.network].with_data(res, dataset.num_channels, label_dim)
    if cfg.teacher:
        ncfg = teacher.network
        if cfg.guidance_range:
            if not teacher.label_dim:
                raise ValueError("guidance distillation (guidance_range) needs a class-conditional teacher")
            ncfg = dataclasses.replace(ncfg, guidance_embed=True)
        if (teacher.channels, teacher.label_dim) != (dataset.num_channels, label_dim):
            raise ValueError(f"the teacher makes {teacher.channels}-channel images with {teacher.label_dim} classes; "
                             f"{cfg.data} has {dataset.num_channels} channels and {label_dim} classes")
        if cfg.relay_starts:
            check_relay_starts(cfg.relay_starts, teacher)
    if cfg.dropout is not None:
        ncfg = dataclasses.replace(ncfg, dropout=cfg.dropout)
    return Setup(cfg, dataset, res, dataset.num_channels, label_dim, ncfg, schedule)


def check_relay_starts(model_dir: str, teacher) -> None:
    """A base stage whose samples can start the relay teacher `teacher` (a ModelConfig)."""
    if not teacher.kind.continues:
        raise ValueError(f"--relay-starts is for distilling a relay stage; the teacher is a {teacher.stage} stage")
    base = read_config(model_dir)
    if base.kind.continues:
        raise ValueError(f"--relay-starts {model_dir}: a {base.stage} stage; give a stage that starts from noise")
    want = (teacher.input_resolution, teacher.channels, teacher.label_dim)
    if (base.resolution, base.channels, base.label_dim) != want:
        raise ValueError(f"--relay-starts {model_dir} makes {base.resolution}×{base.resolution} images with "
                         f"{base.channels} channels and {base.label_dim} classes; the relay teacher starts from "
                         f"{want[0]}×{want[0]} with {want[1]} channels and {want[2]} classes")


def _loss_fn(setup: Setup, teacher: RelayModel | None = None, device=None):
    if teacher is None:
        return stage_kind(setup.cfg.stage).loss(setup.cfg, setup.schedule)
    cfg = setup.cfg
    starts = None
    if cfg.relay_starts:                             # §5: the relay starts from a base stage's samples
        starts = sampled_starts(RelayModel.from_pretrained(cfg.relay_starts, "ema", device))
    return DistillationLoss(StepFrame.of_teacher(teacher.config, cfg.teacher_solver), teacher.denoiser,
                            cfg.teacher_grid, cfg.label_dropout, tuple(cfg.guidance_range),
                            teacher.config.network.guidance_embed, starts)


# --------------------------------------------------------------------------------------------
# Logging.


class Logger:
    def __init__(self, outdir: Path, enabled: bool, echo=print):
        self.enabled, self.echo = enabled, echo
        self.log_path, self.stats_path = outdir / "log.txt", outdir / "stats.jsonl"
        self.tb = None
        if enabled:
            try:
                from torch.utils.tensorboard import SummaryWriter
                self.tb = SummaryWriter(str(outdir / "tensorboard"))
            except Exception:                                   # tensorboard not installed
                self.tb = None

    def line(self, text: str) -> None:
        if self.enabled:
            self.echo(text)
            with open(self.log_path, "a") as f:
                f.write(text + "\n")

    def stats(self, record: dict) -> None:
        if not self.enabled:
            return
        with open(self.stats_path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if isinstance(v, (int, float)) and k != "nimg":
                    self.tb.add_scalar(k, v, record["nimg"])


def _fmt_images(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


# --------------------------------------------------------------------------------------------
# Sample grids.


@torch.no_grad()
def sample_grid(setup: Setup, ema_denoise, source: ImageSource, device, n: int = 32) -> torch.Tensor:
    """The EMA network as a one-stage `RelayChain` with the default sampler settings. From noise:
    class-balanced samples of seeds 0…n−1. Continuing: rows of (nearest-upsampled box-downsampled
    real image | its relay sample, with the real image's label | the real image)."""
    chain = RelayChain([RelayModel(ema_denoise, setup.model_config)])
    if not setup.model_config.kind.continues:
        return chain(range(n), "balanced", device=device)
    s = setup.schedule.up_scale
    real, real_labels = source.fetch(list(range(min(n, len(source)))), device)
    low = torch.nn.functional.avg_pool2d(real, s)
    labels = real_labels if setup.label_dim else "balanced"
    out = chain(range(real.shape[0]), labels, low_res=low, device=device)
    return torch.cat([upsample_nearest(low, s), out, real])


# --------------------------------------------------------------------------------------------
# One optimisation step, reusable by the loop and the benchmarks.


class Trainer:
    """Network, EMA, optimizer, loss and data of one process; `step(k)` trains on global step k."""

    def __init__(self, setup: Setup, d: Dist, device: torch.device):
        cfg = self.cfg = setup.cfg
        self.setup, self.d, self.device = setup, d, device
        if cfg.batch % d.world_size:
            raise ValueError(f"batch {cfg.batch} is not divisible by the {d.world_size} processes")
        self.per_rank = cfg.batch // d.world_size
        self.batch_gpu = cfg.batch_gpu or self.per_rank
        if self.per_rank % self.batch_gpu:
            raise ValueError(f"per-process batch {self.per_rank} is not divisible by batch_gpu {self.batch_gpu}")
        self.rounds = self.per_rank // self.batch_gpu
        runtime = RuntimeOptions(cfg.precision, cfg.channels_last, cfg.compile).for_device(device)
        self.runtime = runtime                                           # autocast: network only
        torch.manual_seed(cfg.seed)                                      # same init on every rank
        self.net = setup.network_config.build().to(device)
        self.ema_net = copy.deepcopy(self.net).eval().requires_grad_(False)
        self.model = EDMPrecond(self.net, cfg.sigma_data, setup.label_dim).train().configure(runtime)
        self.ema = EDMPrecond(self.ema_net, cfg.sigma_data, setup.label_dim)
        opt_cls = torch.optim.AdamW if cfg.optimizer == "adamw" else torch.optim.Adam
        self.optimizer = opt_cls(self.net.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), eps=cfg.eps,
                                 weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda") if runtime.precision == "fp16" else None
        self.forward = self.model
        if d.world_size > 1:
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.forward, device_ids=[device.index] if device.type == "cuda" else None)
        teacher = None
        if cfg.teacher:                                  # the student starts as the teacher (EMA weights)
            teacher = RelayModel.from_pretrained(cfg.teacher, "ema", device, channels_last=cfg.channels_last)
            for net in (self.net, self.ema_net):        # a new guidance embedding starts at zero
                missing, unexpected = net.load_state_dict(teacher.denoiser.net.state_dict(), strict=False)
                if unexpected or any(not k.startswith("map_guidance.") for k in missing):
                    raise ValueError(f"{cfg.teacher}: its weights do not fit the student ({missing + unexpected})")
        self.loss_fn = _loss_fn(setup, teacher, device)
        self.source = ImageSource(setup.dataset, setup.resolution, cfg.xflip, cfg.cache)
        self.schedule = BatchSchedule(len(self.source), cfg.batch, cfg.seed)

    def load(self, snapshot: Path) -> int:
        state = load_snapshot(snapshot, self.net, self.ema_net, self.optimizer, self.device)
        if self.scaler is not None and state.get("grad_scaler"):
            self.scaler.load_state_dict(state["grad_scaler"])
        return state["nimg"]

    def save(self, outdir: Path, nimg: int) -> None:
        if self.d.is_main:
            save_snapshot(outdir, nimg, self.setup.model_config.to_dict(), self.net, self.ema_net, self.optimizer,
                          self.scaler.state_dict() if self.scaler else None, self.cfg.keep_snapshots)
        self.d.barrier()

    def step(self, step: int) -> dict:
        """Train on the global batch of step `step` (images seen before it: step × batch)."""
        cfg, d, setup, device = self.cfg, self.d, self.setup, self.device
        nimg = step * cfg.batch
        indices = self.schedule.indices(step)[d.rank * self.per_rank:(d.rank + 1) * self.per_rank]
        self.optimizer.zero_grad(set_to_none=True)
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        for r in range(self.rounds):
            chunk = indices[r * self.batch_gpu:(r + 1) * self.batch_gpu]
            images, labels = self.source.fetch(chunk, device)
            onehot = one_hot(labels, setup.label_dim) if setup.label_dim else None
            first = d.rank * self.per_rank + r * self.batch_gpu             # position in the global batch
            rng = SeededNoise([mix_seed(cfg.seed, step, first + j) for j in range(len(chunk))], device)
            torch.manual_seed(mix_seed(cfg.seed, step, d.rank, r, 0xD0))   # dropout masks
            last = r == self.rounds - 1 or d.world_size == 1
            with (contextlib.nullcontext() if last else self.forward.no_sync()):
                loss = self.loss_fn(self.forward, images, onehot, generator=rng)
                per_sample_sum = loss.sum()
                scaled = per_sample_sum / self.per_rank                     # EDM: normalise by per-GPU batch
                (self.scaler.scale(scaled) if self.scaler else scaled).backward()
            loss_sum += per_sample_sum.detach().double()
        total = d.sum(loss_sum)
        if not torch.isfinite(total):
            raise TrainingError(f"non-finite loss at {nimg:,} images (step {step})")
        lr = cfg.lr * min(nimg / cfg.lr_rampup, 1.0) if cfg.lr_rampup > 0 else cfg.lr
        for g in self.optimizer.param_groups:
            g["lr"] = lr
        if self.scaler:
            self.scaler.unscale_(self.optimizer)
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(),
                                                   cfg.grad_clip if cfg.grad_clip > 0 else math.inf)
        if self.scaler:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self._update_ema(nimg + cfg.batch)
        return {"loss": float(total) / (cfg.batch * setup.channels * setup.resolution ** 2), "lr": lr,
                "grad_norm": float(grad_norm)}

    @torch.no_grad()
    def _update_ema(self, nimg: int) -> None:
        """EMA with a half-life in images (EDM): β = 0.5^(batch / half-life), half-life ramped up
        as ema_rampup × images seen."""
        halflife = self.cfg.ema_halflife
        if self.cfg.ema_rampup:
            halflife = min(halflife, self.cfg.ema_rampup * nimg)
        beta = 0.5 ** (self.cfg.batch / max(halflife, 1e-8))
        torch._foreach_lerp_(list(self.ema_net.parameters()), [p.detach() for p in self.net.parameters()],
                             1 - beta)
        for b_ema, b in zip(self.ema_net.buffers(), self.net.buffers()):
            b_ema.copy_(b)


# --------------------------------------------------------------------------------------------
# The loop.


def train(cfg: TrainConfig, echo=print) -> dict:
    """Train (or resume) the run described by `cfg`; returns a summary dict. Under torchrun it
    joins the process group, and leaves it at the end unless a caller had joined it already (as
    `distill` does for all its rounds: a process group cannot be joined twice)."""
    owner = not (torch.distributed.is_available() and torch.distributed.is_initialized())
    dist_info, device = init_distributed(cfg.device)
    try:
        with RunLock(cfg.outdir) if dist_info.is_main else contextlib.nullcontext():   # one writer per run
            return _train(cfg, dist_info, device, echo)
    finally:
        if owner:
            shutdown_distributed()


def short_run_warnings(cfg: TrainConfig) -> list[str]:
    """Settings that make a run too short to learn: the learning rate still ramping up at the
    end, or EMA weights that still mostly hold the random initial weights."""
    out = []
    if cfg.lr_rampup > cfg.duration:
        out.append(f"the run ({_fmt_images(cfg.duration)} images) ends before the learning-rate warm-up "
                   f"({_fmt_images(cfg.lr_rampup)}): the learning rate never reaches {cfg.lr:g}; lower --lr-rampup")
    halflife = min(cfg.ema_halflife, cfg.ema_rampup * cfg.duration) if cfg.ema_rampup else cfg.ema_halflife
    if halflife > cfg.duration / 4:
        left = 0.5 ** (cfg.duration / max(halflife, 1e-9))
        out.append(f"the EMA half-life ({_fmt_images(int(halflife))} images at the end) is long for a run of "
                   f"{_fmt_images(cfg.duration)}: {left:.0%} of the EMA weights will still be the "
                   + ("teacher's (distillation starts from them)" if cfg.teacher else "random initial weights")
                   + "; lower --ema or sample with --weights model")
    return out


def _next(nimg: int, every: int) -> float:
    return (nimg // every + 1) * every if every else math.inf


def _train(cfg: TrainConfig, d: Dist, device: torch.device, echo) -> dict:
    outdir = Path(cfg.outdir)
    moved = check_resume(cfg, outdir)
    setup = prepare(cfg)
    trainer = Trainer(setup, d, device)
    if d.is_main:
        outdir.mkdir(parents=True, exist_ok=True)
        record_run(cfg, outdir)
    d.barrier()
    log = Logger(outdir, d.is_main, echo)
    if moved:
        log.line(moved)

    nimg = 0
    snapshots = list_snapshots(outdir)
    if snapshots:
        nimg = trainer.load(snapshots[-1])
        log.line(f"resuming from {snapshots[-1].name} at {nimg:,} images")
    else:
        log.line(f"starting a new run in {outdir}")
    if nimg % cfg.batch:
        raise ValueError(f"the snapshot at {nimg} images does not fall on a step boundary of batch {cfg.batch}")
    network = f"the teacher's ({cfg.teacher})" if cfg.teacher else cfg.network
    log.line(f"{setup.cfg.stage} stage, network {network}: {count_parameters(trainer.net) / 1e6:.2f} M parameters, "
             f"{setup.resolution}×{setup.resolution}×{setup.channels}, "
             f"{'%d classes' % setup.label_dim if setup.label_dim else 'unconditional'}, "
             f"{d.world_size} process(es) on {device}, "
             f"batch {cfg.batch} = {d.world_size}×{trainer.rounds}×{trainer.batch_gpu}, "
             f"network math {trainer.runtime.describe()}")

    for warning in short_run_warnings(cfg):
        log.line(f"warning: {warning}")
    # at least ~20 status lines per run, so a short run shows its progress
    status_every = min(cfg.status_every, max(cfg.batch, cfg.duration // 20))
    t_start, nimg_start = time.time(), nimg
    window, window_t = [], time.time()
    next_status, next_snapshot = _next(nimg, status_every), _next(nimg, cfg.snapshot_every)
    next_sample = _next(nimg, cfg.sample_every)
    while nimg < cfg.duration:
        try:
            rec = trainer.step(nimg // cfg.batch)
        except TrainingError as e:
            last = list_snapshots(outdir)
            raise TrainingError(f"{e}; nothing was saved. Last good snapshot: {last[-1] if last else 'none'}. "
                                "Lower --lr, enable --grad-clip, or use --precision fp32.") from None
        nimg += cfg.batch
        window.append(rec)
        if nimg >= next_status or nimg >= cfg.duration:
            now = time.time()
            rate = (nimg - nimg_start) / max(now - t_start, 1e-9)
            stats = {"nimg": nimg, "loss": sum(r["loss"] for r in window) / len(window), "lr": rec["lr"],
                     "grad_norm": rec["grad_norm"], "img_per_s": rate,
                     "sec_per_step": (now - window_t) / len(window), "time": now}
            log.stats(stats)
            log.line(f"{_fmt_images(nimg):>8} / {_fmt_images(cfg.duration)} images  loss {stats['loss']:.4f}  "
                     f"lr {rec['lr']:.2e}  {rate:,.0f} img/s  "
                     f"eta {max(cfg.duration - nimg, 0) / max(rate, 1e-9) / 60:.1f} min")
            window, window_t = [], now
            next_status = _next(nimg, status_every)
        if nimg >= next_sample and d.is_main:
            grid = sample_grid(setup, trainer.ema, trainer.source, device)
            ncol = 16 if setup.model_config.kind.continues else 8     # (low | sample | real) rows or samples
            save_image_grid(grid, outdir / f"samples-{nimg:012d}.png", ncol=ncol)
            next_sample = _next(nimg, cfg.sample_every)
        if nimg >= next_snapshot and nimg < cfg.duration:
            trainer.save(outdir, nimg)
            next_snapshot = _next(nimg, cfg.snapshot_every)

    snaps = list_snapshots(outdir)
    if not snaps or snaps[-1].name != f"snapshot-{nimg:012d}":
        trainer.save(outdir, nimg)
    final = list_snapshots(outdir)[-1]
    log.line(f"done: {nimg:,} images; model in {final}")
    return {"nimg": nimg, "snapshot": str(final), "outdir": str(outdir)}
