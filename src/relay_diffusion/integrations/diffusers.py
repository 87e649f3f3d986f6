"""relay-diffusion models in 🤗 diffusers (optional extra `relay-diffusion[diffusers]`).

- `RelayUNet`: a stage's denoiser (ADM U-Net + EDM preconditioning) as a diffusers model; its
  output is the denoised image (prediction type "sample"; the preconditioning is inside).
- `RelayScheduler`: a stage's sampler step by step in diffusers' conventions — the steppers of
  `relay_diffusion.sampling.steppers` that the sampler functions drive too: `set_timesteps`,
  `timesteps` (the σ of every network evaluation: 2n − 1 for n σ's with Heun, n with the
  exponential integrators), `sigmas` (the grid), `start`, `scale_model_input`,
  `step → prev_sample, pred_original_sample`, `init_noise_sigma`, `add_noise` (the forward process).
- `RelayDiffusionPipeline`: a base stage and a relay stage (or the relay stage alone, on a
  low-resolution `image`), class labels, guidance, per-image seeds; images equal `rdm sample`'s.
- `export_diffusers` / `import_diffusers`: model directories ↔ a diffusers folder
  (`model_index.json` + component subfolders) that `DiffusionPipeline.from_pretrained` loads.

The scheduler runs every recipe of the settings classes: for a base stage EDM's Heun with churn,
the DDIM-η "sde" Heun and the exponential integrators; for a relay stage the official Heun step
and the exponential integrators, on every grid of `RelaySamplerSettings`.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
from pathlib import Path

import numpy as np
import torch

try:
    from diffusers import ConfigMixin, DiffusionPipeline, ModelMixin, SchedulerMixin
    from diffusers.configuration_utils import register_to_config
    from diffusers.utils import BaseOutput
except ImportError as e:                                          # the optional extra is missing
    raise ImportError("relay_diffusion.integrations.diffusers needs diffusers: "
                      "pip install 'relay-diffusion[diffusers]'") from e

from ..data.labels import one_hot
from ..files import atomic_directory
from ..weights import read_model_config, save_model_dir
from ..pixels import to_pil, to_uint8
from ..models import ModelConfig, RelayModel
from ..networks import NetworkConfig
from ..pipeline import class_labels as labels_for_seeds
from ..precond import EDMPrecond
from ..relay import RelaySchedule, blur, upsample_nearest
from ..sampling import classifier_free_guidance
from ..sampling.steppers import make_stepper
from ..seeds import SeededNoise
from ..stages import STAGE_KINDS, stage_kind

# written into every export, so that diffusers' generic loader finds the pipeline class:
# DiffusionPipeline.from_pretrained(folder, custom_pipeline=folder, trust_remote_code=True)
PIPELINE_PY = '''"""relay-diffusion export: the pipeline class lives in the installed relay-diffusion package."""
from relay_diffusion.integrations.diffusers import RelayDiffusionPipeline  # noqa: F401
'''
# the sampler settings a scheduler's config carries: every field of either stage's settings that
# the settings table marks for it (not the guidance weight: the pipeline's guidance_scale)
SCHEDULER_FIELDS = tuple(dict.fromkeys(f.name for kind in STAGE_KINDS.values()
                                       for f in dataclasses.fields(kind.settings) if f.metadata["scheduler"]))
_FIELD_DEFAULTS = {f.name: f.default for kind in reversed(STAGE_KINDS.values())
                   for f in dataclasses.fields(kind.settings)}


# the ModelConfig fields a RelayUNet's config carries (not an imported model's provenance records)
UNET_CONFIG_KEYS = ("stage", "resolution", "channels", "label_dim", "sigma_data", "network", "schedule", "distilled")


class RelayUNet(ModelMixin, ConfigMixin):
    """D(x; σ, labels): the model directory's network in EDM preconditioning, as a diffusers model."""

    @register_to_config
    def __init__(self, stage: str = "base", resolution: int = 32, channels: int = 3, label_dim: int = 0,
                 sigma_data: float = 0.5, network: dict | None = None, schedule: dict | None = None,
                 distilled: dict | None = None):
        super().__init__()
        net = NetworkConfig.from_dict(network or {}).build()
        self.denoiser = EDMPrecond(net, sigma_data, label_dim)

    def forward(self, sample: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None,
                guidance: torch.Tensor | None = None) -> torch.Tensor:
        """The denoised image; `sigma` is a [B] tensor, `class_labels` one-hot [B, label_dim],
        `guidance` the [B] guidance scales of a guidance-distilled stage."""
        extra = {"guidance": guidance} if guidance is not None else {}
        return self.denoiser(sample, sigma, class_labels, **extra)

    def model_config(self) -> ModelConfig:
        c = self.config
        return ModelConfig.from_dict({k: c[k] for k in UNET_CONFIG_KEYS}, "the RelayUNet config")

    @classmethod
    def from_model_dir(cls, directory, which: str = "ema") -> "RelayUNet":
        model = RelayModel.from_pretrained(directory, which, channels_last=False)
        cfg = model.config.to_dict()
        unet = cls(**{k: cfg.get(k) for k in UNET_CONFIG_KEYS})
        unet.denoiser.net.load_state_dict(model.denoiser.net.state_dict())
        return unet.eval().requires_grad_(False)


