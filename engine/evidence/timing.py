r"""Timing: the reported time of the damage against a window of activity.

**Generative story.** The damage happens at true time :math:`T` (minutes from the start of
the period). Under hypothesis H it needs the activity with probability :math:`w_H`
(``in_window``; a Beta's mean is used: it enters linearly once), and then :math:`T` is uniform
on the activity window :math:`W=[a, b]`; otherwise :math:`T` is uniform on the whole
observation period :math:`P=[P_0, P_1] \supseteq W`. Report :math:`i` reads a clock showing
:math:`T + e_i`, :math:`e_i \sim \mathcal N(0, \sigma_i)`, and states that reading rounded
to the nearest multiple of :math:`\delta_i` minutes (``rounding_min``; 0 = not rounded).
Several reports of one event (a dependency group) share the one :math:`T`.

**Likelihood of one report.** An unrounded report has the density
:math:`f_i(T) = \mathcal N(t_i; T, \sigma_i)`. A rounded report :math:`t_i` says that the
reading fell in the bin :math:`[t_i - \delta_i/2,\ t_i + \delta_i/2]`, an event of probability
:math:`\Phi((t_i + \delta_i/2 - T)/\sigma_i) - \Phi((t_i - \delta_i/2 - T)/\sigma_i)`;
its likelihood is that bin probability per minute of bin,

.. math::
    f_i(T) = \frac{1}{\delta_i}\left[\Phi\Big(\frac{t_i + \delta_i/2 - T}{\sigma_i}\Big)
             - \Phi\Big(\frac{t_i - \delta_i/2 - T}{\sigma_i}\Big)\right],

which tends to the density as :math:`\delta_i \to 0`, so rounded and unrounded reports of a
group multiply in one unit (per minute of report), and the log evidence is continuous in
:math:`\delta_i`. The constant :math:`1/\delta_i` is the same under every hypothesis and the
background, so no ratio depends on it. (Rounding was formerly folded in as extra variance
:math:`\delta_i^2/12`, Sheppard's correction; with 15-minute rounding and a 1-minute clock,
a report 10 minutes after a 30-minute window in a 600-minute period then had log ratio
:math:`\ln p(t \mid W)/p(t \mid P) = -1.41` where the exact one is :math:`-5.93`.)

.. math::
    p(t \mid H) = w_H\, p(t \mid W) + (1 - w_H)\, p(t \mid P),\qquad
    p(t \mid [l, u]) = \frac{1}{u - l}\int_l^u \prod_i f_i(T)\, dT .

**Closed forms.** Unrounded reports: with :math:`v = (\sum_i \sigma_i^{-2})^{-1}` and
:math:`m = v \sum_i t_i / \sigma_i^2`, :math:`\prod_i \mathcal N(t_i; T, \sigma_i) = C\,\mathcal N(T; m, \sqrt v)`
where :math:`\ln C = \ln\sqrt{2\pi v} - \sum_i [\ln(\sqrt{2\pi}\sigma_i) + (t_i - m)^2 / (2 \sigma_i^2)]`,
so :math:`p(t \mid [l,u]) = C\,[\Phi((u-m)/\sqrt v) - \Phi((l-m)/\sqrt v)] / (u - l)`.
One rounded report: with :math:`G(x) = \int_{-\infty}^x \Phi = x\Phi(x) + \varphi(x)`,
:math:`\int_l^u \Phi((c - T)/\sigma)\,dT = \sigma[G((c - l)/\sigma) - G((c - u)/\sigma)]`, so with
:math:`c_\pm = t \pm \delta/2`

.. math::
    p(t \mid [l,u]) = \frac{\sigma}{\delta (u - l)}\Big[G\big(\tfrac{c_+ - l}{\sigma}\big) - G\big(\tfrac{c_+ - u}{\sigma}\big)
    - G\big(\tfrac{c_- - l}{\sigma}\big) + G\big(\tfrac{c_- - u}{\sigma}\big)\Big],

evaluated in logs as a difference of two positive differences of :math:`\ln G` (on the side
of :math:`[l,u]`'s midpoint that puts the arguments in :math:`G`'s left tail, using
:math:`G(x) - G(-x) = x`; :math:`\ln G(x) = \ln\varphi(x) + \ln(1 - |x| R(|x|))` for
:math:`x < 0` with Mills' ratio :math:`R` from ``erfcx``, its asymptotic series beyond
:math:`|x| = 50`), so far tails stay finite and accurate.

**Several reports, one rounded or more**: Gauss-Legendre quadrature of :math:`\prod_i f_i`
over :math:`T`. The integrand is log-concave (a box convolved with a normal, a normal, a
uniform), so the points within 40 nat of its maximum form one interval. ``_bracket`` finds a
range holding it (numpy, outside the gradient: the integral does not depend on a range that
holds its mass): from the reports' hull within :math:`[l,u]`, passes on a 48-step grid keep the
steps around the grid points within 40 nat of the grid's maximum (by concavity this brackets
the interval), until at least 4 points are kept. That range is split at each bin's edges and
3 and 8 clock s.d.s either side (where :math:`\Phi` turns), 32 nodes per panel. Against the
oracle's adaptive quadrature on random groups of 2-4 reports (windows 1 to :math:`10^5` min,
clock s.d.s 0.01 to 1000 min, roundings up to a day, times far outside the window) the relative
error of the log evidence is below :math:`10^{-8}` (tests/evidence/test_timing.py).

**Influence.** :math:`p(t \mid W)/p(t \mid P) = (|P|/|W|) \int_W \prod f_i / \int_P \prod f_i \le |P|/|W|`
since :math:`W \subseteq P` and the integrand is positive, so
:math:`\ln p(t \mid H, \theta) - \ln p_{bg}(t) = \ln(w_H\, p(t \mid W)/p(t \mid P) + 1 - w_H) \le \ln(|P|/|W|)`
for every :math:`w_H`, clock error, rounding and reported time (``log_ratio_cap``, plus
:math:`10^{-9}` nat for floating point; a sharp bound, reached by a report at the common start
of window and period, approached by a precise clock inside the window).
Background: :math:`p(t \mid P)` (``in_window`` = 0). Clock errors may be fixed or HalfNormal
parameters, one per report (``<item>__clock_sd``); times are minutes from the start of the period.
"""

