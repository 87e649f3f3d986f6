"""A relay chain: a base model and any number of relay stages, run seed by seed.

    chain = RelayChain.from_pretrained(["runs/base8/snapshot-…", "runs/relay32/snapshot-…"])
    images = chain(seeds=range(16), labels="balanced")          # [16, C, 32, 32] in [−1, 1]
    pil = chain.to_pil(images)

One `SeededNoise` stream per image runs through all stages, so an image depends only on its
seed (and label), never on the batch or the number of processes.
"""

from __future__ import annotations

import dataclasses
import numbers
from pathlib import Path
from typing import Sequence

import torch

from .data.labels import one_hot
from .models import RelayModel
from .networks.runtime import check_device
from .sampling.guidance import classifier_free_guidance
from .seeds import SeededNoise, check_seeds

LABEL_MODES = ("balanced", "random")


def class_labels(seeds: Sequence[int], label_dim: int, labels="balanced") -> torch.Tensor | None:
    """Class index per seed: "balanced" = seed mod classes (the official "class balance", exactly
    N/classes per class over consecutive seeds), "random" = drawn from a generator seeded by the
    seed (not from the noise stream), an int = that class for all, a sequence = one per seed."""
    if label_dim == 0:
        if isinstance(labels, str) and labels in LABEL_MODES:
            return None
        raise ValueError(f"this model is unconditional (no classes): class labels {labels!r} cannot apply; "
                         "leave them out")
    n = len(seeds)
    if isinstance(labels, (bool, float)) or (torch.is_tensor(labels) and labels.dim() == 0):
        raise TypeError(f"labels must be a mode ({', '.join(LABEL_MODES)}), a class index or one index per "
                        f"seed, got {labels!r}")
    if isinstance(labels, str):
        if labels == "balanced":
            idx = torch.tensor([int(s) % label_dim for s in seeds])
        elif labels == "random":
            idx = torch.tensor([int(torch.randint(label_dim, (), generator=torch.Generator().manual_seed(
                (int(s) + 0x1ABE1) % (1 << 63)))) for s in seeds])
        else:
            raise ValueError(f"labels must be one of {LABEL_MODES}, a class index or a list, got {labels!r}")
    elif isinstance(labels, numbers.Integral):
        idx = torch.full((n,), int(labels))
    else:
        idx = torch.as_tensor(labels) if torch.is_tensor(labels) else torch.as_tensor(list(labels))
        if idx.dtype == torch.bool or idx.is_floating_point() or idx.is_complex():
            raise TypeError(f"class labels must be integers, got {idx.dtype} values")
        if idx.shape != (n,):
            raise ValueError(f"{idx.numel()} labels for {n} seeds")
    if ((idx < 0) | (idx >= label_dim)).any():
        raise ValueError(f"class labels must be in [0, {label_dim}), got {idx.tolist()}")
    return idx


def default_settings(model: RelayModel):
    """The sampler settings a stage runs with unless told otherwise (the official defaults; a
    distilled stage's own steps)."""
    return model.config.default_settings()


