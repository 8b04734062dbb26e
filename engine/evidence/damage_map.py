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
- ``course_heading``, ``course_climb``: degrees (normal or fixed, default 0): the axis turned about body z
  and raised towards it (``course_direction``). Sample the course by these angles with the axis fixed at
  (1, 0, 0): the three components of a sampled axis carry a free length, and the direction's spread
  grows with it (a funnel NUTS crosses slowly and with divergences);
- ``weapon_speed``: the weapon's speed along its course in the air, m/s (normal or fixed); a
  burst inside the airframe moves with it, so there it is ignored. A normal one is sampled as the spray
  zone's apparent half-angle ``spray_angle_apparent`` (:meth:`DamageMap.sample_as`; the weapon speed is
  then a deterministic of it, in the posterior under its own name);
- ``log_fragments``: ln of the number of fragments thrown (normal or fixed);
- ``spray_angle``, ``spray_width``: centre and s.d. of the spray zone's polar angle from the
  course, degrees (normal or fixed; gamma or fixed);
- ``fragment_speed``: the static fragment speed (Gurney), m/s (normal or fixed);
- ``v50``, ``v50_spread``: the skin's ballistic limit at normal incidence, m/s (fixed);
- ``inside``: 1 when the burst is inside the airframe, else 0 (fixed);
- ``elongation_sd``: s.d. of ln(elongation) about -ln cos(i) (fixed);
- ``misread``: the chance that a hole's bend is misread (fixed);
- ``stray_rate``: holes per m\ :sup:`2` the burst did not make (rivet holes, earlier damage, debris),
  uniform over the inspected skin (fixed, default 0.05, assumed);
- ``shape_<s>``, ``log_mass_<s>`` for each fragment shape ``s`` of ``SHAPES``: the class's weight of
  that shape among its fragments and the median mass of such a fragment, ln grams (fixed; defaults
  0 and ``DEFAULT_LOG_MASS``).

Recovered fragments (``recovered``: shape and mass in grams) add a term with no latent parameter,
a constant per hypothesis (:func:`recovered_log_likelihood`): fragment :math:`i` of shape
:math:`s_i` and mass :math:`m_i` has density

.. math::
    p(s_i)\,\mathcal{LN}(m_i \mid \mu_{s_i}, \tau_{s_i}),\qquad
    p(s) = \frac{w_s + \epsilon}{\sum_t w_t + 5\epsilon},

with :math:`w_s` = ``shape_<s>``, :math:`\mu_s` = ``log_mass_<s>``, the floor :math:`\epsilon` =
``SHAPE_FLOOR`` (0.005: a shape the class never makes has probability about 0.005 / (sum of weights)),
and :math:`\tau_s` = ``MASS_LOG_SD`` (0.2 for preformed shapes, 1.0 for natural fragments; assumed).
A class listing no shape weighs all five alike.