from __future__ import annotations

import datetime as dt
import functools
import math
from types import SimpleNamespace
from typing import Annotated

import numpy as np
from pydantic import Field, PrivateAttr

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
    _origin: dt.datetime | None = PrivateAttr(default=None)  # the period's start as given, when times are clock times


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
    out = obs.model_copy(update={"time": time, "window": window, "period": period})
    out._origin = origin  # minutes count from here: reports of one event must share it (group_conflict)
    return out


def _origin_conflict(a: dt.datetime | None, b: dt.datetime | None) -> str | None:
    """Why two reports' minutes do not count from one start, or None."""
    if a is None and b is None:
        return None
    if (a is None) != (b is None):
        return "one gives clock times and the other plain minutes, so their minutes need not count from one start"
    if (a.tzinfo is None) != (b.tzinfo is None):
        return "one gives times with a timezone and the other without, so they need not be the same moment"
    if a != b:
        return f"their periods start at different times ({a.isoformat()} and {b.isoformat()})"
    return None


# ---- the maths, written once for numpy (predictive checks, closed forms) and PyTensor (the model)
SQRT2 = math.sqrt(2.0)
LOG_SQRT_2PI = 0.5 * math.log(2.0 * math.pi)
TAIL = 50.0  # ln G(x) by its asymptotic series beyond |x| = TAIL
PASSES, STEPS, DROP, KEEP = 12, 48, 40.0, 4  # bracketing the quadrature: most passes, grid steps, nat, points kept
EDGE = (-8.0, -3.0, 3.0, 8.0)  # panels also end this many clock s.d.s from each bin edge
CAP_SLACK = 1e-9  # nat added to log_ratio_cap for floating point
GL_X, GL_W = np.polynomial.legendre.leggauss(32)  # Gauss-Legendre nodes per panel


