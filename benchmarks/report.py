"""Render benchmarks/README.md from the JSON files a benchmark run wrote (nothing is re-run).

    python -m benchmarks.report [--outdir benchmarks/results] [--readme PATH]

Reads <outdir>/run.json (date, machine, mode; written by `python -m benchmarks`) and
<outdir>/{ops,sampling,training,scaling,metrics}.json; missing files give a "not run" note.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import statistics
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
NAMES = ("ops", "sampling", "training", "scaling", "metrics")


# ---- formatting ------------------------------------------------------------------------------

def num(x, digits: int = 3) -> str:
    """Significant-figure formatting; integers with thousands separators; None → —."""
    if x is None:
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return f"{x:,}"
    if x == 0:
        return "0"
    if abs(x) >= 10 ** digits:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def ms(seconds) -> str:
    return "—" if seconds is None else num(seconds * 1e3)


def ratio(x) -> str:
    return "—" if x is None else f"{num(x)}×"


def gflops(r: dict) -> str:
    """Achieved GFLOP/s of a timing record (common.peak_use), — for records from before it."""
    return num(r.get("gflops_per_s"))


def share(r: dict, key: str = "fraction_of_fp32_peak") -> str:
    """The record's fraction of the fp32 peak as a percentage."""
    f = r.get(key)
    return "—" if f is None else f"{100 * f:.0f} %"


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def load(outdir: Path, name: str):
    p = outdir / f"{name}.json"
    return json.loads(p.read_text()) if p.exists() else None


# ---- sections --------------------------------------------------------------------------------

def header(run: dict | None, results: dict) -> str:
    any_result = next((r for r in results.values() if r), {}) or {}
    m = (run or {}).get("machine") or any_result
    quick = bool((run or {}).get("quick")) or any(r.get("quick") for r in results.values() if r)
    date = (run or {}).get("date")
    if date is None:
        date = "unknown (no run.json)"
    threads = m.get("threads")
    omp = m.get("omp_num_threads")
    out = ["# Benchmarks", ""]
    if quick:
        out += ["> **Quick mode — not for citation.** These numbers come from a `--quick` smoke run (tiny "
                "sizes, 1–3 repeats, paper configs not measured) that only checks that every benchmark runs. "
                "Re-run `python -m benchmarks` for citable numbers.", ""]
    out += [f"- **Date:** {date}",
            f"- **CPU:** {m.get('cpu_model', m.get('processor', '?'))} — {m.get('logical_cores', '?')} logical "
            f"cores ({m.get('usable_cores', '?')} usable by the process)",
            f"- **Threads:** torch {threads}" + (f" (OMP_NUM_THREADS={omp})" if omp else ""),
            f"- **CPU flags that matter:** {', '.join(m['cpu_flags']) or 'none'}; native bf16: "
            f"{'yes' if m.get('native_bf16') else 'no'}" if "cpu_flags" in m else "- **CPU flags:** not recorded",
            f"- **fp32 peak:** {num(m['fp32_peak_gflops'])} GFLOP/s = {m['peak_cores']} cores × "
            f"{m['clock_ghz']} GHz × {m['flops_per_cycle']} FLOPs/cycle" if m.get("fp32_peak_gflops")
            else "- **fp32 peak:** not recorded",
            f"- **GPU:** {m.get('gpu') or 'none'}",
            f"- **Software:** torch {m.get('torch', '?')}, Python {m.get('python', '?')}"]
    if run and run.get("note"):
        out.append(f"- **Note:** {run['note']}")
    out += ["", "Every time is the median of the stated number of repeats after warm-up; every ratio compares "
            "two medians measured in the same run (so ratios, not absolute times, are what carry over "
            "between machines).", "",
            "Every JSON records the machine (`common.machine`): CPU model, the flags that change speed figures "
            "(`cpu_flags`: avx/avx2/fma/avx512*/amx*/bf16), whether bf16 is native (`native_bf16`), cores, "
            "threads, torch version, and the fp32 peak by the textbook formula `fp32_peak_gflops` = physical "
            "cores × clock × FLOPs per cycle (two FMA pipes of the widest vector the core executes at full "
            "width: AVX-512 64, AVX2 + FMA 32, AVX 16, SSE 8; AMD Zen 4 splits AVX-512 into two 256-bit "
            "halves, so 32; the current clock from /proc/cpuinfo), an upper bound. Every timing comes with its "
            "achieved GFLOP/s and share of that peak (`common.peak_use`): network FLOPs per image (sampling: "
            "evaluations × a forward; training: a forward + backward of one image through the preconditioned "
            "network; scaling: a forward) × images per second, against the peak of the cores torch may use "
            "(min(threads, cores) of them). Results from before these records show —. Tables per CPU kind: "
            "docs/speed.md.", ""]
    return "\n".join(out)