@dataclasses.dataclass
class RelayChain:
    """Stages in order; settings[i] are the sampler settings of stage i."""

    models: list
    settings: list = None

    def __post_init__(self):
        if not self.models:
            raise ValueError("a chain needs at least one model")
        if self.settings is None:
            self.settings = [default_settings(m) for m in self.models]
        if len(self.settings) != len(self.models):
            raise ValueError(f"{len(self.settings)} sampler settings for {len(self.models)} stages")
        for i, (m, s) in enumerate(zip(self.models, self.settings)):
            if not isinstance(s, m.kind.settings):
                raise ValueError(f"stage {i} is a {m.stage} model and needs {m.kind.settings.__name__}")
            try:
                m.config.check_settings(s)
            except ValueError as e:
                raise ValueError(f"stage {i}: {e}") from None
        for i, m in enumerate(self.models[1:], 1):
            prev = self.models[i - 1]
            if not m.kind.continues:
                raise ValueError(f"stage {i} must be a model that continues a lower-resolution image (a relay "
                                 f"model), not a {m.stage} model: only the first stage may start from noise")
            if m.config.input_resolution != prev.resolution:
                r = m.config.input_resolution
                raise ValueError(f"stage {i} expects {r}×{r} inputs (up_scale {m.schedule.up_scale} "
                                 f"to {m.resolution}), but stage {i - 1} makes {prev.resolution}×{prev.resolution}")
            if m.channels != prev.channels:
                raise ValueError(f"stage {i} has {m.channels} channels, stage {i - 1} {prev.channels}")
        dims = {m.label_dim for m in self.models if m.label_dim}
        if len(dims) > 1:
            raise ValueError(f"stages disagree on the number of classes: {sorted(dims)}")

    @classmethod
    def from_pretrained(cls, directories: Sequence[str | Path], settings=None, which="ema", device="cpu",
                        **runtime) -> "RelayChain":
        """Load every stage; `runtime` (precision=, channels_last=, compile=) applies to all of them."""
        if isinstance(directories, (str, Path)):
            raise TypeError(f"directories must be a list of model directories, one per stage, lowest resolution "
                            f"first; got the single path {str(directories)!r} (use [{str(directories)!r}])")
        return cls([RelayModel.from_pretrained(d, which, device, **runtime) for d in directories], settings)

    @property
    def label_dim(self) -> int:
        return max(m.label_dim for m in self.models)

    @property
    def class_names(self) -> list | None:
        """The classes' names where a stage's config.json records them (None otherwise)."""
        return next((m.config.class_names for m in self.models if m.config.class_names), None)

    @property
    def resolution(self) -> int:
        return self.models[-1].resolution

    @property
    def input_resolution(self) -> int:
        """Side of the images that the first stage expects (super-resolution mode)."""
        return self.models[0].config.input_resolution

    def nfe(self) -> list[int]:
        """Network evaluations per image of every stage (guided calls count twice)."""
        return [m.config.nfe(s) for m, s in zip(self.models, self.settings)]

    def _denoiser(self, i: int):
        m, s = self.models[i], self.settings[i]
        if m.config.guidance_range:                 # guidance distilled: w is the network's input
            def guided(x, sigma, labels=None, w=float(s.cfg_scale)):
                return m.denoiser(x, sigma, labels, guidance=torch.full((x.shape[0],), w, device=x.device))
            return guided
        return classifier_free_guidance(m.denoiser, s.cfg_scale) if m.label_dim else m.denoiser

    @torch.no_grad()
    def __call__(self, seeds: Sequence[int], labels="balanced", *, low_res: torch.Tensor | None = None,
                 dtype: torch.dtype = torch.float32, device=None, stage_callback=None,
                 step_callback=None) -> torch.Tensor:
        """Images [len(seeds), C, H, W] in [−1, 1]. `low_res` ([N, C, h, w] in [−1, 1]) feeds a
        chain that starts with a relay stage (super-resolution); otherwise the first stage must
        be a base model. `stage_callback(i, images)` sees every stage's output, `step_callback(i, info)`
        every sampler step of stage i (the samplers' callback dict: sigma, x, denoised, …)."""
        seeds = check_seeds(seeds)
        device = check_device(device) if device is not None else next(self.models[0].denoiser.parameters()).device
        rnd = SeededNoise(seeds, device)
        idx = class_labels(seeds, self.label_dim, labels)
        onehot = one_hot(idx.to(device), self.label_dim) if idx is not None else None
        first = self.models[0]
        if not first.kind.continues:
            if low_res is not None:
                raise ValueError(f"this chain starts with a {first.stage} model, from noise; low-res inputs "
                                 "need a relay stage first")
            x = None
        else:
            if low_res is None:
                raise ValueError(f"this chain starts with a {first.stage} stage: give low_res images")
            want = (len(seeds), first.channels, self.input_resolution, self.input_resolution)
            if tuple(low_res.shape) != want:
                raise ValueError(f"low-res images must have shape {want}, got {tuple(low_res.shape)}")
            x = low_res.to(device, dtype)
        for i, (m, s) in enumerate(zip(self.models, self.settings)):
            lab = onehot if m.label_dim else None
            den = self._denoiser(i)
            steps = (lambda info, i=i: step_callback(i, info)) if step_callback is not None else None
            x = m.kind.sample(den, x, lab, config=m.config, settings=s, noise=rnd, dtype=dtype, callback=steps)
            if stage_callback is not None:
                stage_callback(i, x)
        return x

    @staticmethod
    def to_pil(images: torch.Tensor) -> list:
        from .pixels import to_pil, to_uint8
        return [to_pil(u8) for u8 in to_uint8(images.cpu())]


def bundled_demo_chain(distilled: bool = False) -> list[Path]:
    """Model directories of the Fashion-MNIST demo chain shipped with the package (8×8 base +
    8→32 relay), lowest resolution first; `distilled`: its distilled stages (rdm distill,
    demo/MODEL_CARD.md), which sample with their own few steps."""
    root = Path(__file__).resolve().parent / "demo"
    suffix = "-distilled" if distilled else ""
    dirs = [root / f"fmnist-base-8{suffix}", root / f"fmnist-relay-8to32{suffix}"]
    if not all((p / "config.json").exists() for p in dirs):
        raise ValueError(f"this installation has no bundled {'distilled ' if distilled else ''}demo model; "
                         "pass --model DIR (repeat per stage)")
    return dirs
