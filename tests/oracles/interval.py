"""Reference evidence of a reported duration, from its generative story (no engine import).

Story: mu ~ Normal(mu0, tau) (or fixed), ln d ~ Normal(mu, sigma); the density is per second,
so the log-normal density of d itself. mu is integrated out by a dense trapezoid rule in log
space (no conjugate formula). An unfaithful report follows (1 - w) p_generic + w q with w = 1/2
and q log-uniform on 1 ms .. 10^6 s.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats
from scipy.special import logsumexp

W = 0.5
SECONDS = (1e-3, 1e6)


def evidence(seconds: float, mean: tuple, sd: float) -> float:
    """log p(d | H); mean = ("normal", mu0, tau) or ("fixed", mu)."""
    if mean[0] == "fixed":
        return float(stats.lognorm.logpdf(seconds, s=sd, scale=math.exp(mean[1])))
    _, mu0, tau = mean
    mu = np.linspace(mu0 - 40 * tau - 20 * sd, mu0 + 40 * tau + 20 * sd, 200_001)
    logf = stats.norm.logpdf(mu, mu0, tau) + stats.lognorm.logpdf(seconds, s=sd, scale=np.exp(mu))
    w = np.full(mu.size, math.log(mu[1] - mu[0]))
    w[[0, -1]] -= math.log(2)
    return float(logsumexp(logf + w))


def vague(seconds: float) -> float:
    return -math.log(seconds * math.log(SECONDS[1] / SECONDS[0]))


def unit_log_evidence(seconds: float, mean: tuple, sd: float, generic: tuple, r: float) -> float:
    """log[r p(d | H) + (1 - r)((1 - w) p_generic(d) + w q(d))]; generic = (mean, sd)."""
    if r >= 1:
        return evidence(seconds, mean, sd)
    bg = np.logaddexp(math.log(1 - W) + evidence(seconds, *generic), math.log(W) + vague(seconds))
    return float(np.logaddexp(math.log(r) + evidence(seconds, mean, sd), math.log(1 - r) + bg))
