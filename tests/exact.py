"""Closed-form marginal likelihoods written independently of the engine (scipy only).

Used as the truth in the oracle tests: conjugate families with fixed-reliability sources.
"""

from __future__ import annotations

import numpy as np
from scipy import integrate, stats


def perforations(holes, inward, sizes, *, gamma, beta, normal, sd, exposure=1.0):
    a, b = gamma
    out = stats.nbinom.logpmf(holes, a, b / (b + exposure))
    out += stats.betabinom.logpmf(inward, holes, *beta)
    logs = np.log(sizes)
    cov = sd**2 * np.eye(len(logs)) + normal[1] ** 2
    out += stats.multivariate_normal.logpdf(logs, mean=np.full(len(logs), normal[0]), cov=cov) - logs.sum()
    return float(out)


def fragments(counts, alpha):
    counts = np.asarray(counts)
    return float(stats.dirichlet_multinomial.logpmf(counts, np.asarray(alpha, float), counts.sum()))


def timing(t, window, period, *, w, sd):
    def uniform_conv(lo, hi):
        val, _ = integrate.quad(lambda x: stats.norm.pdf(t, x, sd) / (hi - lo), lo, hi, points=[t], limit=200)
        return val

    return float(np.log(w * uniform_conv(*window) + (1 - w) * uniform_conv(*period)))


def interval(seconds, *, mu, tau, sd):
    # integrate over mu numerically rather than using the conjugate formula
    f = lambda m: stats.norm.pdf(np.log(seconds), m, sd) * stats.norm.pdf(m, mu, tau) / seconds  # noqa: E731
    val, _ = integrate.quad(f, mu - 12 * tau, mu + 12 * tau, limit=200)
    return float(np.log(val))


def claim(holds, *, r, rate):
    """P(assert | H) = r h + (1 - r) b, b ~ Beta(rate): linear in b, so its mean integrates it out."""
    a, b = rate
    return float(np.log(r * holds + (1 - r) * a / (a + b)))


def posterior(prior, log_z):
    lw = np.log(np.asarray(prior, float)) + np.asarray(log_z, float)
    return np.exp(lw - np.logaddexp.reduce(lw))
