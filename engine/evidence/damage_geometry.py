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
:math:`s = \omega\cdot V + \sqrt{(\omega\cdot V)^2 - |V|^2 + v_0^2}` (unique when
:math:`|V| < v_0`), the static direction is :math:`d = (s\omega - V)/v_0`, and the density of
directions per steradian of :math:`\omega` is :math:`p(\omega) = q(d)\, s^2 / (v_0
\sqrt{(\omega\cdot V)^2 - |V|^2 + v_0^2})` (the sphere :math:`|u - V| = v_0` seen from the
origin: :math:`d\Omega_\omega = v_0^2 d\Omega_d\,|d\cdot\omega| / s^2`).

**Holes.** With :math:`N` fragments, the holes on a panel with outward normal :math:`n` form
an inhomogeneous Poisson process of intensity (per m\ :sup:`2`)

.. math::
    \lambda(x) = N\,p(\omega)\,\frac{\cos i}{r^2}\,
    \Phi\!\Big(\frac{s\cos i - v_{50}}{w}\Big),\qquad
    \cos i = \max(\mp\,\omega\cdot n, 0),

the solid angle a unit of skin subtends, thinned by the chance that a fragment striking at
normal speed :math:`s \cos i` perforates it (ballistic limit :math:`v_{50}`, spread
:math:`w`, a probit). The sign selects skin struck from outside (:math:`-\omega\cdot n > 0`,
a burst outside the airframe: the near side of a convex hull is hit first, the far side is
not counted) or from inside (a burst inside). Drag is neglected: under 20 m it costs under
7 % of the speed of an 8 g fragment (PHYSICS.md §2). The expected count on a panel is the
integral of :math:`\lambda` over it, by Gauss-Legendre quadrature on cells of at most
``cell`` metres (:func:`panel_quadrature`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

_GL_BAND = np.polynomial.legendre.leggauss(48)  # nodes and weights on [-1, 1] for the band normaliser
BAND_HALF_WIDTH = 8.0  # the normaliser integrates phi0 +- 8 sigma (clipped to [0, pi]); the rest is < 1e-14


@dataclass(frozen=True)
class Quadrature:
    """Fixed quadrature points on the inspected panels (numpy, built once per observation)."""

    points: np.ndarray  # (M, 3) positions, metres
    normals: np.ndarray  # (M, 3) outward unit normals
    weights: np.ndarray  # (M,) area weights, m^2
    panel: np.ndarray  # (M,) index of the panel each point lies on
    n_panels: int

    def panel_matrix(self) -> np.ndarray:
        """(P, M) matrix whose product with lambda at the points gives each panel's expected count."""
        out = np.zeros((self.n_panels, len(self.weights)))
        out[self.panel, np.arange(len(self.weights))] = self.weights
        return out


def rectangle_normal(e1: np.ndarray, e2: np.ndarray) -> np.ndarray:
    n = np.cross(e1, e2)
    return n / np.linalg.norm(n)


def panel_quadrature(panels: list[tuple[np.ndarray, np.ndarray, np.ndarray]], *, cell: float = 0.1, order: int = 4) -> Quadrature:
    """Gauss-Legendre points on rectangular panels ``(corner, edge1, edge2)``, normal ``edge1 x edge2``.

    Each panel is cut into cells of at most ``cell`` metres a side with ``order`` x ``order`` points per cell.
    """
    nodes, w = np.polynomial.legendre.leggauss(order)
    t, wt = (nodes + 1) / 2, w / 2
    pts, nrm, wts, idx = [], [], [], []
    for p, (corner, e1, e2) in enumerate(panels):
        corner, e1, e2 = (np.asarray(v, dtype=float) for v in (corner, e1, e2))
        l1, l2 = np.linalg.norm(e1), np.linalg.norm(e2)
        m1, m2 = max(1, math.ceil(l1 / cell - 1e-9)), max(1, math.ceil(l2 / cell - 1e-9))
        u = ((np.arange(m1)[:, None] + t[None, :]) / m1).ravel()
        v = ((np.arange(m2)[:, None] + t[None, :]) / m2).ravel()
        wu, wv = np.tile(wt, m1) / m1, np.tile(wt, m2) / m2
        uu, vv = np.meshgrid(u, v, indexing="ij")
        pts.append(corner + uu.ravel()[:, None] * e1 + vv.ravel()[:, None] * e2)
        wts.append(np.outer(wu, wv).ravel() * l1 * l2)
        nrm.append(np.broadcast_to(rectangle_normal(e1, e2), (uu.size, 3)))
        idx.append(np.full(uu.size, p))
    return Quadrature(np.concatenate(pts), np.concatenate(nrm), np.concatenate(wts), np.concatenate(idx), len(panels))


def band_normaliser(xp, phi0, sigma):  # noqa: ANN001, ANN201
    """Z = 2 pi int_0^pi exp(-(phi - phi0)^2 / 2 sigma^2) sin(phi) dphi, by Gauss-Legendre on phi0 +- 8 sigma."""
    lo = xp.clip(phi0 - BAND_HALF_WIDTH * sigma, 0.0, math.pi)
    hi = xp.clip(phi0 + BAND_HALF_WIDTH * sigma, 0.0, math.pi)
    nodes, weights = _GL_BAND
    phi = (hi - lo) / 2 * nodes + (hi + lo) / 2
    f = xp.exp(-((phi - phi0) ** 2) / (2 * sigma**2)) * xp.sin(phi)
    return 2 * math.pi * (hi - lo) / 2 * xp.sum(weights * f)


def _dot(xp, a, b):  # noqa: ANN001, ANN202
    return xp.sum(a * b, axis=-1)


def direction_density(xp, omega, axis, rel_velocity, v0, phi0, sigma):  # noqa: ANN001, ANN201
    """(p(omega) per steradian, speed s along omega) for unit directions ``omega`` (..., 3)."""
    b = _dot(xp, omega, rel_velocity)
    root = xp.sqrt(xp.maximum(b**2 - _dot(xp, rel_velocity, rel_velocity) + v0**2, 1e-12))
    s = b + root
    d = (s[..., None] * omega - rel_velocity) / v0
    cos_phi = xp.clip(_dot(xp, d, axis), -1.0 + 1e-12, 1.0 - 1e-12)
    phi = xp.arccos(cos_phi)
    q = xp.exp(-((phi - phi0) ** 2) / (2 * sigma**2)) / band_normaliser(xp, phi0, sigma)
    return q * s**2 / (v0 * root), s


def _probit(xp, z):  # noqa: ANN001, ANN202
    erf = xp.erf if hasattr(xp, "erf") else _scipy_erf
    return 0.5 * (1 + erf(z / math.sqrt(2)))


def _scipy_erf(z):  # noqa: ANN001, ANN202
    from scipy.special import erf

    return erf(z)


def hole_intensity(xp, points, normals, burst, axis, rel_velocity, v0, phi0, sigma, n_fragments, v50, v_spread, *, outside: bool = True):  # noqa: ANN001, ANN201
    """Holes per m^2 at ``points`` (M, 3) with outward ``normals`` (M, 3); see the module docstring."""
    diff = points - burst
    r2 = _dot(xp, diff, diff)
    omega = diff / xp.sqrt(r2)[..., None]
    cos_i = xp.maximum((-1.0 if outside else 1.0) * _dot(xp, omega, normals), 0.0)
    p, s = direction_density(xp, omega, axis, rel_velocity, v0, phi0, sigma)
    return n_fragments * p * cos_i / r2 * _probit(xp, (s * cos_i - v50) / v_spread)


def expected_counts(xp, quad: Quadrature, burst, axis, rel_velocity, v0, phi0, sigma, n_fragments, v50, v_spread, *, outside: bool = True):  # noqa: ANN001, ANN201
    """Expected holes per panel, shape (P,)."""
    lam = hole_intensity(xp, quad.points, quad.normals, burst, axis, rel_velocity, v0, phi0, sigma, n_fragments, v50, v_spread, outside=outside)
    if xp is np:
        return np.bincount(quad.panel, weights=quad.weights * lam, minlength=quad.n_panels)
    return xp.dot(quad.panel_matrix(), lam)