@dataclasses.dataclass
class RelaySchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


def _scheduler_init(self, stage: str = "relay", num_train_timesteps: int = 1000, schedule: dict | None = None,
                    sigmas: list | None = None, **settings):
    kind = stage_kind(stage)
    unknown = sorted(set(settings) - set(SCHEDULER_FIELDS))
    if unknown:
        raise TypeError(f"RelayScheduler has no setting {', '.join(map(repr, unknown))}; "
                        f"settings: {', '.join(SCHEDULER_FIELDS)}")
    if kind.continues and not schedule:
        raise ValueError(f"a {stage} scheduler needs the model's schedule (RelaySchedule fields)")
    cls = kind.settings
    own = {f.name for f in dataclasses.fields(cls)}
    values = {}
    for name, value in settings.items():
        if value is None:
            continue
        if name in own:
            values[name] = value
        elif value != _FIELD_DEFAULTS[name]:        # earlier exports stored every field, at its default
            raise ValueError(f"{name} is not a setting of a {stage} stage ({cls.__name__})")
    self.settings = cls(**values)                  # validated now; num_steps is set_timesteps' default
    self.model_schedule = RelaySchedule(**schedule) if kind.continues else None
    # the forward process the sampler follows (its own L and α where set); None for a base stage
    self.relay_schedule = self.settings.sampling_schedule(self.model_schedule) if self.model_schedule else None
    self.sigmas = self.timesteps = None
    self._stepper = self._generator = None


# one keyword per sampler setting (None: the stage's default from its settings class), so that
# diffusers' config machinery, which reads the signature, stores and reloads each of them
_scheduler_init.__signature__ = inspect.Signature(
    list(inspect.signature(_scheduler_init).parameters.values())[:-1]
    + [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None) for name in SCHEDULER_FIELDS])


