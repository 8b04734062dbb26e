r"""What the report shows of a damage map: panels and holes, burst-point draws and their credible
region, the weapon's posterior; numbers only, no drawing (``engine.report.figures`` draws them).

The geometry comes from case.json (``CaseDamageMap``: rectangles given by a corner and two
perpendicular edges, m, body frame), the draws from the run's stored posterior
(``posterior/<hid>.nc``), where the model names a unit's parameter ``<unit>__<name>``
(``hole-map__burst_x``) and keeps a fixed one as the constant ``hp__<unit>__<name>``.

**Credible region.** The 90 % credible region of the burst point :math:`b` is the ellipsoid of
the draws' Mahalanobis distance,

.. math:: R = \{b : (b - m)^\top S^{-1} (b - m) \le q\},

with :math:`m, S` the draws' mean and covariance and :math:`q` the 90 % quantile of the draws' own
squared distances, so that :math:`R` holds 90 % of the draws (for normal draws
:math:`q \to \chi^2_{3, 0.9}`). A view (two body axes) shows its outline, the shadow of
:math:`R` on that plane: the ellipse :math:`\{y : (y - m_V)^\top S_{VV}^{-1} (y - m_V) \le q\}`
with :math:`S_{VV}` the covariance block of the two axes (the shadow of an ellipsoid
:math:`x^\top A x \le q` on a coordinate plane is :math:`y^\top ((A^{-1})_{VV})^{-1} y \le q`). The
shadow holds more than 90 % of the draws' projections.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from engine.report.fmt import NA
from engine.results.records import CaseDamageMap, CasePanel

LEVEL = 0.9  # the credible level of the burst point's region and the weapon's intervals
AXES = "xyz"
VIEWS = ((0, 2), (0, 1))  # side (x-z) and top (x-y): the burst cloud's two views
MIN_DRAWS = 10  # fewer draws give no credible region
# parameter, label, unit: the weapon's first, then the burst point
PARAMETERS = (
    ("log_fragments", "fragments thrown, ln N", ""),
    ("N", "fragments thrown, N = exp(log_fragments)", ""),
    ("spray_angle", "spray angle from the course", "deg"),
    ("spray_width", "spray width (s.d.)", "deg"),
    ("fragment_speed", "fragment speed (static)", "m/s"),
    ("weapon_speed", "weapon speed", "m/s"),
    ("course_heading", "course heading", "deg"),
    ("course_climb", "course climb", "deg"),
    ("axis_x", "course axis x", ""),
    ("axis_y", "course axis y", ""),
    ("axis_z", "course axis z", ""),
    ("burst_x", "burst point x", "m"),
    ("burst_y", "burst point y", "m"),
    ("burst_z", "burst point z", "m"),
)
BURST = ("burst_x", "burst_y", "burst_z")


# ---------------------------------------------------------------- geometry
def panel_corners(p: CasePanel) -> np.ndarray:
    """The rectangle's four corners (4, 3), in order around it."""
    c, e1, e2 = (np.asarray(v, dtype=float) for v in (p.corner, p.edge1, p.edge2))
    return np.array([c, c + e1, c + e1 + e2, c + e2])


def panel_normal(p: CasePanel) -> np.ndarray:
    """The outward normal edge1 x edge2, unit length."""
    n = np.cross(np.asarray(p.edge1, dtype=float), np.asarray(p.edge2, dtype=float))
    return n / np.linalg.norm(n)


def panel_area(p: CasePanel) -> float:
    return float(np.linalg.norm(np.cross(np.asarray(p.edge1, dtype=float), np.asarray(p.edge2, dtype=float))))


def facing(p: CasePanel) -> tuple[int, int]:
    """(axis, sign) of the body axis the panel's outward normal is closest to: (1, +1) faces +y."""
    n = panel_normal(p)
    k = int(np.argmax(np.abs(n)))
    return k, 1 if n[k] >= 0 else -1


def view_axes(axis: int) -> tuple[int, int]:
    """The two body axes of the view along ``axis`` (x: y-z, y: x-z, z: x-y)."""
    return tuple(i for i in range(3) if i != axis)  # type: ignore[return-value]


