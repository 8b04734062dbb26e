"""The damage-map geometry (engine/evidence/damage_geometry.py) against truths it does not share code with:
a reference simulator that throws fragments one by one (tests/oracles/burst_sim.py), numerical
integration on the sphere, and scipy's adaptive quadrature."""

from __future__ import annotations

import numpy as np
import pytest
from oracles.burst_sim import holes
from scipy import integrate

from engine.evidence.damage_geometry import band_normaliser, direction_density, expected_counts, hole_intensity, panel_quadrature

L = 6.0
# a 6 m x 2 m x 2 m box, faces as (corner, edge1, edge2) with edge1 x edge2 the outward normal
BOX = [tuple(np.array(v, float) for v in p) for p in (
    ((0, -1, 1), (L, 0, 0), (0, 2, 0)), ((0, -1, -1), (0, 2, 0), (L, 0, 0)),
    ((0, 1, -1), (0, 0, 2), (L, 0, 0)), ((0, -1, -1), (L, 0, 0), (0, 0, 2)),
    ((L, -1, -1), (0, 2, 0), (0, 0, 2)), ((0, -1, -1), (0, 0, 2), (0, 2, 0)))]
AIRCRAFT = np.array([230.0, 0.0, 0.0])  # m/s along the body x axis

# burst point, missile axis, missile speed (m/s), band centre and width (deg), where the burst is
CONFIGS = [
    ((4.0, 2.5, 2.0), (-1, -0.3, -0.2), 800, 85, 5, "outside"),  # 1-2 m off a corner, two faces hit
    ((3.0, 0.0, 4.0), (1, 0, 0), 600, 90, 6, "outside"),  # 3 m above, a band across the top, tilted by the relative speed
    ((2.0, -3.0, 3.0), (0.3, 0.7, -0.6), 900, 75, 8, "outside"),  # ~3 m, crossing course
    ((9.0, 6.0, 5.0), (-0.6, -0.6, -0.5), 700, 60, 15, "outside"),  # ~9 m standoff, wide cone
    ((2.0, 1.6, 0.0), (0, -1, 0), 150, 5, 10, "outside"),  # a drone's forward cone 0.6 m from the side
    ((2.0, 0.3, -0.5), (0, 0, 1), 0, 90, 60, "inside"),  # a bomb inside: almost isotropic
]


def _setup(burst, axis, vm, phi0, sigma):  # noqa: ANN001, ANN202
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    return np.asarray(burst, float), axis, vm * axis - AIRCRAFT, np.radians(phi0), np.radians(sigma)


@pytest.mark.parametrize("config", CONFIGS, ids=[f"standoff-{i}" for i in range(len(CONFIGS))])
def test_expected_holes_per_panel_match_fragments_thrown_one_by_one(config):
    burst, axis, rel, phi0, sigma = _setup(*config[:5])
    inside = config[5] == "inside"
    n = 400_000
    quad = panel_quadrature(BOX, cell=0.2, order=4)
    model = expected_counts(np, quad, burst, axis, rel, 2000.0, phi0, sigma, n, 300.0, 60.0, entry=-1.0 if inside else 1.0)
    panel, _ = holes(np.random.default_rng(11), n, BOX, burst, axis, rel, 2000.0, phi0, sigma, 300.0, 60.0,
                     entering="inside" if inside else "outside")
    sim = np.bincount(panel, minlength=len(BOX))
    assert sim.sum() > 1000  # the configuration does hit the box
    for m, s in zip(model, sim, strict=True):
        # binomial Monte Carlo error of the simulation; 2 % is the tolerance for the approximation
        assert abs(m - s) <= 0.02 * s + 4 * np.sqrt(s) + 1, (model.round(1), sim)


def test_the_simulator_and_the_model_disagree_when_the_relative_velocity_is_ignored():
    """A check that the comparison above can fail: dropping the dynamic tilt moves the counts by far more than 2 %."""
    burst, axis, rel, phi0, sigma = _setup(*CONFIGS[0][:5])
    quad = panel_quadrature(BOX, cell=0.2, order=4)
    static = expected_counts(np, quad, burst, axis, np.zeros(3), 2000.0, phi0, sigma, 400_000, 300.0, 60.0)
    dynamic = expected_counts(np, quad, burst, axis, rel, 2000.0, phi0, sigma, 400_000, 300.0, 60.0)
    assert np.max(np.abs(static - dynamic)) > 0.1 * np.max(dynamic), (static, dynamic)


# fragments slower than the missile relative to the aircraft (|V| = 863 m/s > v0 = 600 m/s, from 3 m above the top):
# every fragment flies inside a 44-degree cone about V, each direction in it at two speeds; a band thrown backwards
# (150 degrees off the axis) lands on both
SLOW = ((3.0, 0.0, 4.0), (0.29, 0.0, -0.96), 900, 150, 10, "outside")


