"""The report's plots as standalone matplotlib figures, and their SVG (vector) text for the template.

Each ``*_figure`` function returns a ``Figure`` sized for the page's text width; matplotlib's
constrained layout makes room for tick labels and titles. ``svg(fig)`` writes it as SVG with the
text kept as text (``svg.fonttype: none``), so the typesetter sets it in the report's font and it
can be searched and copied in the PDF.
"""

from __future__ import annotations

import io
import math
import warnings
from typing import Any

import matplotlib
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from engine.report import damage as D
from engine.report.content import Contributions

TEXT_W = 6.77  # inches: A4 (8.27 in) less two 0.75 in margins, the template's text width
FONT = "DejaVu Sans"  # matplotlib ships it; the template sets the report in it too
FAVOURS_LEADER, FAVOURS_RUNNER = "#0072B2", "#D55E00"  # colour-blind safe pair
LOW_REL, HIGH_REL = "#E69F00", "#009E73"  # colour-blind safe pair (Okabe-Ito orange, bluish green)
BAR_FONT = 7.5
LABEL_CHARS = 48  # a bar's label is cut off (with "…") after this many characters
STYLE = {"svg.fonttype": "none", "svg.hashsalt": "incident-report", "font.family": FONT, "axes.unicode_minus": True}


def svg(fig: Figure) -> str:
    """The figure as SVG text: vector paths, text as text, no timestamp (the same figure gives the same bytes)."""
    buf = io.StringIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    return buf.getvalue()


def _figure(height: float) -> Figure:
    with matplotlib.rc_context(STYLE):
        return Figure(figsize=(TEXT_W, height), layout="constrained")


def _short(label: str, n: int = LABEL_CHARS) -> str:
    return label if len(label) <= n else label[: n - 1].rstrip() + "…"


def contributions_height(n_units: int) -> float:
    """Inches of ``contributions_figure`` for this many bars."""
    return 0.9 + 0.24 * n_units


def contributions_figure(c: Contributions, *, xlabel: str | None = None, name: str = "contributions") -> Figure:
    """Horizontal bars: log10 Bayes factor of each evidence unit, leader vs runner-up (or any
    signed quantity per label, with ``xlabel``); hatched bars are unreliable estimates. The
    axes are labelled ``name``."""
    fig = _figure(contributions_height(len(c.units)))
    ax = fig.add_subplot()
    values = np.array([v for _, v in c.units])
    y = np.arange(len(values))[::-1]
    doubtful = {u for u, _ in c.doubtful}
    bars = ax.barh(y, values, color=[FAVOURS_LEADER if v >= 0 else FAVOURS_RUNNER for v in values], height=0.6)
    for bar, (unit, _) in zip(bars, c.units, strict=True):
        if unit in doubtful:
            bar.set_hatch("////")
            bar.set_edgecolor("white")
            bar.set_alpha(0.55)
    ax.axvline(0.0, color="#333333", linewidth=0.8)
    lo, hi = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    pad = 0.18 * ((hi - lo) or 1.0)  # room for the value labels beyond the bar ends
    ax.set_xlim(lo - pad, hi + pad)
    for yi, v in zip(y, values, strict=True):
        ax.text(v, yi, f" {v:+.2f} ", va="center", ha="left" if v >= 0 else "right", fontsize=BAR_FONT - 0.5, parse_math=False)
    ax.tick_params(axis="x", labelsize=BAR_FONT)
    ax.set_xlabel(xlabel or f"log10 Bayes factor, {c.leader} vs {c.runner_up}", fontsize=8, parse_math=False)
    ax.set_title(f"← favours {c.runner_up}", loc="left", fontsize=8, color=FAVOURS_RUNNER, parse_math=False)
    ax.set_title(f"favours {c.leader} →", loc="right", fontsize=8, color=FAVOURS_LEADER, parse_math=False)
    return _bar_axes(fig, ax, y, [_short(u) for u, _ in c.units], name)


RANK_COLS = 2


