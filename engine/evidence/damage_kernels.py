"""The damage map's per-point kernels, compiled by numba (a dependency of PyTensor); see
``engine.evidence.damage_geometry`` for the formulas (:func:`~engine.evidence.damage_geometry._log_intensity_and_gradient`
is their numpy twin) and what each returns.

Module-level functions, so that numba's on-disk cache (``cache=True``) finds them again in a new process: as
closures made inside a function they were compiled anew in every process (~5 s each: every dask worker, every
test process), because the cache's key did not match. Imported only when a damage map is evaluated.
"""

from __future__ import annotations

import math

import numba
import numpy as np

_SQRT2PI_LOG = 0.5 * math.log(2 * math.pi)
_INV_SQRT2PI, _SQRT_HALF = 1 / math.sqrt(2 * math.pi), math.sqrt(0.5)
# From here up, 0.5 * erfc(-u / sqrt 2) is exactly 1.0 in double precision (the smallest such u is 8.2924, found
# by scanning; tests/evidence/test_damage_geometry.py checks the threshold): the perforation probit needs no erfc.
PHI_ONE = 8.3


@numba.njit(cache=True, fastmath=False, error_model="numpy")
def log_ndtr(u):  # noqa: ANN001, ANN202
    if u > -5.0:
        return math.log(0.5 * math.erfc(-u / math.sqrt(2.0)))
    # asymptotic series of the normal tail (relative error < 1e-9 below -5)
    z = u * u
    series = 1.0 - 1.0 / z + 3.0 / z**2 - 15.0 / z**3 + 105.0 / z**4 - 945.0 / z**5 + 10395.0 / z**6
    return -0.5 * z - _SQRT2PI_LOG - math.log(-u) + math.log(series)

@numba.njit(cache=True, error_model="numpy")
def branch(sg, om, diff, r, r2, c, dc, b, root, oa, axis, rel, va, v0, phi0, sigma, v50, w, cut, grad, want_grad):  # noqa: ANN001, ANN202
    """One speed branch s = b + sg root along omega: returns its g (-1 when no fragment flies on it or it lies
    beyond ``cut`` band widths) and, if ``want_grad``, writes its d log g into ``grad`` (12)."""
    s = b + sg * root
    if s <= 0.0:  # for |V| < v0, always so on the minus branch
        return -1.0
    raw = (s * oa - va) / v0
    cphi = min(max(raw, -1.0 + 1e-12), 1.0 - 1e-12)
    dphi = (-1.0 if (raw > -1.0 + 1e-12 and raw < 1.0 - 1e-12) else 0.0) / math.sqrt(1.0 - cphi * cphi)
    dev = math.acos(cphi) - phi0
    if abs(dev) > cut * sigma:
        return -1.0
    de = -dev / sigma**2 * dphi
    u = (s * c - v50) / w
    if u >= PHI_ONE:  # Phi(u) rounds to exactly 1: the same numbers without the erfc (most points of a fast burst)
        mills = math.exp(-0.5 * u * u) * _INV_SQRT2PI
        g = math.exp(-0.5 * (dev / sigma) ** 2) * (s * s * c / (v0 * root * r2))
    elif u > -5.0:  # Phi(u) and the inverse Mills ratio directly (one erfc, two exp, no log)
        cdf = 0.5 * math.erfc(-u * _SQRT_HALF)
        mills = math.exp(-0.5 * u * u) * _INV_SQRT2PI / cdf
        g = math.exp(-0.5 * (dev / sigma) ** 2) * cdf * (s * s * c / (v0 * root * r2))
    else:  # deep in the probit's tail: in logs
        lp = log_ndtr(u)
        mills = math.exp(-0.5 * u * u - _SQRT2PI_LOG - lp)
        g = math.exp(-0.5 * (dev / sigma) ** 2 + 2.0 * math.log(s) - math.log(v0) - math.log(root) + math.log(c)
                     - math.log(r2) + lp)
    if not want_grad:
        return g
    for k in range(3):
        db_db = -(rel[k] - b * om[k]) / r
        droot_db = b / root * db_db
        ds_db = db_db + sg * droot_db
        droot_dv = (b * om[k] - rel[k]) / root
        ds_dv = om[k] + sg * droot_dv
        dcphi_db = (ds_db * oa - s * (axis[k] - oa * om[k]) / r) / v0
        dcphi_dv = (ds_dv * oa - axis[k]) / v0
        grad[k] = (de * dcphi_db + 2.0 * ds_db / s - droot_db / root + dc[k] / c + 2.0 * diff[k] / r2
                   + mills / w * (ds_db * c + s * dc[k]))
        grad[3 + k] = de * (s * om[k] - rel[k]) / v0
        grad[6 + k] = de * dcphi_dv + 2.0 * ds_dv / s - droot_dv / root + mills * c / w * ds_dv
    droot_dv0 = v0 / root
    ds_dv0 = sg * droot_dv0
    grad[9] = de * (ds_dv0 * oa / v0 - raw / v0) + 2.0 * ds_dv0 / s - 1.0 / v0 - droot_dv0 / root + mills * c / w * ds_dv0
    grad[10] = dev / sigma**2
    grad[11] = dev**2 / sigma**3
    return g

