r"""Geometry of a fragmenting burst and the holes it leaves on inspected panels of an airframe.

The maths behind the damage-map evidence (issue 13), written once for both numerical
back-ends: every function takes ``xp``, either ``numpy`` (simulation, tests, reports) or
``pytensor.tensor`` (the differentiable model NUTS samples), and uses only operations the two
share. Frame: the airframe's body-fixed frame, metres, x forward.

**Static spray.** The warhead throws fragments at speed :math:`v_0` (Gurney) in directions
:math:`d` whose polar angle :math:`\varphi` to the missile axis :math:`a` lies in a band
(the spray zone), uniform in azimuth. On the sphere the density is a Gaussian band

.. math::
    q(d) = \exp\!\big(-(\varphi - \varphi_0)^2 / 2\sigma^2\big) / Z,\qquad
    Z = 2\pi \int_0^\pi \exp\!\big(-(\varphi - \varphi_0)^2 / 2\sigma^2\big)\sin\varphi\,d\varphi,

per steradian: finite at the poles, so a forward cone (a drone's shaped charge,
:math:`\varphi_0 = 0`) and a side spray (a proximity warhead, :math:`\varphi_0 \approx 90°`)
are the same family.

**Dynamic spray.** In the airframe's frame a fragment moves with :math:`u = v_0 d + V`, where
:math:`V = v_m a - v_{\text{aircraft}}` is the missile's velocity relative to the aircraft,
so the cone tilts forward along the missile's course. A point :math:`x` is reached along
:math:`\omega = (x - B)/r` from the burst point :math:`B`, :math:`r = |x - B|`. The speed
along :math:`\omega` solves :math:`|s\omega - V| = v_0`:
:math:`s_\pm = \omega\cdot V \pm \sqrt{(\omega\cdot V)^2 - |V|^2 + v_0^2}`, the static direction is
:math:`d = (s\omega - V)/v_0`, and the density of directions per steradian of :math:`\omega` is
:math:`p(\omega) = \sum_\pm q(d_\pm)\, s_\pm^2 / (v_0 \sqrt{(\omega\cdot V)^2 - |V|^2 + v_0^2})` over the
branches with :math:`s_\pm > 0` (the sphere :math:`|u - V| = v_0` seen from the origin:
:math:`d\Omega_\omega = v_0^2 d\Omega_d\,|d\cdot\omega| / s^2`). When the fragments outrun the missile
(:math:`|V| < v_0`) only :math:`s_+` is positive. When they do not (a slow warhead on a fast missile), every
fragment flies inside the cone of half-angle :math:`\arcsin(v_0/|V|)` about :math:`V`, each direction in it
reached at two speeds, and the density is infinite (but integrable) on the cone's edge, the caustic.

**Holes.** With :math:`N` fragments, the holes on a panel with outward normal :math:`n` form
an inhomogeneous Poisson process of intensity (per m\ :sup:`2`)

.. math::
    \lambda(x) = N\,p(\omega)\,\frac{\cos i}{r^2}\,
    \Phi\!\Big(\frac{s\cos i - v_{50}}{w}\Big)\ \text{(summed over the speed branches)},\qquad
    \cos i = \max(\mp\,\omega\cdot n, 0),

the solid angle a unit of skin subtends, thinned by the chance that a fragment striking at
normal speed :math:`s \cos i` perforates it (ballistic limit :math:`v_{50}`, spread
:math:`w`, a probit). ``entry`` (:math:`\pm 1`, the upper sign) selects skin struck from
outside (``entry=1``, :math:`-\omega\cdot n > 0`: a burst outside the airframe, where the
near side of a convex hull is hit first and the far side is not counted) or from inside
(``entry=-1``, a burst inside). Drag is neglected: under 20 m it costs under
7 % of the speed of an 8 g fragment (PHYSICS.md §2). The expected count on a panel is the
integral of :math:`\lambda` over it, by Gauss-Legendre quadrature on cells: of at most ``cell``
metres (:func:`panel_quadrature`), or adapted to where the intensity varies (:func:`adaptive_cells`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np

_GL_BAND = np.polynomial.legendre.leggauss(48)  # nodes and weights on [-1, 1] for the band normaliser
ADAPT_CHUNK_POINTS = 20_000  # quadrature points per intensity call while cells are adapted (memory, not results)
BAND_HALF_WIDTH = 8.0  # the normaliser integrates phi0 +- 8 sigma (clipped to [0, pi]); the rest is < 1e-14


@dataclass(frozen=True)
class Quadrature:
    """Fixed quadrature points on the inspected panels (numpy, built once per observation)."""

    points: np.ndarray  # (M, 3) positions, metres
    normals: np.ndarray  # (M, 3) outward unit normals
    weights: np.ndarray  # (M,) area weights, m^2
    panel: np.ndarray  # (M,) index of the panel each point lies on
    n_panels: int

    @cached_property
    def panel_areas(self) -> np.ndarray:
        """(P,) area of each panel (the sum of its weights), m^2."""
        return np.bincount(self.panel, weights=self.weights, minlength=self.n_panels)

    def panel_matrix(self) -> np.ndarray:
        """(P, M) matrix whose product with lambda at the points gives each panel's expected count."""
        out = np.zeros((self.n_panels, len(self.weights)))
        out[self.panel, np.arange(len(self.weights))] = self.weights
        return out


