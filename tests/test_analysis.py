"""`relay_diffusion.analysis`: the Fig. 2 frequency analysis and the schedule report (docs/method.md §2.1, docs/method.md §3.6)."""

import csv
import importlib.util
import json
import math
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from relay_diffusion.analysis import (band_mask, block_power_stationary,
                                      match_sigma, noise_power, noise_power_1d, signal_spectra,
                                      snr_rows, start_report, surviving_energy, upsample_gain)
from relay_diffusion.analysis.schedule import schedule_curves
from relay_diffusion.cli import main
from relay_diffusion.relay import block_axis_covariance, block_noise, block_noise_covariance, patch_dct, patch_idct
from relay_diffusion.sampling.presets import RELAY_RECIPES

HAVE_MPL = importlib.util.find_spec("matplotlib") is not None


def db(x):
    return 10 * torch.log10(x)


def torus_deficit(s, n):
    """Relative power that Block[s]'s wrap-around removes from an odd DCT index k ≪ n (derived:
    the DCT assumes mirror boundaries, the torus pairs the two edges with opposite sign)."""
    return 4 * (s * s - 1) / (3 * s * n)


def box_attenuation(s, f):
    """r(f) = h²/s: what box-down then nearest-up leaves of a band-limited coefficient, per axis."""
    r = torch.sin(math.pi * s * f / 2) ** 2 / (s * s * torch.sin(math.pi * f / 2) ** 2)
    r[f == 0] = 1.0
    return r


# --------------------------------------------------------------------------------------------
# Noise spectra


def test_block_axis_covariance_is_the_factor_of_relays_covariance():
    for n, s in [(8, 4), (12, 3), (8, 2)]:
        a = block_axis_covariance(n, s)
        assert torch.allclose(torch.kron(a, a), block_noise_covariance(n, n, s), atol=1e-12)


