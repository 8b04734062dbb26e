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
Background: :math:`p(t \mid P)`. Clock errors may be fixed or HalfNormal parameters.
"""

from __future__ import annotations

import math

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from engine.evidence.common import observed_tensors

SAMPLED = ()
_STD = pm.Normal.dist(0.0, 1.0)


def _log_prob_between(lo, hi):  # noqa: ANN001, ANN202
    """log(Phi(hi) - Phi(lo)) for lo < hi, accurate in both tails."""
    right = pm.math.logdiffexp(pm.logcdf(_STD, -lo), pm.logcdf(_STD, -hi))
    left = pm.math.logdiffexp(pm.logcdf(_STD, hi), pm.logcdf(_STD, lo))
    return pt.switch(pt.gt(lo, 0.0), right, left)


def log_uniform_conv(times, sds, lo: float, hi: float):  # noqa: ANN001, ANN201
    """log of (1/(hi-lo)) * integral over [lo, hi] of prod_i N(t_i; T, s_i) dT."""
    t = times if isinstance(times, pt.TensorVariable) else pt.as_tensor_variable(np.asarray(times, dtype=float))
    s2 = pt.stack([pt.as_tensor_variable(s) for s in sds]) ** 2
    v = 1.0 / pt.sum(1.0 / s2)
    m = v * pt.sum(t / s2)
    log_c = 0.5 * pt.log(2 * math.pi * v) - pt.sum(0.5 * pt.log(2 * math.pi * s2) + (t - m) ** 2 / (2 * s2))
    sv = pt.sqrt(v)
    return log_c + _log_prob_between((lo - m) / sv, (hi - m) / sv) - math.log(hi - lo)


def data(items) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {"times": np.asarray([it.observed.time for it in items], dtype=float)}


def _parts(items, theta):  # noqa: ANN001, ANN202
    o = items[0].observed
    times = observed_tensors(theta, data(items))["times"]
    sds = [pt.sqrt(sd**2 + it.observed.rounding_min**2 / 12.0) for sd, it in zip(theta["clock_sd"], items, strict=True)]
    return log_uniform_conv(times, sds, *o.window), log_uniform_conv(times, sds, *o.period)


def loglik(items, theta):  # noqa: ANN001, ANN201
    lw, lp = _parts(items, theta)
    w = theta["in_window"]
    top = pt.maximum(lw, lp)
    return top + pt.log(w * pt.exp(lw - top) + (1 - w) * pt.exp(lp - top))


def background(items, generic, theta):  # noqa: ANN001, ANN201
    return _parts(items, theta)[1]


# ---- numpy side: replicated data for predictive checks
def _np_log_uniform_conv(t: np.ndarray, s: np.ndarray, lo: float, hi: float) -> np.ndarray:
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


def _sds(items, theta) -> np.ndarray:  # noqa: ANN001
    cols = [np.sqrt(np.asarray(sd, dtype=float) ** 2 + it.observed.rounding_min**2 / 12.0)
            for sd, it in zip(theta["clock_sd"], items, strict=True)]
    return np.stack(np.broadcast_arrays(*cols), axis=-1)


def simulate(items, theta, rng):  # noqa: ANN001, ANN201
    o = items[0].observed
    s = _sds(items, theta)
    n = s.shape[0]
    inside = rng.random(n) < theta["in_window"]
    true = np.where(inside, rng.uniform(*o.window, size=n), rng.uniform(*o.period, size=n))
    return {"times": true[:, None] + s * rng.standard_normal(s.shape)}


def observed(items):  # noqa: ANN001, ANN201
    return {"times": np.asarray([[it.observed.time for it in items]])}


def logp_np(items, y, theta):  # noqa: ANN001, ANN201
    o = items[0].observed
    s = _sds(items, theta)
    t = np.broadcast_to(y["times"], s.shape)
    lw, lp = _np_log_uniform_conv(t, s, *o.window), _np_log_uniform_conv(t, s, *o.period)
    w = np.asarray(theta["in_window"], dtype=float)
    with np.errstate(divide="ignore"):
        return np.logaddexp(np.log(w) + lw, np.log1p(-w) + lp)