@functools.cache
def _ops(tensor: bool) -> SimpleNamespace:
    """The array operations the maths needs, from PyTensor (``tensor``) or numpy/scipy."""
    if tensor:
        import pytensor.tensor as pt

        return SimpleNamespace(where=pt.switch, log=pt.log, log1p=pt.log1p, exp=pt.exp, expm1=pt.expm1, sqrt=pt.sqrt,
                               erfc=pt.erfc, erfcx=pt.erfcx, maximum=pt.maximum, minimum=pt.minimum, clip=pt.clip,
                               sum=pt.sum, max=pt.max, sort=pt.sort, concatenate=pt.concatenate, asarray=pt.as_tensor_variable)
    from scipy import special

    return SimpleNamespace(where=np.where, log=np.log, log1p=np.log1p, exp=np.exp, expm1=np.expm1, sqrt=np.sqrt,
                           erfc=special.erfc, erfcx=special.erfcx, maximum=np.maximum, minimum=np.minimum, clip=np.clip,
                           sum=np.sum, max=np.max, sort=np.sort, concatenate=np.concatenate,
                           asarray=lambda x: np.asarray(x, dtype=float))


def _log_diff(ops, a, b):  # noqa: ANN001, ANN202
    """log(e^a - e^b) for a >= b (both branches kept finite for the gradient)."""
    x = b - a
    return a + ops.where(x > -math.log(2.0), ops.log(-ops.expm1(ops.maximum(x, -math.log(2.0)))),
                         ops.log1p(-ops.exp(ops.minimum(x, -math.log(2.0)))))


def _log_phi(ops, x):  # noqa: ANN001, ANN202
    """log Phi(x), accurate in both tails."""
    neg, pos = ops.minimum(x, 0.0), ops.maximum(x, 0.0)
    return ops.where(x < 0, ops.log(0.5 * ops.erfcx(-neg / SQRT2)) - neg**2 / 2, ops.log1p(-0.5 * ops.erfc(pos / SQRT2)))


def _log_phi_between(ops, lo, hi):  # noqa: ANN001, ANN202
    """log(Phi(hi) - Phi(lo)) for lo < hi, on the side of the mode (Phi(hi) - Phi(lo) = Phi(-lo) - Phi(-hi))."""
    flip = lo + hi > 0
    return _log_diff(ops, _log_phi(ops, ops.where(flip, -lo, hi)), _log_phi(ops, ops.where(flip, -hi, lo)))


def _log_g(ops, x):  # noqa: ANN001, ANN202
    """log G(x), G(x) = x Phi(x) + phi(x) = integral of Phi up to x; for x < 0, G(x) = phi(x) (1 - |x| R(|x|))
    with Mills' ratio R(z) = sqrt(pi/2) erfcx(z/sqrt2), by its asymptotic series for |x| > TAIL."""
    pos, z = ops.maximum(x, 0.0), ops.maximum(-x, 0.0)
    right = ops.log(pos * 0.5 * ops.erfc(-pos / SQRT2) + ops.exp(-(pos**2) / 2 - LOG_SQRT_2PI))
    near, far = ops.minimum(z, TAIL), ops.maximum(z, TAIL)
    mid = ops.log1p(-near * math.sqrt(math.pi / 2) * ops.erfcx(near / SQRT2))
    r = 1.0 / far**2  # 1 - z R(z) = r (1 - 3 r + 15 r^2 - 105 r^3 + 945 r^4 - ...)
    tail = ops.log(r) + ops.log1p(r * (-3.0 + r * (15.0 + r * (-105.0 + r * 945.0))))
    left = -(z**2) / 2 - LOG_SQRT_2PI + ops.where(z < TAIL, mid, tail)
    return ops.where(x >= 0, right, left)


def _log_gauss(ops, t, s, lo: float, hi: float):  # noqa: ANN001, ANN202
    """log p(t | [lo, hi]) of unrounded reports (t, s: (..., k)): the Gaussian closed form."""
    s2 = s**2
    v = 1.0 / ops.sum(1.0 / s2, axis=-1)
    m = v * ops.sum(t / s2, axis=-1)
    log_c = 0.5 * ops.log(2 * math.pi * v) - ops.sum(0.5 * ops.log(2 * math.pi * s2) + (t - m[..., None]) ** 2 / (2 * s2), axis=-1)
    sv = ops.sqrt(v)
    return log_c + _log_phi_between(ops, (lo - m) / sv, (hi - m) / sv) - math.log(hi - lo)