def test_block_noise_spectrum_matches_monte_carlo_draws():
    """The exact DCT spectrum of Block[s] (wrap-around included) against 3000 draws of
    relay.block_noise; the draws also resolve the 16 % torus deficit at odd k (n = 32) that the
    stationary closed form misses."""
    n, s, draws = 32, 4, 3000
    coef = patch_dct(block_noise(torch.randn(draws, 1, n, n, dtype=torch.float64), s), n)
    measured = coef.pow(2).mean(dim=(0, 1))
    exact = noise_power(n, "block", s)
    # each coefficient: a mean of 3000 χ²₁ draws, relative std √(2/3000) = 2.6 %; index 16 = 2n/s
    # is an exact zero of the box filter (F_s(π) = 0), where both are round-off
    live = exact > 1e-12
    assert ((measured[live] / exact[live] - 1).abs() < 5 * math.sqrt(2 / draws)).all()
    assert (measured[~live] < 1e-20).all() and (~live).sum() == 2 * n - 1
    v = noise_power_1d(n, "block", s)
    per_row = measured.mean(1) / v.mean()                       # 96 000 draws per row: std 0.5 %
    assert torch.allclose(per_row, v, rtol=0.03)
    stationary = block_power_stationary(n, s)
    odd = torch.arange(1, n // s, 2)
    assert ((per_row[odd] / stationary[odd] - 1) < -0.10).all()   # the wrap-around is real


def test_stationary_block_spectrum_is_upsampled_iid_noise_and_exact_up_to_the_torus():
    for n, s in [(32, 4), (256, 4), (64, 2)]:
        low = n // s
        assert torch.allclose(block_power_stationary(n, s)[:low], upsample_gain(low, s), rtol=1e-12)
        ratio = noise_power_1d(n, "block", s)[:low] / upsample_gain(low, s)
        assert torch.allclose(ratio[0::2], torch.ones_like(ratio[0::2]), atol=1e-10)
        odd = ratio[1:low // 2:2]                               # k ≪ n: the derivation's regime
        assert torch.allclose(odd, torch.full_like(odd, 1 - torus_deficit(s, n)),
                              atol=0.1 * torus_deficit(s, n))
        assert (ratio[1::2] >= 1 - torus_deficit(s, n) - 1e-3).all()   # k = 1 is the worst


# --------------------------------------------------------------------------------------------
# The required SNR test (Fig. 2c): block noise s at sN ≈ i.i.d. noise at N; i.i.d. at sN is not.
#
# Tolerance, derived: on the common sN grid, i.i.d. noise at N has power h(k)²h(l)² (docs/method.md §2.1)
# and Block[s] at sN has v(k)v(l) = h(k)²h(l)²·τ_kτ_l, where τ = 1 at even k and
# 1 − 4(s²−1)/(3s·sN) at odd k (the torus wrap-around). So every coefficient matches within
# 2·10·log10(1/(1 − 4(s²−1)/(3s·sN))): 0.17 dB at sN = 256, 1.5 dB at sN = 32 (s = 4). i.i.d.
# noise at sN has power 1, short by h²h² ≥ s²·r(1/4s)² ≈ 11.6 dB in the low band
# f = |k|/sN < 1/(4s) (r: the box response, 0.952 at f = 1/(4s) for s = 4).


@pytest.mark.parametrize("top,s,tol_db", [(256, 4, 0.2), (32, 4, 1.5), (64, 2, 0.6)])
def test_block_noise_at_sN_matches_iid_noise_at_N_in_the_low_band(top, s, tol_db):
    low = top // s
    bound = -20 * math.log10(1 - torus_deficit(s, top))
    assert bound <= tol_db
    rows = snr_rows({top: torch.ones(top, top, dtype=torch.float64),
                     low: torch.ones(low, low, dtype=torch.float64)}, [0.5], s, bins=top)
    f = torch.arange(low, dtype=torch.float64) / top
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    band = radius < 1 / (4 * s)
    iid_low = upsample_gain(low, s)[:, None] * upsample_gain(low, s)[None, :]      # on the sN grid
    block_high = noise_power(top, "block", s)[:low, :low]
    iid_high = noise_power(top, "iid", s)[:low, :low]
    gap_block = db(block_high / iid_low)[band].abs()
    gap_iid = db(iid_low / iid_high)[band]
    assert gap_block.max() <= tol_db
    assert gap_iid.min() >= 20 * math.log10(s) - 0.5                    # ≈ 12 dB for s = 4
    # the same through the binned CSV rows (σ cancels): low-band bins of block@sN sit on iid@N
    def band_rows(res, kind):
        return {r["freq_bin_lo"]: r["noise_power"] for r in rows if r["resolution"] == res
                and r["noise"] == kind and 0 < r["freq_bin_hi"] <= 1 / (4 * s)}
    block, iid_n, iid_sn = band_rows(top, "block"), band_rows(low, "iid"), band_rows(top, "iid")
    assert block and block.keys() == iid_n.keys()
    for lo in block:
        assert abs(10 * math.log10(block[lo] / iid_n[lo])) <= tol_db
        assert 10 * math.log10(iid_n[lo] / iid_sn[lo]) >= 20 * math.log10(s) - 0.5


# --------------------------------------------------------------------------------------------
# σ matching


def band_limited_images(top, low, count=3):
    """Random images whose global DCT is zero for k or l ≥ low: box-downsampling them to `low`
    aliases nothing, so the expected answers below are exact."""
    c = torch.zeros(count, 1, top, top, dtype=torch.float64)
    c[:, :, :low, :low] = torch.randn(count, 1, low, low, dtype=torch.float64)
    return patch_idct(c, top)


@pytest.mark.parametrize("top,s,band", [(256, 4, 0.25), (256, 4, 0.5), (32, 4, 0.5)])
def test_sigma_matching_block_is_about_sigma_and_iid_about_s_sigma(top, s, band):
    """ln(σ'/σ) = ½ mean_band ln(P_sN/(n·P_N)); for band-limited images P_N = r_k r_l P_sN / s²,
    so σ'_iid/σ = s/√gm(r_k r_l) ≥ s and σ'_block/σ = 1/(gm(r_k r_l)·√gm(τ_kτ_l)) ≥ 1 (gm: the
    geometric mean over the band): the box filter and the torus only raise the answers a little."""
    low = top // s
    spectra, _ = signal_spectra([band_limited_images(top, low)], [top, low])
    block = match_sigma(spectra, low, s, band, "block")["ratio"]
    iid = match_sigma(spectra, low, s, band, "iid")["ratio"]
    f = torch.arange(low, dtype=torch.float64) / top
    r = box_attenuation(s, f)
    v = noise_power_1d(top, "block", s)[:low]
    mask = band_mask(low, band)
    gm_r = math.exp(float((r[:, None] * r[None, :]).log()[mask].mean()))
    gm_v = math.exp(float((v[:, None] * v[None, :]).log()[mask].mean()))
    assert iid == pytest.approx(s / math.sqrt(gm_r), rel=1e-9)
    assert block == pytest.approx(s / math.sqrt(gm_r * gm_v), rel=1e-9)
    assert iid / block == pytest.approx(math.sqrt(gm_v), rel=1e-9)     # independent of the data
    assert 1 <= block <= 1.2 and s <= iid <= 1.05 * s
    if top == 256 and band == 0.25:
        assert block < 1.04                                               # ≈ σ in the low band


# --------------------------------------------------------------------------------------------
# CLI end to end


@pytest.fixture
def tiny_dataset(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        low = rng.integers(0, 256, size=(8, 8, 3), dtype=np.uint8)
        Image.fromarray(low).resize((32, 32), Image.BILINEAR).save(folder / f"img{i}.png")
    return folder


def test_snr_cli_writes_csv_summary_and_plot(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "out"
    args = ["analyze", "snr", "--data", str(tiny_dataset), "--outdir", str(out), "--sigmas", "0.2,1",
            "--bins", "8"] + ([] if HAVE_MPL else ["--no-plot"])
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "with block noise s=4 at 32x32" in text
    with open(out / "snr.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["resolution", "noise", "s", "sigma", "freq_bin_lo", "freq_bin_hi",
                             "signal_power", "noise_power", "snr_db"]
    assert {(r["resolution"], r["noise"]) for r in rows} == {("32", "iid"), ("32", "block"),
                                                             ("8", "iid"), ("8", "block")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_images"] == 6 and summary["resolutions"] == [32, 8]
    m = summary["matches"][0]
    assert (m["low"], m["high"], m["sigma"]) == (8, 32, 0.2)
    assert 0.9 < m["ratio_block"] < 1.5 and 3 < m["ratio_iid"] < 6
    assert m["sigma_block"] == pytest.approx(0.2 * m["ratio_block"])
    if HAVE_MPL:
        assert (out / "snr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_snr_cli_no_plot_and_bad_input(tmp_path, tiny_dataset, capsys):
    out = tmp_path / "o"
    assert main(["analyze", "snr", "--data", str(tiny_dataset), "--outdir", str(out), "--no-plot",
                 "--resolutions", "32,16", "--block-size", "2", "--noise", "iid,block,relay"]) == 0
    assert (out / "snr.csv").is_file() and not (out / "snr.png").exists()
    summary = json.loads((out / "summary.json").read_text())
    assert {m["low"] for m in summary["matches"]} == {16} and "ratio_relay" in summary["matches"][0]
    capsys.readouterr()
    assert main(["analyze", "snr", "--data", str(tiny_dataset), "--outdir", str(out),
                 "--resolutions", "32,12"]) == 2
    assert "does not divide" in capsys.readouterr().err
    assert main(["analyze", "snr", "--data", str(tmp_path / "nope"), "--outdir", str(out)]) == 2
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["analyze", "snr", "--data", str(tiny_dataset)])           # --outdir is required


def test_snr_cli_without_matplotlib_still_writes_csv(tmp_path, tiny_dataset, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)          # import now fails
    out = tmp_path / "o"
    assert main(["analyze", "snr", "--data", str(tiny_dataset), "--outdir", str(out)]) == 2
    assert "pip install matplotlib" in capsys.readouterr().err
    assert (out / "snr.csv").is_file() and (out / "summary.json").is_file()


# --------------------------------------------------------------------------------------------
# Schedule report (docs/method.md §3.6)


@pytest.mark.parametrize("preset,sigma0,expected", [
    ("imagenet256", 0.86912, {(0, 1): 0.078, (1, 1): 0.007}),
    ("celebahq256", 0.92191, {(0, 1): 0.377, (1, 1): 0.142, (0, 2): 0.021}),
])
def test_start_report_reproduces_spec_c6(preset, sigma0, expected):
    recipe = RELAY_RECIPES[preset]
    report = start_report(recipe.schedule, recipe.sampler)
    assert report["sigma_start"] == pytest.approx(sigma0, abs=5e-6)
    for (k, l), value in expected.items():
        assert report["factors"][k][l] == pytest.approx(value, abs=5e-4)
        assert report["factors"][l][k] == report["factors"][k][l]
    assert 0 <= report["nondc_energy_white"] <= 1


@pytest.mark.parametrize("preset", sorted(RELAY_RECIPES))
def test_nondc_energy_is_a_fraction_and_falls_with_sigma(preset):
    recipe = RELAY_RECIPES[preset]
    weights = torch.rand(4, 4, dtype=torch.float64) + 0.1
    curves = schedule_curves(recipe.schedule, recipe.sampler, num=100, weights=weights)
    for key in ("nondc_white", "nondc_data"):
        e = curves[key]
        assert ((e >= 0) & (e <= 1)).all()
        assert (e[1:] <= e[:-1] + 1e-12).all()                # σ grows along u
    assert curves["nondc_white"][0] > 0.99                     # no blur at tiny σ
    sch = recipe.schedule.for_sampling(recipe.sampler.prob_length)
    assert surviving_energy(sch.factors(0.5)).shape == ()


def test_schedule_cli_reports_energy_and_plots(tmp_path, tiny_dataset, capsys):
    png = tmp_path / "sched.png"
    args = ["analyze", "schedule", "--recipe", "celebahq256", "--data", str(tiny_dataset)]
    if HAVE_MPL:
        args += ["--plot", str(png)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "non-DC energy surviving" in out and "weighted by" in out
    if HAVE_MPL:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["analyze", "schedule", "--recipe", "imagenet256", "--json"]) == 0
    start = json.loads(capsys.readouterr().out)["start"]
    assert start["factors"][0][1] == pytest.approx(0.078, abs=5e-4)