class RelayScheduler(SchedulerMixin, ConfigMixin):
    """A stage's sampler, one network evaluation per `step`, driving the stepper the stage's
    settings pick (sampling/steppers.py) — the same one `edm_sampler`, `sde_heun_sampler` and
    `relay_sampler` drive, so its steps are theirs bit for bit. stage "base": every
    `BaseSamplerSettings` recipe (EDM Heun with churn, the DDIM-η "sde" Heun, the exponential
    integrators) from pure noise; stage "relay": every `RelaySamplerSettings` recipe with the
    model's patch blur and block noise. Each setting is a config field (None = the stage's
    default); `num_steps` is `set_timesteps`' default. The last call returns the image."""

    order = 1
    __init__ = register_to_config(_scheduler_init)

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None
                      ) -> None:
        """The grid of `num_inference_steps` (default: the config's num_steps; relay: nominal steps
        of the truncated grid, σ's run for the "rho"/"lambda" grids); `timesteps` lists the σ of
        every network evaluation (Heun: σ̂₀, then (σ_{i+1}, σ̂_{i+1}) per step)."""
        settings, grid = self.settings, self.config.sigmas
        if grid and num_inference_steps not in (None, len(grid)):
            raise ValueError(f"this stage was distilled for {len(grid)} steps on its own σ grid, "
                             f"got num_inference_steps={num_inference_steps}")
        if num_inference_steps is not None and not grid:
            settings = settings.with_overrides({"num_steps": num_inference_steps})
        self._stepper = make_stepper(settings, self.model_schedule, list(grid) if grid else None,
                                     lambda like: _randn_like(self._generator)(like))
        self.sigmas = torch.tensor(self._stepper.sigmas, dtype=torch.float64)
        self.timesteps = torch.tensor(self._stepper.eval_sigmas, dtype=torch.float64, device=device)

    @property
    def init_noise_sigma(self) -> float:
        """σ₀ of the grid. `start` makes the first input from it (and churns it, where asked)."""
        return self._stepper.sigmas[0]

    def start(self, sample: torch.Tensor, generator=None) -> torch.Tensor:
        """The first evaluation's input: σ₀·sample for a base stage (sample: unit noise; EDM churn
        applied where the settings ask), sample + σ₀·stage noise for a relay stage (sample: the
        upsampled low-resolution image). Draws from `generator` (a list: one per image)."""
        if self._stepper is None:
            raise ValueError("call set_timesteps first")
        self._generator = generator
        return self._stepper.start(sample)

    def scale_model_input(self, sample: torch.Tensor, timestep=None) -> torch.Tensor:
        return sample                                    # EDM preconditioning is inside RelayUNet

    def noise_like(self, sample: torch.Tensor, generator=None) -> torch.Tensor:
        """Unit noise of the stage: i.i.d. (base) or the relay mixture with block noise, drawn
        per image from `generator` (a list: one per image, as `SeededNoise`)."""
        randn_like = _randn_like(generator)
        sch = self.relay_schedule
        return randn_like(sample) if sch is None else sch.noise(sample, randn_like)

    def add_noise(self, original_samples: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """The forward process at σ = timesteps: blur(x₀; σ_B(σ)) + σ·noise (relay; `noise` from
        `noise_like`), x₀ + σ·noise (base)."""
        sigma = torch.as_tensor(timesteps, dtype=torch.float64).reshape(-1)
        s = sigma.to(original_samples.dtype).reshape(-1, 1, 1, 1)
        sch = self.relay_schedule
        if sch is None:
            return original_samples + s * noise
        sb = sch.blur_sigma_at(sigma)
        return blur(original_samples, sb if sb.numel() > 1 else float(sb), sch.up_scale, sch.min_scale) + s * noise

    def step(self, model_output: torch.Tensor, timestep, sample: torch.Tensor, generator=None,
             return_dict: bool = True):
        """One network evaluation's update: model_output = D(sample; timestep). prev_sample is the
        next evaluation's input (after the last evaluation: the image); pred_original_sample the
        step's estimate of the clean image."""
        if self._stepper is None:
            raise ValueError("call set_timesteps first")
        if self._stepper.done:
            raise ValueError("the schedule is finished; call set_timesteps again")
        self._generator = generator
        x = self._stepper.step(sample, model_output.to(sample.dtype))
        out = RelaySchedulerOutput(x, self._stepper.denoised)
        return out if return_dict else (out.prev_sample, out.pred_original_sample)


def _randn_like(generator):
    """A randn_like drawing row b from generator b (SeededNoise's stream) or from one generator."""
    if isinstance(generator, (list, tuple)):
        return SeededNoise.from_generators(generator)
    return lambda x: torch.randn(x.shape, generator=generator, dtype=torch.float32,
                                 device=generator.device if generator is not None else x.device).to(x)


class RelayDiffusionPipeline(DiffusionPipeline):
    """Base stage → nearest upsampling → relay stage (or the relay stage alone on `image`)."""

    model_cpu_offload_seq = "base_unet->relay_unet"

    def __init__(self, base_unet: RelayUNet | None, base_scheduler: RelayScheduler | None,
                 relay_unet: RelayUNet, relay_scheduler: RelayScheduler):
        super().__init__()
        self.register_modules(base_unet=base_unet, base_scheduler=base_scheduler, relay_unet=relay_unet,
                              relay_scheduler=relay_scheduler)

    @torch.no_grad()
    def __call__(self, seeds=None, class_labels="balanced", *, generator=None, image=None,
                 num_inference_steps=None, guidance_scale: float = 1.0, output_type: str = "pil",
                 return_dict: bool = True):
        """seeds: one per image (the images equal `rdm sample --seeds`); or `generator`, a list of
        torch.Generator, one per image. class_labels: "balanced" (seed mod classes), "random", a
        class or one per image. image: low-resolution inputs ([N, C, h, w] in [−1, 1], or PIL
        images) to run the relay stage alone. num_inference_steps: (base, relay) nominal steps.
        output_type: "pil", "np" (uint8 [N, H, W, C]) or "pt" ([N, C, H, W] in [−1, 1])."""
        device = self._execution_device
        if seeds is None and generator is None:
            raise ValueError("give seeds (one per image) or generator (a list, one per image)")
        if seeds is not None:
            seeds = [int(s) for s in seeds]
            generator = [torch.Generator(device).manual_seed(s) for s in seeds]
        generators = list(generator) if isinstance(generator, (list, tuple)) else [generator]
        n = len(generators)
        steps = (tuple(num_inference_steps) if isinstance(num_inference_steps, (list, tuple))
                 else (num_inference_steps,) * 2)
        relay_cfg = self.relay_unet.config
        labels = labels_for_seeds(seeds if seeds is not None else list(range(n)), relay_cfg.label_dim, class_labels)
        onehot = one_hot(labels.to(device), relay_cfg.label_dim) if labels is not None else None
        if image is None:
            if self.base_unet is None:
                raise ValueError("this pipeline has no base stage: give a low-resolution image")
            c = self.base_unet.config
            x = _randn_like(generators)(torch.empty(n, c.channels, c.resolution, c.resolution, device=device))
            x = self._run(self.base_unet, self.base_scheduler, x, onehot, steps[0], guidance_scale, generators)
        else:
            x = _as_tensor(image, n, device)
        up = upsample_nearest(x, RelaySchedule(**relay_cfg.schedule).up_scale)
        x = self._run(self.relay_unet, self.relay_scheduler, up, onehot, steps[-1], guidance_scale, generators)
        images = _output(x, output_type)
        return _PipelineOutput(images=images) if return_dict else (images,)

    def _run(self, unet, scheduler, x, onehot, steps, guidance_scale, generators):
        scheduler.set_timesteps(steps, device=x.device)
        x = scheduler.start(x, generator=generators)
        labels = onehot if unet.config.label_dim else None
        denoise = unet.denoiser
        guidance = (unet.config.distilled or {}).get("guidance")
        if guidance:                                 # guidance distilled: the scale is an input
            if not guidance[0] <= guidance_scale <= guidance[1]:
                raise ValueError(f"this stage was distilled for guidance scales {guidance[0]:g} to {guidance[1]:g}, "
                                 f"got guidance_scale {guidance_scale:g}")

            def denoise(x, sigma, labels, w=float(guidance_scale)):
                return unet.denoiser(x, sigma, labels, guidance=torch.full((x.shape[0],), w, device=x.device))
        elif labels is not None and guidance_scale != 1:
            denoise = classifier_free_guidance(denoise, guidance_scale)
        for t in self.progress_bar(scheduler.timesteps):
            sigma = torch.full((x.shape[0],), float(t), dtype=x.dtype, device=x.device)
            den = denoise(scheduler.scale_model_input(x, t), sigma, labels).to(x.dtype)
            x = scheduler.step(den, t, x, generator=generators).prev_sample
        return x


@dataclasses.dataclass
class _PipelineOutput(BaseOutput):
    images: object


def _as_tensor(image, n: int, device) -> torch.Tensor:
    if torch.is_tensor(image):
        x = image
    else:
        items = image if isinstance(image, (list, tuple)) else [image]
        arrays = [np.asarray(im, dtype=np.uint8) for im in items]
        arrays = [a[..., None] if a.ndim == 2 else a for a in arrays]
        x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1
    if x.shape[0] != n:
        raise ValueError(f"{x.shape[0]} images for {n} seeds/generators")
    return x.to(device, torch.float32)


def _output(x: torch.Tensor, output_type: str):
    if output_type == "pt":
        return x
    u8 = to_uint8(x.cpu())
    if output_type == "np":
        return u8.permute(0, 2, 3, 1).numpy()
    if output_type == "pil":
        return [to_pil(im) for im in u8]
    raise ValueError(f"output_type must be 'pil', 'np' or 'pt', got {output_type!r}")


def _scheduler_for(unet: RelayUNet, settings) -> RelayScheduler:
    stage = unet.config.stage
    want = stage_kind(stage).settings
    if not isinstance(settings, want):
        raise TypeError(f"a {stage} stage takes {want.__name__}, got {type(settings).__name__}")
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings) if f.name in SCHEDULER_FIELDS}
    distilled = unet.config.distilled
    return RelayScheduler(stage, schedule=unet.config.schedule and dict(unet.config.schedule),
                          sigmas=list(distilled["grid"]) if distilled else None, **values)