def _log_box(ops, t, s, d: float, lo: float, hi: float):  # noqa: ANN001, ANN202
    """log p(t | [lo, hi]) of one report rounded to d > 0 (t, s: (...)): the closed form with G."""
    width = math.log(hi - lo)
    flip = t > (lo + hi) / 2  # reflect T -> -T so that the arguments sit in G's left tail
    t, lo, hi = ops.where(flip, -t, t), ops.where(flip, -hi, lo), ops.where(flip, -lo, hi)
    up, dn = t + d / 2, t - d / 2
    x1, x4 = (up - lo) / s, (dn - hi) / s
    x2, x3 = ops.maximum(up - hi, dn - lo) / s, ops.minimum(up - hi, dn - lo) / s
    g = [_log_g(ops, x) for x in (x1, x2, x3, x4)]
    body = _log_diff(ops, _log_diff(ops, g[0], g[1]), _log_diff(ops, g[2], g[3]))
    return ops.log(s) + body - math.log(d) - width


def _log_factors(ops, t, s, d: tuple[float, ...], x):  # noqa: ANN001, ANN202
    """log prod_i f_i(T) at the times x (shape batch + grid); t, s: batch + (k,)."""
    extra = x.ndim - t.ndim + 1
    lift = (Ellipsis, *([None] * extra), slice(None))
    rounded = [i for i, di in enumerate(d) if di > 0]
    plain = [i for i, di in enumerate(d) if di == 0]
    out = 0.0
    if rounded:
        tr, sr, dr = t[..., rounded][lift], s[..., rounded][lift], np.asarray([d[i] for i in rounded])
        xx = x[..., None]
        out = out + ops.sum(_log_phi_between(ops, (tr - dr / 2 - xx) / sr, (tr + dr / 2 - xx) / sr) - np.log(dr), axis=-1)
    if plain:
        tp, sp = t[..., plain][lift], s[..., plain][lift]
        out = out + ops.sum(-((tp - x[..., None]) ** 2) / (2 * sp**2) - ops.log(sp) - LOG_SQRT_2PI, axis=-1)
    return out


def _bracket(t: np.ndarray, s: np.ndarray, d: tuple[float, ...], lo: float, hi: float) -> tuple[np.ndarray, np.ndarray]:
    """(L, U) per batch row (numpy): a range of T holding every point where log prod_i f_i is within
    DROP nat of its maximum over [lo, hi] (the integrand is log-concave: its superlevel sets are
    intervals), narrow enough that the integrand falls by at most ~2 DROP across it. From the
    reports' hull (12 clock s.d.s around the bins) within [lo, hi], or all of [lo, hi] when the
    reports lie far outside it: keep the grid steps next to the grid points within DROP nat of the
    grid's maximum, again while fewer than KEEP grid points are kept (at most PASSES times)."""
    ops, half = _ops(False), np.asarray(d) / 2
    L = np.clip(np.min(t - half - 12 * s, axis=-1), lo, hi)
    U = np.clip(np.max(t + half + 12 * s, axis=-1), lo, hi)
    empty = U - L <= 0
    L, U = np.where(empty, lo, L), np.where(empty, hi, U)
    steps = np.arange(STEPS + 1) / STEPS
    todo = np.ones(np.shape(L), dtype=bool)
    for _ in range(PASSES):
        h = _log_factors(ops, t, s, d, L[..., None] + (U - L)[..., None] * steps)
        keep = h >= np.max(h, axis=-1, keepdims=True) - DROP
        first, last = np.argmax(keep, axis=-1), STEPS - np.argmax(keep[..., ::-1], axis=-1)
        L, U = (np.where(todo, L + (U - L) * np.maximum(first - 1, 0) / STEPS, L),
                np.where(todo, L + (U - L) * np.minimum(last + 1, STEPS) / STEPS, U))
        todo &= last - first + 1 < KEEP
        if not todo.any():
            break
    return L, U


