"""The `rdm analyze` verb: `schedule` (a relay stage step by step, docs/method.md §3.6) and `snr` (Fig. 2)."""

from __future__ import annotations

import argparse
import csv
import dataclasses
import sys

from ..analysis.images import first_image_shape, image_batches
from ..data.convert import BUILTIN_SOURCES
from ..analysis.plots import PlotUnavailable
from ..analysis.schedule import patch_spectrum, schedule_curves, start_report
from ..analysis.snr import NOISE_KINDS, match_table, signal_spectra, snr_rows
from ..files import check_output_dir, write_json
from ..relay import NOISE_MIXTURES, RelaySchedule
from ..analysis.schedule import relay_step_table
from ..sampling.presets import RELAY_RECIPES
from ..sampling.settings import RelaySamplerSettings
from .common import add_json_flag, add_schedule_flags, add_setting_flags, emit_json, given_fields, positive_list

CSV_COLUMNS = ("resolution", "noise", "s", "sigma", "freq_bin_lo", "freq_bin_hi", "signal_power",
               "noise_power", "snr_db")


def add_parser(verbs, help_text: str) -> argparse.ArgumentParser:
    """Add the `analyze` verb (subcommands schedule, snr) to an argparse subparsers object."""
    analyze = verbs.add_parser("analyze", help=help_text,
                               description="Inspect noise and blur schedules and the frequency "
                                           "analysis behind relay diffusion (paper Fig. 2).")
    what = analyze.add_subparsers(dest="what", metavar="WHAT")
    _add_schedule_parser(what)
    _add_snr_parser(what)
    analyze.set_defaults(func=lambda a: (analyze.print_help(), 2)[1])
    return analyze


def _plot(fn, *args) -> int:
    try:
        fn(*args)
    except PlotUnavailable as e:
        print(f"rdm: error: {e}", file=sys.stderr)
        return 2
    return 0


# --------------------------------------------------------------------------------------------
# rdm analyze schedule


def _add_schedule_parser(sub) -> None:
    p = sub.add_parser(
        "schedule", help="print the σ grid, blur level and NFE of a relay stage",
        description="Show what a relay stage does step by step: the kept σ's of the truncated grid, "
                    "the sampler's u(σ) and blur σ_B, the lowest AC blur factors, the start σ₀ and "
                    "the number of network evaluations, then how much non-DC patch energy the "
                    "forward process still holds at σ₀ (docs/analysis.md). Flags override the recipe.")
    p.add_argument("--recipe", choices=sorted(RELAY_RECIPES), default="default",
                   help="official relay-stage recipe (forward process + sampler) to start from "
                        "(default: generate.py defaults)")
    add_setting_flags(p, RelaySamplerSettings)
    add_schedule_flags(p, ("up_scale", "blur_sigma_max", "prob_length"), prefix="the model's ", flag_prefix="model")
    add_json_flag(p, "the step table and start report")
    p.add_argument("--plot", metavar="PATH.png",
                   help="also draw σ, σ_B and the blur factors against u and σ (needs matplotlib)")
    p.add_argument("--data", metavar="DIR|ZIP|SOURCE",
                   help="weight the non-DC energy by this dataset's patch-DCT spectrum")
    p.add_argument("--max-images", type=int, default=2000, metavar="N",
                   help="images of --data to read (default: 2000)")
    p.set_defaults(func=_run_schedule)


def _run_schedule(args) -> int:
    recipe = RELAY_RECIPES[args.recipe]
    schedule = dataclasses.replace(recipe.schedule, **given_fields(args, RelaySchedule, prefix="model_"))
    settings = dataclasses.replace(recipe.sampler, **given_fields(args, RelaySamplerSettings))
    table = relay_step_table(schedule, settings)
    weights = (patch_spectrum(image_batches(args.data, args.max_images), schedule.up_scale)
               if args.data else None)
    report = start_report(schedule, settings, weights)
    if not emit_json(args, dict(table, start=report)):
        _print_schedule(args.recipe, recipe, schedule, settings, table)
        _print_start_report(report, args.data)
    if args.plot:
        curves = schedule_curves(schedule, settings, weights=weights)
        from ..analysis.plots import plot_schedule
        if _plot(plot_schedule, curves, report, args.plot, f"relay schedule: {args.recipe}"):
            return 2
        print(f"wrote {args.plot}", file=sys.stderr if args.json == "-" else sys.stdout)
    return 0


