"""Reference simulator of a fragmenting burst: fragments thrown one by one onto rectangular panels.

Written from the generative story alone (it does not import the engine): a warhead at ``burst``
throws fragments at speed ``v0`` in directions whose polar angle to the missile axis is drawn
from a Gaussian band (density proportional to exp(-(phi - phi0)^2 / 2 sigma^2) sin(phi) on
[0, pi]: uniform on the sphere within the band), azimuth uniform; in the airframe's frame each
fragment moves in a straight line with velocity ``v0 d + rel_velocity``. A fragment's first panel
along its line is where it strikes; it perforates when its normal speed exceeds its own ballistic
limit, drawn from Normal(v50, v_spread). A strike counts as a hole when the fragment enters the
skin from the side named by ``entering`` ("outside": against the outward normal).
"""

from __future__ import annotations

import numpy as np


def _basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    a = axis / np.linalg.norm(axis)
    helper = np.array([1.0, 0.0, 0.0]) if abs(a[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(a, helper)
    e1 /= np.linalg.norm(e1)
    return a, e1, np.cross(a, e1)


def polar_angles(rng: np.random.Generator, phi0: float, sigma: float, n: int) -> np.ndarray:
    """n draws from the density proportional to exp(-(phi - phi0)^2 / 2 sigma^2) sin(phi) on [0, pi] (rejection)."""
    out = np.empty(0)
    while out.size < n:
        phi = rng.normal(phi0, sigma, size=2 * (n - out.size) + 1000)
        phi = phi[(phi >= 0) & (phi <= np.pi)]
        keep = rng.uniform(size=phi.size) < np.sin(phi)
        out = np.concatenate([out, phi[keep]])
    return out[:n]


def throw(rng: np.random.Generator, n: int, burst, axis, rel_velocity, v0, phi0, sigma) -> tuple[np.ndarray, np.ndarray]:
    """n fragments: (start points (n, 3), velocities (n, 3)) in the airframe frame."""
    a, e1, e2 = _basis(np.asarray(axis, dtype=float))
    phi = polar_angles(rng, phi0, sigma, n)
    psi = rng.uniform(0, 2 * np.pi, size=n)
    d = np.cos(phi)[:, None] * a + np.sin(phi)[:, None] * (np.cos(psi)[:, None] * e1 + np.sin(psi)[:, None] * e2)
    return np.broadcast_to(np.asarray(burst, dtype=float), (n, 3)), v0 * d + np.asarray(rel_velocity, dtype=float)


def strikes(start: np.ndarray, vel: np.ndarray, panels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # noqa: ANN001
    """First panel struck by each fragment: (panel index or -1, hit point (n, 3), cosine of incidence with the outward normal)."""
    n = len(start)
    best_t = np.full(n, np.inf)
    best_p = np.full(n, -1)
    for k, (corner, ea, eb) in enumerate(panels):
        corner, ea, eb = (np.asarray(v, dtype=float) for v in (corner, ea, eb))
        normal = np.cross(ea, eb)
        normal /= np.linalg.norm(normal)
        denom = vel @ normal
        with np.errstate(divide="ignore", invalid="ignore"):
            t = ((corner - start) @ normal) / denom
        hit = start + t[:, None] * vel
        ua = (hit - corner) @ ea / (ea @ ea)
        ub = (hit - corner) @ eb / (eb @ eb)
        ok = (t > 0) & (ua >= 0) & (ua <= 1) & (ub >= 0) & (ub <= 1) & (t < best_t)
        best_t[ok], best_p[ok] = t[ok], k
    hit_points = start + np.where(np.isfinite(best_t), best_t, 0.0)[:, None] * vel
    cos_in = np.zeros(n)
    for k, (_, ea, eb) in enumerate(panels):
        normal = np.cross(np.asarray(ea, float), np.asarray(eb, float))
        normal /= np.linalg.norm(normal)
        sel = best_p == k
        cos_in[sel] = (vel[sel] @ normal) / np.linalg.norm(vel[sel], axis=1)
    return best_p, hit_points, cos_in


def holes(rng: np.random.Generator, n_fragments: int, panels, burst, axis, rel_velocity, v0, phi0, sigma, v50, v_spread,  # noqa: ANN001
          *, entering: str = "outside", with_cosine: bool = False):
    """(panel index, hit point[, cosine of incidence]) of every perforation left by ``n_fragments`` fragments."""
    start, vel = throw(rng, n_fragments, burst, axis, rel_velocity, v0, phi0, sigma)
    panel, point, cos_n = strikes(start, vel, panels)
    cos_i = -cos_n if entering == "outside" else cos_n
    normal_speed = np.linalg.norm(vel, axis=1) * cos_i
    limit = rng.normal(v50, v_spread, size=len(panel))
    keep = (panel >= 0) & (cos_i > 0) & (normal_speed > limit)
    if with_cosine:
        return panel[keep], point[keep], cos_i[keep]
    return panel[keep], point[keep]