def rank_height(n_panels: int, n_chains: int) -> float:
    """Inches of ``rank_figure``: rows of two panels, taller with more chains."""
    row = 1.1 + 0.1 * min(max(n_chains, 1), 8)
    return row * math.ceil(max(n_panels, 1) / RANK_COLS)


def rank_figure(panels: Any) -> Figure:
    """ArviZ rank plots (one panel per scalar parameter of ``panels``) in rows of ``RANK_COLS``."""
    names = list(panels.data_vars)
    nrows = math.ceil(len(names) / RANK_COLS)
    height = rank_height(len(names), panels.sizes["chain"])
    with matplotlib.rc_context(STYLE):  # a regular grid: fixed margins (inches), no layout engine (it triples the drawing time)
        fig = Figure(figsize=(TEXT_W, height), layout="none")
    left, right, top, bottom, gap_w, gap_h = 0.55, 0.1, 0.3, 0.4, 0.65, 0.7
    axes_w = (TEXT_W - left - right - (RANK_COLS - 1) * gap_w) / RANK_COLS
    axes_h = (height - top - bottom - (nrows - 1) * gap_h) / nrows
    grid = fig.subplots(nrows, RANK_COLS, squeeze=False, gridspec_kw={
        "left": left / TEXT_W, "right": 1 - right / TEXT_W, "top": 1 - top / height, "bottom": bottom / height,
        "wspace": gap_w / axes_w, "hspace": gap_h / axes_h}).ravel()
    for ax in grid[len(names):]:
        ax.set_visible(False)
    axes = grid[: len(names)]
    with warnings.catch_warnings(), matplotlib.rc_context(STYLE):
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        import arviz as az

        az.plot_rank(panels, ax=np.array(axes), backend="matplotlib", show=False)
    for ax, name in zip(axes, names, strict=True):
        ax.set_title("")
        ax.set_title(_short(name, 60), fontsize=7.5, loc="left", parse_math=False)
        ax.set_xlabel("rank (all chains)", fontsize=6.5)
        ax.set_ylabel("chain", fontsize=6.5)
        ax.tick_params(labelsize=6.5)
        ax.xaxis.set_major_locator(MaxNLocator(5, integer=True))
    return fig


TORNADO_ROW = 0.36  # inches per source (two bars)


def tornado_height(n_sources: int) -> float:
    """Inches of ``tornado_figure`` for this many sources."""
    return 0.9 + TORNADO_ROW * n_sources


def tornado_figure(tornado: dict, leader: str, *, quantiles: tuple[float, float] = (0.1, 0.9)) -> Figure:
    """Tornado plot of a source-reliability sweep (``sensitivity.json``'s ``tornado``): for each
    source (largest swing on top) a bar from the base P(leader) to its value with the source's
    reliability at the low quantile (upper bar) and one to its value at the high quantile (lower
    bar); the base is a vertical line. The axes are labelled "tornado"."""
    base = float(tornado["base"])
    bars = [b for b in tornado["bars"] if math.isfinite(b["low"]) and math.isfinite(b["high"])]
    fig = _figure(tornado_height(len(bars)))
    ax = fig.add_subplot()
    y = np.arange(len(bars))[::-1].astype(float)
    values = [base] + [v for b in bars for v in (b["low"], b["high"])]
    lo, hi = min(values), max(values)
    if hi - lo < 0.01:  # a visible axis around the base even with no swing
        lo, hi = (lo + hi) / 2 - 0.005, (lo + hi) / 2 + 0.005
    pad = 0.2 * (hi - lo)
    ax.set_xlim(lo - pad, hi + pad)
    for yi, b in zip(y, bars, strict=True):
        for v, dy, colour in ((b["low"], 0.19, LOW_REL), (b["high"], -0.19, HIGH_REL)):
            ax.barh(yi + dy, v - base, left=base, height=0.36, color=colour)
            ax.text(v, yi + dy, f" {v:.3f} ", va="center", ha="left" if v >= base else "right", fontsize=BAR_FONT - 0.5,
                    parse_math=False)
    ax.axvline(base, color="#333333", linewidth=0.9)
    ax.tick_params(axis="x", labelsize=BAR_FONT)
    ax.tick_params(axis="y", length=0)
    ax.set_xlabel(f"P({leader}); vertical line: base run, {base:.3f}", fontsize=8, parse_math=False)
    lo_q, hi_q = (f"{100 * q:g}%" for q in quantiles)
    ax.set_title(f"■ reliability at its {lo_q} quantile", loc="left", fontsize=8, color=LOW_REL, parse_math=False)
    ax.set_title(f"at its {hi_q} quantile ■", loc="right", fontsize=8, color=HIGH_REL, parse_math=False)
    labels = [_short(f"{b['source']} (r {b['low_reliability']:.2f} / {b['high_reliability']:.2f})") for b in bars]
    return _bar_axes(fig, ax, y, labels, "tornado")


