"""How a network runs: the precision of its math, its memory layout, and compilation
(docs/speed.md). Only the network call changes; the preconditioning around it, the samplers'
arithmetic and the stored weights stay in float32 (or float64).

    options = RuntimeOptions(precision="bf16", channels_last=True)
    options.check(device)                  # fp16 needs CUDA
    net = prepare_network(net, options)    # layout set in place; returns what to call
    out = call_network(net, options, x, noise_labels, class_labels)
"""

from __future__ import annotations

import contextlib
import dataclasses

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16")
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    precision: str = "fp32"        # network math: "fp32", or "bf16"/"fp16" autocast around the network
    channels_last: bool = False    # NHWC weights and activations (faster convolutions, same math)
    compile: bool = False          # torch.compile the network (slow first calls, faster after)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return AMP_DTYPES.get(self.precision)

    def check(self, device: torch.device | str) -> None:
        """Reject combinations the device cannot run (fp16 autocast on CPU is slow and fragile)."""
        if self.precision == "fp16" and torch.device(device).type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")

    def autocast(self, device: torch.device | str):
        """The autocast context of this precision on `device` (no-op for fp32)."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        self.check(device)
        return torch.autocast(torch.device(device).type, dtype=self.amp_dtype)

    def describe(self) -> str:
        return ", ".join([self.precision] + ["channels-last"] * self.channels_last + ["compiled"] * self.compile)


def check_device(device) -> torch.device:
    """`device` as a torch.device, after checking that it names one and that this machine has
    it (a ValueError, not torch's AssertionError from deep inside `.to()`)."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"not a torch device: {device!r} (examples: cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise ValueError(f"device {device!r} requested but MPS is not available on this machine")
    return dev


def prepare_network(net: nn.Module, options: RuntimeOptions) -> nn.Module:
    """Set `net`'s memory layout in place (weights keep their values and names) and return the
    module to call: `net` itself, or its torch.compile wrapper. A network whose weights are all
    frozen (requires_grad off: loaded for sampling) is compiled with inductor's freezing, which
    treats the weights as constants (1.25× on a CPU forward; load_state_dict after that is not
    seen by the compiled code, so configure again after changing weights)."""
    net.to(memory_format=torch.channels_last if options.channels_last else torch.contiguous_format)
    if not options.compile:
        return net
    frozen = not any(p.requires_grad for p in net.parameters())
    return torch.compile(net, options={"freezing": True} if frozen else None)


def call_network(net, options: RuntimeOptions, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    """net(x, *args) under `options`: NHWC input when channels-last; under bf16/fp16 autocast the
    inputs are made float32 (autocast leaves float64 alone) and the output comes back as float32."""
    if options.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    if options.amp_dtype is None:
        return net(x, *args, **kwargs)
    x, args = x.float(), [a.float() if torch.is_tensor(a) and a.is_floating_point() else a for a in args]
    with options.autocast(x.device):
        out = net(x, *args, **kwargs)
    return out.float()