def ops_section(d: dict) -> str:
    s, shape = d["seconds"], "×".join(str(v) for v in d["shape"])
    rows = [
        ["`torch.randn` (baseline)", ms(s["randn"]), "1×", "", ""],
        ["`blur` (one σ_B per sample)", ms(s["blur"]), ratio(d["blur_over_randn"]),
         ratio(d["blur_speedup_vs_fft_reference"]) + " vs FFT patch-DCT reference", f"≤ {d['targets']['blur_over_randn']}× randn"],
        ["`blur` (shared σ_B)", ms(s["blur_shared_sigma"]), ratio(d["blur_shared_sigma_over_randn"]), "", ""],
        ["`patch_dct` + `patch_idct`", ms(s["patch_dct_round_trip"]), ratio(s["patch_dct_round_trip"] / s["randn"]), "", ""],
        ["`block_noise` transform only", ms(s["block_noise_transform"]), ratio(d["block_noise_transform_over_randn"]),
         ratio(d["block_noise_transform_speedup_vs_roll_reference"]) + " vs s² rolls", ""],
        ["`block_noise` incl. its randn", ms(s["block_noise"]), ratio(d["block_noise_over_randn"]),
         ratio(d["block_noise_speedup_vs_roll_reference"]) + " vs s² rolls", f"≤ {d['targets']['block_noise_over_randn']}× randn"],
        ["`RelaySchedule.noise` (ε + block noise)", ms(s["relay_noise"]), ratio(d["relay_noise_over_randn"]), "", ""],
        ["reference blur (FFT patch DCT)", ms(s["reference_blur_fft"]), ratio(s["reference_blur_fft"] / s["randn"]), "", ""],
        ["reference block noise (s² rolls, incl. randn)", ms(s["reference_block_noise_rolls"]),
         ratio(s["reference_block_noise_rolls"] / s["randn"]), "", ""],
    ]
    return "\n".join([
        "## Relay operator ops (`ops.py`)", "",
        f"Tensor {shape} float32, patch / block size {d['patch']}; median of {d.get('repeats', '?')} "
        f"(references: {d.get('reference_repeats', '?')}).", "",
        table(["operation", "median ms", "time ÷ randn", "speed-up over reference (reference ÷ ours)", "target"], rows)])


def sampling_sections(d: dict) -> str:
    parts = []
    if "sampler_overhead" in d:
        parts.append(overhead_section(d["sampler_overhead"]))
    if "chains" in d:
        rows = []
        for name, c in d["chains"].items():
            if "skipped" in c:
                rows.append([f"`{name}`", "—", "—", "—", "—", "—", "—", f"skipped: {c['skipped']}"])
            else:
                rows.append([f"`{name}`", c["images"], c.get("repeats", "?"), num(c["seconds"]),
                             num(c["images_per_s"]), gflops(c), share(c), c["settings"]])
        parts.append("\n".join([
            "## Sampling throughput (`sample_throughput.py`)", "",
            f"Whole 2-stage chains (base sampler, upsample, relay sampler) with real networks, on {d.get('device', 'cpu')}.",
            "", table(["chain", "images per call", "repeats", "median s per call", "images/s", "GFLOP/s",
                       "share of fp32 peak", "settings"], rows)]))
    if "chain_vs_official" in d:
        parts.append(official_section(d["chain_vs_official"]))
    if "chain_vs_official_tuned_allocator" in d:
        parts.append(official_section(d["chain_vs_official_tuned_allocator"]))
    if "rdm_tuned_vs_official_system_allocator" in d:
        rows = [[f"ours, `{k}`", ratio(v)] for k, v in d["rdm_tuned_vs_official_system_allocator"].items()]
        parts.append("\n".join([
            "### As run: `rdm` (tuned allocator) against the official samplers as a plain script (system allocator)",
            "", "Times from the two runs above (ours from the tuned one, the official chain from the system one).",
            "", table(["sampler, network runtime", "speed-up over official"], rows)]))
    return "\n\n".join(parts)