def test_fragments_slower_than_the_relative_velocity_match_the_simulator_on_both_speed_branches():
    """|V| > v0: the model's expected holes (both speed branches, a caustic on the cone's edge) against fragments
    thrown one by one; with the slow branch dropped, the model misses holes the simulator makes.

    The density is infinite on the caustic, so Gauss-Legendre converges slowly there: on the top face, 0.2 m cells
    give 77,978 holes, 0.05 m 79,595 and 0.02 m (order 6) 81,958, against the simulator's 82,204."""
    from engine.evidence.damage_geometry import speed_branches

    burst, axis, rel, phi0, sigma = _setup(*SLOW[:5])
    assert np.linalg.norm(rel) > 600.0
    n = 400_000
    quad = panel_quadrature(BOX[:1], cell=0.02, order=6)  # the top face takes every fragment that hits the box
    model = expected_counts(np, quad, burst, axis, rel, 600.0, phi0, sigma, n, 300.0, 60.0)
    panel, _ = holes(np.random.default_rng(12), n, BOX, burst, axis, rel, 600.0, phi0, sigma, 300.0, 60.0)
    sim = np.bincount(panel, minlength=len(BOX))
    assert sim[0] > 1000 and sim[1:].sum() == 0
    sim = sim[:1]
    assert abs(model[0] - sim[0]) <= 0.02 * sim[0] + 4 * np.sqrt(sim[0]) + 1, (model.round(1), sim)
    # the fast branch alone
    diff = quad.points - burst
    r2 = np.sum(diff * diff, axis=1)
    omega = diff / np.sqrt(r2)[:, None]
    cos_i = np.maximum(-np.sum(omega * quad.normals, axis=1), 0.0)
    (p1, s1), _ = speed_branches(np, omega, axis, rel, 600.0, phi0, sigma)
    from scipy.stats import norm

    fast = np.bincount(quad.panel, weights=quad.weights * n * p1 * cos_i / r2 * norm.cdf((s1 * cos_i - 300.0) / 60.0),
                       minlength=1)
    assert np.max(np.abs(fast - sim) - (0.02 * sim + 4 * np.sqrt(sim) + 1)) > 0, (fast.round(1), sim)


@pytest.mark.parametrize("phi0, sigma", [(90, 5), (5, 10), (0, 3), (170, 20), (60, 60)])
def test_band_normaliser_equals_adaptive_quadrature(phi0, sigma):
    p0, s = np.radians(phi0), np.radians(sigma)
    exact, _ = integrate.quad(lambda f: np.exp(-((f - p0) ** 2) / (2 * s**2)) * np.sin(f), 0, np.pi, points=[p0], limit=200)
    assert band_normaliser(np, p0, s) == pytest.approx(2 * np.pi * exact, rel=1e-9)


@pytest.mark.parametrize("speed", [0.0, 500.0, 1200.0])
def test_direction_density_integrates_to_one_over_the_sphere(speed):
    """p(omega) is a density per steradian for any relative velocity slower than the fragments."""
    rel = speed * np.array([0.6, -0.64, 0.48])
    axis = np.array([0.0, 0.6, 0.8])
    theta = np.linspace(0, np.pi, 2001)
    psi = np.linspace(0, 2 * np.pi, 2001)
    tt, pp = np.meshgrid(theta, psi, indexing="ij")
    omega = np.stack([np.sin(tt) * np.cos(pp), np.sin(tt) * np.sin(pp), np.cos(tt)], axis=-1)
    p = direction_density(np, omega, axis, rel, 2000.0, np.radians(80), np.radians(12))
    total = integrate.trapezoid(integrate.trapezoid(p * np.sin(tt), psi, axis=1), theta)
    assert total == pytest.approx(1.0, abs=2e-3)


def test_pytensor_and_numpy_give_the_same_intensity_and_a_finite_gradient():
    import pytensor
    import pytensor.tensor as pt

    burst, axis, rel, phi0, sigma = _setup(*CONFIGS[0][:5])
    quad = panel_quadrature(BOX, cell=0.2, order=4)
    b = pt.dvector("b")
    counts = expected_counts(pt, quad, b, pt.as_tensor(axis), pt.as_tensor(rel), 2000.0, phi0, sigma, 1000.0, 300.0, 60.0)
    f = pytensor.function([b], [counts, pt.grad(counts.sum(), b)])
    got, grad = f(burst)
    assert got == pytest.approx(expected_counts(np, quad, burst, axis, rel, 2000.0, phi0, sigma, 1000.0, 300.0, 60.0), rel=1e-10)
    assert np.all(np.isfinite(grad)) and np.any(grad != 0)
    lam = hole_intensity(np, quad.points[:5], quad.normals[:5], burst, axis, rel, 2000.0, phi0, sigma, 1000.0, 300.0, 60.0)
    assert np.all(lam >= 0)