def _bar_axes(fig: Figure, ax: Axes, y: np.ndarray, labels: list[str], name: str) -> Figure:
    """The common frame of the horizontal bar charts: one row per label, an x grid, no top/right spines."""
    ax.set_yticks(y, labels, fontsize=BAR_FONT)
    ax.set_ylim(-0.6, len(labels) - 0.4)
    ax.grid(axis="x", color="#dddddd", linewidth=0.5)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_label(name)
    return fig


# ---------------------------------------------------------------- damage map
HYPOTHESIS_COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")  # Okabe-Ito
BEND_COLOURS = {"in": "#0072B2", "out": "#D55E00", None: "#555555"}
COUNTED = "#E69F00"  # count-only panels' shade
PANEL_EDGE, PANEL_FILL = "#555555", "#f2f2f2"
CLOUD_POINTS = 400  # draws shown per hypothesis and view (every k-th)
FACE_COLS = 3
LABELLED = 16  # a side with more panels than this writes only the count-only panels' counts on them


def _draw_panel(ax: Axes, corners: np.ndarray, *, fill: str = PANEL_FILL, alpha: float = 1.0, lw: float = 0.7) -> None:
    from matplotlib.patches import Polygon

    ax.add_patch(Polygon(corners, closed=True, facecolor=fill, edgecolor=PANEL_EDGE, linewidth=lw, alpha=alpha, zorder=1))
    ax.add_patch(Polygon(corners, closed=True, facecolor="none", edgecolor=PANEL_EDGE, linewidth=lw, zorder=2))


def _metres(ax: Axes, dims: tuple[int, int], adjustable: str = "datalim") -> None:
    ax.set_aspect("equal", adjustable=adjustable)
    ax.set_xlabel(f"{'xyz'[dims[0]]} (m)", fontsize=7)
    ax.set_ylabel(f"{'xyz'[dims[1]]} (m)", fontsize=7)
    ax.tick_params(labelsize=6.5)
    ax.grid(color="#e4e4e4", linewidth=0.4)
    ax.set_axisbelow(True)


def damage_panels_height(n_faces: int) -> float:
    return 0.5 + 2.3 * math.ceil(max(n_faces, 1) / FACE_COLS)


