"""Run every benchmark, each in its own process, write <outdir>/<name>.json and render README.md.

    python -m benchmarks [--quick] [--outdir benchmarks/results] [--only ops,sampling,...]
                         [--skip-paper] [--extra NAME="ARGS"] [--timeout S] [--readme benchmarks/README.md]

--quick passes --quick to every script (small sizes and repeats; scaling also skips the paper
configs) and marks the README as a smoke run. A failing benchmark is reported and the others
still run (one that outruns --timeout counts as failed, exit code 124); the exit code is non-zero if
any failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

try:
    from .common import machine
    from .report import describe_machine, peak_lines, write
except ImportError:                                   # run as `python benchmarks/__main__.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from common import machine
    from report import describe_machine, peak_lines, write

BENCH_DIR = Path(__file__).resolve().parent
BENCHMARKS = {  # name → script; the JSON is <outdir>/<name>.json
    "ops": "ops.py",
    "sampling": "sample_throughput.py",
    "training": "train_throughput.py",
    "scaling": "scaling.py",
    "metrics": "metrics.py",
}


def _rel(arg: str) -> str:
    """A path inside the repository as seen from its root (for the record in run.json)."""
    try:
        return str(Path(arg).resolve().relative_to(BENCH_DIR.parent))
    except ValueError:
        return arg


def run_with_timeout(cmd: list[str], timeout: float | None) -> int:
    """Run cmd (stdout discarded); past `timeout` seconds stop it and every process it started
    (the benchmarks run children of their own) and return 124."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, start_new_session=True)
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return 124
    except KeyboardInterrupt:                       # its own session: Ctrl-C must stop it here
        os.killpg(proc.pid, signal.SIGKILL)
        raise


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: small sizes/repeats (not for citation)")
    ap.add_argument("--outdir", default=str(BENCH_DIR / "results"), help="where the JSON files go")
    ap.add_argument("--readme", help="Markdown report to write (default: benchmarks/README.md for the "
                                     "default --outdir, else <outdir>/README.md)")
    ap.add_argument("--only", help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    ap.add_argument("--skip-paper", action="store_true", help="scaling: do not run the paper ADM configs")
    ap.add_argument("--extra", action="append", default=[], metavar='NAME="ARGS"',
                    help='extra arguments for one benchmark, e.g. scaling="--device cuda --bf16"')
    ap.add_argument("--note", help="a line for the README header (e.g. what else ran on the machine)")
    ap.add_argument("--timeout", type=float, help="seconds each benchmark may run before it is stopped")
    args = ap.parse_args(argv)

    names = list(BENCHMARKS) if not args.only else [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {list(BENCHMARKS)}")
    extra = {}
    for item in args.extra:
        name, _, rest = item.partition("=")
        if name not in BENCHMARKS:
            ap.error(f"--extra {item!r}: unknown benchmark {name!r}")
        extra[name] = extra.get(name, []) + shlex.split(rest)

    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    run_path = outdir / "run.json"
    previous = json.loads(run_path.read_text()) if run_path.exists() else {}
    run = {"date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "quick": args.quick,
           "machine": machine(), "note": args.note,
           # keep the records of benchmarks not re-run this time (their JSON files stay too)
           "benchmarks": {k: v for k, v in previous.get("benchmarks", {}).items() if k not in names}}
    print(f"machine: {describe_machine(run['machine'])}", file=sys.stderr, flush=True)
    failed = []
    for name in names:
        cmd = [sys.executable, str(BENCH_DIR / BENCHMARKS[name]), "--json", str(outdir / f"{name}.json")]
        if args.quick:
            cmd.append("--quick")
        if name == "scaling" and (args.quick or args.skip_paper):
            cmd.append("--skip-paper")
        cmd += extra.get(name, [])
        print(f"== {name}: {shlex.join(cmd)}", file=sys.stderr, flush=True)
        t = time.perf_counter()
        # stdout is the JSON again (it is in the file); stderr (progress, errors) shows live
        rc = run_with_timeout(cmd, args.timeout)
        seconds = time.perf_counter() - t
        print(f"== {name}: exit {rc} after {seconds:.1f} s", file=sys.stderr, flush=True)
        if rc:
            failed.append(name)
            (outdir / f"{name}.json").unlink(missing_ok=True)        # no stale numbers in the report
        run["benchmarks"][name] = {"command": shlex.join(["python", *map(_rel, cmd[1:])]),
                                   "quick": args.quick, "returncode": rc, "wall_s": round(seconds, 1)}
        run_path.write_text(json.dumps(run, indent=2) + "\n")
    default_out = outdir.resolve() == (BENCH_DIR / "results").resolve()
    readme = write(outdir, Path(args.readme or (BENCH_DIR / "README.md" if default_out else outdir / "README.md")))
    for line in peak_lines(outdir):
        print(line)
    print(f"wrote {readme}" + (f"; failed: {', '.join(failed)}" if failed else ""), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
