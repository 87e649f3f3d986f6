"""Shared benchmark helpers: median timings, the machine record, peak-memory probes, --quick
defaults, child processes and JSON output."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

BENCH_DIR = Path(__file__).resolve().parent


def synchronize() -> None:
    """Wait for queued GPU work (CUDA runs asynchronously), so wall times cover it; no-op on CPU."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def median_seconds(fn, repeats: int, warmup: int = 1) -> float:
    """Median wall time of `repeats` calls of fn after `warmup` untimed calls (GPU work included)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize()
        t = time.perf_counter()
        fn()
        synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# CPU features that change our speed figures: vector width and native bf16 / AMX
SPEED_FLAGS = frozenset({"avx", "avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16", "amx_tile",
                         "amx_bf16", "amx_int8", "asimd", "sve", "bf16"})


def _threads_per_core() -> int:
    """SMT siblings share a core's FMA pipes: logical CPUs per physical core (1 if unknown)."""
    try:
        with open("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list") as f:
            text = f.read().strip()
    except OSError:
        return 1
    count = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        count += int(hi) - int(lo) + 1 if hi else 1
    return max(count, 1)


def flops_per_cycle(flags: frozenset, vendor: str | None, family: str | None) -> int:
    """fp32 FLOPs per cycle per core: two FMA pipes of the widest vector the core executes at full
    width (AVX-512: 2 × 16 × 2 = 64; AVX2 + FMA: 32; AVX without FMA: 16; SSE: 8). AMD Zen 4 (family
    25 with AVX-512) executes a 512-bit operation as two 256-bit halves, so its peak is AVX2's 32
    (a 4096² sgemm reached 77 % of that on two cores and 39 % of 64: docs/speed.md)."""
    if "avx512f" in flags:
        return 32 if vendor == "AuthenticAMD" and family == "25" else 64
    return 32 if {"avx2", "fma"} <= flags else 16 if "avx" in flags else 8


def fp32_peak(cores: int) -> dict:
    """The CPU's fp32 peak by the textbook formula: cores × clock × `flops_per_cycle`. The clock is
    the current one from /proc/cpuinfo (turbo and AVX-512 down-clocking move it): an upper bound to
    measure against."""
    from relay_diffusion.networks.runtime import cpu_flags, cpuinfo_field

    per_cycle = flops_per_cycle(cpu_flags(), cpuinfo_field("vendor_id"), cpuinfo_field("cpu family"))
    mhz = []
    try:
        with open("/proc/cpuinfo") as f:
            mhz = [float(line.split(":")[1]) for line in f if line.lower().startswith("cpu mhz")]
    except (OSError, ValueError):
        pass
    ghz = max(mhz) / 1000 if mhz else None
    return {"fp32_peak_gflops": round(cores * ghz * per_cycle, 1) if ghz else None, "flops_per_cycle": per_cycle,
            "clock_ghz": round(ghz, 3) if ghz else None, "peak_cores": cores}


def chain_flops(chain) -> float:
    """FLOPs per image of a RelayChain under its settings: Σ stages evaluations × forward FLOPs
    (models.network_flops)."""
    from relay_diffusion.models import network_flops

    return float(sum(n * network_flops(m)["forward"] for n, m in zip(chain.nfe(), chain.models)))


def peak_use(flops_per_item: float, items_per_s: float, record: dict) -> dict:
    """Achieved GFLOP/s and its fraction of the fp32 peak of the cores torch may use (`machine()`'s
    record: the machine's peak scaled by min(threads, cores) / cores)."""
    gflops = flops_per_item * items_per_s / 1e9
    peak = record.get("fp32_peak_gflops")
    if peak and record.get("threads") and record.get("peak_cores"):
        peak *= min(record["threads"], record["peak_cores"]) / record["peak_cores"]
    return {"gflop_per_item": flops_per_item / 1e9, "gflops_per_s": gflops,
            "fraction_of_fp32_peak": gflops / peak if peak else None}


