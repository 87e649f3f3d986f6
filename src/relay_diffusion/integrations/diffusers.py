"""relay-diffusion models in 🤗 diffusers (optional extra `relay-diffusion[diffusers]`).

- `RelayUNet`: a stage's denoiser (ADM U-Net + EDM preconditioning) as a diffusers model; its
  output is the denoised image (prediction type "sample"; the preconditioning is inside).
- `RelayScheduler`: the official Heun relay step (and EDM's Heun for a base stage) step by step
  in diffusers' conventions: `set_timesteps`, `timesteps`/`sigmas` (one entry per network
  evaluation: 2n − 1 for n σ's), `scale_model_input`, `step → prev_sample, pred_original_sample`,
  `init_noise_sigma`, `add_noise` (the relay forward process).
- `RelayDiffusionPipeline`: a base stage and a relay stage (or the relay stage alone, on a
  low-resolution `image`), class labels, guidance, per-image seeds; images equal `rdm sample`'s.
- `export_diffusers` / `import_diffusers`: model directories ↔ a diffusers folder
  (`model_index.json` + component subfolders) that `DiffusionPipeline.from_pretrained` loads.

The scheduler runs every solver of `SOLVERS`: the official "heun" step (two evaluations per
step) and the exponential integrators (one per σ), on the grids of `RelaySamplerSettings`.
"""

from __future__ import annotations

import dataclasses
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
from ..io import atomic_directory, read_model_config, save_model_dir, to_pil, to_uint8
from ..models import RelayModel
from ..networks import NetworkConfig
from ..pipeline import class_labels as labels_for_seeds
from ..precond import EDMPrecond
from ..relay import RelaySchedule, blur, upsample_nearest
from ..sampling import BaseSamplerSettings, RelaySamplerSettings, classifier_free_guidance
from ..sampling.samplers import ddim_renoise, edm_euler, edm_heun, heun_denoised
from ..sampling.solvers import FrequencyBasis, Multistep, check_solver
from ..seeds import SeededNoise

# written into every export, so that diffusers' generic loader finds the pipeline class:
# DiffusionPipeline.from_pretrained(folder, custom_pipeline=folder, trust_remote_code=True)
PIPELINE_PY = '''"""relay-diffusion export: the pipeline class lives in the installed relay-diffusion package."""
from relay_diffusion.integrations.diffusers import RelayDiffusionPipeline  # noqa: F401
'''
# the sampler settings a scheduler's config carries, per stage (None: the settings' default)
SETTING_FIELDS = {"base": ("sigma_min", "sigma_max", "rho", "solver"),
                  "relay": ("sigma_min", "sigma_max", "rho", "truncation_sigma", "prob_length", "eta", "block_scale",
                            "corrector", "solver", "sigma_grid", "lambda_frequency")}


class RelayUNet(ModelMixin, ConfigMixin):
    """D(x; σ, labels): the model directory's network in EDM preconditioning, as a diffusers model."""

    @register_to_config
    def __init__(self, stage: str = "base", resolution: int = 32, channels: int = 3, label_dim: int = 0,
                 sigma_data: float = 0.5, network: dict | None = None, schedule: dict | None = None):
        super().__init__()
        net = NetworkConfig.from_dict(network or {}).build()
        self.denoiser = EDMPrecond(net, sigma_data, label_dim)

    def forward(self, sample: torch.Tensor, sigma: torch.Tensor, class_labels: torch.Tensor | None = None
                ) -> torch.Tensor:
        """The denoised image; `sigma` is a [B] tensor, `class_labels` one-hot [B, label_dim]."""
        return self.denoiser(sample, sigma, class_labels)

    def model_config(self) -> dict:
        c = self.config
        return {"stage": c.stage, "resolution": c.resolution, "channels": c.channels, "label_dim": c.label_dim,
                "sigma_data": c.sigma_data, "network": dict(c.network), "schedule": c.schedule and dict(c.schedule)}

    @classmethod
    def from_model_dir(cls, directory, which: str = "ema") -> "RelayUNet":
        model = RelayModel.from_pretrained(directory, which, channels_last=False)
        cfg = model.config
        unet = cls(cfg["stage"], cfg["resolution"], cfg["channels"], cfg.get("label_dim", 0),
                   cfg.get("sigma_data", 0.5), cfg["network"], cfg.get("schedule"))
        unet.denoiser.net.load_state_dict(model.denoiser.net.state_dict())
        return unet.eval().requires_grad_(False)


@dataclasses.dataclass
class RelaySchedulerOutput(BaseOutput):
    prev_sample: torch.Tensor
    pred_original_sample: torch.Tensor


