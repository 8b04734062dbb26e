r"""Interval: a duration :math:`d` in seconds (a warning given before a strike, the gap
between two detonations).

.. math::
    \ln d \sim \mathcal N(\mu, \sigma),\qquad \mu \sim \mathcal N(\mu_H, \tau_H)

with the hypothesis's ``log_median`` prior :math:`\mathcal N(\mu_H, \tau_H)` and a fixed
spread ``log_sd`` :math:`\sigma`; the density is in seconds (Jacobian :math:`1/d`).
Closed form: :math:`\ln d \sim \mathcal N(\mu_H, \sqrt{\tau_H^2 + \sigma^2})`.
Background: the same under the ``generic`` mechanism.
"""

from __future__ import annotations

import math

import numpy as np
import pymc as pm
from scipy import stats

from engine.evidence.common import observed_tensors

SAMPLED = ("log_median",)


def data(items) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {"log_d": np.asarray(math.log(items[0].observed.seconds))}


def loglik(items, theta):  # noqa: ANN001, ANN201
    log_d = observed_tensors(theta, data(items))["log_d"]
    return pm.logp(pm.Normal.dist(theta["log_median"], theta["log_sd"]), log_d) - log_d


def closed_form(items, spec) -> float:  # noqa: ANN001
    d = items[0].observed.seconds
    med, sd = spec["log_median"], spec["log_sd"].args[0]
    tau = med.args[1] if med.kind == "normal" else 0.0
    return float(stats.norm.logpdf(math.log(d), med.args[0], math.hypot(tau, sd)) - math.log(d))


def background(items, generic, theta) -> float:  # noqa: ANN001
    return closed_form(items, generic)


# ---- numpy side: replicated data for predictive checks
def simulate(items, theta, rng):  # noqa: ANN001, ANN201
    mu = np.asarray(theta["log_median"])
    return {"log_d": mu + theta["log_sd"] * rng.standard_normal(mu.shape)}


def observed(items):  # noqa: ANN001, ANN201
    return {"log_d": np.asarray(math.log(items[0].observed.seconds))}


def logp_np(items, y, theta):  # noqa: ANN001, ANN201
    return stats.norm.logpdf(y["log_d"], theta["log_median"], theta["log_sd"])