@numba.njit(cache=True, error_model="numpy")
def point(xs, ns, i, burst, axis, rel, vv, va, v0, phi0, sigma, v50, w, entry, grad, dc, cut, tmp, want_grad=True):  # noqa: ANN001, ANN202
    """Point ``xs[i]`` (normal ``ns[i]``): returns (g, c); writes d log g into ``grad`` (12; zeros where g is 0;
    untouched unless ``want_grad``) and dc/dB into ``dc`` (3); ``tmp`` (12) is scratch. Both speed branches (two when |V| > v0). A branch more
    than ``cut`` band widths off the spray angle counts as 0 (``inf``: never)."""
    d0, d1, d2 = xs[i, 0] - burst[0], xs[i, 1] - burst[1], xs[i, 2] - burst[2]
    n0, n1, n2 = ns[i, 0], ns[i, 1], ns[i, 2]
    r2 = d0 * d0 + d1 * d1 + d2 * d2
    r = math.sqrt(r2)
    o0, o1, o2 = d0 / r, d1 / r, d2 / r
    on = o0 * n0 + o1 * n1 + o2 * n2
    c = -entry * on
    dc[0] = entry * (n0 - on * o0) / r
    dc[1] = entry * (n1 - on * o1) / r
    dc[2] = entry * (n2 - on * o2) / r
    b = o0 * rel[0] + o1 * rel[1] + o2 * rel[2]
    big_d = b * b - vv + v0 * v0
    g1 = -1.0
    if c > 0.0 and big_d > 1e-12:  # faces the burst, and fragments fly along omega (always, when |V| < v0)
        root = math.sqrt(big_d)
        oa = o0 * axis[0] + o1 * axis[1] + o2 * axis[2]
        om = (o0, o1, o2)
        diff = (d0, d1, d2)
        g1 = branch(1.0, om, diff, r, r2, c, dc, b, root, oa, axis, rel, va, v0, phi0, sigma, v50, w, cut, grad, want_grad)
        if b > root:  # |V| > v0: the slow branch s = b - root flies along omega too
            g2 = branch(-1.0, om, diff, r, r2, c, dc, b, root, oa, axis, rel, va, v0, phi0, sigma, v50, w, cut, tmp, want_grad)
            if g2 >= 0.0:
                if g1 < 0.0:
                    g1 = g2
                    if want_grad:
                        for k in range(12):
                            grad[k] = tmp[k]
                else:
                    if want_grad and g1 + g2 > 0.0:
                        for k in range(12):
                            grad[k] = (g1 * grad[k] + g2 * tmp[k]) / (g1 + g2)
                    g1 += g2
    if g1 < 0.0:
        if want_grad:
            for k in range(12):
                grad[k] = 0.0
        return 0.0, c
    return g1, c