def machine(device: str = "cpu") -> dict:
    """Where the numbers were measured. `device` is what the benchmark ran on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:                              # not on Linux
        usable = os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    from relay_diffusion.networks.runtime import cpu_flags, cpu_model, native_bf16

    return {"device": device, "torch": torch.__version__, "threads": torch.get_num_threads(),
            "machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpu_model": cpu_model(), "cpu_flags": sorted(cpu_flags() & SPEED_FLAGS),
            "native_bf16": native_bf16("cpu"),
            "logical_cores": os.cpu_count(), "usable_cores": usable,
            **fp32_peak(max(1, usable // _threads_per_core())),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "gpu": gpu,
            "python": platform.python_version()}


def emit(result: dict, path: str | None) -> dict:
    """Print the result as JSON and write it to `path` if given."""
    text = json.dumps(result, indent=2)
    print(text)
    if path:
        Path(path).write_text(text + "\n")
    return result


def add_quick(parser, **quick) -> None:
    """Add --quick: a small smoke-run configuration. `quick` maps argument dests to the values
    --quick uses for the arguments left at their default values (others keep what was given)."""
    parser.add_argument("--quick", action="store_true",
                        help="smoke run with small sizes/repeats (" +
                             ", ".join(f"{k}={v}" for k, v in quick.items()) + "); not for citation")
    parser.set_defaults(_quick_values=quick)


def parse_args(parser, argv=None):
    """parse_args, then apply the --quick values to the arguments left at their defaults."""
    args = parser.parse_args(argv)
    quick = vars(args).pop("_quick_values", {})
    if getattr(args, "quick", False):
        for dest, value in quick.items():
            if getattr(args, dest) == parser.get_default(dest):
                setattr(args, dest, value)
    return args


# ---- the CPU allocator (relay_diffusion/cpu_allocator.py): a process-wide setting -------------

ALLOCATORS = ("system", "tuned")   # glibc's defaults (what plain scripts get) | what `rdm` sets


def apply_allocator(name: str) -> bool:
    """Set this process's allocator; returns whether the tuning took effect."""
    from relay_diffusion.cpu_allocator import tune_cpu_allocator
    if name not in ALLOCATORS:
        raise ValueError(f"allocator must be one of {ALLOCATORS}, got {name!r}")
    return tune_cpu_allocator() if name == "tuned" else False


# ---- peak resident memory (Linux /proc) ------------------------------------------------------

def rss_kib(field: str = "VmRSS:") -> int | None:
    """A kB field of /proc/self/status (VmRSS: now, VmHWM: high-water mark); None if unavailable."""
    try:
        for line in open("/proc/self/status"):
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return None


class PeakRSS:
    """Process resident-memory high-water mark above the level at entry, in MiB (`.mib`).

        with PeakRSS() as peak:
            work()
        peak.mib

    Resets VmHWM by writing "5" to /proc/self/clear_refs, so the number is this block's own peak;
    use it in a fresh process (memory the allocator kept from earlier work hides new growth).
    `.mib` is None where /proc is not available."""

    def __enter__(self):
        self.before = rss_kib("VmRSS:")
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            self.before = None
        self.mib = None
        return self

    def __exit__(self, *exc):
        hwm = rss_kib("VmHWM:")
        if self.before is not None and hwm is not None:
            self.mib = (hwm - self.before) / 1024
        return False


def run_child(args: list[str], env: dict | None = None) -> dict:
    """Run `python *args` and parse the last stdout line as JSON (stderr is shown on failure)."""
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env)
    if out.returncode:
        sys.stderr.write(out.stderr)
        raise RuntimeError(f"child {args[:3]} failed with exit code {out.returncode}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ---- network runtimes (relay_diffusion/networks/runtime.py): name → RuntimeOptions fields -----

RUNTIMES = {
    "fp32": {},
    "fp32_channels_last": dict(channels_last=True),
    "bf16": dict(precision="bf16"),
    "bf16_channels_last": dict(precision="bf16", channels_last=True),
    "fp32_compiled": dict(compile=True),
    "fp32_channels_last_compiled": dict(channels_last=True, compile=True),
    "bf16_channels_last_compiled": dict(precision="bf16", channels_last=True, compile=True),
    "fp16_channels_last": dict(precision="fp16", channels_last=True),                  # CUDA only
    "fp16_channels_last_compiled": dict(precision="fp16", channels_last=True, compile=True),  # CUDA only
}


def add_runtimes(parser, default: tuple, what: str) -> None:
    """Add --runtimes NAME,NAME,… (names of RUNTIMES; `default` when not given)."""
    parser.add_argument("--runtimes", default=",".join(default),
                        help=f"network runtimes {what} (of {', '.join(RUNTIMES)})")


def parse_names(parser, flag: str, text: str, choices) -> list[str]:
    """The names in a comma-list option (`flag`, e.g. --runtimes, --sections); a parser error for
    an empty list or a name not in `choices`."""
    names = [r for r in text.split(",") if r]
    unknown = [r for r in names if r not in choices]
    if not names or unknown:
        parser.error(f"{flag} takes names from {', '.join(choices)}"
                     + (f"; unknown: {', '.join(unknown)}" if unknown else ""))
    return names


def parse_runtimes(parser, text: str) -> list[str]:
    """The names in a --runtimes value (of RUNTIMES)."""
    return parse_names(parser, "--runtimes", text, RUNTIMES)