@dataclass(frozen=True)
class Face:
    """The panels facing one way, drawn in the view along that axis."""

    axis: int
    sign: int
    panels: tuple[CasePanel, ...]

    @property
    def dims(self) -> tuple[int, int]:
        return view_axes(self.axis)

    @property
    def title(self) -> str:
        a, b = (AXES[i] for i in self.dims)
        return f"panels facing {'+' if self.sign > 0 else '−'}{AXES[self.axis]} ({a}–{b} view)"


def faces(m: CaseDamageMap) -> list[Face]:
    """The panels grouped by the side they face, in the order +x, -x, +y, -y, +z, -z (empty sides left out)."""
    groups: dict[tuple[int, int], list[CasePanel]] = {}
    for p in m.panels:
        groups.setdefault(facing(p), []).append(p)
    order = [(k, s) for k in range(3) for s in (1, -1)]
    return [Face(k, s, tuple(groups[(k, s)])) for k, s in order if (k, s) in groups]


def panel_counts(m: CaseDamageMap) -> dict[str, tuple[int, bool]]:
    """Per panel id: (holes, counted): the holes found on it and whether that is a count without positions."""
    counted = {c.panel: c.holes for c in m.counts}
    located: dict[str, int] = {}
    for h in m.holes:
        located[h.panel] = located.get(h.panel, 0) + 1
    return {p.id: (counted[p.id], True) if p.id in counted else (located.get(p.id, 0), False) for p in m.panels}


def map_summary(m: CaseDamageMap) -> str:
    n = panel_counts(m)
    located = sum(v for v, c in n.values() if not c)
    counted = [(k, v) for k, (v, c) in n.items() if c]
    area = sum(panel_area(p) for p in m.panels)
    text = (f"{len(m.panels)} inspected panels ({area:.1f} m² of skin); {located} holes located on "
            f"{len(m.panels) - len(counted)} of them")
    if counted:
        text += f", {sum(v for _, v in counted)} more counted without positions on {len(counted)} ({', '.join(k for k, _ in counted)})"
    bends = [h.bend for h in m.holes if h.bend]
    if bends:
        text += f"; {bends.count('in')} of {len(bends)} assessed bends inward"
    return text + "."


# ---------------------------------------------------------------- credible region
@dataclass(frozen=True)
class Ellipsoid:
    """{x: (x - mean)' cov^-1 (x - mean) <= r2}."""

    mean: np.ndarray
    cov: np.ndarray
    r2: float

    def contains(self, x: np.ndarray) -> np.ndarray:
        d = np.atleast_2d(x) - self.mean
        return np.einsum("ij,ij->i", d @ np.linalg.inv(self.cov), d) <= self.r2

    def shadow(self, dims: tuple[int, ...]) -> Ellipsoid:
        """The region's projection (shadow) on the body axes ``dims``: same radius, the covariance's block."""
        idx = np.asarray(dims)
        return Ellipsoid(self.mean[idx], self.cov[np.ix_(idx, idx)], self.r2)

    def semi_axes(self) -> np.ndarray:
        """Semi-axis lengths, largest first: sqrt(r2 x eigenvalues of cov)."""
        return np.sqrt(self.r2 * np.linalg.eigvalsh(self.cov))[::-1]

    def outline(self, n: int = 121) -> np.ndarray:
        """(n, 2) points around a 2-D region's boundary (closed: the last is the first)."""
        if self.mean.shape != (2,):
            raise ValueError("outline: a 2-D region only; take its shadow on two axes first")
        t = np.linspace(0.0, 2 * math.pi, n)
        return self.mean + math.sqrt(self.r2) * (np.linalg.cholesky(self.cov) @ np.vstack([np.cos(t), np.sin(t)])).T


def credible_ellipsoid(draws: np.ndarray, level: float = LEVEL) -> Ellipsoid | None:
    """The Mahalanobis ellipsoid holding a share ``level`` of ``draws`` (n, d) (module docstring);
    None with fewer than ``MIN_DRAWS`` draws or a covariance without full rank."""
    x = np.asarray(draws, dtype=float)
    x = x[np.all(np.isfinite(x), axis=1)]
    if len(x) < MIN_DRAWS:
        return None
    mean, cov = x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))
    if np.linalg.matrix_rank(cov) < cov.shape[0]:
        return None
    d = x - mean
    r2 = float(np.quantile(np.einsum("ij,ij->i", d @ np.linalg.inv(cov), d), level))
    return Ellipsoid(mean, cov, r2)