@functools.cache
def _bracket_op(d: tuple[float, ...], lo: float, hi: float):  # noqa: ANN202
    """``_bracket`` as a PyTensor Op on (t, s) of shape (k,): numpy inside, no gradient (the integral does
    not depend on a range that holds all its mass), so the model compiles only the final quadrature."""
    import pytensor.tensor as pt
    from pytensor.gradient import disconnected_type
    from pytensor.graph.basic import Apply
    from pytensor.graph.op import Op

    class Bracket(Op):
        __props__ = ("d", "lo", "hi")

        def __init__(self) -> None:
            self.d, self.lo, self.hi = d, lo, hi

        def __reduce__(self):  # noqa: ANN204
            return _bracket_op, (d, lo, hi)

        def make_node(self, t, s):  # noqa: ANN001, ANN202
            t, s = pt.as_tensor_variable(t).astype("float64"), pt.as_tensor_variable(s).astype("float64")
            return Apply(self, [t, s], [pt.dvector()])

        def perform(self, node, inputs, outputs) -> None:  # noqa: ANN001
            L, U = _bracket(np.asarray(inputs[0]), np.asarray(inputs[1]), self.d, self.lo, self.hi)
            outputs[0][0] = np.array([float(L), float(U)])

        def connection_pattern(self, node):  # noqa: ANN001, ANN202
            return [[False], [False]]

        def grad(self, inputs, output_grads):  # noqa: ANN001, ANN202
            return [disconnected_type(), disconnected_type()]

    return Bracket()


def _log_quadrature(ops, t, s, d: tuple[float, ...], lo: float, hi: float, tensor: bool):  # noqa: ANN001, ANN202
    """log p(t | [lo, hi]) of a group with rounded reports: Gauss-Legendre on ``_bracket``'s range,
    in panels split at the bins' edges."""
    if tensor:
        L, U = (_bracket_op(d, lo, hi)(t, s)[i] for i in (0, 1))
    else:
        L, U = _bracket(t, s, d, lo, hi)
    rounded = [i for i, di in enumerate(d) if di > 0]
    dr = np.asarray([d[i] for i in rounded])
    a, b = t[..., rounded] - dr / 2, t[..., rounded] + dr / 2
    sr = s[..., rounded]
    cuts = [x + k * sr for x in (a, b) for k in (*EDGE, 0.0)]  # the bins' edges, and around them where Phi turns
    edges = ops.sort(ops.concatenate([L[..., None], U[..., None], *(ops.clip(c, L[..., None], U[..., None]) for c in cuts)],
                                     axis=-1), axis=-1)
    start, width = edges[..., :-1], edges[..., 1:] - edges[..., :-1]
    nodes = start[..., None] + width[..., None] * (GL_X + 1) / 2
    h = _log_factors(ops, t, s, d, nodes)
    top = ops.max(h, axis=(-2, -1))
    return top + ops.log(ops.sum(width[..., None] * GL_W / 2 * ops.exp(h - top[..., None, None]), axis=(-2, -1))) - math.log(hi - lo)


def log_reports(t, s, d: tuple[float, ...], lo: float, hi: float, *, tensor: bool = False):  # noqa: ANN001, ANN201
    """log p(t | T uniform on [lo, hi]) of one unit's reports: times ``t`` and clock s.d.s ``s`` of shape
    batch + (k,), roundings ``d`` (k floats, 0 = unrounded); numpy arrays, or PyTensor tensors (``tensor``)."""
    ops = _ops(tensor)
    t, s = ops.asarray(t), ops.asarray(s)
    if not any(d):
        return _log_gauss(ops, t, s, lo, hi)
    if len(d) == 1:
        return _log_box(ops, t[..., 0], s[..., 0], d[0], lo, hi)
    return _log_quadrature(ops, t, s, d, lo, hi, tensor)


def log_uniform_conv(times, sds, lo: float, hi: float):  # noqa: ANN001, ANN201
    """PyTensor: log of (1/(hi-lo)) * integral over [lo, hi] of prod_i N(t_i; T, s_i) dT (unrounded reports)."""
    import pytensor.tensor as pt

    return log_reports(times, pt.stack([pt.as_tensor_variable(x) for x in sds]), (0.0,) * len(sds), lo, hi, tensor=True)


