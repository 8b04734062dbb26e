r"""Timing: the reported time of the damage against a window of activity.

A report gives time :math:`t_i` (minutes), read off a clock with error
:math:`\mathcal N(0, \sigma_i)` and rounded to :math:`\delta_i` minutes; rounding is folded
in as extra variance :math:`\delta_i^2/12` (Sheppard), so :math:`s_i^2 = \sigma_i^2 +
\delta_i^2/12`. The true time :math:`T` is uniform on the activity window :math:`W=[a,b]`
if the damage needs the activity, and uniform on the whole observation period
:math:`P=[P_0, P_1]` otherwise; under hypothesis H it needs the activity with probability
:math:`w_H` (``in_window``; a Beta's mean is used: it enters linearly once):

.. math::
    p(t \mid H) = w_H\, p(t \mid W) + (1 - w_H)\, p(t \mid P),\qquad
    p(t \mid [l, u]) = \frac{1}{u - l}\int_l^u \prod_i \mathcal N(t_i; T, s_i)\, dT .

The integral is closed form: with :math:`v = (\sum_i s_i^{-2})^{-1}` and
:math:`m = v \sum_i t_i / s_i^2`,
:math:`\prod_i \mathcal N(t_i; T, s_i) = C\, \mathcal N(T; m, \sqrt v)` where
:math:`\ln C = \ln\sqrt{2\pi v} - \sum_i [\ln(\sqrt{2\pi} s_i) + (t_i - m)^2 / (2 s_i^2)]`,
so :math:`p(t \mid [l,u]) = C\,[\Phi((u-m)/\sqrt v) - \Phi((l-m)/\sqrt v)] / (u - l)`.
Several reports of the same event (a dependency group) share the one latent :math:`T`.
The coincidence of the damage with the window is evidence because :math:`p(t \mid W)` is
:math:`|P|/|W|` times larger than :math:`p(t \mid P)` inside the window.
Background: :math:`p(t \mid P)` (``in_window`` = 0). Clock errors may be fixed or HalfNormal
parameters, one per report (``<item>__clock_sd``); times are minutes from the start of the period.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from typing import Annotated

import numpy as np
from pydantic import Field

from engine.dists import Dist
from engine.evidence.base import Family, Number, ParamSpec, Strict, observed_tensors

Time = Number | dt.datetime


class TimingObs(Strict):
    """Reported time of the damage, an activity window and the observation period."""

    time: Time
    window: tuple[Time, Time]
    period: tuple[Time, Time]
    clock_sd_min: ParamSpec = Dist("fixed", (1.0,))
    rounding_min: Annotated[float, Field(strict=True, ge=0, le=1440)] = 0.0
    window_label: str = "activity"


def _minutes(t: float | dt.datetime, origin: dt.datetime | None) -> float:
    if isinstance(t, dt.datetime):
        if origin is None:
            raise ValueError("mixes clock times and plain numbers; use one or the other throughout the item")
        if (t.tzinfo is None) != (origin.tzinfo is None):
            raise ValueError("mixes times with and without a timezone; give every time a timezone (e.g. +00:00)")
        return (t - origin).total_seconds() / 60.0
    if origin is not None:
        raise ValueError("mixes clock times and plain numbers; use one or the other throughout the item")
    return float(t)


def to_minutes(obs: TimingObs) -> TimingObs:
    """Every time of a timing item in minutes from the start of its period (raises ``ValueError``)."""
    origin = obs.period[0] if isinstance(obs.period[0], dt.datetime) else None
    time = _minutes(obs.time, origin)
    window = tuple(_minutes(v, origin) for v in obs.window)
    period = tuple(_minutes(v, origin) for v in obs.period)
    if not period[0] < period[1]:
        raise ValueError("period must end after it starts; swap or correct the two times")
    if not window[0] < window[1]:
        raise ValueError("window must end after it starts; swap or correct the two times")
    if window[0] < period[0] or window[1] > period[1]:
        raise ValueError("window is not inside period; widen the period to contain the activity window")
    if not period[0] - (period[1] - period[0]) <= time <= period[1] + (period[1] - period[0]):
        raise ValueError("time lies far outside the observation period; check the date or widen the period")
    return obs.model_copy(update={"time": time, "window": window, "period": period})


# ---- tensor side
@functools.cache
def _std():  # noqa: ANN202
    import pymc as pm

    return pm.Normal.dist(0.0, 1.0)


def _log_prob_between(lo, hi):  # noqa: ANN001, ANN202
    """log(Phi(hi) - Phi(lo)) for lo < hi, accurate in both tails."""
    import pymc as pm
    import pytensor.tensor as pt

    right = pm.math.logdiffexp(pm.logcdf(_std(), -lo), pm.logcdf(_std(), -hi))
    left = pm.math.logdiffexp(pm.logcdf(_std(), hi), pm.logcdf(_std(), lo))
    return pt.switch(pt.gt(lo, 0.0), right, left)


def log_uniform_conv(times, sds, lo: float, hi: float):  # noqa: ANN001, ANN201
    """log of (1/(hi-lo)) * integral over [lo, hi] of prod_i N(t_i; T, s_i) dT."""
    import pytensor.tensor as pt

    t = times if isinstance(times, pt.TensorVariable) else pt.as_tensor_variable(np.asarray(times, dtype=float))
    s2 = pt.stack([pt.as_tensor_variable(s) for s in sds]) ** 2
    v = 1.0 / pt.sum(1.0 / s2)
    m = v * pt.sum(t / s2)
    log_c = 0.5 * pt.log(2 * math.pi * v) - pt.sum(0.5 * pt.log(2 * math.pi * s2) + (t - m) ** 2 / (2 * s2))
    sv = pt.sqrt(v)
    return log_c + _log_prob_between((lo - m) / sv, (hi - m) / sv) - math.log(hi - lo)


# ---- numpy side
def np_log_uniform_conv(t: np.ndarray, s: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """numpy twin of ``log_uniform_conv`` for t of shape (n, k), s of shape (n, k)."""
    from scipy.special import log_ndtr, logsumexp

    s2 = s**2
    v = 1.0 / np.sum(1.0 / s2, axis=1)
    m = v * np.sum(t / s2, axis=1)
    log_c = 0.5 * np.log(2 * np.pi * v) - np.sum(0.5 * np.log(2 * np.pi * s2) + (t - m[:, None]) ** 2 / (2 * s2), axis=1)
    a, b = (lo - m) / np.sqrt(v), (hi - m) / np.sqrt(v)
    # log(Phi(b) - Phi(a)) computed on the side of the mode for accuracy
    flip = a > 0
    hi_, lo_ = np.where(flip, -a, b), np.where(flip, -b, a)
    diff = logsumexp(np.stack([log_ndtr(hi_), log_ndtr(lo_)]), axis=0, b=np.array([1.0, -1.0])[:, None])
    return log_c + diff - np.log(hi - lo)


def _np_sds(items, theta) -> np.ndarray:  # noqa: ANN001
    cols = [np.sqrt(np.asarray(sd, dtype=float) ** 2 + it.observed.rounding_min**2 / 12.0)
            for sd, it in zip(theta["clock_sd"], items, strict=True)]
    return np.stack(np.broadcast_arrays(*cols), axis=-1)


def _clock(item) -> str:  # noqa: ANN001
    return f"{item.id}__clock_sd"


class Timing(Family):
    name = "timing"
    Obs = TimingObs
    params = {"in_window": (("beta", "fixed"), (0.0, 1.0))}
    background_is_tensor = True
    simulable = True
    replicable = True

    def parse(self, raw) -> TimingObs:  # noqa: ANN001
        return to_minutes(TimingObs.model_validate(raw))

    def check_observed(self, obs) -> list[tuple[str, str]]:  # noqa: ANN001
        sd = obs.clock_sd_min
        if sd.kind not in ("fixed", "halfnormal"):
            return [("clock_sd_min", "clock_sd_min must be a number > 0 or {halfnormal: s}")]
        if sd.kind == "fixed" and sd.args[0] <= 0:
            return [("clock_sd_min", "clock_sd_min must be > 0 minutes")]
        return []

    def suspicious(self, obs) -> list[tuple[str, str]]:  # noqa: ANN001
        lo, hi = obs.period
        if not lo <= obs.time <= hi:
            side = f"{lo - obs.time:g} min before the period starts" if obs.time < lo else f"{obs.time - hi:g} min after the period ends"
            return [("time", f"time lies outside the item's own period ({side}); the damage is assumed to happen within "
                     "the period under every hypothesis, so check the time or widen the period")]
        return []

    def group_conflict(self, group, first, other) -> str | None:  # noqa: ANN001
        if (other.window, other.period) != (first.window, first.period):
            return f"timing reports in group {group!r} differ in window or period; reports of one event share them"
        return None

    def describe(self, obs) -> str:  # noqa: ANN001
        return (f"damage at {obs.time:g} min; {obs.window_label} window {obs.window[0]:g}–{obs.window[1]:g} min; "
                f"period {obs.period[0]:g}–{obs.period[1]:g} min; clock s.d. {obs.clock_sd_min.describe()} min")

    def coincidence(self, obs) -> tuple[float, tuple, tuple, float, float]:  # noqa: ANN001
        return obs.time, obs.window, obs.period, obs.clock_sd_min.mean(), obs.rounding_min

    # ---- model
    def data(self, items) -> dict[str, np.ndarray]:  # noqa: ANN001
        return {"times": np.asarray([it.observed.time for it in items], dtype=float)}

    def unit_parameters(self, items) -> dict[str, Dist]:  # noqa: ANN001
        return {_clock(it): it.observed.clock_sd_min for it in items}

    def bind(self, items, theta, params):  # noqa: ANN001, ANN201
        return {**theta, "clock_sd": [params[_clock(it)] for it in items]}

    def _parts(self, items, theta):  # noqa: ANN001, ANN202
        import pytensor.tensor as pt

        o = items[0].observed
        times = observed_tensors(theta, self.data(items))["times"]
        sds = [pt.sqrt(sd**2 + it.observed.rounding_min**2 / 12.0) for sd, it in zip(theta["clock_sd"], items, strict=True)]
        return log_uniform_conv(times, sds, *o.window), log_uniform_conv(times, sds, *o.period)

    def loglik(self, items, theta):  # noqa: ANN001, ANN201
        import pytensor.tensor as pt

        lw, lp = self._parts(items, theta)
        w = theta["in_window"]
        top = pt.maximum(lw, lp)
        return top + pt.log(w * pt.exp(lw - top) + (1 - w) * pt.exp(lp - top))

    def background(self, items, generic, theta):  # noqa: ANN001, ANN201
        return self._parts(items, theta)[1]

    def generic(self, items, library, hypotheses) -> dict[str, Dist]:  # noqa: ANN001
        return {"in_window": Dist("fixed", (0.0,))}  # uniform on the period

    # ---- closed form: in_window enters linearly; exact when every clock error is fixed
    def exact_problem(self, case) -> str | None:  # noqa: ANN001
        for it in case.items:
            if it.family == self.name and it.observed.clock_sd_min.kind != "fixed":
                return f"timing item {it.id} has an uncertain clock error"
        return None

    def unit_log_evidence(self, items, spec, generic, params, n):  # noqa: ANN001, ANN201
        theta = self.bind(items, {"in_window": np.full(n, spec["in_window"].mean())}, params)
        y = self.observed(items)
        return self.logp_np(items, y, theta), self.logp_np(items, y, {**theta, "in_window": np.zeros(n)})

    # ---- simulation: reports keep window, period and clocks
    def design_problems(self, obs) -> list[tuple[str, str]]:  # noqa: ANN001
        if obs.clock_sd_min.kind not in ("fixed", "halfnormal"):
            return [("clock_sd_min", "use a number or {halfnormal: s}")]
        return []

    def simulate_observed(self, items, theta, rng):  # noqa: ANN001, ANN201
        return [{"time": float(t)} for t in self.simulate(items, theta, rng)["times"][0]]

    # ---- numpy side: replicated data for predictive checks
    def simulate(self, items, theta, rng):  # noqa: ANN001, ANN201
        o = items[0].observed
        s = _np_sds(items, theta)
        n = s.shape[0]
        inside = rng.random(n) < theta["in_window"]
        true = np.where(inside, rng.uniform(*o.window, size=n), rng.uniform(*o.period, size=n))
        return {"times": true[:, None] + s * rng.standard_normal(s.shape)}

    def observed(self, items):  # noqa: ANN001, ANN201
        return {"times": np.asarray([[it.observed.time for it in items]])}

    def logp_np(self, items, y, theta):  # noqa: ANN001, ANN201
        o = items[0].observed
        s = _np_sds(items, theta)
        t = np.broadcast_to(y["times"], s.shape)
        lw, lp = np_log_uniform_conv(t, s, *o.window), np_log_uniform_conv(t, s, *o.period)
        w = np.asarray(theta["in_window"], dtype=float)
        with np.errstate(divide="ignore"):
            return np.logaddexp(np.log(w) + lw, np.log1p(-w) + lp)