def _print_schedule(preset, recipe, schedule, settings, table) -> None:
    print(f"preset {preset}: {recipe.note}")
    print(f"model: up_scale={schedule.up_scale} blur_sigma_max={schedule.blur_sigma_max} "
          f"prob_length={schedule.prob_length} (sigma_top={table['sigma_top']:.5f})")
    print(f"grid: {settings.sigma_grid}, {table['steps_kept']} σ's (num_steps {settings.num_steps})   start sigma: "
          f"{table['sigma_start']:.5f}   solver: {settings.solver}   NFE: {table['nfe']}"
          + (f" ({table['nfe_with_guidance']} with guidance {settings.cfg_scale})"
             if settings.cfg_scale != 1 else ""))
    print(f"{'step':>4} {'sigma':>10} {'u':>8} {'blur_sigma':>10} {'alpha01':>8} {'alpha11':>8}")
    for r in table["steps"]:
        print(f"{r['step']:>4} {r['sigma']:>10.5f} {r['u']:>8.4f} {r['blur_sigma']:>10.4f} "
              f"{r['alpha_01']:>8.4f} {r['alpha_11']:>8.4f}")


def _print_start_report(report: dict, data: str | None) -> None:
    print(f"\nat the start sigma {report['sigma_start']:.5f} (u = {report['u']:.4f}, "
          f"blur_sigma = {report['blur_sigma']:.4f}) the forward process keeps these patch-DCT "
          f"blur factors alpha_kl:")
    for row in report["factors"]:
        print("  " + " ".join(f"{a:7.4f}" for a in row))
    print(f"non-DC energy surviving: {100 * report['nondc_energy_white']:.2f} % (white spectrum)"
          + (f", {100 * report['nondc_energy_data']:.2f} % (weighted by {data})"
             if "nondc_energy_data" in report else ""))
    print("the sampler starts from the nearest-upsampled image, which has none of it (docs/analysis.md)")


# --------------------------------------------------------------------------------------------
# rdm analyze snr


def _add_snr_parser(sub) -> None:
    p = sub.add_parser(
        "snr", help="per-frequency SNR of a dataset under i.i.d. and block noise (paper Fig. 2)",
        description="Reproduce the paper's frequency analysis (Fig. 2): per-frequency SNR (global "
                    "DCT) of a dataset at several resolutions under i.i.d. noise and block noise of "
                    "kernel s, at given σ's, on the common frequency axis f = |k|/R; writes "
                    "snr.csv, summary.json and snr.png to --outdir, and answers which σ' at "
                    "resolution sN matches σ with i.i.d. noise at N.")
    p.add_argument("--data", required=True, metavar="DIR|ZIP|SOURCE",
                   help=f"a dataset folder or zip, an .npz, or a built-in source ({', '.join(BUILTIN_SOURCES)})")
    p.add_argument("--outdir", required=True, metavar="DIR", help="folder for snr.csv, summary.json, snr.png")
    p.add_argument("--max-images", type=int, default=2000, metavar="N", help="images to read (default: 2000)")
    p.add_argument("--resolutions", type=positive_list(int), metavar="R[,R...]",
                   help="resolutions to analyse, each dividing the data's (default: R and R/s)")
    p.add_argument("--sigmas", type=positive_list(float), default=[0.1, 0.5, 1.0], metavar="S[,S...]",
                   help="noise levels (default: 0.1,0.5,1)")
    p.add_argument("--block-size", type=int, default=4, metavar="S", help="block-noise kernel s (default: 4)")
    p.add_argument("--noise", type=lambda t: t.split(","), default=["iid", "block"], metavar="KIND[,KIND]",
                   help=f"noise kinds among {', '.join(NOISE_KINDS)} (default: iid,block); relay = "
                        f"RDM's mixture ε + α·Block[s](ε')")
    p.add_argument("--block-scale", type=float, default=0.15, help="α of the relay mixture (default: 0.15)")
    p.add_argument("--noise-mixture", choices=NOISE_MIXTURES, default="official",
                   help="relay mixture normalisation (default: official, no 1/√(1+α²))")
    p.add_argument("--bins", type=int, default=16, help="radial frequency bins over (0, √2] (default: 16)")
    p.add_argument("--band", type=float, default=0.5,
                   help="low band for σ matching: |k| < band × N, N the low resolution (default: 0.5)")
    p.add_argument("--no-plot", action="store_true", help="write only the CSV and the JSON")
    p.set_defaults(func=_run_snr)


