"""Trained models on disk: `RelayModel.from_pretrained(dir)` / `.save_pretrained(dir)`.

A model directory (written by `rdm train` snapshots, `rdm import` or `save_pretrained`) holds
`config.json` (a `ModelConfig`: stage kind, resolution, channels, label_dim, sigma_data, the
network config and, for a stage that continues another, its forward schedule) and safetensors
weights.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .files import atomic_directory

from .weights import load_weights, read_model_config, save_model_dir, weight_shapes, weights_path
from .networks import NetworkConfig
from .networks.runtime import RuntimeOptions, check_device
from .precond import EDMPrecond
from .relay import RelaySchedule
from .stages import StageKind, stage_kind


# provenance and recipe records a config.json may carry beside the model itself
RECORDS = ("source", "training", "distilled", "class_names")


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """What a model directory's config.json says: enough to rebuild the denoiser and to know
    where the model stands in a chain. Written by training snapshots, `rdm import` and the
    diffusers round trip; `from_dict` reads every config.json those ever wrote."""

    stage: str                              # a key of stages.STAGE_KINDS
    resolution: int                         # side of the images it makes, pixels
    channels: int                           # image channels (3 RGB, 1 grey)
    network: NetworkConfig                  # the denoising network
    label_dim: int = 0                      # classes; 0 = unconditional
    sigma_data: float = 0.5                 # σ_d of EDM's preconditioning
    schedule: RelaySchedule | None = None   # forward process of a stage that continues another
    source: dict | None = None              # where an imported model came from (file, sha256, …)
    training: dict | None = None            # how it was trained, where recorded (command, images)
    distilled: dict | None = None           # a distilled stage: the σ grid it samples on, its step kind
                                            # ("ddim") and its teacher; docs/distillation.md
    class_names: list | None = None         # the classes' names, from the training data where it had them

    def __post_init__(self):
        kind = stage_kind(self.stage)
        for name in ("resolution", "channels", "label_dim"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "label_dim" else 1):
                raise ValueError(f"model config: {name} must be a{' non-negative' if name == 'label_dim' else ' positive'}"
                                 f" integer, got {value!r}")
        if kind.continues and self.schedule is None:
            raise ValueError(f"a {self.stage} model needs its schedule in config.json")
        if not kind.continues and self.schedule is not None:
            raise ValueError(f"a {self.stage} model has no schedule, but config.json gives one")
        if self.class_names is not None and len(self.class_names) != self.label_dim:
            raise ValueError(f"{len(self.class_names)} class names for {self.label_dim} classes")
        if self.schedule is not None and self.resolution % self.schedule.up_scale:
            raise ValueError(f"resolution {self.resolution} is not divisible by up_scale {self.schedule.up_scale}")

    @property
    def kind(self) -> StageKind:
        return stage_kind(self.stage)

    @property
    def distilled_grid(self) -> list[float] | None:
        """The σ's a distilled stage samples on (None: not distilled)."""
        return [float(v) for v in self.distilled["grid"]] if self.distilled else None

    def default_settings(self):
        """The sampler settings the stage runs with unless told otherwise: the official defaults,
        or for a distilled stage ddim steps (η = 0) on its own grid."""
        if not self.distilled:
            return self.kind.settings()
        grid = self.distilled_grid
        fields = {f.name for f in dataclasses.fields(self.kind.settings)}
        # the grid fields only describe the grid (sampling takes it from here); a one-σ grid keeps the
        # default σ_min, which a ρ grid needs below its start
        over = dict(solver=self.distilled.get("solver", "ddim"), eta=0.0, num_steps=len(grid), sigma_max=grid[0])
        if len(grid) > 1:
            over["sigma_min"] = grid[-1]
        if "sigma_grid" in fields:                  # a relay stage: ρ grid from truncation_sigma
            over.update(sigma_grid="rho", truncation_sigma=grid[0])
        g = self.distilled.get("guidance")
        if g:                                       # guidance as an input: default 1 where distilled
            over["cfg_scale"] = min(max(1.0, float(g[0])), float(g[1]))
        return self.kind.settings(**{k: v for k, v in over.items() if k in fields})

    @property
    def guidance_range(self) -> tuple[float, float] | None:
        """The guidance scales a guidance-distilled stage takes as input (None: guidance, if any,
        is classifier-free, two evaluations per step)."""
        g = self.distilled.get("guidance") if self.distilled else None
        return (float(g[0]), float(g[1])) if g else None

    def nfe(self, settings) -> int:
        """Network evaluations per image of the stage under `settings` (guided calls count twice)."""
        calls = len(self.distilled_grid) if self.distilled else settings.nfe(self.schedule)
        return calls * self.evaluations_per_call(settings)

    def evaluations_per_call(self, settings) -> int:
        """Network evaluations per denoiser call: 2 under classifier-free guidance, else 1."""
        return 2 if self.label_dim and settings.cfg_scale != 1 and not self.guidance_range else 1

    def check_settings(self, settings) -> None:
        """Refuse sampler settings a distilled stage was not distilled for (guidance may vary)."""
        if not self.distilled:
            return
        g = self.guidance_range
        if g and not g[0] <= settings.cfg_scale <= g[1]:
            raise ValueError(f"this {self.stage} stage was distilled for guidance scales {g[0]:g} to {g[1]:g}, "
                             f"got cfg_scale {settings.cfg_scale:g}")
        want = self.default_settings()
        if dataclasses.replace(settings, cfg_scale=want.cfg_scale) != want:       # all but the guidance scale
            changed = [f.name for f in dataclasses.fields(want) if f.name != "cfg_scale"
                       and getattr(settings, f.name) != getattr(want, f.name)]
            raise ValueError(f"this {self.stage} stage was distilled for {len(self.distilled_grid)} ddim steps on its "
                             f"own σ grid; its sampler settings cannot change ({', '.join(changed)}); only the "
                             "guidance scale can")

    @property
    def input_resolution(self) -> int:
        """Side of the images the stage takes in (its own side when it starts from noise)."""
        return self.kind.input_resolution(self.resolution, self.schedule)

    def to_dict(self) -> dict:
        d = {"stage": self.stage, "resolution": self.resolution, "channels": self.channels,
             "label_dim": self.label_dim, "sigma_data": self.sigma_data, "network": self.network.to_dict(),
             "schedule": dataclasses.asdict(self.schedule) if self.schedule is not None else None}
        return {**d, **{k: getattr(self, k) for k in RECORDS if getattr(self, k) is not None}}

    @classmethod
    def from_dict(cls, d: dict, where: str = "config.json") -> "ModelConfig":
        """From a config.json's content (its "format"/"version" keys are ignored here: io checks
        them); a ValueError naming `where` for anything missing or malformed."""
        d = {k: v for k, v in d.items() if k not in ("format", "version")}
        for key in ("stage", "resolution", "channels", "network"):
            if key not in d:
                raise ValueError(f"{where} lacks {key!r}")
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"{where}: unknown keys {unknown}")
        for key, kind in (("network", dict), ("schedule", (dict, type(None))), ("source", (dict, type(None))),
                          ("training", (dict, type(None))), ("distilled", (dict, type(None))),
                          ("class_names", (list, type(None)))):
            if not isinstance(d.get(key), kind):
                raise ValueError(f"{where}: {key!r} must be an object, got {d.get(key)!r}")
        try:
            schedule = RelaySchedule(**d["schedule"]) if d.get("schedule") else None
            return cls(**{**d, "network": NetworkConfig.from_dict(d["network"]), "schedule": schedule})
        except (TypeError, ValueError) as e:
            raise ValueError(f"{where}: {e}") from None


