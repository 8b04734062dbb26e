"""Reference evidence of timing reports, from the generative story alone (numpy/scipy; no engine import).

Story: the damage happens at a true time T, uniform on the activity window with probability w
and uniform on the whole observation period otherwise. Each report reads a clock showing
T + e, e ~ Normal(0, sd), and states that reading rounded to the nearest multiple of its
``step`` minutes (step 0: the reading itself). Reports of one event share T. A report that
does not carry the fact (probability 1 - r) follows the background: T uniform on the period.

Two answers:

* ``log_evidence``: numerical integration over T (scipy.integrate.quad, the integrand scaled
  by its maximum, found by a bounded scalar search, so far tails do not underflow; only where
  it is within 60 nat of that maximum, split around the bins' edges). A rounded
  report contributes P(its bin | T) / step: the probability that the rounded reading is the
  reported one, per minute of bin (the convention that tends to the density as step -> 0;
  the 1/step cancels in every ratio); an unrounded one the normal density.
* ``mc_log_evidence``: brute-force Monte Carlo of the story for rounded reports only:
  simulate T, the readings and their rounding, count how often every report comes out
  exactly as reported.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy import integrate, optimize, special


@dataclass(frozen=True)
class Report:
    time: float
    sd: float
    step: float = 0.0  # rounding, minutes


def _log_p_between(lo: float, hi: float) -> float:
    """log P(lo < Z < hi), Z standard normal, taken on the side where both tails are small.

    ``special.log_ndtr`` is the normal's log CDF (what ``stats.norm.logcdf`` computes, without the
    distribution object's per-call argument handling, which made this oracle 30x slower)."""
    if lo > 0:
        big, small = special.log_ndtr(-lo), special.log_ndtr(-hi)
    else:
        big, small = special.log_ndtr(hi), special.log_ndtr(lo)
    return float(big + np.log1p(-np.exp(small - big)))


_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def log_factor(report: Report, true_time: float) -> float:
    """log of one report's likelihood given the true time."""
    if report.step == 0:
        z = (report.time - true_time) / report.sd
        return -0.5 * z * z - math.log(report.sd) - _LOG_SQRT_2PI
    lo = (report.time - report.step / 2 - true_time) / report.sd
    hi = (report.time + report.step / 2 - true_time) / report.sd
    return _log_p_between(lo, hi) - math.log(report.step)


def log_uniform(reports: list[Report], lo: float, hi: float) -> float:
    """log of (1/(hi - lo)) * integral over [lo, hi] of prod_i f_i(T) dT."""
    def logf(x: float) -> float:
        return sum(log_factor(r, x) for r in reports)

    # the maximum over [lo, hi]: a bounded search from the best point of a coarse scan
    scan = np.linspace(lo, hi, 2001)
    k = int(np.argmax([logf(x) for x in scan]))
    a, b = scan[max(k - 1, 0)], scan[min(k + 1, scan.size - 1)]
    best = optimize.minimize_scalar(lambda x: -logf(x), bounds=(a, b), method="bounded", options={"xatol": 1e-10 * (hi - lo)})
    mode = min([best.x, scan[k]], key=lambda x: -logf(x))
    top = logf(mode)
    # where the integrand matters: logf >= top - 60 (one interval: a product of log-concave factors)
    def reach(end: float) -> float:
        return end if logf(end) >= top - 60 else optimize.brentq(lambda x: logf(x) - (top - 60), mode, end, xtol=1e-12 * (hi - lo))

    a, b = reach(lo), reach(hi)
    # split at the bins' edges and a few clock s.d.s around them (where Phi turns), and at the mode
    edges = [r.time + s * r.step / 2 + k * r.sd for r in reports for s in (-1, 0, 1) for k in (-8, -3, 0, 3, 8)] + [mode]
    pieces = [a, *sorted({x for x in edges if a < x < b}), b]
    total = err = 0.0
    with warnings.catch_warnings():  # quad warns when roundoff stops it short of 1e-10; its error estimate is checked below
        warnings.simplefilter("ignore", integrate.IntegrationWarning)
        for x0, x1 in zip(pieces[:-1], pieces[1:], strict=True):  # each piece separately: peaks and edges sit at its ends
            val, e = integrate.quad(lambda x: math.exp(logf(x) - top), x0, x1, limit=400, epsabs=0.0, epsrel=1e-10)
            total, err = total + val, err + e
    if not err < 1e-4 * total:  # 1e-4 nat; roundoff in T itself limits pinned, very narrow peaks
        raise RuntimeError(f"oracle quadrature failed: value {total}, error estimate {err}")
    return top + math.log(total) - math.log(hi - lo)


def log_evidence(reports: list[Report], window: tuple[float, float], period: tuple[float, float], *,
                 w: float, r: float = 1.0) -> float:
    """log p(reports | H) with P(T in window) = w, reports carrying the fact with probability r."""
    lw, lp = log_uniform(reports, *window), log_uniform(reports, *period)
    with np.errstate(divide="ignore"):
        faithful = np.logaddexp(math.log(w) + lw if w > 0 else -np.inf, math.log1p(-w) + lp if w < 1 else -np.inf)
        return float(np.logaddexp(math.log(r) + faithful, math.log1p(-r) + lp if r < 1 else -np.inf))


def mc_log_evidence(reports: list[Report], window: tuple[float, float], period: tuple[float, float], *,
                    w: float, n: int, rng: np.random.Generator) -> tuple[float, float]:
    """(estimate, standard error) of log p(reports | H) by simulating the story (rounded reports only)."""
    if any(r.step <= 0 for r in reports):
        raise ValueError("brute force needs every report rounded (a reading has probability 0 otherwise)")
    inside = rng.random(n) < w
    true = np.where(inside, rng.uniform(*window, size=n), rng.uniform(*period, size=n))
    match = np.ones(n, dtype=bool)
    for rep in reports:
        reading = true + rep.sd * rng.standard_normal(n)
        rounded = rep.time + rep.step * np.round((reading - rep.time) / rep.step)  # the grid through the report
        match &= np.isclose(rounded, rep.time, rtol=0.0, atol=1e-9 * rep.step)
    p = match.mean()
    se = math.sqrt(p * (1 - p) / n) / p if p > 0 else math.inf
    return math.log(p) - sum(math.log(r.step) for r in reports) if p > 0 else -math.inf, se