def _grad_setup():  # noqa: ANN202
    from engine.evidence.damage_geometry import HoleMap

    burst, axis, rel, phi0, sigma = _setup(*CONFIGS[0][:5])
    quad = panel_quadrature(BOX[:2], cell=0.5, order=4)
    counts = panel_quadrature(BOX[2:4], cell=0.5, order=4)
    panel, pts, cos = holes(np.random.default_rng(3), 3000, BOX[:2], burst, axis, rel, 2000.0, phi0, sigma, 300.0, 60.0, with_cosine=True)
    normals = np.array([np.cross(BOX[k][1], BOX[k][2]) / np.linalg.norm(np.cross(BOX[k][1], BOX[k][2])) for k in panel])
    elong = np.where(np.arange(len(cos)) % 3 == 0, np.nan, 1 / cos * np.exp(0.1 * np.random.default_rng(4).standard_normal(len(cos))))
    hm = HoleMap(quad, pts, normals, elong, np.full(len(cos), -1), counts, np.array([25.0, 3.0]))
    x = np.r_[burst + [0.1, -0.1, 0.05], axis + [0.02, 0.05, -0.03], rel + [10, -20, 5], 1900.0, phi0 + 0.02, sigma * 1.2, 3000 / 0.4]
    return hm, x


@pytest.mark.parametrize("slow", [False, True], ids=["fast-fragments", "slower-than-the-missile"])
def test_the_hand_written_gradient_equals_central_differences_and_the_value_the_generic_formula(slow):
    """log_likelihood_and_gradient (numba) and its numpy twin against log_likelihood and finite differences;
    also with fragments slower than the relative velocity (|V| ~ 1,000 m/s, v0 = 700 m/s, a band thrown 135 degrees
    back), where the skin's points are reached on both speed branches (a few percent of the holes on the slow one)."""
    from engine.evidence.damage_geometry import _log_intensity_and_gradient, _point_terms, log_likelihood, log_likelihood_and_gradient

    hm, x = _grad_setup()
    if slow:
        x[9], x[10] = 700.0, np.radians(135.0)
    assert 20 < len(hm.points) < 1000

    def f(y, stray=0.0):  # noqa: ANN001, ANN202
        return log_likelihood_and_gradient(hm, y[:3], y[3:6], y[6:9], y[9], y[10], y[11], y[12], 300.0, 60.0, elongation_sd=0.1,
                                           stray=stray)

    value, _ = f(x)
    want = log_likelihood(np, hm, x[:3], x[3:6], x[6:9], x[9], x[10], x[11], x[12] * band_normaliser(np, x[10], x[11]), 300.0, 60.0,
                          elongation_sd=0.1)
    assert value == pytest.approx(want, rel=1e-10)
    # stray holes at 0.05 per m^2: the expected count rises by 0.05 x area, and every hole's intensity by 0.05
    area = hm.quad_mapped.weights.sum()
    with_stray = f(x, 0.05)[0]
    lam = hole_intensity(np, hm.points, hm.normals, x[:3], x[3:6], x[6:9], x[9], x[10], x[11], x[12] * band_normaliser(np, x[10], x[11]),
                         300.0, 60.0)
    counted = np.bincount(hm.count_quad.panel, weights=hm.count_quad.weights)
    mu = expected_counts(np, hm.count_quad, x[:3], x[3:6], x[6:9], x[9], x[10], x[11], x[12] * band_normaliser(np, x[10], x[11]), 300.0, 60.0)
    shift = (np.sum(np.log(lam + 0.05 + 1e-12) - np.log(lam + 1e-12)) - 0.05 * area
             + np.sum(hm.counts * (np.log(mu + 0.05 * counted + 1e-12) - np.log(mu + 1e-12)) - 0.05 * counted))
    assert with_stray - value == pytest.approx(shift, rel=1e-9)
    _, grad = f(x, 0.05)
    for i in range(13):
        h = (1e-7 if slow else 1e-6) * max(1.0, abs(x[i]))  # near the caustic, 1e-6 leaves a 2e-5 truncation error
        e = np.zeros(13)
        e[i] = h
        assert grad[i] == pytest.approx((f(x + e, 0.05)[0] - f(x - e, 0.05)[0]) / (2 * h), rel=1e-5, abs=1e-4), i
    args = (hm.quad_mapped.points, hm.quad_mapped.normals, x[:3], x[3:6], x[6:9], x[9], x[10], x[11], 300.0, 60.0, 1.0)
    for a, b in zip(_point_terms(*args), _log_intensity_and_gradient(*args), strict=True):
        assert np.allclose(a, b, rtol=1e-9, atol=1e-12)


