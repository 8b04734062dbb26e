"""Reference evidence of a perforations report, from its generative story (no engine import).

Story: the rate lambda ~ Gamma(a, b) (shape, rate), the count n ~ Poisson(lambda * exposure);
the inward fraction f ~ Beta(alpha, beta), k of m assessed holes bent inward ~ Binomial(m, f);
the mean log size mu ~ Normal(mu0, tau), each log size ~ Normal(mu, sigma) (density in mm, so
divided by the size). A count stated as a range [lo, hi] is the event lo <= n <= hi.

Each parameter is integrated out numerically, one at a time (they are independent): a dense
trapezoid rule on the log integrand over a transformed axis (log lambda, logit f, mu), first on a
coarse grid to find where the integrand lives, then on 20,001 points there. No conjugate formula
is used. The background an unfaithful report follows is (1 - w) p_generic + w q with w = 1/2 and
q the vague story: a count drawn with P(n) = log((n+2)/(n+1)) / log(N+2) on 0..N (N = 10^7; a
range's probability is summed term by term), k uniform on 0..m, each size log-uniform on
0.1..20,000 mm.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.special import betaln, gammaln, logsumexp

N = 10_000_000
W = 0.5
SIZES = (0.1, 20_000.0)


def log_integrate(logf, lo: float, hi: float, coarse: int = 40_001, fine: int = 20_001) -> float:  # noqa: ANN001
    """log of the integral of exp(logf(x)) over [lo, hi] (two-stage trapezoid in log space)."""
    x = np.linspace(lo, hi, coarse)
    v = logf(x)
    live = np.nonzero(v > np.max(v) - 80)[0]
    a, b = x[max(live[0] - 1, 0)], x[min(live[-1] + 1, coarse - 1)]
    x = np.linspace(a, b, fine)
    v = logf(x)
    w = np.full(fine, math.log(x[1] - x[0]))
    w[[0, -1]] -= math.log(2)
    return float(logsumexp(v + w))


def poisson_range(lo: int, hi: int, mean: np.ndarray) -> np.ndarray:
    """log P(lo <= n <= hi) for n ~ Poisson(mean): the better of the CDF and survival differences."""
    with np.errstate(divide="ignore"):
        if lo == hi:
            return stats.poisson.logpmf(lo, mean)
        by_cdf = stats.poisson.cdf(hi, mean) - stats.poisson.cdf(lo - 1, mean)
        by_sf = stats.poisson.sf(lo - 1, mean) - stats.poisson.sf(hi, mean)
        return np.log(np.maximum(by_cdf, by_sf))


def term_by_term(lo: int, hi: int, log_p, terms: int = 4000) -> float:  # noqa: ANN001
    """log sum of exp(log_p(n)) over [lo, hi], from the end nearer the bulk, stopping 35 nat down."""
    up = log_p(lo) >= log_p(hi)
    ns = range(lo, min(hi, lo + terms) + 1) if up else range(hi, max(lo, hi - terms) - 1, -1)
    vals: list[float] = []
    for n in ns:
        vals.append(log_p(n))
        if vals[-1] < max(vals) - 35:
            break
    return float(logsumexp(vals))


def count_evidence(lo: int, hi: int, exposure: float, rate: tuple, grid: tuple[int, int] = (40_001, 20_001)) -> float:
    """log P(lo <= n <= hi); rate = ("gamma", a, b) or ("fixed", lambda). Where P(range | lambda)
    underflows near the integrand's peak (a range deep in a tail), the range's probability is the
    sum of the exact counts' probabilities, each integrated separately."""
    if rate[0] == "fixed":
        out = float(poisson_range(lo, hi, rate[1] * exposure))
        return out if np.isfinite(out) else term_by_term(lo, hi, lambda n: float(stats.poisson.logpmf(n, rate[1] * exposure)))
    _, a, b = rate

    def logf(u):  # noqa: ANN001, ANN202 - u = log lambda; Gamma density of lambda times d lambda / du
        lam = np.exp(u)
        prior = a * math.log(b) + a * u - b * lam - gammaln(a)
        if lo == hi:  # the Poisson probability of n written out
            return prior + lo * (u + math.log(exposure)) - lam * exposure - gammaln(lo + 1)
        return prior + poisson_range(lo, hi, lam * exposure)

    out = log_integrate(logf, math.log(1e-12), math.log(1e9), *grid)
    if lo == hi or out > -600:
        return out
    return term_by_term(lo, hi, lambda n: count_evidence(n, n, exposure, rate, (10_001, 2_001)))


def bending_evidence(k: int, m: int, frac: tuple) -> float:
    if frac[0] == "fixed":
        return float(stats.binom.logpmf(k, m, frac[1]))
    _, al, be = frac

    def logf(t):  # noqa: ANN001, ANN202 - t = logit f; density of t = Beta(f) f (1 - f)
        log_f, log_g = -np.logaddexp(0.0, -t), -np.logaddexp(0.0, t)  # log f, log(1 - f)
        return ((al + k) * log_f + (be + m - k) * log_g - betaln(al, be)
                + gammaln(m + 1) - gammaln(k + 1) - gammaln(m - k + 1))

    return log_integrate(logf, -40.0, 40.0)


def sizes_evidence(sizes, mean: tuple, sd: float) -> float:  # noqa: ANN001
    logs = np.log(np.asarray(sizes, dtype=float))
    if mean[0] == "fixed":
        return float(stats.norm.logpdf(logs, mean[1], sd).sum() - logs.sum())
    _, mu0, tau = mean

    def logf(mu):  # noqa: ANN001, ANN202
        return stats.norm.logpdf(mu, mu0, tau) + stats.norm.logpdf(logs[:, None], mu[None, :], sd).sum(axis=0)

    return log_integrate(logf, mu0 - 60 * tau - 30, mu0 + 60 * tau + 30) - float(logs.sum())


def evidence(obs: dict, spec: dict) -> float:
    """log p(y | H) for obs = {lo, hi, exposure, m, k (or None), sizes} and spec = {rate, frac, mean, sd}."""
    out = count_evidence(obs["lo"], obs["hi"], obs.get("exposure", 1.0), spec["rate"])
    if obs.get("k") is not None and obs["m"] > 0:
        out += bending_evidence(obs["k"], obs["m"], spec["frac"])
    if obs.get("sizes"):
        out += sizes_evidence(obs["sizes"], spec["mean"], spec["sd"])
    return out


def vague(obs: dict) -> float:
    """log q(y) of the vague story (the count range summed term by term)."""
    hi = min(obs["hi"], N)
    total, start = 0.0, obs["lo"]
    while start <= hi:
        n = np.arange(start, min(hi, start + 1_000_000 - 1) + 1, dtype=float)
        total += float(np.sum(np.log1p(1 / (n + 1))))
        start += 1_000_000
    out = math.log(total / math.log(N + 2))
    if obs.get("k") is not None and obs["m"] > 0:
        out -= math.log(obs["m"] + 1)
    for s in obs.get("sizes") or ():
        out -= math.log(s * math.log(SIZES[1] / SIZES[0]))
    return out


def unit_log_evidence(obs: dict, spec: dict, generic: dict, r: float) -> float:
    """log[r p(y | H) + (1 - r)((1 - w) p_generic(y) + w q(y))]."""
    bg = np.logaddexp(math.log(1 - W) + evidence(obs, generic), math.log(W) + vague(obs))
    if r >= 1:
        return evidence(obs, spec)
    return float(np.logaddexp(math.log(r) + evidence(obs, spec), math.log(1 - r) + bg))