def _check_snr_args(args, data_res: int) -> list[int]:
    s = args.block_size
    if s < 1:
        raise ValueError(f"--block-size must be >= 1, got {s}")
    if args.max_images is not None and args.max_images < 1:
        raise ValueError(f"--max-images must be >= 1, got {args.max_images}")
    if args.bins < 1:
        raise ValueError(f"--bins must be >= 1, got {args.bins}")
    if not 0 < args.band <= 1:
        raise ValueError(f"--band must be in (0, 1], got {args.band}")
    if not args.sigmas or not all(0 < v < float("inf") for v in args.sigmas):
        raise ValueError(f"--sigmas must be finite and > 0, got {','.join(map(str, args.sigmas or []))}")
    if not 0 <= args.block_scale < float("inf"):
        raise ValueError(f"--block-scale must be finite and >= 0, got {args.block_scale}")
    bad = [k for k in args.noise if k not in NOISE_KINDS]
    if bad:
        raise ValueError(f"unknown noise kind {bad[0]!r}; choose from {', '.join(NOISE_KINDS)}")
    res = args.resolutions or ([data_res, data_res // s] if s > 1 and data_res % s == 0 else [data_res])
    res = sorted(set(res), reverse=True)
    for m in res:
        if data_res % m:
            raise ValueError(f"resolution {m} does not divide the data's resolution {data_res}")
        if res[0] % m:
            raise ValueError(f"resolution {m} does not divide the top resolution {res[0]}")
    return res


def _run_snr(args) -> int:
    channels, data_res, _ = first_image_shape(args.data)
    resolutions = _check_snr_args(args, data_res)
    outdir = check_output_dir(args.outdir)
    spectra, count = signal_spectra(image_batches(args.data, args.max_images), resolutions)
    mix = dict(block_scale=args.block_scale, mixture=args.noise_mixture)
    rows = snr_rows(spectra, args.sigmas, args.block_size, args.noise, args.bins, **mix)
    kinds = ["block", "iid"] + (["relay"] if "relay" in args.noise else [])
    matches = match_table(spectra, args.sigmas, args.block_size, args.band, kinds, **mix)
    outdir.mkdir(parents=True, exist_ok=True)                 # only once everything is computed
    with open(outdir / "snr.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    summary = dict(data=str(args.data), num_images=count, channels=channels, data_resolution=data_res,
                   resolutions=resolutions, block_size=args.block_size, sigmas=args.sigmas,
                   band=args.band, frequency_axis="f = |(k, l)| / R, R = top resolution",
                   matches=matches)
    write_json(outdir / "summary.json", summary)
    print(f"analysed {count} images of {args.data} at {', '.join(map(str, resolutions))}; "
          f"wrote {outdir / 'snr.csv'} and {outdir / 'summary.json'}")
    _print_matches(matches, args.block_size)
    if not args.no_plot:
        from ..analysis.plots import plot_snr
        if _plot(plot_snr, rows, outdir / "snr.png", f"{args.data}: per-frequency SNR (Fig. 2)"):
            return 2
        print(f"wrote {outdir / 'snr.png'}")
    return 0


def _print_matches(matches: list[dict], s: int) -> None:
    if not matches:
        print(f"no pair (N, {s}N) among the resolutions: nothing to match")
        return
    print(f"which sigma at sN matches sigma with i.i.d. noise at N (mean log-SNR over |k| < "
          f"{matches[0]['band']}·N, {matches[0]['coefficients']} AC coefficients):")
    for m in matches:
        line = (f"  sigma {m['sigma']:g} at {m['low']}x{m['low']} (iid)  ~  "
                f"{m['sigma_block']:.4g} with block noise s={s} at {m['high']}x{m['high']} "
                f"(x{m['ratio_block']:.3f})  ~  {m['sigma_iid']:.4g} with iid noise "
                f"(x{m['ratio_iid']:.3f})")
        if "sigma_relay" in m:
            line += f"  ~  {m['sigma_relay']:.4g} with relay noise (x{m['ratio_relay']:.3f})"
        print(line)