# ---------------------------------------------------------------- posterior draws
@dataclass
class HypothesisDraws:
    """One hypothesis's draws of the damage map's parameters (name -> flat array) and its fixed values."""

    hid: str
    posterior: float
    draws: dict[str, np.ndarray] = field(default_factory=dict)
    fixed: dict[str, float] = field(default_factory=dict)
    note: str = ""  # why it is not shown (no burst point sampled, no posterior)

    @property
    def burst(self) -> np.ndarray | None:
        """(n, 3) burst points: every sampled component, fixed ones repeated; None when none is sampled."""
        if not any(k in self.draws for k in BURST) or not all(k in self.draws or k in self.fixed for k in BURST):
            return None
        n = len(next(self.draws[k] for k in BURST if k in self.draws))
        return np.column_stack([self.draws[k] if k in self.draws else np.full(n, self.fixed[k]) for k in BURST])

    @property
    def region(self) -> Ellipsoid | None:
        b = self.burst
        return credible_ellipsoid(b) if b is not None else None


def hypothesis_draws(hid: str, posterior: float, idata: Any, unit: str) -> HypothesisDraws:
    """The draws of ``unit``'s parameters in ``idata`` (an InferenceData; None when unreadable), with
    ``fragments = exp(log_fragments)`` added; ``note`` says why a hypothesis has no burst point."""
    out = HypothesisDraws(hid, posterior)
    if idata is None or "posterior" not in idata.groups():
        out.note = f"{hid}: its posterior draws (posterior/{hid}.nc) are {NA}; not shown."
        return out
    post = idata.posterior
    const = idata.constant_data if "constant_data" in idata.groups() else {}
    for name, _, _ in PARAMETERS:
        var = f"{unit}__{name}"
        if var in post.data_vars:
            out.draws[name] = np.asarray(post[var].values, dtype=float).ravel()
        elif f"hp__{var}" in const and np.ndim(const[f"hp__{var}"].values) == 0:
            out.fixed[name] = float(const[f"hp__{var}"].values)
    if "log_fragments" in out.draws:
        out.draws["N"] = np.exp(out.draws["log_fragments"])
    elif "log_fragments" in out.fixed:
        out.fixed["N"] = math.exp(out.fixed["log_fragments"])
    if out.burst is None:
        out.note = (f"{hid}: its model samples no burst point for {unit} (no {unit}__burst_x, _y or _z in its posterior); "
                    "not shown.")
    return out


def value(x: float) -> str:
    """A parameter's value to about three significant figures."""
    if not math.isfinite(x):
        return NA
    a = abs(x)
    if a >= 1e5:
        return f"{x:.3g}".replace("e+0", "e").replace("e+", "e")
    return f"{x:.0f}" if a >= 100 else f"{x:.1f}" if a >= 10 else f"{x:.2f}" if a >= 1 else f"{x:.3f}"


def summary(x: np.ndarray, level: float = LEVEL) -> tuple[float, float, float]:
    """Mean and the equal-tailed ``level`` interval of draws ``x``."""
    lo, hi = np.quantile(x, [(1 - level) / 2, (1 + level) / 2])
    return float(np.mean(x)), float(lo), float(hi)


def weapon_rows(hyps: list[HypothesisDraws]) -> list[list[str]]:
    """One row per parameter any shown hypothesis samples: label, then per hypothesis
    "mean (low – high)" of its draws, "fixed v", or "–" (not in its model)."""
    rows = []
    for name, label, unit in PARAMETERS:
        if not any(name in h.draws for h in hyps):
            continue
        cells = [f"{label}, {unit} ({name})" if unit else f"{label} ({name})"]
        for h in hyps:
            if name in h.draws:
                mean, lo, hi = summary(h.draws[name])
                cells.append(f"{value(mean)} ({value(lo)} – {value(hi)})")
            else:
                cells.append(f"fixed {value(h.fixed[name])}" if name in h.fixed else "–")
        rows.append(cells)
    return rows
