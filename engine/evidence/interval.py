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

from engine.evidence.base import Family, PositiveFloat, Strict, observed_tensors


class IntervalObs(Strict):
    """A duration (a warning interval, a gap between detonations), in seconds."""

    seconds: PositiveFloat
    what: str = ""


class Interval(Family):
    name = "interval"
    Obs = IntervalObs
    params = {
        "log_median": (("normal", "fixed"), (-math.inf, math.inf)),
        "log_sd": (("fixed",), (1e-6, math.inf)),
    }
    sampled = ("log_median",)
    simulable = True
    replicable = True

    def describe(self, obs) -> str:  # noqa: ANN001
        return f"{obs.seconds:g} s" + (f" ({obs.what})" if obs.what else "")

    def data(self, items) -> dict[str, np.ndarray]:  # noqa: ANN001
        return {"log_d": np.asarray(math.log(items[0].observed.seconds))}

    def loglik(self, items, theta):  # noqa: ANN001, ANN201
        import pymc as pm

        log_d = observed_tensors(theta, self.data(items))["log_d"]
        return pm.logp(pm.Normal.dist(theta["log_median"], theta["log_sd"]), log_d) - log_d

    def closed_form(self, items, spec) -> float:  # noqa: ANN001
        from scipy import stats

        d = items[0].observed.seconds
        med, sd = spec["log_median"], spec["log_sd"].args[0]
        tau = med.args[1] if med.kind == "normal" else 0.0
        return float(stats.norm.logpdf(math.log(d), med.args[0], math.hypot(tau, sd)) - math.log(d))

    def simulate_observed(self, items, theta, rng):  # noqa: ANN001, ANN201
        log_d = float(self.simulate(items, theta, rng)["log_d"][0])
        return [{"seconds": math.exp(log_d)}] * len(items)

    # ---- numpy side: replicated data for predictive checks
    def simulate(self, items, theta, rng):  # noqa: ANN001, ANN201
        mu = np.asarray(theta["log_median"])
        return {"log_d": mu + theta["log_sd"] * rng.standard_normal(mu.shape)}

    def observed(self, items):  # noqa: ANN001, ANN201
        return {"log_d": np.asarray(math.log(items[0].observed.seconds))}

    def logp_np(self, items, y, theta):  # noqa: ANN001, ANN201
        from scipy import stats

        return stats.norm.logpdf(y["log_d"], theta["log_median"], theta["log_sd"])