@numba.njit(cache=True, error_model="numpy")
def kernel(points, normals, burst, axis, rel, v0, phi0, sigma, v50, w, entry):  # noqa: ANN001, ANN202
    m = points.shape[0]
    g = np.zeros(m)
    grad = np.zeros((m, 12))
    cc = np.zeros(m)
    dc = np.zeros((m, 3))
    gp = np.empty(12)
    tp = np.empty(12)
    dcp = np.empty(3)
    vv = rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2
    va = rel[0] * axis[0] + rel[1] * axis[1] + rel[2] * axis[2]
    for i in range(m):
        g[i], cc[i] = point(points, normals, i, burst, axis, rel, vv, va, v0, phi0, sigma, v50, w, entry, gp, dcp, math.inf, tp)
        grad[i] = gp
        dc[i] = dcp
    return g, grad, cc, dc

@numba.njit(cache=True, error_model="numpy")
def holes_sum(points, normals, loge, burst, axis, rel, v0, phi0, sigma, v50, w, entry, scale, eps, esd, round_log):  # noqa: ANN001, ANN202
    """sum_i log(K g_i + eps) plus the elongation terms (``loge`` NaN where not measured), and the
    gradient (13: the 12 parameters and K)."""
    vv = rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2
    va = rel[0] * axis[0] + rel[1] * axis[1] + rel[2] * axis[2]
    gp = np.empty(12)
    tp = np.empty(12)
    dc = np.empty(3)
    out = np.zeros(13)
    total = 0.0
    log_norm = math.log(esd) + _SQRT2PI_LOG
    for i in range(points.shape[0]):
        g, c = point(points, normals, i, burst, axis, rel, vv, va, v0, phi0, sigma, v50, w, entry, gp, dc, math.inf, tp)
        lam = scale * g
        total += math.log(lam + eps)
        share = lam / (lam + eps)
        for k in range(12):
            out[k] += share * gp[k]
        out[12] += g / (lam + eps)
        le = loge[i]
        if le == le:  # measured
            cm = max(c, 1e-6)
            z = (le + math.log(cm)) / esd
            if le <= round_log:
                lc = log_ndtr(z)
                total += lc
                dz = math.exp(-0.5 * z * z - _SQRT2PI_LOG - lc)
            else:
                total += -0.5 * z * z - log_norm - le
                dz = -z
            if c > 1e-6:
                for k in range(3):
                    out[k] += dz / esd / cm * dc[k]
    return total, out

@numba.njit(cache=True, error_model="numpy")
def panel_sums(points, normals, weights, panel, n_panels, burst, axis, rel, v0, phi0, sigma, v50, w, entry, cut):  # noqa: ANN001, ANN202
    """Per panel, sum_i w_i g_i (P) and sum_i w_i g_i d log g_i (P, 12). Points more than ``cut`` band
    widths off the spray angle are skipped."""
    vv = rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2
    va = rel[0] * axis[0] + rel[1] * axis[1] + rel[2] * axis[2]
    gp = np.empty(12)
    tp = np.empty(12)
    dc = np.empty(3)
    sums = np.zeros(n_panels)
    grads = np.zeros((n_panels, 12))
    for i in range(points.shape[0]):
        g, _ = point(points, normals, i, burst, axis, rel, vv, va, v0, phi0, sigma, v50, w, entry, gp, dc, cut, tp)
        if g == 0.0:
            continue
        wg = weights[i] * g
        p = panel[i]
        sums[p] += wg
        for k in range(12):
            grads[p, k] += wg * gp[k]
    return sums, grads

@numba.njit(cache=True, error_model="numpy")
def values(points, normals, burst, axis, rel, v0, phi0, sigma, v50, w, entry, cut):  # noqa: ANN001, ANN202
    """g per point, without gradients (points more than ``cut`` band widths off count as 0)."""
    vv = rel[0] ** 2 + rel[1] ** 2 + rel[2] ** 2
    va = rel[0] * axis[0] + rel[1] * axis[1] + rel[2] * axis[2]
    gp = np.empty(12)
    tp = np.empty(12)
    dc = np.empty(3)
    out = np.empty(points.shape[0])
    for i in range(points.shape[0]):
        out[i], _ = point(points, normals, i, burst, axis, rel, vv, va, v0, phi0, sigma, v50, w, entry, gp, dc,
                          cut, tp, False)
    return out
