"""How a network runs: the precision of its math, its memory layout, and compilation
(docs/speed.md). Only the network call changes; the preconditioning around it, the samplers'
arithmetic and the stored weights stay in float32 (or float64).

    options = RuntimeOptions(precision="auto", channels_last=True).for_device(device)
    #   "auto": bf16 where the hardware has it (CUDA with bf16, CPUs with avx512_bf16 / AMX), else
    #   fp32; bf16 asked for on a CPU without it warns (emulated: several times slower)
    net = prepare_network(net, options)    # layout set in place; returns what to call
    out = call_network(net, options, x, noise_labels, class_labels)
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import platform
import warnings

import torch
from torch import nn

PRECISIONS = ("fp32", "bf16", "fp16", "auto")    # auto: resolved per device by RuntimeOptions.for_device
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
# CPU features that run bf16 math natively (x86: AVX-512 BF16, AMX; Arm: the BF16 extension);
# without them oneDNN emulates it: on an AVX2-only AMD EPYC sampling measured 8× and a training step
# 11.5× slower than fp32 (docs/speed.md)
NATIVE_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})
EMULATED_BF16_SLOWDOWN = "8–12×"


def cpuinfo_field(name: str) -> str | None:
    """The first value of a field of Linux /proc/cpuinfo ("model name", "vendor_id", …); None
    where there is none."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() == name:
                    return value.strip()
    except OSError:
        pass
    return None


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo), else what the platform says."""
    return cpuinfo_field("model name") or platform.processor() or platform.machine()


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset:
    """The CPU's feature flags as the OS reports them (Linux /proc/cpuinfo "flags" / "Features";
    macOS sysctl machdep.cpu.* and hw.optional.arm.FEAT_*); empty where unknown."""
    flags: set = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in ("flags", "Features"):
                    flags.update(value.split())
    except OSError:
        pass
    if not flags and platform.system() == "Darwin":
        import subprocess

        for name in ("machdep.cpu.features", "machdep.cpu.leaf7_features"):
            r = subprocess.run(["sysctl", "-n", name], capture_output=True, text=True)
            flags.update(v.lower() for v in r.stdout.split())
        r = subprocess.run(["sysctl", "-n", "hw.optional.arm.FEAT_BF16"], capture_output=True, text=True)
        if r.stdout.strip() == "1":
            flags.add("bf16")
    return frozenset(flags)


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` runs bf16 math natively (so that bf16 is faster, not slower, than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(NATIVE_BF16_FLAGS & cpu_flags())
    return False


@dataclasses.dataclass(frozen=True)
class RuntimeOptions:
    precision: str = "fp32"        # network math: "fp32", "bf16"/"fp16" autocast around the network,
                                   # or "auto" (bf16 where native, else fp32; see for_device)
    channels_last: bool = False    # NHWC weights and activations (faster convolutions, same math)
    compile: bool = False          # torch.compile the network (slow first calls, faster after)
    auto: bool = False             # the precision was chosen by "auto" (recorded with results)

    def __post_init__(self):
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        for name in ("channels_last", "compile"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")

    @property
    def amp_dtype(self) -> torch.dtype | None:
        if self.precision == "auto":
            raise ValueError('precision "auto" is resolved per device: call for_device(device) first')
        return AMP_DTYPES.get(self.precision)

    def for_device(self, device: torch.device | str) -> "RuntimeOptions":
        """These options on `device`: "auto" becomes bf16 where `native_bf16(device)`, else fp32;
        unsupported combinations are refused (check); bf16 asked for on a CPU without native bf16
        gives a RuntimeWarning with the expected slowdown (once per process)."""
        if self.precision == "auto":
            return dataclasses.replace(self, precision="bf16" if native_bf16(device) else "fp32", auto=True)
        self.check(device)
        if self.precision == "bf16" and torch.device(device).type == "cpu" and not native_bf16(device):
            _warn_emulated_bf16()
        return self

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
        precision = f"{self.precision} (auto)" if self.auto else self.precision
        return ", ".join([precision] + ["channels-last"] * self.channels_last + ["compiled"] * self.compile)


@functools.lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    warnings.warn(f"bf16 on this CPU, which has no native bf16 (no avx512_bf16 or AMX), is emulated: expect "
                  f"{EMULATED_BF16_SLOWDOWN} slower network math than fp32 (docs/speed.md). Use --precision fp32, "
                  "or auto to get bf16 only where the hardware has it", RuntimeWarning, stacklevel=3)


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
