"""Plots drawn into a rectangle of a report page: evidence contributions and rank plots.

Each function gets the page figure and a rectangle (left, bottom, width, height, in
figure fractions) and keeps everything it draws inside that rectangle: room for tick
labels, axis labels and titles is measured and taken off before the axes are placed.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from engine.report.content import Contributions
from engine.report.layout import PAGE_H, PAGE_W
from engine.report.text import line_height, printable, text_width, truncate, wrap

FAVOURS_LEADER, FAVOURS_RUNNER = "#0072B2", "#D55E00"  # colour-blind safe pair
BAR_FONT = 7.5


def contributions_height(c: Contributions) -> float:
    """Inches needed by ``draw_contributions`` for this many bars."""
    return 0.75 + 0.24 * len(c.units)


def _pad_limits(lo: float, hi: float, label_in: float, axes_in: float) -> tuple[float, float]:
    """x-limits that leave ``label_in`` inches beyond each bar end for its value label."""
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    span = hi - lo or 1.0
    frac = min(label_in / axes_in, 0.3)
    extra = span * frac / (1 - 2 * frac)
    return lo - extra, hi + extra


def draw_contributions(fig: Figure, rect: tuple[float, float, float, float], c: Contributions, *,
                       xlabel: str | None = None, name: str = "contributions") -> Axes:
    """Horizontal bars: log10 Bayes factor of each evidence unit, leader vs runner-up
    (or any signed quantity per label, with ``xlabel``); returns the axes, labelled ``name``."""
    left, bottom, width, height = rect
    max_label = 0.45 * width * PAGE_W
    labels = [truncate(wrap(lab, max_label, BAR_FONT), 1, max_label, BAR_FONT)[0] for lab, _ in c.units]
    values = np.array([v for _, v in c.units])
    label_in = max(text_width(lab, BAR_FONT) for lab in labels) + 0.1
    value_in = max(text_width(f"{v:+.2f}", BAR_FONT) for v in values) + 0.08
    top_in, bottom_in = line_height(8) + 0.08, line_height(8) + line_height(BAR_FONT) + 0.12
    ax = fig.add_axes((left + label_in / PAGE_W, bottom + bottom_in / PAGE_H,
                       width - label_in / PAGE_W, height - (top_in + bottom_in) / PAGE_H))
    y = np.arange(len(values))[::-1]
    doubtful = {u for u, _ in c.doubtful}
    bars = ax.barh(y, values, color=[FAVOURS_LEADER if v >= 0 else FAVOURS_RUNNER for v in values], height=0.6)
    for bar, (unit, _) in zip(bars, c.units, strict=True):
        if unit in doubtful:
            bar.set_hatch("////")
            bar.set_edgecolor("white")
            bar.set_alpha(0.55)
    ax.axvline(0.0, color="#333333", linewidth=0.8)
    ax.set_xlim(*_pad_limits(float(values.min()), float(values.max()), value_in, width * PAGE_W - label_in))
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, f" {v:+.2f} " if v >= 0 else f" {v:+.2f} ", va="center", ha="left" if v >= 0 else "right",
                fontsize=BAR_FONT - 0.5, parse_math=False)
    ax.tick_params(axis="x", labelsize=BAR_FONT)
    ax.set_xlabel(printable(xlabel or f"log10 Bayes factor, {c.leader} vs {c.runner_up}"), fontsize=8, parse_math=False)
    ax.set_title(printable(f"← favours {c.runner_up}"), loc="left", fontsize=8, color=FAVOURS_RUNNER, parse_math=False)
    ax.set_title(printable(f"favours {c.leader} →"), loc="right", fontsize=8, color=FAVOURS_LEADER, parse_math=False)
    return _bar_axes(ax, y, labels, name)


RANK_COLS = 2


def rank_height(n_panels: int, n_chains: int) -> float:
    """Inches needed by ``draw_rank``: rows of two panels, taller with more chains."""
    row = 1.0 + 0.1 * min(max(n_chains, 1), 8)
    return row * math.ceil(max(n_panels, 1) / RANK_COLS)


def draw_rank(fig: Figure, rect: tuple[float, float, float, float], panels: Any) -> None:
    """ArviZ rank plots (one panel per scalar parameter) in a grid of ``RANK_COLS`` columns."""
    left, bottom, width, height = rect
    names = list(panels.data_vars)
    nrows = math.ceil(len(names) / RANK_COLS)
    cell_w, cell_h = width / RANK_COLS, height / nrows
    pad_l, pad_r = 0.55 / PAGE_W, 0.2 / PAGE_W
    pad_t, pad_b = 0.3 / PAGE_H, 0.45 / PAGE_H
    axes = []
    for i in range(len(names)):
        r, col = divmod(i, RANK_COLS)
        x0 = left + col * cell_w + pad_l
        y0 = bottom + (nrows - 1 - r) * cell_h + pad_b
        axes.append(fig.add_axes((x0, y0, cell_w - pad_l - pad_r, cell_h - pad_t - pad_b)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import arviz as az

        az.plot_rank(panels, ax=np.array(axes), backend="matplotlib", show=False)
    for ax, name in zip(axes, names, strict=True):
        ax.set_title("")
        title_w = (cell_w - pad_l - pad_r) * PAGE_W
        ax.set_title(truncate(wrap(name, title_w, 7.5), 1, title_w, 7.5)[0], fontsize=7.5, loc="left", parse_math=False)
        ax.set_xlabel("rank (all chains)", fontsize=6.5)
        ax.set_ylabel("chain", fontsize=6.5)
        ax.tick_params(labelsize=6.5)
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))


LOW_REL, HIGH_REL = "#E69F00", "#009E73"  # colour-blind safe pair (Okabe-Ito orange, bluish green)
TORNADO_ROW = 0.36  # inches per source (two bars)


def tornado_height(n_sources: int) -> float:
    """Inches needed by ``draw_tornado`` for this many sources."""
    return 0.8 + TORNADO_ROW * n_sources


def _span_limits(lo: float, hi: float, label_in: float, axes_in: float, min_span: float = 0.01) -> tuple[float, float]:
    """x-limits around [lo, hi] (at least ``min_span`` wide) with ``label_in`` inches free beyond each end."""
    if hi - lo < min_span:
        mid = (lo + hi) / 2
        lo, hi = mid - min_span / 2, mid + min_span / 2
    frac = min(label_in / axes_in, 0.3)
    extra = (hi - lo) * frac / (1 - 2 * frac)
    return lo - extra, hi + extra


def draw_tornado(fig: Figure, rect: tuple[float, float, float, float], tornado: dict, leader: str, *,
                 quantiles: tuple[float, float] = (0.1, 0.9)) -> Axes:
    """Tornado plot of a source-reliability sweep (``sensitivity.json``'s ``tornado``): for each
    source (largest swing on top) a bar from the base P(leader) to its value with the source's
    reliability at the low quantile (upper bar) and one to its value at the high quantile (lower
    bar); the base is a vertical line. Returns the axes, labelled "tornado"."""
    left, bottom, width, height = rect
    base = float(tornado["base"])
    bars = [b for b in tornado["bars"] if math.isfinite(b["low"]) and math.isfinite(b["high"])]
    max_label = 0.4 * width * PAGE_W
    labels = [truncate(wrap(f"{b['source']} (r {b['low_reliability']:.2f} / {b['high_reliability']:.2f})", max_label, BAR_FONT),
                       1, max_label, BAR_FONT)[0] for b in bars]
    label_in = max((text_width(lab, BAR_FONT) for lab in labels), default=0.5) + 0.1
    value_in = text_width(" 0.000 ", BAR_FONT - 0.5) + 0.04
    top_in, bottom_in = line_height(8) + 0.08, line_height(8) + line_height(BAR_FONT) + 0.12
    ax = fig.add_axes((left + label_in / PAGE_W, bottom + bottom_in / PAGE_H,
                       width - label_in / PAGE_W, height - (top_in + bottom_in) / PAGE_H))
    y = np.arange(len(bars))[::-1].astype(float)
    values = [base] + [v for b in bars for v in (b["low"], b["high"])]
    ax.set_xlim(*_span_limits(min(values), max(values), value_in, width * PAGE_W - label_in))
    for yi, b in zip(y, bars, strict=True):
        for v, dy, colour in ((b["low"], 0.19, LOW_REL), (b["high"], -0.19, HIGH_REL)):
            ax.barh(yi + dy, v - base, left=base, height=0.36, color=colour)
            right = v >= base
            ax.text(v, yi + dy, f" {v:.3f} ", va="center", ha="left" if right else "right", fontsize=BAR_FONT - 0.5,
                    parse_math=False)
    ax.axvline(base, color="#333333", linewidth=0.9)
    ax.tick_params(axis="x", labelsize=BAR_FONT)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel(printable(f"P({leader}); vertical line: base run, {base:.3f}"), fontsize=8, parse_math=False)
    lo_q, hi_q = (f"{100 * q:g}%" for q in quantiles)
    ax.set_title(printable(f"■ reliability at its {lo_q} quantile"), loc="left", fontsize=8, color=LOW_REL, parse_math=False)
    ax.set_title(printable(f"at its {hi_q} quantile ■"), loc="right", fontsize=8, color=HIGH_REL, parse_math=False)
    return _bar_axes(ax, y, labels, "tornado")


def _bar_axes(ax, y, labels: list[str], name: str):  # noqa: ANN001, ANN202
    """The common frame of the horizontal bar charts: one row per label, an x grid, no top/right spines."""
    ax.set_yticks(y, labels, fontsize=BAR_FONT)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.grid(axis="x", color="#dddddd", linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_label(name)
    return ax
