"""Reliability diagram of a calibration run (``engine.calibrate.summarize``'s output).

Returns a matplotlib ``Figure``; the caller saves or shows it. Top panel: observed frequency
against stated probability per bin, with ±2 binomial standard errors around the diagonal a
calibrated forecaster would follow; one series per forecaster (the engine, and the exact
posterior where it exists). Bottom panel: how many stated probabilities fell in each bin.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

STYLE = {"engine": ("#0072B2", "o", "engine (bridge, checked by SMC)"), "exact": ("#009E73", "s", "exact posterior"),
         "smc": ("#E69F00", "^", "SMC only"), "bridge": ("#CC79A7", "v", "bridge only"),
         "mixture": ("#D55E00", "D", "marginalised mixture (NUTS)")}


def reliability_figure(summary: dict, *, forecasters: tuple[str, ...] = ("engine", "exact"), show_counts: bool = True,
                       show_band: bool = True, title: str | None = None) -> Figure:
    """The reliability diagram; every element can be switched off by its keyword."""
    present = [f for f in forecasters if f in summary["scores"]]
    if not present:
        present = list(summary["scores"])[:1]
    fig = Figure(figsize=(6.0, 6.4 if show_counts else 5.0))
    if show_counts:
        ax, axc = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    else:
        ax, axc = fig.subplots(1, 1), None
    ax.plot([0, 1], [0, 1], color="0.5", lw=1, ls="--", label="calibrated", gid="diagonal")
    first = summary["scores"][present[0]]["reliability"]
    if show_band:
        s = np.asarray(first["stated"], dtype=float)
        se = np.asarray(first["se"], dtype=float)
        ok = np.isfinite(s) & np.isfinite(se)
        ax.fill_between(s[ok], np.clip(s[ok] - 2 * se[ok], 0, 1), np.clip(s[ok] + 2 * se[ok], 0, 1), color="0.85",
                        label="±2 s.e. of a calibrated forecaster", gid="band")
    width = 1.0 / max(len(first["count"]), 1)
    for k, f in enumerate(present):
        colour, marker, label = STYLE.get(f, ("0.2", "o", f))
        rel = summary["scores"][f]["reliability"]
        stated, observed = np.asarray(rel["stated"], float), np.asarray(rel["observed"], float)
        ok = np.isfinite(stated) & np.isfinite(observed)
        ece = summary["scores"][f]["ece"]
        ax.plot(stated[ok], observed[ok], marker=marker, color=colour, lw=1.2, ms=5, label=f"{label}: ECE {ece:.3f}", gid=f"series-{f}")
        if axc is not None:
            lower = np.asarray(rel["lower"], float)
            offset = (k - (len(present) - 1) / 2) * width / (len(present) + 1)
            axc.bar(lower + width / 2 + offset, rel["count"], width=width / (len(present) + 1), color=colour, gid=f"counts-{f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed frequency")
    ax.set_title(title or f"reliability over {summary['n']} simulated incidents")
    ax.legend(loc="upper left", fontsize=8, frameon=False)
    if axc is not None:
        axc.set_yscale("log")
        axc.set_ylabel("count")
        axc.set_xlabel("stated probability P(H | evidence)")
    else:
        ax.set_xlabel("stated probability P(H | evidence)")
    fig.tight_layout()
    return fig