def _np_sds(items, theta) -> np.ndarray:  # noqa: ANN001
    return np.stack(np.broadcast_arrays(*[np.asarray(sd, dtype=float) for sd in theta["clock_sd"]]), axis=-1)


def _roundings(items) -> tuple[float, ...]:  # noqa: ANN001
    return tuple(float(it.observed.rounding_min) for it in items)


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
        if why := _origin_conflict(first._origin, other._origin):
            return (f"timing reports in group {group!r} are not on one clock: {why}; give every report of one event the "
                    "same period, all as clock times with the same timezone or all as plain minutes")
        return None

    def describe(self, obs) -> str:  # noqa: ANN001
        rounded = f", rounded to {obs.rounding_min:g} min" if obs.rounding_min > 0 else ""
        return (f"damage at {obs.time:g} min{rounded}; {obs.window_label} window {obs.window[0]:g}–{obs.window[1]:g} min; "
                f"period {obs.period[0]:g}–{obs.period[1]:g} min; clock s.d. {obs.clock_sd_min.describe()} min")

    def coincidence(self, obs) -> tuple[float, tuple, tuple, float, float]:  # noqa: ANN001
        return obs.time, obs.window, obs.period, obs.clock_sd_min.mean(), obs.rounding_min

    def log_ratio_cap(self, items, shared=None) -> float:  # noqa: ANN001
        """ln(|P|/|W|) + CAP_SLACK: p(t | W) / p(t | P) = (|P|/|W|) int_W / int_P of a positive integrand,
        W inside P; the slack covers floating point where the ratio reaches the bound."""
        (p0, p1), (w0, w1) = items[0].observed.period, items[0].observed.window
        return math.log((p1 - p0) / (w1 - w0)) + CAP_SLACK

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
        sds = pt.stack([pt.as_tensor_variable(sd) for sd in theta["clock_sd"]])
        d = _roundings(items)
        return (log_reports(times, sds, d, *o.window, tensor=True), log_reports(times, sds, d, *o.period, tensor=True))

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

    # ---- simulation: reports keep window, period, clocks and rounding
    def design_problems(self, obs) -> list[tuple[str, str]]:  # noqa: ANN001
        if obs.clock_sd_min.kind not in ("fixed", "halfnormal"):
            return [("clock_sd_min", "use a number or {halfnormal: s}")]
        return []

    def simulate_observed(self, items, theta, rng):  # noqa: ANN001, ANN201
        return [{"time": float(t)} for t in self.simulate(items, theta, rng)["times"][0]]

    # ---- numpy side: replicated data for predictive checks
    def simulate(self, items, theta, rng):  # noqa: ANN001, ANN201
        """T from the window (prob. in_window) or the period, readings T + e_i, each rounded to its
        report's grid (the multiples of delta_i through the observed time)."""
        o = items[0].observed
        s = _np_sds(items, theta)
        n = s.shape[0]
        inside = rng.random(n) < theta["in_window"]
        true = np.where(inside, rng.uniform(*o.window, size=n), rng.uniform(*o.period, size=n))
        reading = true[:, None] + s * rng.standard_normal(s.shape)
        d = np.asarray(_roundings(items))
        t0 = np.asarray([it.observed.time for it in items])
        step = np.where(d > 0, d, 1.0)
        return {"times": np.where(d > 0, t0 + step * np.round((reading - t0) / step), reading)}

    def observed(self, items):  # noqa: ANN001, ANN201
        return {"times": np.asarray([[it.observed.time for it in items]])}

    def logp_np(self, items, y, theta):  # noqa: ANN001, ANN201
        o = items[0].observed
        t, s = np.broadcast_arrays(np.asarray(y["times"], dtype=float), _np_sds(items, theta))
        d = _roundings(items)
        lw, lp = log_reports(t, s, d, *o.window), log_reports(t, s, d, *o.period)
        w = np.asarray(theta["in_window"], dtype=float)
        with np.errstate(divide="ignore"):
            return np.logaddexp(np.log(w) + lw, np.log1p(-w) + lp)