@dataclasses.dataclass
class RelayModel:
    """A denoiser D(x, sigma, labels) and what it was trained for."""

    denoiser: EDMPrecond
    config: ModelConfig

    def __post_init__(self):
        if isinstance(self.config, dict):
            self.config = ModelConfig.from_dict(self.config, "model config")

    @property
    def stage(self) -> str:
        return self.config.stage

    @property
    def kind(self) -> StageKind:
        return self.config.kind

    @property
    def resolution(self) -> int:
        return self.config.resolution

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def label_dim(self) -> int:
        return self.config.label_dim

    @property
    def schedule(self) -> RelaySchedule | None:
        return self.config.schedule

    @classmethod
    def from_pretrained(cls, directory: str | Path, which: str = "ema", device: str | torch.device = "cpu",
                        *, precision: str = "fp32", channels_last: bool = True,
                        compile: bool = False) -> "RelayModel":
        """Load a model directory; which="ema" (default; falls back to the raw weights) or "model".
        precision ("fp32", "bf16", "fp16" on CUDA, or "auto": bf16 where the hardware has it) /
        channels_last / compile: how the network runs (networks/runtime.py, docs/speed.md); the
        stored weights stay float32. Channels-last is the default: the same
        images as the plain layout (to float32 rounding), faster convolutions."""
        device = check_device(device)
        runtime = RuntimeOptions(precision, channels_last, compile).for_device(device)
        directory = Path(directory)
        cfg = read_config(directory)
        network = cfg.network
        check_weights_match(network, weights_path(directory, which))     # before allocating the network
        net = network.build()
        try:
            net.load_state_dict(load_weights(directory, which))
        except RuntimeError as e:
            raise ValueError(f"{directory}: weights do not match config.json: {e}") from None
        denoiser = EDMPrecond(net, cfg.sigma_data, cfg.label_dim)
        return cls(denoiser.to(device).eval().requires_grad_(False).configure(runtime), cfg)

    def save_pretrained(self, directory: str | Path) -> None:
        """Write config.json + model.safetensors atomically."""
        with atomic_directory(directory) as tmp:
            save_model_dir(tmp, self.config.to_dict(), self.denoiser.net)