def rectangle_normal(e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    n = np.cross(e1, e2)
    return n / np.linalg.norm(n)


@dataclass(frozen=True)
class Cells:
    """Rectangular quadrature cells on the panels: cell k spans ``origin[k] + [0, 1] e1[k] + [0, 1] e2[k]`` on
    panel ``panel[k]``, whose outward normal is ``normals[panel[k]]``."""

    origin: np.ndarray  # (K, 3)
    e1: np.ndarray  # (K, 3)
    e2: np.ndarray  # (K, 3)
    panel: np.ndarray  # (K,)
    normals: np.ndarray  # (P, 3)

    @property
    def areas(self) -> np.ndarray:
        return np.linalg.norm(np.cross(self.e1, self.e2), axis=1)

    @property
    def sizes(self) -> np.ndarray:
        """(K,) each cell's longer edge, m."""
        return np.maximum(np.linalg.norm(self.e1, axis=1), np.linalg.norm(self.e2, axis=1))

    def split(self, times: int = 1) -> Cells:
        """Each cell cut into 2 x 2 halves, ``times`` times; a cell's children follow one another (child j of
        level k comes from cell j // 4 of level k - 1)."""
        out = self
        for _ in range(times):
            e1, e2 = out.e1 / 2, out.e2 / 2
            shifts = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=float)
            origin = out.origin[:, None, :] + shifts[None, :, :1] * e1[:, None, :] + shifts[None, :, 1:] * e2[:, None, :]
            out = Cells(origin.reshape(-1, 3), np.repeat(e1, 4, axis=0), np.repeat(e2, 4, axis=0), np.repeat(out.panel, 4),
                        out.normals)
        return out

    def quadrature(self, order: int = 4) -> Quadrature:
        """``order`` x ``order`` Gauss-Legendre points per cell, cell by cell."""
        nodes, w = np.polynomial.legendre.leggauss(order)
        t, wt = (nodes + 1) / 2, w / 2
        uu, vv = (a.ravel() for a in np.meshgrid(t, t, indexing="ij"))
        pts = self.origin[:, None, :] + uu[None, :, None] * self.e1[:, None, :] + vv[None, :, None] * self.e2[:, None, :]
        wts = np.outer(self.areas, np.outer(wt, wt).ravel())
        panel = np.repeat(self.panel, order * order)
        return Quadrature(pts.reshape(-1, 3), self.normals[panel], wts.ravel(), panel, len(self.normals))