def export_diffusers(model_dirs, out_dir, which: str = "ema", settings=None) -> Path:
    """Write a diffusers folder for a chain of model directories ([base,] relay): model_index.json
    and one subfolder per component. `settings`: per-stage sampler settings (default: each
    stage's own — the official defaults, a distilled stage's steps) that the schedulers carry — any recipe, e.g. `chain_recipe("celebahq256", …)`."""
    dirs = [Path(d) for d in model_dirs]
    if len(dirs) not in (1, 2):
        raise ValueError(f"give a relay model directory, or a base and a relay one; got {len(dirs)}")
    unets = [RelayUNet.from_model_dir(d, which) for d in dirs]
    stages = [u.config.stage for u in unets]
    kinds = [stage_kind(s) for s in stages]
    # the pipeline's slots: a stage from noise (optional), then one that continues it
    if not kinds[-1].continues or (len(kinds) == 2 and kinds[0].continues):
        raise ValueError(f"expected [base,] relay model directories, got stages {stages}")
    settings = settings or [u.model_config().default_settings() for u in unets]   # a distilled stage's own
    if len(settings) != len(stages):
        raise ValueError(f"{len(settings)} sampler settings for {len(stages)} stages")
    base = (unets[0], _scheduler_for(unets[0], settings[0])) if len(unets) == 2 else (None, None)
    pipe = RelayDiffusionPipeline(base[0], base[1], unets[-1], _scheduler_for(unets[-1], settings[-1]))
    out = Path(out_dir)
    with atomic_directory(out) as tmp:
        pipe.save_pretrained(tmp, safe_serialization=True)
        (Path(tmp) / "pipeline.py").write_text(PIPELINE_PY)
    return out


def import_diffusers(folder, out_dirs) -> list[Path]:
    """Model directories from a diffusers folder written by `export_diffusers`: the base stage's
    (if any) then the relay stage's, to `out_dirs` (one per stage present)."""
    folder = Path(folder)
    index = json.loads((folder / "model_index.json").read_text())
    names = [n for n in ("base_unet", "relay_unet") if index.get(n) and index[n][0] is not None]
    out_dirs = [Path(d) for d in out_dirs]
    if len(out_dirs) != len(names):
        raise ValueError(f"{folder} holds {len(names)} stage(s) ({', '.join(names)}); give as many output folders")
    for name, out in zip(names, out_dirs):
        unet = RelayUNet.from_pretrained(folder / name)
        with atomic_directory(out) as tmp:
            save_model_dir(tmp, unet.model_config().to_dict(), unet.denoiser.net)
        read_model_config(out)                           # what we wrote reads back
    return out_dirs
