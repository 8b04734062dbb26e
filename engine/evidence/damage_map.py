r"""Damage map: the holes found on inspected panels of the airframe, read for the burst that made them.

An observation gives the inspected panels (rectangles in the airframe's body frame, metres,
x forward: a corner and two perpendicular edges whose cross product is the outward normal),
so that uninspected skin is never read as "no holes", and the holes found on them: position,
optionally bend direction and elongation (length / width). A panel listed under ``counts``
gives a hole count without positions (from a report's figure); every other panel is *mapped*:
all its holes are listed, and none listed means none found.

Under a hypothesis the holes are an inhomogeneous Poisson process whose intensity follows
from a burst at a latent point, a weapon's fragment count, spray zone and fragment speed, and
the weapon's velocity relative to the aircraft (``engine.evidence.damage_geometry`` gives the
formulas). Parameters (per hypothesis, from its mechanism's ``damage_map`` section):

- ``burst_x``, ``burst_y``, ``burst_z``: the burst point, m, body frame (normal or fixed);
- ``axis_x``, ``axis_y``, ``axis_z``: the weapon's course, normalised, any scale (normal or fixed);
- ``weapon_speed``: the weapon's speed along its course in the air, m/s (normal or fixed); a
  burst inside the airframe moves with it, so there it is ignored;
- ``log_fragments``: ln of the number of fragments thrown (normal or fixed);
- ``spray_angle``, ``spray_width``: centre and s.d. of the spray zone's polar angle from the
  course, degrees (normal or fixed; gamma or fixed);
- ``fragment_speed``: the static fragment speed (Gurney), m/s (normal or fixed);
- ``v50``, ``v50_spread``: the skin's ballistic limit at normal incidence, m/s (fixed);
- ``inside``: 1 when the burst is inside the airframe, else 0 (fixed);
- ``elongation_sd``: s.d. of ln(elongation) about -ln cos(i) (fixed);
- ``misread``: the chance that a hole's bend is misread (fixed).

Background (what an unfaithful report follows; the ``generic`` mechanism's ``damage_map``
section may set it): holes spread uniformly over the inspected skin at a rate
:math:`\rho \sim \mathrm{Gamma}(a, b)` per m\ :sup:`2` (integrated out: a negative-binomial
count with uniform positions), log elongations normal, bends in or out with equal chance.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from engine.dists import Dist
from engine.evidence.base import Family, NonNegativeInt, Number, Strict
from engine.evidence.damage_geometry import HoleMap, log_likelihood, panel_quadrature, rectangle_normal

MAX_PANELS = 500
MAX_HOLES = 5000
TOLERANCE_M = 0.02  # a hole may lie this far off its panel (measurement error)
Vector = tuple[Number, Number, Number]
PanelId = str

_NORMAL = (("normal", "fixed"), (-1e4, 1e4))
_FIXED = lambda lo, hi: (("fixed",), (lo, hi))  # noqa: E731
DEFAULT_BACKGROUND = {
    "background_rate": Dist("gamma", (0.5, 0.005)),  # holes per m^2: mean 100, very wide
    "elongation_log_mean": Dist("fixed", (0.3,)),
    "elongation_log_sd": Dist("fixed", (0.4,)),
}


class Panel(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    corner: Vector
    edge1: Vector
    edge2: Vector


class Hole(Strict):
    panel: str
    at: Vector
    bend: Literal["in", "out"] | None = None
    elongation: float | None = Field(default=None, ge=1.0, le=100.0)


class PanelCount(Strict):
    panel: str
    holes: NonNegativeInt


class DamageMapObs(Strict):
    """Inspected panels, the holes found on them, and hole counts of panels without positions."""

    panels: tuple[Panel, ...] = Field(min_length=1, max_length=MAX_PANELS)
    holes: tuple[Hole, ...] = Field(default=(), max_length=MAX_HOLES)
    counts: tuple[PanelCount, ...] = ()
    aircraft_speed: float = Field(default=230.0, ge=0.0, le=400.0)  # m/s along the body x axis
    cell: float = Field(default=0.4, ge=0.02, le=5.0)  # quadrature cell, m

    @model_validator(mode="after")
    def _geometry(self) -> DamageMapObs:
        ids = [p.id for p in self.panels]
        if len(set(ids)) != len(ids):
            raise ValueError(f"panel ids repeat ({', '.join(sorted({i for i in ids if ids.count(i) > 1}))}); give each panel its own id")
        for p in self.panels:
            e1, e2 = np.asarray(p.edge1), np.asarray(p.edge2)
            l1, l2 = np.linalg.norm(e1), np.linalg.norm(e2)
            if min(l1, l2) < 1e-3 or max(l1, l2) > 200:
                raise ValueError(f"panel {p.id}: edges of {l1:.3g} m and {l2:.3g} m; each edge must be 1 mm to 200 m long")
            if abs(e1 @ e2) > 1e-3 * l1 * l2:
                raise ValueError(f"panel {p.id}: edge1 and edge2 are not perpendicular; a panel is a rectangle (split other shapes)")
        panels = {p.id: p for p in self.panels}
        counted = [c.panel for c in self.counts]
        for c in counted:
            if c not in panels:
                raise ValueError(f"counts: unknown panel {c!r}; use one of {', '.join(ids)}")
        if len(set(counted)) != len(counted):
            raise ValueError("counts: a panel is counted twice; give one count per panel")
        for i, h in enumerate(self.holes):
            if h.panel not in panels:
                raise ValueError(f"holes[{i}]: unknown panel {h.panel!r}; use one of {', '.join(ids)}")
            if h.panel in counted:
                raise ValueError(f"holes[{i}]: panel {h.panel} has a count; list its holes or count them, not both")
            if (off := _offset(panels[h.panel], h.at)) > TOLERANCE_M:
                raise ValueError(f"holes[{i}]: {list(h.at)} lies {off:.2f} m outside panel {h.panel}; correct the position or the panel")
        return self


def _offset(p: Panel, x) -> float:  # noqa: ANN001
    """Distance from ``x`` to the rectangle ``p``."""
    c, e1, e2 = (np.asarray(v, dtype=float) for v in (p.corner, p.edge1, p.edge2))
    d = np.asarray(x, dtype=float) - c
    u = np.clip(d @ e1 / (e1 @ e1), 0, 1)
    v = np.clip(d @ e2 / (e2 @ e2), 0, 1)
    return float(np.linalg.norm(d - u * e1 - v * e2))


def _panel_tuple(p: Panel):  # noqa: ANN202
    return tuple(np.asarray(v, dtype=float) for v in (p.corner, p.edge1, p.edge2))


def hole_map(obs: DamageMapObs) -> HoleMap:
    """The observation in numbers (quadrature points on mapped and counted panels)."""
    counted = {c.panel: c.holes for c in obs.counts}
    mapped = [p for p in obs.panels if p.id not in counted]
    counts = [p for p in obs.panels if p.id in counted]
    normal = {p.id: rectangle_normal(np.asarray(p.edge1, float), np.asarray(p.edge2, float)) for p in obs.panels}
    return HoleMap(
        quad_mapped=panel_quadrature([_panel_tuple(p) for p in mapped], cell=obs.cell) if mapped else None,
        points=np.array([h.at for h in obs.holes], dtype=float).reshape(-1, 3),
        normals=np.array([normal[h.panel] for h in obs.holes], dtype=float).reshape(-1, 3),
        elongation=np.array([np.nan if h.elongation is None else h.elongation for h in obs.holes], dtype=float),
        bent_in=np.array([-1 if h.bend is None else int(h.bend == "in") for h in obs.holes], dtype=int),
        count_quad=panel_quadrature([_panel_tuple(p) for p in counts], cell=obs.cell) if counts else None,
        counts=np.array([counted[p.id] for p in counts], dtype=float) if counts else None,
    )


class DamageMap(Family):
    name = "damage_map"
    Obs = DamageMapObs
    params = {
        **{f"burst_{c}": _NORMAL for c in "xyz"},
        **{f"axis_{c}": _NORMAL for c in "xyz"},
        "weapon_speed": (("normal", "fixed"), (0.0, 3000.0)),
        "log_fragments": (("normal", "fixed"), (-10.0, 20.0)),
        "spray_angle": (("normal", "fixed"), (0.0, 180.0)),
        "spray_width": (("gamma", "fixed"), (0.1, 180.0)),
        "fragment_speed": (("normal", "fixed"), (10.0, 10_000.0)),
        "v50": _FIXED(0.0, 10_000.0),
        "v50_spread": _FIXED(1.0, 10_000.0),
        "inside": _FIXED(0.0, 1.0),
        "elongation_sd": _FIXED(0.01, 3.0),
        "misread": _FIXED(0.0, 0.5),
    }
    sampled = ("burst_x", "burst_y", "burst_z", "axis_x", "axis_y", "axis_z", "weapon_speed", "log_fragments",
               "spray_angle", "spray_width", "fragment_speed")

    def describe(self, obs) -> str:  # noqa: ANN001
        counted = sum(c.holes for c in obs.counts)
        bends = [h.bend for h in obs.holes if h.bend]
        parts = [f"{len(obs.holes)} holes mapped on {len(obs.panels) - len(obs.counts)} panels"]
        if obs.counts:
            parts.append(f"{counted} counted on {len(obs.counts)} more")
        if bends:
            parts.append(f"{bends.count('in')} of {len(bends)} assessed bent inward")
        return ", ".join(parts)

    def check_params(self, obs, spec) -> list[tuple[str, str]]:  # noqa: ANN001
        if spec.get("inside") is not None and spec["inside"].mean() not in (0.0, 1.0):
            return [("inside", "inside is 0 (burst outside the airframe) or 1 (inside)")]
        return []

    def group_conflict(self, group, first, other) -> str | None:  # noqa: ANN001
        return None if other == first else f"reports in group {group!r} give different damage maps; a group holds one map"

    def loglik(self, items, theta):  # noqa: ANN001, ANN201
        import pytensor.tensor as pt

        obs = items[0].observed
        burst = pt.stack([theta["burst_x"], theta["burst_y"], theta["burst_z"]])
        course = pt.stack([theta["axis_x"], theta["axis_y"], theta["axis_z"]])
        axis = course / pt.sqrt(pt.sum(course**2) + 1e-12)
        # a weapon inside the airframe moves with it: no relative velocity
        rel = (1 - theta["inside"]) * (theta["weapon_speed"] * axis - pt.as_tensor(np.array([obs.aircraft_speed, 0.0, 0.0])))
        deg = math.pi / 180
        return log_likelihood(
            pt, hole_map(obs), burst, axis, rel, theta["fragment_speed"], theta["spray_angle"] * deg, theta["spray_width"] * deg,
            pt.exp(theta["log_fragments"]), theta["v50"], theta["v50_spread"], entry=1 - 2 * theta["inside"],
            elongation_sd=theta["elongation_sd"], misread=theta["misread"],
        )

    def generic(self, items, library, hypotheses) -> dict[str, Dist]:  # noqa: ANN001
        return {**DEFAULT_BACKGROUND, **library}

    def closed_form(self, items, spec) -> float | None:  # noqa: ANN001
        """The background's log density (uniform holes at a Gamma rate, normal log elongations, even bends);
        None for a hypothesis's own parameters, which have no closed form."""
        if "background_rate" not in spec:
            return None
        from scipy import stats
        from scipy.special import gammaln

        obs = items[0].observed
        area = {p.id: float(np.linalg.norm(np.cross(p.edge1, p.edge2))) for p in obs.panels}
        counted = {c.panel: c.holes for c in obs.counts}
        n_all = len(obs.holes) + sum(counted.values())
        a, b = spec["background_rate"].args
        total_area = sum(area.values())
        out = a * math.log(b) - gammaln(a) + gammaln(a + n_all) - (a + n_all) * math.log(b + total_area)
        out += sum(n * math.log(area[p]) - gammaln(n + 1) for p, n in counted.items())
        elongations = [h.elongation for h in obs.holes if h.elongation is not None]
        if elongations:
            loge = np.log(np.asarray(elongations))
            out += float(np.sum(stats.norm.logpdf(loge, spec["elongation_log_mean"].mean(), spec["elongation_log_sd"].mean()) - loge))
        out += sum(h.bend is not None for h in obs.holes) * math.log(0.5)
        return float(out)

    def exact_problem(self, case) -> str | None:  # noqa: ANN001
        return "a damage map's likelihood has no closed form" if any(it.family == self.name for it in case.items) else None