def overhead_section(o: dict) -> str:
    ps = o["seconds_per_step"]
    shape = "×".join(str(v) for v in o["shape"])
    pe = o.get("seconds_per_evaluation", {})
    per_eval = lambda k: ms(pe[k]) if k in pe else "—"                 # noqa: E731
    rows = [["relay_sampler, float32", ms(ps["ours_float32"]), per_eval("ours_float32"),
             ratio(o["overhead_reduction_float32"])],
            ["relay_sampler, float64", ms(ps["ours_float64"]), per_eval("ours_float64"),
             ratio(o["overhead_reduction_float64"])]]
    if "ours_dpmpp_2m_pc_float32" in ps:
        rows.append(["relay_sampler `solver=\"dpmpp-2m-pc\"`, float32", ms(ps["ours_dpmpp_2m_pc_float32"]),
                     per_eval("ours_dpmpp_2m_pc_float32"), "—"])
    rows.append(["official-style transcription, float64 (reference)", ms(ps["reference_float64"]),
                 per_eval("reference_float64"), "1×"])
    return "\n".join([
        "## Sampler overhead (`sample_throughput.py`)", "",
        f"The relay (stage-2) sampler with a trivial denoiser D(x) = 0.9·x, so only the sampler's own work "
        f"is timed: {shape}, {o['steps']} steps, median of {o.get('repeats', '?')} "
        f"(reference: {o.get('reference_repeats', '?')}); target ≥ {num(o['target_reduction'])}× less overhead.", "",
        table(["sampler", "median ms per step", "median ms per network evaluation",
               "overhead reduction (reference ÷ this)"], rows)])


def official_section(c: dict) -> str:
    official = c.get("official_peak_use", {})
    rows = [["official samplers (float64 transcription, fp32 eager network)", "—",
             num(statistics.median(c["official_seconds"])), num(c["official_images_per_s"]), gflops(official),
             share(official), "1×"]]
    for name, r in c["ours"].items():
        if "skipped" in r:
            rows.append([f"ours, `{name}`", "—", "—", "—", "—", "—", f"skipped: {r['skipped']}"])
        else:
            rows.append([f"ours, `{name}`", num(r["first_call_seconds"]), num(r["seconds"]), num(r["images_per_s"]),
                         gflops(r), share(r), ratio(r["speedup_vs_official"])])
    calls = " + ".join(map(str, c["network_calls_per_image"]))
    t = c.get("targets", {})
    allocator = {"system": "glibc's default CPU allocator on both sides",
                 "tuned": "the tuned CPU allocator (what `rdm` sets, docs/speed.md) on both sides"}
    return "\n".join([
        f"## Our chain against the official samplers (`sample_throughput.py`), {c.get('allocator', 'system')} "
        f"allocator", "",
        f"One process, {allocator[c.get('allocator', 'system')]}.",
        f"{c['settings']}, {c['images']} image{'s' * (c['images'] != 1)} per call, device "
        f"{c.get('device', 'cpu')}; the same weights and "
        f"{calls} network calls per image on both sides (checked). The official chain is timed before and after "
        f"ours (median of {c['repeats']} each time; the median of both); first call = warm-up, compilation "
        f"included. Best runtime at unchanged quality: `{c['best_runtime']}`, "
        f"**{ratio(c['chain_speedup_vs_official'])}** (fp32 network math: "
        f"**{ratio(c['chain_speedup_vs_official_fp32_math'])}**; bf16, which costs some quality "
        f"(docs/speed.md): {ratio(c.get('chain_speedup_vs_official_bf16'))}); targets {ratio(t.get('fp32_math'))} fp32, "
        f"{ratio(t.get('bf16'))} bf16 on CPU, {ratio(t.get('gpu'))} on GPU.", "",
        table(["sampler, network runtime", "first call s", "median s per call", "images/s", "GFLOP/s",
               "share of fp32 peak", "speed-up over official"], rows)])