def panel_cells(panels: list[tuple[np.ndarray, np.ndarray, np.ndarray]], cell: float) -> Cells:
    """Each rectangular panel ``(corner, edge1, edge2)`` (normal ``edge1 x edge2``) cut into equal cells of at most
    ``cell`` metres a side."""
    origin, e1s, e2s, idx, normals = [], [], [], [], []
    for p, (corner, e1, e2) in enumerate(panels):
        corner, e1, e2 = (np.asarray(v, dtype=float) for v in (corner, e1, e2))
        m1 = max(1, math.ceil(np.linalg.norm(e1) / cell - 1e-9))
        m2 = max(1, math.ceil(np.linalg.norm(e2) / cell - 1e-9))
        i, j = (a.ravel() for a in np.meshgrid(np.arange(m1), np.arange(m2), indexing="ij"))
        origin.append(corner + (i / m1)[:, None] * e1 + (j / m2)[:, None] * e2)
        e1s.append(np.broadcast_to(e1 / m1, (i.size, 3)))
        e2s.append(np.broadcast_to(e2 / m2, (i.size, 3)))
        idx.append(np.full(i.size, p))
        normals.append(rectangle_normal(e1, e2))
    return Cells(np.concatenate(origin), np.concatenate(e1s), np.concatenate(e2s), np.concatenate(idx), np.array(normals))


def panel_quadrature(panels: list[tuple[np.ndarray, np.ndarray, np.ndarray]], *, cell: float = 0.1, order: int = 4) -> Quadrature:
    """Gauss-Legendre points on rectangular panels ``(corner, edge1, edge2)``, normal ``edge1 x edge2``.

    Each panel is cut into cells of at most ``cell`` metres a side with ``order`` x ``order`` points per cell.
    """
    return panel_cells(panels, cell).quadrature(order)