def damage_panels_figure(m: Any, name: str = "damage-panels") -> Figure:
    """The inspected panels grouped by the side they face (one view per side, in body coordinates, m):
    located holes as dots coloured by their bend, count-only panels shaded by their holes per m^2 with
    their count written on them; each panel labelled with its id and holes (on a side of at most ``LABELLED``
    panels). The axes are labelled ``name``."""
    groups = D.faces(m)
    counts = D.panel_counts(m)
    density = {p.id: counts[p.id][0] / D.panel_area(p) for p in m.panels if counts[p.id][1]}
    top = max(density.values(), default=1.0) or 1.0
    fig = _figure(damage_panels_height(len(groups)))
    nrows = math.ceil(len(groups) / FACE_COLS)
    axes = fig.subplots(nrows, FACE_COLS, squeeze=False).ravel()
    for ax in axes[len(groups):]:
        ax.set_visible(False)
    by_panel: dict[str, list] = {}
    for h in m.holes:
        by_panel.setdefault(h.panel, []).append(h)
    for ax, face in zip(axes, groups, strict=False):
        dims = list(face.dims)
        for p in face.panels:
            corners = D.panel_corners(p)[:, dims]
            n, counted = counts[p.id]
            if counted:
                _draw_panel(ax, corners, fill=COUNTED, alpha=0.15 + 0.6 * density[p.id] / top)
            else:
                _draw_panel(ax, corners)
            label = f"{p.id}\n{n} holes{' (count only)' if counted else ''}" if len(face.panels) <= LABELLED else str(n) if counted else ""
            if label:
                ax.text(*corners.mean(axis=0), label, ha="center", va="center", fontsize=6, color="#222222", zorder=4, parse_math=False,
                        bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "edgecolor": "none", "alpha": 0.6})
            holes = by_panel.get(p.id, [])
            for bend in ("in", "out", None):
                pts = np.array([h.at for h in holes if h.bend == bend], dtype=float).reshape(-1, 3)
                if len(pts):
                    ax.scatter(pts[:, dims[0]], pts[:, dims[1]], s=2.5, color=BEND_COLOURS[bend], linewidths=0, zorder=3)
        ax.autoscale_view()
        _metres(ax, face.dims)
        ax.set_title(face.title, fontsize=7.5, loc="left", parse_math=False)
        ax.set_label(name)
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    bends = {h.bend for h in m.holes}
    handles = [Line2D([], [], marker="o", linestyle="none", markersize=3, color=BEND_COLOURS[b],
                      label={"in": "hole bent inward", "out": "hole bent outward", None: "hole, bend not assessed"}[b])
               for b in ("in", "out", None) if b in bends]
    if density:
        handles.append(Patch(facecolor=COUNTED, alpha=0.6, edgecolor=PANEL_EDGE, label="count only (shade: holes per m²)"))
    if handles:
        fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=6.5, frameon=False)
    return fig


def burst_cloud_figure(m: Any, hyps: list, name: str = "burst-cloud") -> Figure:
    """The burst point's posterior draws (at most ``CLOUD_POINTS`` per hypothesis) and the outline of
    its 90 % credible ellipsoid (``engine.report.damage``) in the side (x-z) and top (x-y) views, one
    colour per hypothesis, over the inspected panels' outlines. The axes are labelled ``name``."""
    fig = _figure(3.3)
    axes = fig.subplots(1, len(D.VIEWS), squeeze=False).ravel()
    for ax, dims in zip(axes, D.VIEWS, strict=True):
        idx = list(dims)
        extent = [D.panel_corners(p)[:, idx] for p in m.panels]
        for corners in extent:
            _draw_panel(ax, corners, fill="none", lw=0.6)
        for i, h in enumerate(hyps):
            colour = HYPOTHESIS_COLOURS[i % len(HYPOTHESIS_COLOURS)]
            b = h.burst
            step = max(1, math.ceil(len(b) / CLOUD_POINTS))
            ax.scatter(b[::step, idx[0]], b[::step, idx[1]], s=2, color=colour, alpha=0.35, linewidths=0, zorder=3)
            region = h.region
            if region is not None:
                line = region.shadow(dims).outline()
                ax.plot(line[:, 0], line[:, 1], color=colour, linewidth=1.2, zorder=4)
                extent.append(line)
                ax.plot(*region.mean[idx], marker="+", color=colour, markersize=7, zorder=5)
        pts = np.vstack(extent)
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        pad = 0.08 * max(float((hi - lo).max()), 1.0)
        ax.set_xlim(lo[0] - pad, hi[0] + pad)
        ax.set_ylim(lo[1] - pad, hi[1] + pad)
        _metres(ax, dims, "box")
        ax.set_title(f"{'side' if dims == (0, 2) else 'top'} view ({'xyz'[dims[0]]}–{'xyz'[dims[1]]})", fontsize=7.5, loc="left",
                     parse_math=False)
        ax.set_label(name)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=HYPOTHESIS_COLOURS[i % len(HYPOTHESIS_COLOURS)], marker="o", markersize=3, linewidth=1.2,
                      label=f"{h.hid} (P = {h.posterior:.3f})") for i, h in enumerate(hyps)]
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 4), fontsize=6.5, frameon=False)
    return fig
