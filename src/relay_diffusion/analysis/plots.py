"""PNG plots of the analyses. matplotlib is imported only here and only when a plot is drawn,
so the CSV/JSON outputs work without it (`--no-plot`)."""

from __future__ import annotations

import os


class PlotUnavailable(ImportError):
    """matplotlib is missing."""


def _figure(ncols: int, width: float = 4.6, height: float = 3.6):
    try:
        from matplotlib.figure import Figure          # no pyplot: no global backend state
    except ImportError as e:
        raise PlotUnavailable("plotting needs matplotlib: pip install matplotlib "
                              "(or pass --no-plot to write only the CSV/JSON)") from e
    fig = Figure(figsize=(width * ncols, height), layout="constrained")
    return fig, fig.subplots(1, ncols, squeeze=False)[0]


def plot_snr(rows: list[dict], path: str | os.PathLike, title: str = "") -> None:
    """Fig. 2 (b, c): left, the noise power spectra at σ = 1 on the common grid; then one panel
    per σ with SNR (dB) against f = |k|/R, a line per resolution and noise kind (AC bins only)."""
    sigmas = sorted({r["sigma"] for r in rows})
    series = sorted({(r["resolution"], r["noise"]) for r in rows}, key=lambda t: (-t[0], t[1]))
    fig, axes = _figure(len(sigmas) + 1)
    styles = {"iid": "-", "block": "--", "relay": ":"}

    def line(ax, res, kind, sigma, key):
        sel = [r for r in rows if r["resolution"] == res and r["noise"] == kind
               and r["sigma"] == sigma and r["freq_bin_hi"] > 0]
        x = [(r["freq_bin_lo"] + r["freq_bin_hi"]) / 2 for r in sel]
        y = [r[key] / sigma ** 2 if key == "noise_power" else r[key] for r in sel]
        s = sel[0]["s"] if sel else 1
        label = f"{res}×{res} {kind}" + (f" s={s}" if kind != "iid" else "")
        ax.plot(x, y, styles.get(kind, "-"), marker=".", label=label)

    for res, kind in series:
        line(axes[0], res, kind, sigmas[0], "noise_power")
    axes[0].set_yscale("log")
    axes[0].set_title("noise power per coefficient (σ = 1)")
    axes[0].set_ylabel("power on the R-point DCT grid")
    for ax, sigma in zip(axes[1:], sigmas):
        for res, kind in series:
            line(ax, res, kind, sigma, "snr_db")
        ax.set_title(f"SNR at σ = {sigma:g}")
        ax.set_ylabel("SNR (dB)")
    for ax in axes:
        ax.set_xlabel("normalised frequency f = |k| / R")
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=120)


def plot_schedule(curves: dict, report: dict, path: str | os.PathLike, title: str = "") -> None:
    """Left: σ(u) and σ_B(u) of the sampler's mapping. Right: blur factors α_kl and the surviving
    non-DC energy against σ, the sampler's kept σ's as ticks and its start σ₀ as a line."""
    fig, (left, right) = _figure(2)
    u, sigma = curves["u"].numpy(), curves["sigma"].numpy()
    left.plot(u, sigma, label="σ(u)")
    left.set_yscale("log")
    left.set_xlabel("u")
    left.set_ylabel("noise level σ")
    twin = left.twinx()
    twin.plot(u, curves["blur_sigma"].numpy(), "C1--", label="σ_B(u)")
    twin.set_ylabel("blur level σ_B")
    left.axvline(report["u"], color="k", lw=0.8, ls=":")
    left.legend(loc="upper left", fontsize=8)
    twin.legend(loc="lower right", fontsize=8)
    factors = curves["factors"]
    s = factors.shape[-1]
    for k, l in [(0, 1), (1, 1), (0, 2), (1, 2), (2, 2)]:
        if k < s and l < s:
            right.plot(sigma, factors[:, k, l].numpy(), label=f"α{k}{l}")
    right.plot(sigma, curves["nondc_white"].numpy(), "k-", lw=2, label="non-DC energy (white)")
    if "nondc_data" in curves:
        right.plot(sigma, curves["nondc_data"].numpy(), "k--", lw=2, label="non-DC energy (data)")
    right.axvline(report["sigma_start"], color="k", lw=0.8, ls=":",
                  label=f"start σ₀ = {report['sigma_start']:.4g}")
    steps = curves["steps"].numpy()
    right.plot(steps, [-0.02] * len(steps), "|", color="gray", label="sampler σ's")
    right.set_xscale("log")
    right.set_xlabel("noise level σ")
    right.set_ylabel("blur factor / energy fraction")
    right.legend(fontsize=7)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.savefig(path, dpi=120)