def training_section(d: dict) -> str:
    parts = []
    if "results" in d:
        rows = [[r["config"], f"`{r['network']}`", r["resolution"], r["batch"], num(r["params"]), ms(r["step_s"]),
                 num(r["images_per_s"]), gflops(r), share(r), ms(r["network_fwd_bwd_s"]),
                 f"{100 * r['outside_network_share']:.1f} %", num(r["peak_rss_mib"])] for r in d["results"]]
        parts.append("\n".join([
            "## Training throughput (`train_throughput.py`)", "",
            f"Full trainer steps (data, relay corruption, loss, optimizer, EMA) on synthetic data, "
            f"{d.get('device', 'cpu')}, median of {d.get('steps', '?')} steps after {d.get('warmup_steps', 3)} "
            f"warm-up steps; each config in its own process. \"Outside network\" = 1 − (network forward+backward ÷ "
            f"whole step), both medians from the same run; target ≤ {100 * d['target_outside_network_share']:.0f} %.",
            "", table(["config", "network", "res", "batch", "params", "step ms", "images/s", "GFLOP/s",
                       "share of fp32 peak", "network fwd+bwd ms", "outside network", "process peak RSS MiB"],
                      rows)]))
    if "runtimes" in d:
        rt = d["runtimes"]
        speed = rt["step_speedup_vs_fp32_eager"]
        rows = []
        if "baseline" in rt:
            b = rt["baseline"]
            rows.append(["`fp32`, system allocator (baseline)", num(b["first_step_s"]), ms(b["step_s"]),
                         num(b["images_per_s"]), gflops(b), share(b), ms(b["network_fwd_bwd_s"]), "1×"])
        for name, r in rt["rows"].items():
            if "skipped" in r:
                rows.append([f"`{name}`", "—", "—", "—", "—", "—", "—", f"skipped: {r['skipped']}"])
            else:
                rows.append([f"`{name}`", num(r["first_step_s"]), ms(r["step_s"]), num(r["images_per_s"]),
                             gflops(r), share(r), ms(r["network_fwd_bwd_s"]), ratio(speed.get(name))])
        parts.append("\n".join([
            "### Training step per network runtime", "",
            f"{rt['config']}, batch {rt['batch']}, {d.get('device', 'cpu')}, {rt.get('allocator', 'system')} CPU "
            f"allocator (the baseline: eager fp32 on glibc's default allocator, plain PyTorch); each runtime in its "
            f"own process, the "
            f"same step timing as above; first step = warm-up, compilation included. Best: `{rt['best']}`, "
            f"**{ratio(speed.get(rt['best']))}** over eager fp32 (target {ratio(rt['target_speedup'])}).", "",
            table(["runtime", "first step s", "step ms", "images/s", "GFLOP/s", "share of fp32 peak",
                   "network fwd+bwd ms", "speed-up over eager fp32"], rows)]))
    return "\n\n".join(parts)