def network_flops(model: RelayModel) -> dict:
    """Forward and forward + backward FLOPs per image of a model's network, counted by
    torch.utils.flop_counter on one image (convolutions, matmuls, attention; multiply-add = 2;
    element-wise operations not counted). A copy of the network is counted: the model is left
    as it was (mode, gradients)."""
    import copy

    from torch.utils.flop_counter import FlopCounterMode

    net = copy.deepcopy(model.denoiser.net).train().requires_grad_(True)
    device = next(net.parameters()).device
    r, c = model.resolution, model.channels
    x = torch.randn(1, c, r, r, device=device)
    noise = torch.zeros(1, device=device)
    labels = torch.zeros(1, model.label_dim, device=device) if model.label_dim else None
    with FlopCounterMode(display=False) as forward:
        net(x, noise, labels)
    with FlopCounterMode(display=False) as both:
        net(x, noise, labels).sum().backward()
    return {"forward": forward.get_total_flops(), "train": both.get_total_flops()}


def read_config(directory: str | Path) -> ModelConfig:
    """A model directory's `ModelConfig`, without touching its weights (cheap: chains check their
    per-stage settings against it before loading anything)."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"model directory not found: {directory}")
    snapshots = sorted(directory.glob("snapshot-*/config.json"))
    if snapshots and not (directory / "model.safetensors").exists():
        raise ValueError(f"{directory} is a training run folder, not a model; give one of its snapshots, "
                         f"e.g. {snapshots[-1].parent} (the newest)")
    return ModelConfig.from_dict(read_model_config(directory), f"{directory}/config.json")


def check_weights_match(network: NetworkConfig, path: Path) -> None:
    """Refuse weights whose names or shapes differ from what `network` builds, comparing the
    safetensors header with the network built on the meta device (no memory), so a wrong
    config.json (a huge model_channels, say) fails before anything large is allocated."""
    with torch.device("meta"):
        expected = {k: tuple(v.shape) for k, v in network.build().state_dict().items()}
    stored = weight_shapes(path)
    problems = [f"missing {k}" for k in expected if k not in stored]
    problems += [f"unexpected {k}" for k in stored if k not in expected]
    problems += [f"{k}: stored {stored[k]}, config.json builds {expected[k]}"
                 for k in expected if k in stored and stored[k] != expected[k]]
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise ValueError(f"{path}: weights do not match config.json: {'; '.join(problems[:5])}{more}")
