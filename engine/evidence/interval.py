r"""Interval: a duration :math:`d` in seconds (a warning given before a strike, the gap
between two detonations).

.. math::
    \ln d \sim \mathcal N(\mu, \sigma),\qquad \mu \sim \mathcal N(\mu_H, \tau_H)

with the hypothesis's ``log_median`` prior :math:`\mathcal N(\mu_H, \tau_H)` and a fixed
spread ``log_sd`` :math:`\sigma`; the density is in seconds (Jacobian :math:`1/d`).
Closed form: :math:`\ln d \sim \mathcal N(\mu_H, \sqrt{\tau_H^2 + \sigma^2})`.

Durations lie in the physical range ``SECONDS`` = :math:`[D_0, D_1]` = 1 ms to 10^6 s (11.6
days); the schema refuses others. **Background**: :math:`p_{bg} = (1 - w)\, p_{generic} + w\, q`
(``robust_background``, :math:`w` = ``VAGUE_WEIGHT``): the closed form under the ``generic``
mechanism and the log-uniform density :math:`q(d) = 1/(d \ln(D_1/D_0))` on the range.

**Influence bound** (``log_ratio_cap``): :math:`\sup_\mu \mathcal N(\ln d; \mu, \sigma)/d =
1/(\sqrt{2\pi}\sigma d)` and :math:`p_{bg} \ge w q`, so for every hypothesis, value of
:math:`\mu` and duration :math:`\ln p(d \mid H, \mu) - \ln p_{bg}(d) \le -\ln w +
\ln\ln(D_1/D_0) - \ln(\sqrt{2\pi}\,\sigma_{min})`, :math:`\sigma_{min}` the smallest ``log_sd``
of the unit's hypotheses. The design is one duration; its value is free.

**Collapsed** (``collapsible``): ``own_posterior`` draws :math:`\mu` from the normal-normal
posterior :math:`\mathcal N\big((\mu_H/\tau_H^2 + \ln d/\sigma^2)/P,\ P^{-1/2}\big)`,
:math:`P = \tau_H^{-2} + \sigma^{-2}`, where the report is faithful, from its prior elsewhere.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import field_validator

from engine.evidence.base import VAGUE_WEIGHT, Family, PositiveFloat, Strict, observed_tensors, robust_background

SECONDS = (1e-3, 1e6)  # physical range of a duration (s): the vague component's support
LOG_RANGE = math.log(SECONDS[1] / SECONDS[0])


class IntervalObs(Strict):
    """A duration (a warning interval, a gap between detonations), in seconds."""

    seconds: PositiveFloat
    what: str = ""

    @field_validator("seconds")
    @classmethod
    def _physical(cls, d: float) -> float:
        if not SECONDS[0] <= d <= SECONDS[1]:
            raise ValueError(f"{d:g} s is outside {SECONDS[0]:g}..{SECONDS[1]:g} s (1 ms to 11.6 days, the range "
                             "the background covers); check the units (seconds)")
        return d


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
    collapsible = True

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

    def log_vague(self, items) -> float:  # noqa: ANN001
        """log q(d) = -log d - log log(D_1/D_0)."""
        return -math.log(items[0].observed.seconds) - math.log(LOG_RANGE)

    def background(self, items, generic, theta) -> float:  # noqa: ANN001
        """log[(1 - w) p_generic(d) + w q(d)]."""
        return robust_background(self.closed_form(items, generic), self.log_vague(items))

    def log_ratio_cap(self, items, shared=None) -> float:  # noqa: ANN001
        sds = [spec["log_sd"].args[0] for spec in items[0].params.values() if "log_sd" in spec]
        sigma = min(sds) if sds else self.params["log_sd"][1][0]
        return -math.log(VAGUE_WEIGHT) + math.log(LOG_RANGE) - math.log(math.sqrt(2 * math.pi) * sigma)

    def own_posterior(self, items, spec, rng, faithful):  # noqa: ANN001, ANN201
        med = spec["log_median"]
        if med.kind != "normal":
            return {}
        faithful = np.asarray(faithful, dtype=bool)
        (mu0, tau), sd = med.args, spec["log_sd"].args[0]
        prec = 1 / tau**2 + 1 / sd**2
        loc = (mu0 / tau**2 + math.log(items[0].observed.seconds) / sd**2) / prec
        n = faithful.size
        return {"log_median": np.where(faithful, rng.normal(loc, 1 / math.sqrt(prec), n), rng.normal(mu0, tau, n))}

    def simulate_observed(self, items, theta, rng):  # noqa: ANN001, ANN201
        """A new duration, clipped into the physical range (a draw outside it is not a legal report)."""
        log_d = float(self.simulate(items, theta, rng)["log_d"][0])
        return [{"seconds": float(np.clip(math.exp(log_d), *SECONDS))}] * len(items)

    def simulate_background(self, items, theta, rng):  # noqa: ANN001, ANN201
        """An unfaithful report from the whole background: with probability w log-uniform on the
        range, else as ``simulate_observed`` under the generic ``theta``."""
        if rng.random() >= VAGUE_WEIGHT:
            return self.simulate_observed(items, theta, rng)
        return [{"seconds": float(np.exp(rng.uniform(*np.log(SECONDS))))}] * len(items)

    # ---- numpy side: replicated data for predictive checks
    def simulate(self, items, theta, rng):  # noqa: ANN001, ANN201
        mu = np.asarray(theta["log_median"])
        return {"log_d": mu + theta["log_sd"] * rng.standard_normal(mu.shape)}

    def observed(self, items):  # noqa: ANN001, ANN201
        return {"log_d": np.asarray(math.log(items[0].observed.seconds))}

    def logp_np(self, items, y, theta):  # noqa: ANN001, ANN201
        from scipy import stats

        return stats.norm.logpdf(y["log_d"], theta["log_median"], theta["log_sd"])