def scaling_section(d: dict) -> str:
    base = d.get("base_resolution", 32)
    on_cuda = str(d.get("device", "cpu")).startswith("cuda")
    mem = "peak MiB/img (CUDA allocated)" if on_cuda else "peak MiB/img (RSS)"

    def tables(rows: list) -> list[str]:
        """Absolute values and growth vs the base resolution; unmeasured rows keep params/FLOPs."""
        if not rows:
            return ["(none)"]
        def t(r, key, fmt):
            return fmt(r[key]) if r.get("measured", True) else "not run"
        absolute = [[f"`{r['network']}`", r["resolution"], num(r["params"]), num(r["flops_per_image"] / 1e9),
                     t(r, "forward_s_per_image", ms), t(r, "train_step_s_per_image", ms),
                     t(r, "forward_gflops_per_s", num), t(r, "forward_peak_mib_per_image", num),
                     t(r, "train_peak_mib_per_image", num)] for r in rows]
        growth = [[f"`{r['network']}`", r["resolution"], ratio(g["pixels"]), ratio(g["flops"]),
                   ratio(g["forward_time"]), ratio(g["train_time"]), ratio(g["forward_memory"]),
                   ratio(g["train_memory"])] for r in rows for g in [r["growth_vs_base"]]]
        return [table(["network", "res", "params", "fwd GFLOPs/img", "fwd ms/img", "train ms/img", "fwd GFLOP/s",
                       "fwd " + mem, "train " + mem], absolute), "",
                f"Growth relative to {base}×{base} (value at res ÷ value at {base}, same network, same run):", "",
                table(["network", "res", "pixels", "FLOPs", "fwd time", "train time", "fwd memory",
                       "train memory"], growth)]

    tiny, paper = d["tiny"], d["paper"]
    prec = "bf16 autocast" if d.get("bf16") else "float32"
    batch = tiny[0]["batch"] if tiny else "?"
    reps = tiny[0]["repeats"] if tiny else "?"
    paper_reps = next((r["repeats"] for r in paper if r.get("measured")), None)
    return "\n".join([
        "## Time and memory per image vs resolution (`scaling.py`)", "",
        f"Device {d.get('device', 'cpu')}, {prec}. Forward = `torch.no_grad()` inference forward; train = "
        f"forward + backward of the network (no optimizer). FLOPs: {d['flops']}. Memory: {d['memory']}, "
        f"divided by the batch. FLOPs count convolutions, matmuls and attention, not element-wise ops.", "",
        f"### Tiny presets (batch {batch}, median of {reps} calls)", "",
        "Built for each resolution with `with_data(res, 3, 0)`. `attn_resolutions` are in pixels, so the "
        "tiny networks keep self-attention only where a level is 8×8 (tiny-32 at 32; tiny-64 at 32 and 64), "
        "as the parameter counts show.", "",
        *tables(tiny), "",
        f"### Paper ADM configs (batch 1, median of {paper_reps or '—'} calls after a memory-probe call)", "",
        "The official networks (labels and augmentation inputs kept) built at each resolution; native "
        "resolutions: imagenet64-stage1 64, imagenet256-stage2 and celebahq256-stage2 256. Configs not "
        "run (`--paper`, `--skip-paper`) still show parameters and FLOPs.", "",
        *tables(paper)])


def metrics_section(d: dict) -> str:
    inc, fn = d["inception_32px"], d["feature_net_32px"]
    rows = [["FID Inception-v3 (32 px input, resized to 299)", inc["batch"], num(inc["images_per_s"]), "1×"],
            ["Fashion-MNIST feature net (32 px)", fn["batch"], num(fn["images_per_s"]),
             ratio(d["feature_net_over_inception"])]]
    pr = [[num(p["n"]), p["dim"], num(p["batch"]), p.get("repeats", 1), num(p["seconds"]),
           num(p["peak_above_inputs_mib"]), num(p["inputs_mib"])] for p in d["precision_recall"]]
    return "\n".join([
        "## Evaluation costs (`metrics.py`)", "",
        f"Feature extraction, median of {d.get('repeats', '?')} batches after one warm-up batch:", "",
        table(["feature network", "batch", "images/s", "throughput ÷ Inception"], rows), "",
        "Improved precision/recall (k = 3) on two random feature sets, each chunk size in a fresh process; "
        "peak = resident-memory high-water mark above the inputs:", "",
        table(["images per set", "dim", "distance chunk", "repeats", "median s", "peak MiB", "inputs MiB"], pr)])


SECTIONS = {"ops": ops_section, "sampling": sampling_sections, "training": training_section,
            "scaling": scaling_section, "metrics": metrics_section}

HOW_TO_RUN = """## How to run

From the repository root (the package installed, e.g. `pip install -e .`):

```bash
python -m benchmarks                          # everything, writes benchmarks/results/*.json + this README
python -m benchmarks --quick                  # smoke run: small sizes and repeats (not for citation)
python -m benchmarks --only ops,scaling       # a subset: ops, sampling, training, scaling, metrics
python -m benchmarks --skip-paper             # scaling without the (slow on CPU) paper configs (≈ 3.5 min each on 2 cores)
python -m benchmarks --extra scaling="--paper imagenet256-stage2"   # run only some paper configs
python -m benchmarks --extra scaling="--device cuda --bf16"   # extra arguments for one script
python -m benchmarks.report --outdir benchmarks/results      # re-render this README from the JSON files
```

Each benchmark runs in its own process and also works standalone, e.g.
`python benchmarks/ops.py --json ops.json [--quick]`; `--help` lists each script's sizes and repeats.
Set `OMP_NUM_THREADS` to pin the thread count; it is recorded above.

| benchmark | script | JSON |
|---|---|---|
| relay operator ops | `ops.py` | `ops.json` |
| sampler overhead, sampling throughput | `sample_throughput.py` | `sampling.json` |
| training throughput | `train_throughput.py` | `training.json` |
| time / memory per image vs resolution | `scaling.py` | `scaling.json` |
| evaluation costs | `metrics.py` | `metrics.json` |
"""