def test_no_fragment_speed_band_width_or_count_means_no_likelihood():
    """A fragment speed, band width or fragment scale of zero or below (the tail of an unbounded prior, where an
    importance draw can land) has likelihood zero: log -inf, never a finite value (a negative speed once
    made every expected count negative and the log likelihood +1e10)."""
    from engine.evidence.damage_geometry import log_likelihood_and_gradient

    hm, x = _grad_setup()
    assert np.isfinite(log_likelihood_and_gradient(hm, x[:3], x[3:6], x[6:9], *x[9:13], 300.0, 60.0)[0])
    for i, bad in ((9, -183.0), (9, 0.0), (11, -0.1), (12, -5.0)):
        y = x.copy()
        y[i] = bad
        value, grad = log_likelihood_and_gradient(hm, y[:3], y[3:6], y[6:9], *y[9:13], 300.0, 60.0)
        assert value == -np.inf and np.all(grad == 0), (i, bad, value)


def test_the_probit_shortcut_threshold_is_where_phi_rounds_to_one():
    """The kernel skips erfc where Phi(u) = 0.5 erfc(-u / sqrt 2) is exactly 1.0 in doubles: from PHI_ONE up it
    is (checked on a fine grid out to 40), and just below the smallest such u (8.2924) it is not."""
    import math

    from engine.evidence.damage_kernels import PHI_ONE

    assert all(0.5 * math.erfc(-u * math.sqrt(0.5)) == 1.0 for u in np.linspace(PHI_ONE, 40.0, 20001))
    assert 0.5 * math.erfc(-8.29 * math.sqrt(0.5)) < 1.0


def test_adapted_cells_meet_their_tolerance_on_integrands_with_closed_forms():
    """``adaptive_cells`` against exact integrals (no engine formula): on a 3 m x 2 m panel, a stripe 0.03 m wide
    across it (a narrow band's trace), a bump 0.02 m wide near an edge (a burst's foot) and a smooth slope. At every
    parameter set the adapted quadrature is within its tolerance of the exact integral, with a tenth of the points of
    the finest level; uniform cells with as many points miss the bump by several times the tolerance and the stripe by
    over a hundred times."""
    from scipy.special import ndtr

    from engine.evidence.damage_geometry import adaptive_cells, panel_cells

    panel = (np.array([0.0, 0.0, 0.0]), np.array([3.0, 0.0, 0.0]), np.array([0.0, 2.0, 0.0]))  # normal +z
    sets = [("stripe", 1.37, 0.03, 400.0), ("bump", 2.71, 0.02, 300.0), ("slope", 0.0, 0.0, 5.0)]

    def f(points, _normals):  # noqa: ANN001, ANN202
        x, y = points[:, 0], points[:, 1]
        return np.stack([a * np.exp(-0.5 * ((x - c) / s) ** 2) if kind == "stripe" else
                         a * np.exp(-0.5 * ((x - c) ** 2 + (y - 0.33) ** 2) / s**2) if kind == "bump" else a * (1 + x * y)
                         for kind, c, s, a in sets])

    def box(c, s, lo, hi):  # noqa: ANN001, ANN202 - int_lo^hi exp(-(t - c)^2 / 2 s^2) dt
        return s * np.sqrt(2 * np.pi) * (ndtr((hi - c) / s) - ndtr((lo - c) / s))

    exact = np.array([400.0 * box(1.37, 0.03, 0, 3) * 2, 300.0 * box(2.71, 0.02, 0, 3) * box(0.33, 0.02, 0, 2),
                      5.0 * (6 + 9 / 2 * 4 / 2)])
    tol = 0.01
    cells = adaptive_cells([panel], f, tol=tol, top=1.6, depth=6)
    q = cells.quadrature()
    got = f(q.points, q.normals) @ q.weights
    assert np.all(np.abs(got - exact) <= tol + 1e-6 * exact), (got, exact)
    assert cells.areas.sum() == pytest.approx(6.0, rel=1e-12)  # the cells tile the panel
    finest = panel_cells([panel], 1.6).split(6).quadrature()
    assert len(q.points) * 10 < len(finest.points), (len(q.points), len(finest.points))
    uniform = panel_cells([panel], np.sqrt(6.0 / len(cells.panel))).quadrature()
    assert len(uniform.points) >= len(q.points)
    miss = np.abs(f(uniform.points, uniform.normals) @ uniform.weights - exact)
    assert miss[0] > 100 * tol and miss[1] > 2 * tol, miss