Background (what an unfaithful report follows; the ``generic`` mechanism's ``damage_map``
section may set it): holes spread uniformly over the inspected skin at a rate
:math:`\rho \sim \mathrm{Gamma}(a, b)` per m\ :sup:`2` (integrated out: a negative-binomial
count with uniform positions), log elongations normal (an elongation recorded as 1 censored, as in the
hypotheses' model), bends in or out with equal chance.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from engine.dists import Dist
from engine.evidence.base import Family, NonNegativeInt, Number, Strict
from engine.evidence.damage_geometry import (
    N_GRAD,
    ROUND_LOG_ELONGATION,
    Cells,
    HoleMap,
    Quadrature,
    adaptive_cells,
    band_normaliser,
    fast_hole_intensity,
    hole_intensity,
    log_likelihood_and_gradient,
    panel_cells,
    panel_quadrature,
    rectangle_normal,
)

MAX_PANELS = 500
MAX_HOLES = 5000
TOLERANCE_M = 0.02  # a hole may lie this far off its panel (measurement error)
QUADRATURE_CHECK_DRAWS = 40  # posterior draws at which the quadrature is checked against half-size cells
MIN_CELL = 0.02  # the finest cell the check tries (the observation's lower bound on ``cell``)
QUADRATURE_TOLERANCE = 0.01  # the per-panel relative error above which a run warns (numerical_problems)
DEFAULT_CELL = 0.4  # m: the uniform cells of a map whose quadrature is not adapted to a case (starting points, the reach check)
# Without a `cell`, the quadrature is adapted to the case (``DamageMap.cells``): a quadtree from ADAPT_TOP m cells down to
# ADAPT_TOP / 2**ADAPT_DEPTH m, cut only where needed to agree with its finest level within ADAPT_TOL expected holes over
# the whole map (so within ADAPT_TOL nats of log likelihood) at each hypothesis's best fits (``adaptive_cells``).
ADAPT_TOP, ADAPT_DEPTH = 1.6, 5
ADAPT_TOL = 0.01
ADAPT_FITS = 8  # the climbed fits per hypothesis (all) the cells are adapted at, and the best moved by ADAPT_MOVE m along each axis
ADAPT_MOVE = 0.3
CLOSE_CELLS = 2.5  # a burst prior's mean nearer the skin than this many quadrature cells is warned about (suspicious_params)
Vector = tuple[Number, Number, Number]
PanelId = str

_NORMAL = (("normal", "fixed"), (-1e4, 1e4))
_FIXED = lambda lo, hi: (("fixed",), (lo, hi))  # noqa: E731
COURSE_DEFAULTS = {"course_heading": Dist("fixed", (0.0,)), "course_climb": Dist("fixed", (0.0,)),
                   "stray_rate": Dist("fixed", (0.05,))}  # assumed: 3 stray holes on 60 m^2 of skin
SHAPES = ("bow_tie", "square", "rod", "ball", "natural")
SHAPE_FLOOR = 0.005  # weight of a shape the class never makes (assumed)
MASS_LOG_SD = {"bow_tie": 0.2, "square": 0.2, "rod": 0.2, "ball": 0.2, "natural": 1.0}  # s.d. of ln mass (assumed)
DEFAULT_LOG_MASS = 1.6  # ln g: 5 g, a class that states no mass for a shape (assumed)
SHAPE_DEFAULTS = {**{f"shape_{s}": Dist("fixed", (0.0,)) for s in SHAPES},
                  **{f"log_mass_{s}": Dist("fixed", (DEFAULT_LOG_MASS,)) for s in SHAPES}}
MAX_RECOVERED = 1000
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
    size_mm: float | None = Field(default=None, gt=0.0, le=10_000.0)  # recorded for the report; not in the likelihood


class Recovered(Strict):
    shape: Literal["bow_tie", "square", "rod", "ball", "natural"]
    mass_g: float = Field(gt=0.0, le=100_000.0)


class PanelCount(Strict):
    panel: str
    holes: NonNegativeInt


class DamageMapObs(Strict):
    """Inspected panels, the holes found on them, and hole counts of panels without positions."""

    panels: tuple[Panel, ...] = Field(min_length=1, max_length=MAX_PANELS)
    holes: tuple[Hole, ...] = Field(default=(), max_length=MAX_HOLES)
    counts: tuple[PanelCount, ...] = ()
    recovered: tuple[Recovered, ...] = Field(default=(), max_length=MAX_RECOVERED)
    aircraft_speed: float = Field(default=230.0, ge=0.0, le=400.0)  # m/s along the body x axis
    cell: float | None = Field(default=None, ge=0.02, le=5.0)  # uniform quadrature cells, m (None: adapted to the case)

    @model_validator(mode="before")
    @classmethod
    def _size(cls, raw):  # noqa: ANN001, ANN206
        holes = raw.get("holes") if isinstance(raw, dict) else None
        if isinstance(holes, (list, tuple)) and len(holes) > MAX_HOLES:
            raise ValueError(f"holes: {len(holes)} located holes, at most {MAX_HOLES}; give the densest panels' holes as counts "
                             "(counts: [{panel, holes}]) instead of positions")
        return raw

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


def _subset(cells: Cells, keep: np.ndarray) -> Cells | None:
    """The cells on the panels ``keep`` (a mask over the panels), the panels renumbered in order; None if none."""
    if not keep.any():
        return None
    new = np.cumsum(keep) - 1
    on = keep[cells.panel]
    return Cells(cells.origin[on], cells.e1[on], cells.e2[on], new[cells.panel[on]], cells.normals[keep])


def hole_map(obs: DamageMapObs, cells: Cells | None = None) -> HoleMap:
    """The observation in numbers (quadrature points on mapped and counted panels): on ``cells`` over all the
    panels, by default the observation's uniform ``cell`` (``DEFAULT_CELL`` if it gives none)."""
    counted = {c.panel: c.holes for c in obs.counts}
    counts = [p for p in obs.panels if p.id in counted]
    normal = {p.id: rectangle_normal(np.asarray(p.edge1, float), np.asarray(p.edge2, float)) for p in obs.panels}
    if cells is None:
        cells = panel_cells([_panel_tuple(p) for p in obs.panels], obs.cell or DEFAULT_CELL)
    on_counted = np.array([p.id in counted for p in obs.panels])
    mapped_cells, counted_cells = _subset(cells, ~on_counted), _subset(cells, on_counted)
    return HoleMap(
        quad_mapped=None if mapped_cells is None else mapped_cells.quadrature(),
        points=np.array([h.at for h in obs.holes], dtype=float).reshape(-1, 3),
        normals=np.array([normal[h.panel] for h in obs.holes], dtype=float).reshape(-1, 3),
        elongation=np.array([np.nan if h.elongation is None else h.elongation for h in obs.holes], dtype=float),
        bent_in=np.array([-1 if h.bend is None else int(h.bend == "in") for h in obs.holes], dtype=int),
        count_quad=None if counted_cells is None else counted_cells.quadrature(),
        counts=np.array([counted[p.id] for p in counts], dtype=float) if counts else None,
    )


def _log_prior(d: Dist, x: float) -> float:
    """Unnormalised log density of a normal or gamma spec (what the starting points' climb adds)."""
    if d.kind == "normal":
        return -0.5 * ((x - d.args[0]) / d.args[1]) ** 2
    if d.kind == "gamma":
        return (d.args[0] - 1) * math.log(max(x, 1e-300)) - d.args[1] * x
    return 0.0


def _log_prior_slope(d: Dist, x: float) -> float:
    """d/dx of :func:`_log_prior`."""
    if d.kind == "normal":
        return -(x - d.args[0]) / d.args[1] ** 2
    if d.kind == "gamma":
        return (d.args[0] - 1) / max(x, 1e-300) - d.args[1]
    return 0.0


def _weapon_motion(obs: DamageMapObs, t: dict) -> tuple[np.ndarray, np.ndarray]:
    """One draw's weapon axis and velocity relative to the aircraft (zero for a burst inside)."""
    axis = course_direction(np, [t["axis_x"], t["axis_y"], t["axis_z"]], t["course_heading"], t["course_climb"])
    return axis, (1 - t["inside"]) * (t["weapon_speed"] * axis - np.array([obs.aircraft_speed, 0.0, 0.0]))


def _point_weights(obs: DamageMapObs, quad: Quadrature, theta: dict) -> np.ndarray:
    """Per draw of ``theta`` (n, leading axis), the expected holes at each quadrature point (n, M): weight x
    (intensity + stray rate), by the numba kernel (``fast_hole_intensity``)."""
    n = len(np.atleast_1d(theta["log_fragments"]))
    col = {k: np.broadcast_to(np.asarray(v, dtype=float), (n,)) for k, v in theta.items() if k != "data"}
    out = np.empty((n, len(quad.points)))
    for i in range(n):
        t = {k: v[i] for k, v in col.items()}
        out[i] = quad.weights * (_intensity(obs, quad.points, quad.normals, t) + t["stray_rate"])
    return out


def _intensity(obs: DamageMapObs, points: np.ndarray, normals: np.ndarray, t: dict) -> np.ndarray:
    """The burst's holes per m^2 at ``points`` for parameters ``t`` (no stray holes), by the numba kernel."""
    axis, rel = _weapon_motion(obs, t)
    deg = math.pi / 180
    return fast_hole_intensity(points, normals, np.array([t["burst_x"], t["burst_y"], t["burst_z"]]), axis, rel, t["fragment_speed"],
                               t["spray_angle"] * deg, t["spray_width"] * deg, math.exp(t["log_fragments"]), t["v50"], t["v50_spread"],
                               entry=1 - 2 * t["inside"])


def _per_panel(quad: Quadrature, weights: np.ndarray) -> np.ndarray:
    """Expected holes per panel (n, P) from the points' expected holes (n, M)."""
    return np.stack([np.bincount(quad.panel, weights=w, minlength=quad.n_panels) for w in weights])


def _centroid(obs: DamageMapObs) -> np.ndarray:
    """The inspected panels' area-weighted centroid."""
    c = np.array([np.add(p.corner, np.add(p.edge1, p.edge2) / 2) for p in obs.panels], dtype=float)
    a = np.array([np.linalg.norm(np.cross(p.edge1, p.edge2)) for p in obs.panels])
    return a @ c / a.sum()


class DamageMap(Family):
    name = "damage_map"
    Obs = DamageMapObs
    _memo: list = []  # noqa: RUF012 - the last predictive computation (``_predictive``)
    _climbs: dict = {}  # noqa: RUF012 - climbed fits per map and spec (``_climbed``)
    _cells: dict = {}  # noqa: RUF012 - adapted quadrature cells per case (``cells``)
    params = {
        **{f"burst_{c}": _NORMAL for c in "xyz"},
        **{f"axis_{c}": _NORMAL for c in "xyz"},
        "course_heading": (("normal", "fixed"), (-720.0, 720.0)),
        "course_climb": (("normal", "fixed"), (-90.0, 90.0)),
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
        "stray_rate": _FIXED(0.0, 100.0),
        **{f"shape_{s}": _FIXED(0.0, 1e6) for s in SHAPES},
        **{f"log_mass_{s}": _FIXED(-10.0, 15.0) for s in SHAPES},
    }
    replicable = True
    reparametrised = ("weapon_speed",)
    sampled = ("burst_x", "burst_y", "burst_z", "axis_x", "axis_y", "axis_z", "course_heading", "course_climb", "weapon_speed", "log_fragments",
               "spray_angle", "spray_width", "fragment_speed")

    def mechanism_params(self, obs, table):  # noqa: ANN001, ANN201
        """The mechanism's table; the course's turn angles default to 0 (the course is then the axis), the
        stray-hole rate to 0.05 per m^2, shape weights to 0 and masses to ``DEFAULT_LOG_MASS``."""
        return {**COURSE_DEFAULTS, **SHAPE_DEFAULTS, **table}

    def describe(self, obs) -> str:  # noqa: ANN001
        counted = sum(c.holes for c in obs.counts)
        bends = [h.bend for h in obs.holes if h.bend]
        parts = [f"{len(obs.holes)} holes mapped on {len(obs.panels) - len(obs.counts)} panels"]
        if obs.counts:
            parts.append(f"{counted} counted on {len(obs.counts)} more")
        if bends:
            parts.append(f"{bends.count('in')} of {len(bends)} assessed bent inward")
        if obs.recovered:
            shapes = [f.shape for f in obs.recovered]
            parts.append(f"{len(shapes)} fragments recovered ({', '.join(f'{shapes.count(s)} {s}' for s in SHAPES if s in shapes)})")
        return ", ".join(parts)

    def check_params(self, obs, spec) -> list[tuple[str, str]]:  # noqa: ANN001
        if spec.get("inside") is not None and spec["inside"].mean() not in (0.0, 1.0):
            return [("inside", "inside is 0 (burst outside the airframe) or 1 (inside)")]
        if (problem := burst_prior_problem(obs, spec)) is not None:
            return [("panels", problem)]
        return []

    def suspicious_params(self, obs, spec) -> list[tuple[str, str]]:  # noqa: ANN001
        """A burst prior centred closer to the skin than ``CLOSE_CELLS`` quadrature cells: the intensity there peaks
        within a cell and the per-panel integrals lose accuracy. Measured against 0.05 m cells on the benchmark's
        box (100 bursts each, tests' and benchmark's large-SAM spray): bursts 0.3-1 m outside, 0.4 m cells gave
        per-panel errors up to 69 % (95th percentile 9.7 %), 0.2 m up to 18 % (0.5 %), 0.1 m up to 0.9 %;
        bursts 0.3-1.5 m inside, 0.4 m cells up to 4.3 %; bursts 1-10 m outside, 0.4 m cells up to 0.04 %."""
        if not all(f"burst_{c}" in spec for c in "xyz"):
            return []
        mean = [float(spec[f"burst_{c}"].mean()) for c in "xyz"]
        d = min(_offset(p, mean) for p in obs.panels)
        finest = obs.cell or ADAPT_TOP / 2**ADAPT_DEPTH
        if d >= CLOSE_CELLS * finest:
            return []
        cell = max(0.02, math.floor(d / 4 * 100) / 100)
        cells = f"{obs.cell} m cells" if obs.cell else f"the adapted quadrature's finest cells ({finest:g} m)"
        return [("cell", f"the burst prior's mean {np.round(mean, 2).tolist()} lies {d:.2f} m from the nearest inspected panel, "
                 f"within {CLOSE_CELLS} cells of {cells}: the expected holes per panel can be off by tens of percent for a "
                 f"burst that close; give `cell: {cell}` (a quarter of that distance) in the damage map's observed")]

    def group_conflict(self, group, first, other) -> str | None:  # noqa: ANN001
        return None if other == first else f"reports in group {group!r} give different damage maps; a group holds one map"

    def loglik(self, items, theta):  # noqa: ANN001, ANN201
        """The map's log likelihood as one PyTensor operation (:class:`_MapLogLik`: numpy and numba, with
        its gradient by hand); the course's normalisation, the relative velocity, the band normaliser
        and the bend term stay in PyTensor."""
        import pytensor.tensor as pt

        obs = items[0].observed
        burst = pt.stack([theta["burst_x"], theta["burst_y"], theta["burst_z"]])
        axis = course_direction(pt, [theta[f"axis_{c}"] for c in "xyz"], theta["course_heading"], theta["course_climb"])
        # a weapon inside the airframe moves with it: no relative velocity
        rel = (1 - theta["inside"]) * (theta["weapon_speed"] * axis - pt.as_tensor(np.array([obs.aircraft_speed, 0.0, 0.0])))
        deg = math.pi / 180
        phi0, sigma = theta["spray_angle"] * deg, theta["spray_width"] * deg
        scale = pt.exp(theta["log_fragments"]) / band_normaliser(pt, phi0, sigma)
        cells = self.cells(items)
        op = _MapLogLik(f"{_digest(obs)}-{_cells_digest(cells)}")
        op.hole_map = hole_map(obs, cells)
        params = pt.concatenate([burst, axis, rel, pt.stack([theta["fragment_speed"], phi0, sigma, scale])])
        fixed = pt.stack([pt.as_tensor(theta[k], dtype="float64") for k in ("v50", "v50_spread", "inside", "elongation_sd", "misread", "stray_rate")])
        out = op(params, fixed)[0]
        if obs.recovered:
            out = out + recovered_log_likelihood(pt, obs.recovered, theta)
        return out

    def sample_as(self, items, name, pname, hp, theta):  # noqa: ANN001, ANN201
        """``weapon_speed`` ~ Normal(hp), sampled as the spray zone's apparent half-angle about the course
        (:func:`apparent_angle`, the free variable ``<unit>__spray_angle_apparent``, degrees in (0, 180)), the
        weapon's speed a deterministic of it. The hole map pins the apparent angle, not the weapon speed, fragment
        speed and spray angle it comes from: in those three the posterior is a curved ridge whose curvature
        across a NUTS trajectory varies 5-60-fold (benchmarks/README.md), in the apparent angle it is close to
        linear. The prior is the same: p(angle | v0, phi0, course) = Normal(w(angle) | hp) |dw/d angle|."""
        import pymc as pm
        import pytensor.tensor as pt
        from pymc.distributions.transforms import Interval

        if pname != "weapon_speed":
            raise NotImplementedError(pname)
        axis = course_direction(pt, [theta[f"axis_{c}"] for c in "xyz"], theta["course_heading"], theta["course_climb"])
        along = items[0].observed.aircraft_speed * axis[0]
        v0, spray = theta["fragment_speed"], theta["spray_angle"]
        angle = __getattr__("ApparentAngle")(f"{name.rpartition('__')[0]}__spray_angle_apparent", v0, spray, along, hp[0], hp[1],
                                             transform=Interval(0.0, 180.0))
        return pm.Deterministic(name, weapon_speed_of_angle(pt, angle, v0, spray, along))

    def initial_values(self, items: tuple, spec: dict) -> list[dict[str, float]]:
        """Candidate starting points for the sampler (parameter -> value; only sampled parameters):
        the sampler's own optimiser (``engine.run.compiled``) climbs from each and keeps the best.

        A burst outside: 1, 3 or 6 m off the holes' centroid along their panels' mean outward normal, and
        2, 4 or 8 m off it in each of the 26 directions of a cube's faces, edges and corners (a burst below
        an aircraft whose two sides are holed has a mean normal near zero); inside: at the prior mean, or
        the centroid pulled inward. The course along six directions, the spray band at three times its
        prior width so that every hole is within its reach at the start; other parameters at their prior
        means. Every candidate is scored on the map's log likelihood (:meth:`_refined`); the best few are
        climbed and come first, each from another place (a second mode is kept, not crowded out).
        """
        obs = items[0].observed
        free = {k for k in self.sampled if k in spec and spec[k].kind != "fixed"}
        climbed = self._climbed(items, spec)
        starts = [{k: v for k, v in c.items() if k in free} for c in climbed]
        if "weapon_speed" in free and spec["weapon_speed"].kind == "normal":  # sampled as the apparent angle (sample_as)
            for c, full in zip(starts, climbed, strict=True):
                axis = course_direction(np, [full["axis_x"], full["axis_y"], full["axis_z"]], full["course_heading"], full["course_climb"])
                c["spray_angle_apparent"] = float(apparent_angle(np, full["weapon_speed"], full["fragment_speed"], full["spray_angle"],
                                                                 obs.aircraft_speed * axis[0]))
        return starts

    def _climbed(self, items: tuple, spec: dict) -> list[dict[str, float]]:
        """:meth:`initial_values`' candidates climbed, best first, each with every parameter (the prior means of those
        not climbed). Memoised in this process per map and spec: the sampler's starting points and the adapted
        quadrature (:meth:`cells`) both need them."""
        import hashlib

        obs = items[0].observed
        key = hashlib.sha256((_digest(obs) + repr(sorted(spec.items()))).encode()).hexdigest()
        if key not in self._climbs:
            _bounded(self._climbs)
            self._climbs[key] = self._climb(obs, spec)
        return self._climbs[key]

    def _climb(self, obs: DamageMapObs, spec: dict) -> list[dict[str, float]]:
        hm = hole_map(obs)  # uniform cells: the climbs find the cells' fits, so they cannot use them
        located = hm.points if len(hm.points) else hm.count_quad.points
        normals = hm.normals if len(hm.points) else hm.count_quad.normals
        centroid = located.mean(axis=0)
        outward = normals.mean(axis=0)
        outward = outward / (np.linalg.norm(outward) + 1e-12)
        mean = {k: float(d.mean()) for k, d in spec.items()}
        free = {k for k in self.sampled if k in spec and spec[k].kind != "fixed"}
        inside = mean.get("inside", 0.0) >= 0.5
        if inside:
            bursts = [np.array([mean["burst_x"], mean["burst_y"], mean["burst_z"]]), centroid - 0.5 * outward]
        else:
            bursts = [centroid + d * outward for d in (1.0, 3.0, 6.0)]
            if {"burst_x", "burst_y", "burst_z"} & free:
                cube = np.array([u for u in itertools.product((-1.0, 0.0, 1.0), repeat=3) if any(u)])
                bursts += [centroid + d * u / np.linalg.norm(u) for d in (2.0, 4.0, 8.0) for u in cube]
        if {"course_heading", "course_climb"} & free:  # the course by its angles: six directions about the prior mean
            h0, c0 = mean["course_heading"], mean["course_climb"]
            courses = [{"course_heading": h0 + dh, "course_climb": c0} for dh in (0.0, 90.0, 180.0, -90.0)]
            courses += [{"course_heading": h0, "course_climb": c0 + dc} for dc in (-50.0, 50.0)]
        else:
            courses = [{f"axis_{c}": float(v) for c, v in zip("xyz", np.eye(3)[i] * sgn, strict=True)}
                       for i in range(3) for sgn in (1.0, -1.0)]
        base = {k: mean[k] for k in free}
        if "spray_width" in free:
            base["spray_width"] = min(3 * mean["spray_width"], 90.0)
        quads = [q for q in (hm.quad_mapped, hm.count_quad) if q is not None]
        n_holes = len(hm.points) + (float(hm.counts.sum()) if hm.counts is not None else 0.0)
        out = []
        for b in bursts:
            for course in courses:
                cand = {**mean, **base, **{f"burst_{c}": float(v) for c, v in zip("xyz", b, strict=True)}, **course}
                if "log_fragments" in free:  # as many fragments as make the holes found
                    cand["log_fragments"] = self._matching_log_fragments(obs, quads, cand, n_holes, spec["log_fragments"])
                out.append(cand)
        return self._refined(hm, obs, spec, out, sorted(free))

    def cells(self, items: tuple) -> Cells:
        """The quadrature cells of the map's panels for this case: the observation's uniform ``cell`` if it gives
        one, else adapted (:func:`adaptive_cells`) at the ``ADAPT_FITS`` best climbed fits of every hypothesis
        (:meth:`_climbed`), at the best moved ``ADAPT_MOVE`` m either way along each axis, and at the best with a band
        0.8 times as wide: coarse where the intensity is smooth, fine on the band's stripe and the burst's foot. A
        function of the case alone (its map and every hypothesis's parameters), so every process of a run finds the
        same cells. Memoised in this process."""
        import hashlib

        obs = items[0].observed
        panels = [_panel_tuple(p) for p in obs.panels]
        if obs.cell is not None:
            return panel_cells(panels, obs.cell)
        specs = items[0].params
        key = hashlib.sha256((_digest(obs) + repr(sorted((h, sorted(sp.items())) for h, sp in specs.items()))).encode()).hexdigest()
        if key not in self._cells:
            sets = []
            for spec in specs.values():
                fits = self._climbed(items, spec)[:ADAPT_FITS]
                sets += fits
                if fits:
                    best = fits[0]
                    sets += [{**best, f"burst_{c}": best[f"burst_{c}"] + sign * ADAPT_MOVE} for c in "xyz" for sign in (-1, 1)]
                    sets.append({**best, "spray_width": 0.8 * best["spray_width"]})

            def intensities(points: np.ndarray, normals: np.ndarray) -> np.ndarray:
                return np.stack([_intensity(obs, points, normals, t) for t in sets]) if sets else np.zeros((1, len(points)))

            _bounded(self._cells)
            self._cells[key] = adaptive_cells(panels, intensities, tol=ADAPT_TOL, top=ADAPT_TOP,
                                              depth=ADAPT_DEPTH)
        return self._cells[key]

    def _refined(self, hm, obs, spec, cands: list[dict], free: list[str], keep: int = 8, maxiter: int = 60,  # noqa: ANN001
                 apart: float = 1.5) -> list[dict]:
        """The best ``keep`` candidates, climbed (L-BFGS with the op's analytic gradient) on the map's own log
        likelihood plus the log prior, best first: the model's mixture with the background is flat far from
        the burst, where a sampler's optimiser cannot move. Candidates are ranked by that value; a candidate
        whose burst lies within ``apart`` m of a better one's is passed over, so the few climbed start in
        different places and a second mode is found, not crowded out by the first's neighbours."""
        from scipy import optimize

        deg = math.pi / 180
        stray = float(spec["stray_rate"].mean()) if "stray_rate" in spec else 0.0

        def weapon(t: dict) -> np.ndarray:
            """The op's inputs (burst, course, relative velocity, v0, phi0, sigma, K = N / Z) for parameters ``t``."""
            axis = course_direction(np, [t["axis_x"], t["axis_y"], t["axis_z"]], t["course_heading"], t["course_climb"])
            rel = (1 - t["inside"]) * (t["weapon_speed"] * axis - np.array([obs.aircraft_speed, 0.0, 0.0]))
            phi0, sigma = t["spray_angle"] * deg, t["spray_width"] * deg
            # a step to a huge fragment count gives inf (math.exp would raise), which the objective scores as no fit
            scale = (math.exp(t["log_fragments"]) if t["log_fragments"] < 709.0 else math.inf) / band_normaliser(np, phi0, sigma)
            return np.concatenate([[t["burst_x"], t["burst_y"], t["burst_z"]], axis, rel, [t["fragment_speed"], phi0, sigma, scale]])

        def log_lik(t: dict, p: np.ndarray) -> tuple[float, np.ndarray]:
            """The map's log likelihood without its bend term (a constant here) and its gradient in the op's inputs."""
            with np.errstate(all="ignore"):
                return log_likelihood_and_gradient(hm, p[0:3], p[3:6], p[6:9], *p[9:13], t["v50"], t["v50_spread"],
                                                   entry=1 - 2 * t["inside"], elongation_sd=t["elongation_sd"], stray=stray)

        def objective(x: np.ndarray, base: dict) -> tuple[float, np.ndarray]:
            """Minus (that log likelihood plus the log prior) and its gradient: the op's hand-written gradient
            (numba) through the Jacobian of ``weapon`` (central differences)."""
            t = {**base, **dict(zip(free, x, strict=True))}
            if t["fragment_speed"] <= 0 or t["spray_width"] <= 0:
                return 1e12, np.zeros_like(x)
            p = weapon(t)
            ll, g = log_lik(t, p)
            with np.errstate(all="ignore"):
                jac = np.empty((len(p), len(x)))
                for j, k in enumerate(free):
                    h = 1e-6 * max(1.0, abs(x[j]))
                    jac[:, j] = (weapon({**t, k: x[j] + h}) - weapon({**t, k: x[j] - h})) / (2 * h)
                value = -(ll + sum(_log_prior(spec[k], t[k]) for k in free))
                grad = -(g @ jac + np.array([_log_prior_slope(spec[k], t[k]) for k in free]))
            if not (np.isfinite(value) and np.all(np.isfinite(grad))):
                return 1e12, np.zeros_like(x)
            return float(value), grad

        def score(c: dict) -> float:
            """The objective's value alone (no Jacobian): what ranks the candidates."""
            if c["fragment_speed"] <= 0 or c["spray_width"] <= 0:
                return 1e12
            value = -(log_lik(c, weapon(c))[0] + sum(_log_prior(spec[k], c[k]) for k in free))
            return float(value) if np.isfinite(value) else 1e12

        burst = lambda c: np.array([c["burst_x"], c["burst_y"], c["burst_z"]])  # noqa: E731
        ranked = sorted(cands, key=score)
        chosen: list[dict] = []
        for c in ranked:
            if len(chosen) < keep and all(np.linalg.norm(burst(c) - burst(o)) >= apart for o in chosen):
                chosen.append(c)
        chosen += [c for c in ranked if not any(c is o for o in chosen)][:keep - len(chosen)]  # few places (a fixed burst): other courses
        out = []
        for c in chosen:
            fit = optimize.minimize(objective, np.array([c[k] for k in free]), args=(c,), jac=True, method="L-BFGS-B",
                                    options={"maxiter": maxiter})
            out.append((fit.fun, {**c, **{k: float(v) for k, v in zip(free, fit.x, strict=True)}}))
        return [c for _, c in sorted(out, key=lambda f: f[0])]

    @staticmethod
    def _matching_log_fragments(obs, quads, t, n_holes, prior) -> float:  # noqa: ANN001
        """ln N for which parameters ``t`` predict ``n_holes`` holes, within 3 s.d. of the prior."""
        one = {**t, "fragment_speed": abs(t["fragment_speed"]) + 1.0, "log_fragments": 0.0}
        with np.errstate(all="ignore"):
            per_fragment = sum(float(np.sum(q.weights * _intensity(obs, q.points, q.normals, one))) for q in quads)
        mu, sd = float(prior.mean()), (float(prior.args[1]) if prior.kind == "normal" else 1.0)
        guess = math.log(max(n_holes, 1.0) / per_fragment) if per_fragment > 0 and np.isfinite(per_fragment) else mu
        return float(np.clip(guess, mu - 3 * sd, mu + 3 * sd))

    # ------------------------------------------------------------ predictive checks
    def _predictive(self, items, theta) -> tuple:  # noqa: ANN001
        """Per draw of ``theta``: expected holes per panel (n, P, in the observation's panel order), and
        the intensity's weights over the mapped panels' quadrature points (n, M) with those points'
        distances from the inspected panels' centroid (M,). Memoised for the last ``theta``."""
        import hashlib

        obs = items[0].observed
        cells = self.cells(items)
        key = hashlib.sha256(repr(sorted((k, np.asarray(v).tobytes()) for k, v in theta.items() if k != "data")).encode()
                             + _digest(obs).encode() + _cells_digest(cells).encode()).hexdigest()
        if self._memo and self._memo[0] == key:
            return self._memo[1]
        quad = cells.quadrature()
        counted = {c.panel for c in obs.counts}
        mapped = np.array([p.id not in counted for p in obs.panels])[quad.panel]
        dist = np.linalg.norm(quad.points - _centroid(obs), axis=1)
        weights = _point_weights(obs, quad, theta)
        out = (_per_panel(quad, weights), weights[:, mapped], dist[mapped], quad.points[mapped])
        self._memo[:] = [key, out]
        return out

    def numerical_problems(self, items, theta) -> list[str]:  # noqa: ANN001
        """The per-panel quadrature (:meth:`cells`) checked at up to ``QUADRATURE_CHECK_DRAWS`` posterior draws against
        its cells cut in half, and, for cells adapted to the case, against uniform ``DEFAULT_CELL`` / 2 m cells (adapted
        cells are coarse where the case's fits put few holes, and a narrow feature there can slip between both). Where a
        panel's expected holes (>= 5) differ by more than ``QUADRATURE_TOLERANCE``, the cells are too coarse for where the
        posterior puts the burst (a burst close to the skin, or a narrow band: the error grows with cell / distance and
        cell / band width on the skin; ``python benchmarks/damage_map.py --quadrature 400``). Uniform cells are then
        halved until two successive sizes agree: the coarser of those is the advice, and the error is stated against
        the finer (down to ``MIN_CELL`` m)."""
        obs = items[0].observed
        n = len(np.atleast_1d(theta["log_fragments"]))
        pick = np.unique(np.linspace(0, n - 1, min(n, QUADRATURE_CHECK_DRAWS)).round().astype(int))
        sub = {k: np.broadcast_to(np.asarray(v, dtype=float), (n,))[pick] for k, v in theta.items() if k != "data"}
        base = self.cells(items)
        panels = [_panel_tuple(p) for p in obs.panels]

        def per_panel(cells: Cells) -> np.ndarray:  # (not _predictive's memo: it holds one theta, and all its draws)
            quad = cells.quadrature()
            return _per_panel(quad, _point_weights(obs, quad, sub))

        def off(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # a against b, on panels with >= 5 holes
            return np.where(b >= 5.0, np.abs(a / np.maximum(b, 1e-300) - 1), 0.0)

        model = per_panel(base)
        # against the cells cut in half and (adapted cells can be coarse where the fits put little) uniform DEFAULT_CELL / 2
        first = off(model, per_panel(base.split()))
        if obs.cell is None:
            first = np.maximum(first, off(model, per_panel(panel_cells(panels, DEFAULT_CELL / 2))))
        if not first.max(initial=0.0) > QUADRATURE_TOLERANCE:
            return []
        # uniform cells, halved until two sizes agree: the model's own (when uniform) and down from there, else from DEFAULT_CELL
        sizes, counts = ([obs.cell], [model]) if obs.cell else ([], [])
        size = obs.cell / 2 if obs.cell else DEFAULT_CELL
        while size >= MIN_CELL:
            sizes.append(size)
            counts.append(per_panel(panel_cells(panels, size)))
            if len(counts) > 1 and not off(counts[-2], counts[-1]).max(initial=0.0) > QUADRATURE_TOLERANCE:
                break
            size /= 2
        converged = len(counts) > 1 and not off(counts[-2], counts[-1]).max(initial=0.0) > QUADRATURE_TOLERANCE
        rel = off(model, counts[-1])
        d, p = np.unravel_index(np.argmax(rel), rel.shape)
        share = float(np.mean(first.max(axis=1) > QUADRATURE_TOLERANCE))
        slow = np.mean([np.linalg.norm(_weapon_motion(obs, {k: v[i] for k, v in sub.items()})[1]) > sub["fragment_speed"][i]
                        for i in range(len(pick))])
        cause = ("the burst sits too close to the skin, or its band is too narrow, for these cells" if not slow else
                 f"in {slow:.0%} of these draws the fragments are slower than the weapon relative to the aircraft, so they fly "
                 "inside a cone whose edge, where the density is infinite, the quadrature resolves slowly (or the burst sits "
                 "too close to the skin, or its band is too narrow)")
        advice = (f"give `cell: {sizes[-2]:g}` in the damage map's observed (it agrees with {sizes[-1]:g} m cells within "
                  f"{QUADRATURE_TOLERANCE:.0%})" if converged else
                  f"cells of {sizes[-1]:g} m still do not settle it: give `cell: {sizes[-1]:g}` or finer in the damage map's observed")
        which = (f"the quadrature's {obs.cell:g} m cells" if obs.cell else
                 f"the quadrature's cells ({float(base.sizes.min()):.2g}-{float(base.sizes.max()):.2g} m, adapted where the case's fits "
                 "put the burst)")
        return [f"damage map {items[0].id}: the expected holes on panel {obs.panels[p].id} at {which} are "
                f"off by {rel[d, p]:.1%} ({counts[-1][d, p]:.0f} holes at {sizes[-1]:g} m cells; {share:.0%} of {len(pick)} posterior "
                f"draws off by more than {QUADRATURE_TOLERANCE:.0%} against finer cells): {cause}; {advice}"]

    def observed(self, items) -> dict[str, np.ndarray]:  # noqa: ANN001
        """Holes per panel (1, P) and the mapped holes' mean distance from the panels' centroid (1,) with their number (1,)."""
        obs = items[0].observed
        order = {p.id: i for i, p in enumerate(obs.panels)}
        counts = np.zeros(len(obs.panels))
        for h in obs.holes:
            counts[order[h.panel]] += 1
        for c in obs.counts:
            counts[order[c.panel]] = c.holes
        d = np.linalg.norm(np.array([h.at for h in obs.holes], dtype=float).reshape(-1, 3) - _centroid(obs), axis=1)
        return {"counts": counts[None], "mean_distance": np.array([d.mean() if len(d) else 0.0]), "n_located": np.array([len(d)])}

    def simulate(self, items, theta, rng) -> dict[str, np.ndarray]:  # noqa: ANN001
        """A replicated map per draw: Poisson holes per panel, and the mapped holes' positions drawn
        among the quadrature points with probability proportional to weight x intensity (their mean distance)."""
        mu, wts, dist, _ = self._predictive(items, theta)
        counts = rng.poisson(mu).astype(float)
        obs = items[0].observed
        counted = {c.panel for c in obs.counts}
        located = counts[:, [p.id not in counted for p in obs.panels]].sum(axis=1).astype(int)
        md = np.zeros(len(mu))
        for i, k in enumerate(located):
            if k:
                pick = rng.choice(len(dist), size=k, p=wts[i] / wts[i].sum())
                md[i] = dist[pick].mean()
        return {"counts": counts, "mean_distance": md, "n_located": located}

    def logp_np(self, items, y, theta) -> np.ndarray:  # noqa: ANN001
        r"""A discrepancy for predictive checks, per draw: the log density of the map's summaries (not of
        the whole map): Poisson holes per panel, plus the normal approximation of the located holes'
        mean distance :math:`\bar d` from the panels' centroid,
        :math:`\mathcal N(\bar d \mid m, v / n)` with :math:`m, v` the mean and variance of the distance
        under the intensity and :math:`n` the located holes."""
        from scipy.special import gammaln

        mu, wts, dist, _ = self._predictive(items, theta)
        counts = np.broadcast_to(y["counts"], mu.shape)
        out = np.sum(counts * np.log(mu + 1e-300) - mu - gammaln(counts + 1), axis=1)
        total = wts.sum(axis=1) + 1e-300
        m = wts @ dist / total
        v = np.maximum(wts @ dist**2 / total - m**2, 1e-12)
        n = np.broadcast_to(y["n_located"], m.shape).astype(float)
        md = np.broadcast_to(y["mean_distance"], m.shape)
        normal = -0.5 * (md - m) ** 2 * n / v - 0.5 * np.log(2 * math.pi * v / np.maximum(n, 1))
        return out + np.where(n > 0, normal, 0.0)

    def generic(self, items, library, hypotheses) -> dict[str, Dist]:  # noqa: ANN001
        return {**DEFAULT_BACKGROUND, **SHAPE_DEFAULTS, **library}

    def closed_form(self, items, spec) -> float | None:  # noqa: ANN001
        """The background's log density (uniform holes at a Gamma rate, normal log elongations censored at 0, even bends);
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
            m, sd = spec["elongation_log_mean"].mean(), spec["elongation_log_sd"].mean()
            out += float(np.sum(np.where(loge <= ROUND_LOG_ELONGATION, stats.norm.logcdf(0.0, m, sd), stats.norm.logpdf(loge, m, sd) - loge)))
        out += sum(h.bend is not None for h in obs.holes) * math.log(0.5)
        if obs.recovered:
            out += recovered_log_likelihood(np, obs.recovered, {**SHAPE_DEFAULTS, **spec})
        return float(out)

    def exact_problem(self, case) -> str | None:  # noqa: ANN001
        return "a damage map's likelihood has no closed form" if any(it.family == self.name for it in case.items) else None


PRIOR_REACH_HOLES = 0.01  # fewer expected holes than this at all nine prior points: the burst prior excludes every panel


def burst_prior_problem(obs: DamageMapObs, spec: dict[str, Dist]) -> str | None:
    """Why a hypothesis's burst prior excludes every inspected panel, or None.

    Holes were found, yet at each of nine burst points (the prior mean of ``burst_x/y/z`` and the eight
    corners at +-2 prior s.d.; a fixed coordinate stays), every other parameter at its prior mean, the
    model expects fewer than ``PRIOR_REACH_HOLES`` holes on all inspected panels together (the intensity
    integrated by the family's quadrature): e.g. a burst prior inside the airframe for a weapon that
    bursts outside, or one whose spray cannot reach the panels. Nine evaluations, a few milliseconds."""
    import itertools

    names = [f"burst_{c}" for c in "xyz"]
    needed = (*names, "axis_x", "axis_y", "axis_z", "course_heading", "course_climb", "weapon_speed", "log_fragments", "spray_angle",
              "spray_width", "fragment_speed", "v50", "v50_spread", "inside", "stray_rate")
    if not (obs.holes or any(c.holes for c in obs.counts)) or any(k not in spec for k in needed):
        return None
    t = {k: float(spec[k].mean()) for k in needed}
    if t["fragment_speed"] <= 0 or t["spray_width"] <= 0:
        return None
    quad = panel_quadrature([_panel_tuple(p) for p in obs.panels], cell=obs.cell or DEFAULT_CELL)
    axis = course_direction(np, [t["axis_x"], t["axis_y"], t["axis_z"]], t["course_heading"], t["course_climb"])
    rel = (1 - t["inside"]) * (t["weapon_speed"] * axis - np.array([obs.aircraft_speed, 0.0, 0.0]))
    mean = np.array([t[k] for k in names])
    sd = np.array([spec[k].args[1] if spec[k].kind == "normal" else 0.0 for k in names])
    deg = math.pi / 180
    for signs in itertools.chain([(0, 0, 0)], itertools.product((-2, 2), repeat=3)):
        burst = mean + np.array(signs) * sd
        with np.errstate(all="ignore"):
            lam = hole_intensity(np, quad.points, quad.normals, burst, axis, rel, t["fragment_speed"], t["spray_angle"] * deg,
                                 t["spray_width"] * deg, math.exp(t["log_fragments"]), t["v50"], t["v50_spread"], entry=1 - 2 * t["inside"])
        if float(np.sum(quad.weights * np.nan_to_num(lam))) >= PRIOR_REACH_HOLES:
            return None
    where = "inside" if t["inside"] else "outside"
    return (f"the burst prior (burst_x/y/z, mean {np.round(mean, 2).tolist()} m, +-2 s.d.) reaches no inspected panel from {where} "
            f"(under {PRIOR_REACH_HOLES} expected holes at its mean and corners); move burst_x/y/z under the hypothesis, or check inside")


def recovered_log_likelihood(xp, recovered, theta) -> float:  # noqa: ANN001
    r"""log p(recovered fragments | class): :math:`\sum_i \log p(s_i) + \log \mathcal{LN}(m_i \mid \mu_{s_i}, \tau_{s_i})`
    (module docstring). ``theta`` maps ``shape_<s>`` and ``log_mass_<s>`` to numbers, ``Dist`` or tensors."""
    value = {k: (v.mean() if isinstance(v, Dist) else v) for k, v in theta.items() if k.startswith(("shape_", "log_mass_"))}
    total_weight = sum(value[f"shape_{s}"] for s in SHAPES) + len(SHAPES) * SHAPE_FLOOR
    out = 0.0
    for s in SHAPES:
        logm = np.log([f.mass_g for f in recovered if f.shape == s])
        if not len(logm):
            continue
        n, mu, tau = len(logm), value[f"log_mass_{s}"], MASS_LOG_SD[s]
        out = out + n * xp.log((value[f"shape_{s}"] + SHAPE_FLOOR) / total_weight)
        out = out - float(logm.sum()) - n * math.log(tau * math.sqrt(2 * math.pi))
        out = out - (float(np.sum(logm**2)) - 2 * mu * float(logm.sum()) + n * mu**2) / (2 * tau**2)
    return out


def course_direction(xp, axis, heading, climb):  # noqa: ANN001, ANN201
    """The weapon's course, a unit vector: the axis (any length) normalised, raised by ``climb`` degrees
    towards body z and turned by ``heading`` degrees about body z (x towards y). With the axis (1, 0, 0)
    the course is (cos c cos h, cos c sin h, sin c); with both angles 0 it is the axis."""
    a = [axis[0], axis[1], axis[2]]
    norm = xp.sqrt(a[0] ** 2 + a[1] ** 2 + a[2] ** 2 + 1e-12)
    x, y, z = a[0] / norm, a[1] / norm, a[2] / norm
    c, s = xp.cos(climb * math.pi / 180), xp.sin(climb * math.pi / 180)
    x, z = c * x - s * z, s * x + c * z
    c, s = xp.cos(heading * math.pi / 180), xp.sin(heading * math.pi / 180)
    x, y = c * x - s * y, s * x + c * y
    return xp.stack([x, y, z])


def apparent_angle(xp, weapon_speed, fragment_speed, spray_angle, along):  # noqa: ANN001, ANN201
    r"""The spray zone's apparent half-angle about the course in the aircraft's frame, degrees in (0, 180): the
    angle of :math:`v_0 d + v_m a - v_{\text{aircraft}}` to the course :math:`a` for a fragment thrown at the
    band's centre :math:`\varphi_0`, counting only the aircraft's speed along the course (``along`` =
    :math:`v_{\text{aircraft}} \cdot a`): :math:`\cot\theta = (v_0\cos\varphi_0 + v_m - \text{along}) /
    (v_0\sin\varphi_0)`. For fixed :math:`v_0 \sin\varphi_0 \ne 0` a bijection from the weapon speed on the
    real line to (0, 180); :func:`weapon_speed_of_angle` is its inverse."""
    deg = math.pi / 180
    return 90.0 - xp.arctan((weapon_speed + fragment_speed * xp.cos(spray_angle * deg) - along)
                            / (fragment_speed * xp.sin(spray_angle * deg))) / deg


def weapon_speed_of_angle(xp, angle, fragment_speed, spray_angle, along):  # noqa: ANN001, ANN201
    """The weapon speed whose :func:`apparent_angle` is ``angle`` (degrees)."""
    deg = math.pi / 180
    return (fragment_speed * xp.sin(spray_angle * deg) / xp.tan(angle * deg) - fragment_speed * xp.cos(spray_angle * deg)
            + along)


def _apparent_angle_classes() -> tuple:  # noqa: ANN202
    """(ApparentAngleRV, ApparentAngle): the prior of :func:`apparent_angle` given the fragment speed, spray angle and
    ``along`` when the weapon speed is Normal(mu, sd). Its density is the normal's at :func:`weapon_speed_of_angle`
    times |d speed / d angle| = |v0 sin phi0| (pi / 180) / sin^2(angle). Module-level classes (made on first use:
    PyTensor is imported lazily), not a ``pm.CustomDist``: a compiled structure stored on disk and loaded in another
    process finds its log density by the class's name."""
    import pymc as pm
    import pytensor.tensor as pt
    from pytensor.tensor.random.op import RandomVariable

    class ApparentAngleRV(RandomVariable):
        name = "apparent_angle"
        signature = "(),(),(),(),()->()"
        dtype = "floatX"
        _print_name = ("ApparentAngle", "\\operatorname{ApparentAngle}")

        @classmethod
        def rng_fn(cls, rng, fragment_speed, spray_angle, along, mu, sd, size):  # noqa: ANN001, ANN206
            return apparent_angle(np, rng.normal(mu, sd, size=size), fragment_speed, spray_angle, along)

    class ApparentAngle(pm.Continuous):
        rv_op = ApparentAngleRV()

        @classmethod
        def dist(cls, fragment_speed, spray_angle, along, mu, sd, **kwargs):  # noqa: ANN001, ANN206
            return super().dist([fragment_speed, spray_angle, along, mu, sd], **kwargs)

        def support_point(rv, size, fragment_speed, spray_angle, along, mu, sd):  # noqa: ANN001, ANN202, N805
            at_mean = apparent_angle(pt, mu, fragment_speed, spray_angle, along)
            return at_mean if rv.ndim == 0 else pt.full_like(rv, at_mean)

        def logp(value, fragment_speed, spray_angle, along, mu, sd):  # noqa: ANN001, ANN202, N805
            deg = math.pi / 180
            speed = weapon_speed_of_angle(pt, value, fragment_speed, spray_angle, along)
            return (pm.logp(pm.Normal.dist(mu, sd), speed) + pt.log(pt.abs(fragment_speed * pt.sin(spray_angle * deg)) * deg)
                    - 2 * pt.log(pt.sin(value * deg)))

    return ApparentAngleRV, ApparentAngle


def _digest(obs: DamageMapObs) -> str:
    import hashlib

    return hashlib.sha256(obs.model_dump_json().encode()).hexdigest()[:16]


def _bounded(memo: dict, size: int = 32) -> None:
    """Make room for one more entry in ``memo``, dropping the oldest (a calibration meets many simulated maps)."""
    while len(memo) >= size:
        memo.pop(next(iter(memo)))


def _cells_digest(cells: Cells) -> str:
    import hashlib

    return hashlib.sha256(b"".join(np.ascontiguousarray(a).tobytes() for a in (cells.origin, cells.e1, cells.e2, cells.panel))).hexdigest()[:16]


def _map_op_class():  # noqa: ANN202
    import pytensor.tensor as pt
    from pytensor.gradient import grad_not_implemented
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    class MapLogLik(Op):
        """log p(map | params) and its gradient, for params = (burst (3), axis (3), relative velocity (3),
        fragment speed, phi0, sigma, K = N / Z) and fixed = (v50, v50 spread, inside, elongation s.d.,
        misread, stray rate): :func:`engine.evidence.damage_geometry.log_likelihood_and_gradient` plus the bend term.
        The map is the op's attribute ``hole_map``, not a graph constant.
        Outputs (value, gradient); the gradient output has no gradient of its own (no second derivatives)."""

        __props__ = ("key",)
        hole_map: HoleMap | None = None

        def __init__(self, key: str) -> None:
            self.key = key

        def make_node(self, params, fixed):  # noqa: ANN001, ANN202
            params, fixed = pt.as_tensor_variable(params), pt.as_tensor_variable(fixed)
            return Apply(self, [params, fixed], [pt.dscalar(), pt.dvector()])

        def perform(self, node, inputs, outputs):  # noqa: ANN001, ANN202
            p, f = inputs
            hm, entry, misread = self.hole_map, 1 - 2 * f[2], f[4]
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                value, grad = log_likelihood_and_gradient(hm, p[0:3], p[3:6], p[6:9], p[9], p[10], p[11], p[12], f[0], f[1],
                                                          entry=entry, elongation_sd=f[3], stray=f[5])
            p_in = misread + (1 - 2 * misread) * (1 + entry) / 2  # a hole's bend is read "in"
            with np.errstate(divide="ignore"):
                value += np.sum(hm.bent_in == 1) * np.log(p_in) + np.sum(hm.bent_in == 0) * np.log1p(-p_in)
            if not np.isfinite(value) or not np.all(np.isfinite(grad)):  # a burst on the skin: intensity overflows
                value, grad = -np.inf, np.zeros_like(grad)
            outputs[0][0] = np.asarray(value)
            outputs[1][0] = grad

        def infer_shape(self, fgraph, node, shapes):  # noqa: ANN001, ANN202
            return [(), (N_GRAD,)]

        def grad(self, inputs, output_grads):  # noqa: ANN001, ANN202
            from pytensor.gradient import DisconnectedType

            if not isinstance(output_grads[1].type, DisconnectedType):
                raise NotImplementedError("the damage map's gradient output has no gradient")
            _, grad = self(*inputs)
            return [output_grads[0] * grad, grad_not_implemented(self, 1, inputs[1])]

        def connection_pattern(self, node):  # noqa: ANN001, ANN202
            return [[True, True], [True, True]]

    return MapLogLik


_OP: list = []


def _MapLogLik(key: str):  # noqa: ANN202, N802
    return __getattr__("MapLogLik")(key)


_APPARENT: dict = {}


def __getattr__(name: str):  # noqa: ANN202 - classes made on first use (PyTensor is imported lazily) that pickle by name
    if name == "MapLogLik":
        if not _OP:
            cls = _map_op_class()
            cls.__module__, cls.__qualname__ = __name__, "MapLogLik"
            _OP.append(cls)
        return _OP[0]
    if name in ("ApparentAngleRV", "ApparentAngle"):
        if not _APPARENT:
            for cls in _apparent_angle_classes():
                cls.__module__, cls.__qualname__ = __name__, cls.__name__
                _APPARENT[cls.__name__] = cls
        return _APPARENT[name]
    raise AttributeError(name)