def render(outdir: Path) -> str:
    outdir = Path(outdir)
    run = load(outdir, "run")
    results = {name: load(outdir, name) for name in NAMES}
    parts = [header(run, results)]
    for name in NAMES:
        d = results[name]
        status = ((run or {}).get("benchmarks") or {}).get(name, {})
        if d is None:
            why = f"failed (exit code {status['returncode']})" if status.get("returncode") else "not run"
            parts.append(f"## {name}\n\n_{why}; no `{name}.json` in the results._")
            continue
        try:
            parts.append(SECTIONS[name](d))
        except (KeyError, TypeError, ZeroDivisionError) as e:
            parts.append(f"## {name}\n\n_could not render `{name}.json`: {type(e).__name__}: {e}_")
    parts.append(HOW_TO_RUN)
    return "\n\n".join(p.rstrip() for p in parts) + "\n"


def describe_machine(m: dict) -> str:
    """One line: CPU, cores, the flags that matter, native bf16, fp32 peak, torch."""
    peak = f"fp32 peak {num(m['fp32_peak_gflops'])} GFLOP/s" if m.get("fp32_peak_gflops") else "fp32 peak unknown"
    return (f"{m.get('cpu_model', '?')}, {m.get('usable_cores', '?')} usable cores, {m.get('threads', '?')} threads, "
            f"flags {' '.join(m.get('cpu_flags') or []) or 'none'}, native bf16 {'yes' if m.get('native_bf16') else 'no'}, "
            f"{peak}, GPU {m.get('gpu') or 'none'}, torch {m.get('torch', '?')}")


def item_name(item, index: int) -> str:
    """A list entry's name in a JSON path: its config (training), its network@resolution (scaling),
    else its index."""
    if isinstance(item, dict) and "config" in item:
        return str(item["config"])
    if isinstance(item, dict) and "network" in item:
        return f"{item['network']}@{item['resolution']}" if "resolution" in item else str(item["network"])
    return str(index)


def peak_lines(outdir: Path) -> list[str]:
    """Every timing in the results with its GFLOP/s and share of the fp32 peak, named by its path in
    the JSON (e.g. training: runtimes/rows/fp32)."""
    out = []

    def walk(node, path):
        if isinstance(node, dict):
            for what in ("", "forward_"):                        # scaling.py times the forward alone
                if node.get(what + "gflops_per_s") is not None:
                    out.append(f"{'/'.join(path)}{' forward' * bool(what)}: {num(node[what + 'gflops_per_s'])} "
                               f"GFLOP/s, {share(node, what + 'fraction_of_fp32_peak')} of the fp32 peak")
            for k, v in node.items():
                walk(v, path + [str(k)])
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, path + [item_name(v, i)])

    for name in NAMES:
        d = load(Path(outdir), name)
        if d:
            walk(d, [name])
    return out


def write(outdir: Path, readme: Path) -> Path:
    readme = Path(readme)
    readme.write_text(render(outdir))
    return readme


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outdir", default=str(BENCH_DIR / "results"), help="folder with the benchmark JSON files")
    ap.add_argument("--readme", help="Markdown file to write (default: benchmarks/README.md for the default "
                                     "--outdir, else <outdir>/README.md, so other results never overwrite it)")
    args = ap.parse_args(argv)
    outdir = Path(args.outdir)
    default_out = outdir.resolve() == (BENCH_DIR / "results").resolve()
    path = write(outdir, Path(args.readme or (BENCH_DIR / "README.md" if default_out else outdir / "README.md")))
    print(f"wrote {path} ({_dt.datetime.now().strftime('%H:%M:%S')})")


if __name__ == "__main__":
    main()