def adaptive_cells(panels: list[tuple[np.ndarray, np.ndarray, np.ndarray]], intensities, *, tol: float,  # noqa: ANN001
                   top: float = 1.6, depth: int = 5, order: int = 4) -> Cells:
    r"""Cells of a quadtree over the panels, cut where it matters, whose integrals agree with the finest level's.

    The panels are cut into cells of at most ``top`` m, and each cell into 2 x 2 halves, ``depth`` times. For
    each parameter set, ``intensities(points, normals)`` gives the intensity at the points, one row per set (T, M).
    A cell's error is the largest, over the sets, difference between its ``order`` x ``order`` Gauss-Legendre integral
    and the sum of its finest descendants' (zero on the finest level). Starting from the coarsest cells, the cell with
    the largest error is cut in four until the errors add up to at most ``tol``: so at every set the quadrature is
    within ``tol`` of the finest level's (cells of ``top`` / 2^``depth``, which stands in for the exact integral), in
    total and on each panel, with about the fewest cells that greedy cutting finds.
    """
    import heapq

    root = panel_cells(panels, top)
    levels = [root.split(k) for k in range(depth + 1)]
    sums = []
    chunk = max(1, ADAPT_CHUNK_POINTS // (order * order))  # cells per call: (T, points) intensities stay a few MB
    for cells in levels:  # per level: (T, cells) integrals
        parts = []
        for lo in range(0, len(cells.panel), chunk):
            part = Cells(*(getattr(cells, f)[lo:lo + chunk] for f in ("origin", "e1", "e2", "panel")), cells.normals)
            q = part.quadrature(order)
            lam = np.asarray(intensities(q.points, q.normals))
            parts.append((lam * q.weights).reshape(len(lam), len(part.panel), order * order).sum(axis=2))
        sums.append(np.concatenate(parts, axis=1))
    finest = sums[-1]
    err = [np.max(np.abs(sums[k] - finest.reshape(len(finest), len(c.panel), -1).sum(axis=2)), axis=0) for k, c in enumerate(levels)]
    heap = [(-float(err[0][i]), 0, int(i)) for i in range(len(root.panel))]
    heapq.heapify(heap)
    total = float(err[0].sum())
    while heap and total > tol and heap[0][0] < 0 and heap[0][1] < depth:
        e, k, i = heapq.heappop(heap)
        total += e
        for j in range(4 * i, 4 * i + 4):
            total += float(err[k + 1][j])
            heapq.heappush(heap, (-float(err[k + 1][j]), k + 1, j))
    pick = sorted((k, i) for _, k, i in heap)
    fields = [np.concatenate([getattr(levels[k], f)[[i]] for k, i in pick]) for f in ("origin", "e1", "e2", "panel")]
    return Cells(*fields, root.normals)


def band_normaliser(xp, phi0, sigma):  # noqa: ANN001, ANN201
    """Z = 2 pi int_0^pi exp(-(phi - phi0)^2 / 2 sigma^2) sin(phi) dphi, by Gauss-Legendre on phi0 +- 8 sigma."""
    lo = _clip(xp, phi0 - BAND_HALF_WIDTH * sigma, 0.0, math.pi)
    hi = _clip(xp, phi0 + BAND_HALF_WIDTH * sigma, 0.0, math.pi)
    nodes, weights = _GL_BAND
    phi = (hi - lo) / 2 * nodes + (hi + lo) / 2
    f = xp.exp(-((phi - phi0) ** 2) / (2 * sigma**2)) * xp.sin(phi)
    return 2 * math.pi * (hi - lo) / 2 * xp.sum(weights * f)


def _clip(xp, x, lo, hi):  # noqa: ANN001, ANN202
    return xp.minimum(xp.maximum(x, lo), hi)  # (PyTensor's clip gradient trips its elementwise fusion here)


def _dot(xp, a, b):  # noqa: ANN001, ANN202
    return xp.sum(a * b, axis=-1)


def speed_branches(xp, omega, axis, rel_velocity, v0, phi0, sigma):  # noqa: ANN001, ANN201
    """[(p(omega) per steradian, speed s along omega)] for the branches s = b + root and s = b - root, for unit
    directions ``omega`` (..., 3); p is 0 where no fragment flies on a branch (the minus branch, unless |V| > v0;
    both, outside the cone that holds every fragment when |V| > v0)."""
    b = _dot(xp, omega, rel_velocity)
    big_d = b**2 - _dot(xp, rel_velocity, rel_velocity) + v0**2
    root = xp.sqrt(xp.maximum(big_d, 1e-12))
    z = band_normaliser(xp, phi0, sigma)
    out = []
    for sg in (1.0, -1.0):
        s = b + sg * root
        d = (s[..., None] * omega - rel_velocity) / v0
        cos_phi = _clip(xp, _dot(xp, d, axis), -1.0 + 1e-12, 1.0 - 1e-12)
        phi = xp.arccos(cos_phi)
        q = xp.exp(-((phi - phi0) ** 2) / (2 * sigma**2)) / z
        flies = (big_d > 1e-12) & (s > 0)
        out.append((xp.where(flies, q * s**2 / (v0 * root), 0.0), s))
    return out


def direction_density(xp, omega, axis, rel_velocity, v0, phi0, sigma):  # noqa: ANN001, ANN201
    """p(omega) per steradian for unit directions ``omega`` (..., 3), both speed branches."""
    (p1, _), (p2, _) = speed_branches(xp, omega, axis, rel_velocity, v0, phi0, sigma)
    return p1 + p2


def _probit(xp, z):  # noqa: ANN001, ANN202
    erf = xp.erf if hasattr(xp, "erf") else _scipy_erf
    return 0.5 * (1 + erf(z / math.sqrt(2)))


def _scipy_erf(z):  # noqa: ANN001, ANN202
    from scipy.special import erf

    return erf(z)


def hole_intensity(xp, points, normals, burst, axis, rel_velocity, v0, phi0, sigma, n_fragments, v50, v_spread, *, entry: float = 1.0):  # noqa: ANN001, ANN201
    """Holes per m^2 at ``points`` (M, 3) with outward ``normals`` (M, 3); see the module docstring."""
    diff = points - burst
    r2 = _dot(xp, diff, diff)
    omega = diff / xp.sqrt(r2)[..., None]
    cos_i = xp.maximum(-entry * _dot(xp, omega, normals), 0.0)
    (p1, s1), (p2, s2) = speed_branches(xp, omega, axis, rel_velocity, v0, phi0, sigma)
    perforate = lambda s: _probit(xp, (s * cos_i - v50) / v_spread)  # noqa: E731
    return n_fragments * cos_i / r2 * (p1 * perforate(s1) + p2 * perforate(s2))


def expected_counts(xp, quad: Quadrature, burst, axis, rel_velocity, v0, phi0, sigma, n_fragments, v50, v_spread, *, entry: float = 1.0):  # noqa: ANN001, ANN201
    """Expected holes per panel, shape (P,)."""
    lam = hole_intensity(xp, quad.points, quad.normals, burst, axis, rel_velocity, v0, phi0, sigma, n_fragments, v50, v_spread, entry=entry)
    if xp is np:
        return np.bincount(quad.panel, weights=quad.weights * lam, minlength=quad.n_panels)
    return xp.dot(quad.panel_matrix(), lam)


def incidence_cosine(xp, points, normals, burst, *, entry: float = 1.0):  # noqa: ANN001, ANN201
    """cos of the angle between a fragment's path from ``burst`` and the skin's normal at ``points`` (0 when unreachable)."""
    diff = points - burst
    omega = diff / xp.sqrt(_dot(xp, diff, diff))[..., None]
    return xp.maximum(-entry * _dot(xp, omega, normals), 0.0)


@dataclass(frozen=True)
class HoleMap:
    """A damage map in numbers: mapped holes (positions on mapped panels) and counts on count-only panels.

    ``mapped`` lists the panels whose holes are all located (their quadrature is ``quad_mapped``);
    ``count_quad`` the panels with a hole count only, ``counts`` those counts. Per hole,
    ``elongation`` (length / width, NaN where not measured) and ``bent_in`` (1 inward, 0 outward,
    -1 not assessed).
    """

    quad_mapped: Quadrature | None
    points: np.ndarray  # (H, 3)
    normals: np.ndarray  # (H, 3)
    elongation: np.ndarray  # (H,)
    bent_in: np.ndarray  # (H,)
    count_quad: Quadrature | None = None
    counts: np.ndarray | None = None


ROUND_LOG_ELONGATION = 1e-9  # an elongation recorded as 1 (a round hole): censored, not a density point


def _log_ndtr(xp, z):  # noqa: ANN001, ANN202
    """log Phi(z): scipy's in numpy, log(erfc(-z / sqrt 2) / 2) in PyTensor."""
    if xp is np:
        from scipy.special import log_ndtr

        return log_ndtr(z)
    return xp.log(0.5 * xp.erfc(-z / math.sqrt(2)))


def log_likelihood(xp, hm: HoleMap, burst, axis, rel_velocity, v0, phi0, sigma, n_fragments, v50, v_spread,  # noqa: ANN001, ANN201
                   *, entry: float = 1.0, elongation_sd: float = 0.1, misread: float = 0.05, floor: float = 1e-12):
    r"""log p(hole map | burst, weapon): inhomogeneous Poisson process on the mapped panels,
    Poisson counts on count-only panels, log-normal elongation around 1 / cos i, and bend direction.

    .. math::
        \sum_i \log \lambda(x_i) - \sum_{p\ \text{mapped}} \Lambda_p
        + \sum_{p\ \text{counted}} (n_p \log \Lambda_p - \Lambda_p - \log n_p!)
        + \sum_{i:\,e_i > 1} \log \mathcal{LN}(e_i \mid -\log\cos i_i, \sigma_e)
        + \sum_{i:\,e_i = 1} \log \Phi(\log\cos i_i / \sigma_e)
        + \sum_i \log P(\text{bend}_i)

    An elongation is length over width, never below 1: the latent log-normal elongation is recorded as 1
    (a round hole) whenever it falls below 1, so a hole recorded round contributes the probability
    :math:`P(\log e \le 0) = \Phi(\log\cos i / \sigma_e)` (censoring), not a density.

    with :math:`P(\text{in}) = 1 - \epsilon` for a burst outside (``misread`` :math:`\epsilon`, an
    inward-bent hole read as outward or the reverse) and :math:`\epsilon` for a burst inside.
    ``floor`` keeps the log finite where the intensity vanishes (a hole the model cannot reach).
    """
    from scipy.special import gammaln

    weapon = (burst, axis, rel_velocity, v0, phi0, sigma, n_fragments, v50, v_spread)
    total = 0.0
    if len(hm.points):
        lam = hole_intensity(xp, hm.points, hm.normals, *weapon, entry=entry)
        total = total + xp.sum(xp.log(lam + floor))
        measured = np.isfinite(hm.elongation)
        if measured.any():
            cos_i = incidence_cosine(xp, hm.points[measured], hm.normals[measured], burst, entry=entry)
            loge = np.log(hm.elongation[measured])
            z = (loge + xp.log(xp.maximum(cos_i, 1e-6))) / elongation_sd
            round_ = loge <= ROUND_LOG_ELONGATION  # recorded round: the latent elongation is at most 1
            dens = -0.5 * z**2 - math.log(elongation_sd * math.sqrt(2 * math.pi)) - loge
            total = total + xp.sum(xp.where(round_, _log_ndtr(xp, z), dens))
        n_in, n_out = int((hm.bent_in == 1).sum()), int((hm.bent_in == 0).sum())
        p_in = misread + (1 - 2 * misread) * (1 + entry) / 2
        total = total + n_in * xp.log(p_in) + n_out * xp.log(1 - p_in)
    if hm.quad_mapped is not None:
        total = total - xp.sum(expected_counts(xp, hm.quad_mapped, *weapon, entry=entry))
    if hm.count_quad is not None:
        mu = expected_counts(xp, hm.count_quad, *weapon, entry=entry)
        total = total + xp.sum(hm.counts * xp.log(mu + floor) - mu) - float(gammaln(np.asarray(hm.counts) + 1).sum())
    return total


# ---------------------------------------------------------------- value and gradient in numpy (what NUTS evaluates)
N_GRAD = 13  # gradient of log_likelihood_and_gradient: burst (3), axis (3), relative velocity (3), v0, phi0, sigma, K


def _log_intensity_and_gradient(points, normals, burst, axis, rel, v0, phi0, sigma, v50, v_spread, entry):  # noqa: ANN001, ANN202
    r"""Per point: :math:`\tilde g = \lambda Z / N` (the intensity without its scale), its log-gradient with
    respect to (burst, axis, relative velocity, v0, phi0, sigma) as an (M, 12) array, the incidence
    cosine's raw value :math:`c = \mp\omega\cdot n` and its gradient with respect to the burst (M, 3).

    The chain rule by hand, with :math:`\omega = (x - B)/r`:
    :math:`\partial\omega/\partial B = -(I - \omega\omega^T)/r`, :math:`b = \omega\cdot V`,
    :math:`\rho = \sqrt{b^2 - |V|^2 + v_0^2}`, a branch :math:`s = b \pm \rho` (the minus branch only when
    :math:`|V| > v_0`), :math:`\cos\varphi = (s\,\omega\cdot a - V\cdot a)/v_0`, and per branch
    :math:`\log\tilde g = -(\varphi - \varphi_0)^2/2\sigma^2 + 2\log s - \log v_0 - \log\rho + \log c - \log r^2
    + \log\Phi((s c - v_{50})/w)`, zero where :math:`c \le 0`, :math:`\rho^2 \le 0` or :math:`s \le 0`;
    the branches add up (the log-gradient is their :math:`\tilde g`-weighted mean).
    """
    diff = points - burst
    r2 = np.einsum("ij,ij->i", diff, diff)
    r = np.sqrt(r2)
    om = diff / r[:, None]
    on = np.einsum("ij,ij->i", om, normals)
    c = -entry * on
    dc_db = entry * (normals - on[:, None] * om) / r[:, None]
    b = om @ rel
    big_d = b * b - rel @ rel + v0 * v0
    live = (big_d > 1e-12) & (c > 0)
    root = np.sqrt(np.maximum(big_d, 1e-12))
    geometry = (diff, r2, r, om, c, dc_db, b, root, live, om @ axis)
    g1, grad1, ok1 = _branch_and_gradient(1.0, geometry, axis, rel, v0, phi0, sigma, v50, v_spread)
    g2, grad2, ok2 = _branch_and_gradient(-1.0, geometry, axis, rel, v0, phi0, sigma, v50, v_spread)
    g = g1 + g2
    both = ok1 & ok2 & (g > 0)
    grad = np.where(ok1[:, None], grad1, np.where(ok2[:, None], grad2, 0.0))
    grad = np.where(both[:, None], (g1[:, None] * grad1 + g2[:, None] * grad2) / np.where(both, g, 1.0)[:, None], grad)
    return g, grad, c, dc_db


def _branch_and_gradient(sg, geometry, axis, rel, v0, phi0, sigma, v50, v_spread):  # noqa: ANN001, ANN202
    """One speed branch of :func:`_log_intensity_and_gradient`: (g (M,), d log g (M, 12), where it flies (M,))."""
    from scipy.special import log_ndtr

    diff, r2, r, om, c, dc_db, b, root, live, oa = geometry
    s = b + sg * root
    db_db = -(rel - b[:, None] * om) / r[:, None]
    droot_db = (b / root)[:, None] * db_db
    droot_dv = (b[:, None] * om - rel) / root[:, None]
    droot_dv0 = v0 / root
    ds_db, ds_dv, ds_dv0 = db_db + sg * droot_db, om + sg * droot_dv, sg * droot_dv0
    raw = (s * oa - rel @ axis) / v0
    free = (raw > -1 + 1e-12) & (raw < 1 - 1e-12)
    cphi = np.clip(raw, -1 + 1e-12, 1 - 1e-12)
    dphi = np.where(free, -1.0, 0.0) / np.sqrt(1 - cphi * cphi)  # d phi / d cos(phi)
    dev = np.arccos(cphi) - phi0
    de = -dev / sigma**2 * dphi  # d E / d cos(phi)
    dcphi_db = (ds_db * oa[:, None] - s[:, None] * (axis - oa[:, None] * om) / r[:, None]) / v0
    dcphi_dv = (ds_dv * oa[:, None] - axis) / v0
    dcphi_da = (s[:, None] * om - rel) / v0
    dcphi_dv0 = ds_dv0 * oa / v0 - raw / v0
    ok = live & (s > 0)
    cs, ss = np.where(ok, c, 1.0), np.where(ok, s, 1.0)
    u = (ss * cs - v50) / v_spread
    log_phi = log_ndtr(u)
    mills = np.exp(-0.5 * u * u - 0.5 * math.log(2 * math.pi) - log_phi)
    log_g = -0.5 * (dev / sigma) ** 2 + 2 * np.log(ss) - math.log(v0) - np.log(root) + np.log(cs) - np.log(r2) + log_phi
    grad = np.empty((len(s), 12))
    grad[:, 0:3] = (de[:, None] * dcphi_db + 2 * ds_db / ss[:, None] - droot_db / root[:, None] + dc_db / cs[:, None]
                    + 2 * diff / r2[:, None] + (mills / v_spread)[:, None] * (ds_db * cs[:, None] + ss[:, None] * dc_db))
    grad[:, 3:6] = de[:, None] * dcphi_da
    grad[:, 6:9] = (de[:, None] * dcphi_dv + 2 * ds_dv / ss[:, None] - droot_dv / root[:, None]
                    + (mills * cs / v_spread)[:, None] * ds_dv)
    grad[:, 9] = de * dcphi_dv0 + 2 * ds_dv0 / ss - 1 / v0 - droot_dv0 / root + mills * cs / v_spread * ds_dv0
    grad[:, 10] = dev / sigma**2
    grad[:, 11] = dev**2 / sigma**3
    grad[~ok] = 0.0
    return np.where(ok, np.exp(log_g), 0.0), grad, ok


def log_likelihood_and_gradient(hm: HoleMap, burst, axis, rel_velocity, v0, phi0, sigma, scale, v50, v_spread,  # noqa: ANN001, ANN201
                                *, entry: float = 1.0, elongation_sd: float = 0.1, stray: float = 0.0, floor: float = 1e-12):
    r""":func:`log_likelihood` without its bend term, and its gradient with respect to
    (burst (3), axis (3), relative velocity (3), v0, phi0, sigma, K), in numpy.

    The intensity is written :math:`\lambda = K \tilde g` with :math:`K = N / Z(\varphi_0, \sigma)`
    (the band normaliser stays outside, where automatic differentiation handles it); ``axis``
    is used as given (the caller normalises it and differentiates the normalisation).
    ``stray`` (holes per m\ :sup:`2`) adds holes the burst did not make, uniform over the inspected
    skin: the intensity is :math:`\lambda + \epsilon`. It also keeps the likelihood's slope far from
    the burst, where otherwise every hole sits at the ``floor`` (what tempering in SMC climbs on).
    """
    from scipy.special import gammaln

    if not (v0 > 0 and sigma > 0 and scale > 0):  # no fragments fly (an unbounded prior's tail, e.g. an importance draw)
        return -math.inf, np.zeros(N_GRAD)
    k = _kernels()
    weapon = (_contiguous(burst), _contiguous(axis), _contiguous(rel_velocity), float(v0), float(phi0), float(sigma), float(v50), float(v_spread), float(entry))
    total, grad = 0.0, np.zeros(N_GRAD)
    if len(hm.points):
        loge = np.log(_contiguous(hm.elongation))  # NaN where not measured
        total, grad = k.holes_sum(_contiguous(hm.points), _contiguous(hm.normals), loge, *weapon, float(scale), float(stray + floor),
                                float(elongation_sd), ROUND_LOG_ELONGATION)
    for quad, counts in ((hm.quad_mapped, None), (hm.count_quad, hm.counts)):
        if quad is None:
            continue
        per_panel, dlog = k.panel_sums(quad.points, quad.normals, quad.weights, quad.panel, quad.n_panels, *weapon, BAND_HALF_WIDTH)  # / K
        mu = scale * per_panel + stray * quad.panel_areas
        if counts is None:
            factor = np.full(quad.n_panels, -1.0)
            total -= float(mu.sum())
        else:
            factor = counts / (mu + floor) - 1
            total += float(np.sum(counts * np.log(mu + floor) - mu) - gammaln(np.asarray(counts) + 1).sum())
        grad[:12] += scale * (factor @ dlog)
        grad[12] += float(factor @ per_panel)
    return total, grad




def _kernels():  # noqa: ANN202
    """The numba kernels, ``engine.evidence.damage_kernels`` (imported on first use: a process that never evaluates a
    map never loads numba's cache; Python keeps the module): :func:`_log_intensity_and_gradient` point by point, the
    same formulas, about ten times faster than the vectorised numpy. ``kernel`` gives its per-point arrays;
    ``holes_sum`` and ``panel_sums`` add the points' terms up as they go (the sums :func:`log_likelihood_and_gradient`
    needs), without the (M, 12) arrays; ``values`` gives the points' intensities alone (:func:`fast_hole_intensity`).
    ``panel_sums`` and ``values`` skip points more than ``BAND_HALF_WIDTH`` band widths off the spray angle, as the band
    normaliser leaves them out (their share of the band is < 1e-14): most of the skin, for a narrow band."""
    from engine.evidence import damage_kernels

    return damage_kernels


def _contiguous(x):  # noqa: ANN001, ANN202
    """A C-contiguous float array (what the numba kernels take)."""
    return np.ascontiguousarray(x, dtype=float)


def fast_hole_intensity(points, normals, burst, axis, rel_velocity, v0, phi0, sigma, n_fragments, v50, v_spread, *,  # noqa: ANN001, ANN201
                        entry: float = 1.0):
    """:func:`hole_intensity` in numpy by the numba kernel, 2-3 times faster (for many draws: predictive checks);
    points more than ``BAND_HALF_WIDTH`` band widths off the spray angle get 0, as in the model."""
    if not (v0 > 0 and sigma > 0):
        return np.zeros(len(points))
    g = _kernels().values(_contiguous(points), _contiguous(normals), _contiguous(burst), _contiguous(axis), _contiguous(rel_velocity), float(v0), float(phi0), float(sigma),
                      float(v50), float(v_spread), float(entry), BAND_HALF_WIDTH)
    return n_fragments / band_normaliser(np, phi0, sigma) * g


def _point_terms(points, normals, burst, axis, rel, v0, phi0, sigma, v50, v_spread, entry):  # noqa: ANN001, ANN202
    """:func:`_log_intensity_and_gradient` by the numba kernel (same values to rounding)."""
    return _kernels().kernel(_contiguous(points), _contiguous(normals), _contiguous(burst), _contiguous(axis), _contiguous(rel), float(v0), float(phi0), float(sigma), float(v50),
                         float(v_spread), float(entry))