class RelayScheduler(SchedulerMixin, ConfigMixin):
    """A stage's sampler, one network evaluation per `step`. Base stage: EDM's deterministic
    sampler from pure noise (`BaseSamplerSettings`, method "edm", no churn). Relay stage: the
    official stochastic relay step with the model's patch blur and block noise
    (`RelaySamplerSettings`). solver "heun" (official) or an exponential integrator (docs/solvers.md).
    The last call returns D(x; σ_last)."""

    order = 1

    @register_to_config
    def __init__(self, stage: str = "relay", num_train_timesteps: int = 1000,
                 sigma_min: float | None = None, sigma_max: float = 80.0, rho: float = 7.0,
                 truncation_sigma: float = 0.9, prob_length: float | None = None, eta: float = 0.2,
                 block_scale: float | None = None, corrector: str = "noise", schedule: dict | None = None,
                 solver: str = "heun", sigma_grid: str = "truncated", lambda_frequency: float = 0.0):
        if stage not in ("base", "relay"):
            raise ValueError(f"stage must be 'base' or 'relay', got {stage!r}")
        if stage == "relay" and not schedule:
            raise ValueError("a relay scheduler needs the model's schedule (RelaySchedule fields)")
        self.settings = self._settings(18)                       # validates the numbers now
        self.model_schedule = RelaySchedule(**schedule) if stage == "relay" else None
        # the forward process the sampler follows (its own L and α where set); None for a base stage
        self.relay_schedule = self.settings.sampling_schedule(self.model_schedule) if self.model_schedule else None
        self.sigmas = self.timesteps = None
        self._k = 0

    def _settings(self, num_steps: int):
        c = self.config
        values = {f: c[f] for f in SETTING_FIELDS[c.stage] if c[f] is not None}
        return (BaseSamplerSettings if c.stage == "base" else RelaySamplerSettings)(num_steps=num_steps, **values)

    def set_timesteps(self, num_inference_steps: int = 18, device: str | torch.device | None = None) -> None:
        """n σ's (relay: the official grid of `num_inference_steps` nominal steps, truncated);
        `timesteps` lists the σ of every network evaluation: σ₀, then (σ_{i+1}, σ_{i+1}) per step."""
        self.settings = self._settings(num_inference_steps)
        grid = self.settings.sigmas() if self.model_schedule is None else self.settings.sigmas(self.model_schedule)
        self.grid = grid.tolist()
        self._solver, self._generator = None, None
        sch = self.relay_schedule
        self._blur_sigmas = {s: float(sch.blur_sigma_at(s)) for s in self.grid} if sch else None
        if self.config.solver == "heun":
            evals = [self.grid[0]] + [s for s in self.grid[1:] for _ in range(2)]
        else:                                            # one evaluation per σ
            evals = self.grid
            order, corrector = check_solver(self.config.solver, len(grid) - 1)
            if sch is None:
                log_factors, basis, eta = torch.zeros(len(grid), 1, 1, dtype=torch.float64), FrequencyBasis(1), 0.0
            else:
                log_factors, basis, eta = torch.log(sch.factors(grid)), FrequencyBasis(sch.up_scale), self.config.eta
            self._solver = Multistep(self.grid, order, eta, log_factors, basis,
                                     lambda like: self.noise_like(like, self._generator), corrector)
        self.sigmas = torch.tensor(self.grid, dtype=torch.float64)
        self.timesteps = torch.tensor(evals, dtype=torch.float64, device=device)
        self._k, self._x, self._den = 0, None, None

    @property
    def init_noise_sigma(self) -> float:
        """σ₀: the start is σ₀·noise (base) or the upsampled image + σ₀·relay noise (relay)."""
        return self.grid[0]

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
        """One network evaluation's update: model_output = D(sample; timestep)."""
        if self.timesteps is None:
            raise ValueError("call set_timesteps first")
        if self._k >= len(self.timesteps):
            raise ValueError("the schedule is finished; call set_timesteps again")
        k, den = self._k, model_output.to(sample.dtype)
        i = (k + 1) // 2                                 # the step this evaluation belongs to
        self._k += 1
        if self._solver is not None:                     # exponential integrator: one call per σ
            self._generator = generator
            out = RelaySchedulerOutput(self._solver.step(sample, den), den)
        elif k == len(self.timesteps) - 1:                 # the last σ: the result is D(x; σ_last)
            last = edm_euler(sample, den, self.grid[-1], 0.0) if self.config.stage == "base" else den
            out = RelaySchedulerOutput(last, den)           # (EDM: its final Euler step to σ = 0)
        elif k % 2 == 0:                                 # predictor at σ_i
            s, s_next = self.grid[i], self.grid[i + 1]
            self._x, self._den = sample, den
            out = RelaySchedulerOutput(self._renoise(den, sample, s, s_next, generator), den)
        else:                                            # corrector at σ_{i}, finishing step i − 1
            s, s_next = self.grid[i - 1], self.grid[i]
            x, den0 = self._x, self._den
            if self.config.stage == "base":
                out = RelaySchedulerOutput(edm_heun(x, den0, sample, den, s, s_next), den)
            else:
                x0_bar = heun_denoised(x, den0, sample, den, s, s_next, self.config.corrector)
                out = RelaySchedulerOutput(self._renoise(x0_bar, x, s, s_next, generator), x0_bar)
        return out if return_dict else (out.prev_sample, out.pred_original_sample)

    def _renoise(self, x0_hat, x, s, s_next, generator):
        if self.config.stage == "base":
            return edm_euler(x, x0_hat, s, s_next)
        sch, blur_sigmas = self.relay_schedule, self._blur_sigmas
        randn_like = _randn_like(generator)

        def reblur(y, sigma):
            return blur(y, blur_sigmas[sigma], sch.up_scale, sch.min_scale, check=False)
        return ddim_renoise(x0_hat, x, s, s_next, self.config.eta, lambda like: sch.noise(like, randn_like), reblur)


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
                 num_inference_steps=(18, 18), guidance_scale: float = 1.0, output_type: str = "pil",
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
        steps = (num_inference_steps,) * 2 if isinstance(num_inference_steps, int) else tuple(num_inference_steps)
        relay_cfg = self.relay_unet.config
        labels = labels_for_seeds(seeds if seeds is not None else list(range(n)), relay_cfg.label_dim, class_labels)
        onehot = one_hot(labels.to(device), relay_cfg.label_dim) if labels is not None else None
        if image is None:
            if self.base_unet is None:
                raise ValueError("this pipeline has no base stage: give a low-resolution image")
            c = self.base_unet.config
            x = _randn_like(generators)(torch.empty(n, c.channels, c.resolution, c.resolution, device=device))
            x = self._run(self.base_unet, self.base_scheduler, x, onehot, steps[0], guidance_scale, generators,
                          start=True)
        else:
            x = _as_tensor(image, n, device)
        up = upsample_nearest(x, RelaySchedule(**relay_cfg.schedule).up_scale)
        x = self._run(self.relay_unet, self.relay_scheduler, up, onehot, steps[-1], guidance_scale, generators)
        images = _output(x, output_type)
        return _PipelineOutput(images=images) if return_dict else (images,)

    def _run(self, unet, scheduler, x, onehot, steps, guidance_scale, generators, start=False):
        scheduler.set_timesteps(steps, device=x.device)
        if start:
            x = x * scheduler.init_noise_sigma
        else:
            x = x + scheduler.init_noise_sigma * scheduler.noise_like(x, generators)
        labels = onehot if unet.config.label_dim else None
        denoise = unet.denoiser
        if labels is not None and guidance_scale != 1:
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
    values = {f: getattr(settings, f) for f in SETTING_FIELDS[stage]}
    return RelayScheduler(stage, schedule=unet.config.schedule and dict(unet.config.schedule), **values)


def export_diffusers(model_dirs, out_dir, which: str = "ema", settings=None) -> Path:
    """Write a diffusers folder for a chain of model directories ([base,] relay): model_index.json
    and one subfolder per component. `settings`: per-stage sampler settings (default: the
    official defaults) that the schedulers carry."""
    dirs = [Path(d) for d in model_dirs]
    if len(dirs) not in (1, 2):
        raise ValueError(f"give a relay model directory, or a base and a relay one; got {len(dirs)}")
    unets = [RelayUNet.from_model_dir(d, which) for d in dirs]
    stages = [u.config.stage for u in unets]
    if stages[-1] != "relay" or (len(stages) == 2 and stages[0] != "base"):
        raise ValueError(f"expected [base,] relay model directories, got stages {stages}")
    settings = settings or [BaseSamplerSettings() if s == "base" else RelaySamplerSettings() for s in stages]
    for s in settings:
        if getattr(s, "S_churn", 0) or getattr(s, "method", "edm") != "edm":
            raise ValueError("the diffusers scheduler runs base stages with method 'edm' and no churn")
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
            save_model_dir(tmp, unet.model_config(), unet.denoiser.net)
        read_model_config(out)                           # what we wrote reads back
    return out_dirs
