r"""Perforations: holes counted in one region, their bending and their sizes.

For a region with exposure :math:`e` (1 = one inspected region), :math:`n` holes, :math:`m`
of them assessed for bending, :math:`k` bent inward and sizes :math:`s_1..s_J` (mm):

.. math::
    n \sim \mathrm{Poisson}(\lambda e),\quad k \sim \mathrm{Binomial}(m, f),\quad
    \ln s_j \sim \mathcal N(\mu, \sigma)

with :math:`\lambda \sim \mathrm{Gamma}(a, b)` (``hole_rate``), :math:`f \sim
\mathrm{Beta}(\alpha, \beta)` (``inward_fraction``), :math:`\mu \sim \mathcal N(\mu_0,
\tau)` (``log_size_mean``) and a fixed within-incident spread :math:`\sigma`
(``log_size_sd``). Sizes are densities in mm (log-normal, Jacobian :math:`1/s_j`
included). Outward-bent skin (small :math:`f`) is the signature of an internal blast,
inward-bent (large :math:`f`) of an external one. Closed form: negative binomial counts,
beta-binomial bending and a multivariate normal of the log sizes with covariance
:math:`\sigma^2 I + \tau^2 \mathbf 1 \mathbf 1^\top`.

**Counts** live on :math:`0..N` (:math:`N` = ``N_MAX`` = 10,000,000, the schema's largest).
``holes`` is an exact count or a stated range :math:`[l, u]`: ``{at_least: l}`` (:math:`u = N`),
``{at_most: u}`` (:math:`l = 0`), ``{between: [l, u]}``, or a word: ``dozens`` = 24..99,
``hundreds`` = 200..999, ``thousands`` = 2,000..9,999 (a plural means at least two of the unit,
and a speaker with a larger number would use the next word; write ``between`` for another
reading). A range's likelihood is exact: :math:`P(l \le n \le u)`, a Poisson CDF difference
(negative binomial in the closed form), computed from the smaller tail; ``assessed`` and the
number of sizes must not exceed :math:`l`.

**Background** (what an unfaithful report follows): a mixture
:math:`p_{bg} = (1 - w)\, p_{generic} + w\, q` (``robust_background``, :math:`w` =
``VAGUE_WEIGHT``) of the closed form under the ``generic`` mechanism and a vague, heavy-tailed
:math:`q = q_n\, q_k\, \prod_j q_s(s_j)`:

* :math:`q_n(n) = \ln\frac{n+2}{n+1} / \ln(N+2)` on :math:`0..N` (discrete log-uniform; it
  telescopes: :math:`Q_n(n \le c) = \ln(c+2)/\ln(N+2)`, so a range has
  :math:`Q_n([l,u]) = \ln\frac{u+2}{l+1}/\ln(N+2)`);
* :math:`q_k = 1/(m+1)` (uniform on :math:`0..m`);
* :math:`q_s(s) = 1/(s \ln(S_1/S_0))`, log-uniform on the physical range ``SIZE_MM`` =
  :math:`[S_0, S_1]` = 0.1 mm to 20 m (the schema refuses sizes outside it).

**Influence bound** (``log_ratio_cap``): since :math:`p_{bg} \ge w q`, for every hypothesis,
parameter value and observation of the design,
:math:`\ln p(y \mid H,\theta) - \ln p_{bg}(y) \le -\ln w + C_n + C_k + C_s` with

* :math:`C_n = \ln\!\big(\ln(N+2)\,(N + 1.5)/\sqrt{2\pi N}\big)`: by Stirling
  :math:`\sup_\lambda \mathrm{Poisson}(n; \lambda e) = n^n e^{-n}/n! \le 1/\sqrt{2\pi n}`
  (1 at :math:`n = 0`), and :math:`\ln(1 + x) \ge 2x/(2 + x)` gives
  :math:`q_n(n) \ge 1/((n + 1.5)\ln(N+2))`; the resulting bound on the ratio increases in
  :math:`n` and is largest at :math:`N`. A range's ratio :math:`\sum_{[l,u]} p / \sum_{[l,u]} q_n`
  is at most the largest single term's ratio (mediant inequality), so ranges obey the same bound;
* :math:`C_k = \ln(m + 1)` when bending is reported: :math:`\sup_f \mathrm{Binomial}(k; m, f)
  \le 1` (reached at :math:`k \in \{0, m\}`);
* :math:`C_s = J\,[\ln\ln(S_1/S_0) - \ln(\sqrt{2\pi}\,\sigma_{min})]`:
  :math:`\sup_\mu \prod_j \mathcal N(\ln s_j; \mu, \sigma) \le (2\pi\sigma^2)^{-J/2}`, the
  Jacobians :math:`1/s_j` cancel, :math:`\sigma_{min}` the smallest ``log_size_sd`` of the
  unit's hypotheses.

The unit's **design** is what the bound holds fixed: whether the count is exact or a range, the
number assessed :math:`m` (``assessed``, else the exact count; a smaller :math:`m` only lowers
the bound), whether bending is reported, the number of sizes :math:`J`, the exposure and the
hypotheses' :math:`\sigma`. The values are free: the count or its range, :math:`k`, the sizes.

**Collapsed** (``collapsible``): ``own_posterior`` draws :math:`\lambda \mid n \sim
\mathrm{Gamma}(a + n, b + e)`; for a range, :math:`n` first from its negative binomial
posterior predictive truncated to :math:`[l, u]`, then :math:`\lambda \mid n` (the pair is an
exact draw of the joint posterior); :math:`f \mid k \sim \mathrm{Beta}(\alpha + k, \beta + m - k)`;
:math:`\mu` from the normal-normal posterior.

**Simulation and predictive checks** keep the design; a range is censored the same way: the
replicated count is reported as the cell holding it among :math:`[0, l-1]`, :math:`[l, u]`,
:math:`[u+1, N]` (``{at_most: l-1}``, the stated form, ``{at_least: u+1}``).
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, NamedTuple

import numpy as np
from pydantic import BeforeValidator, field_validator, model_validator
from scipy.special import logsumexp
from typing_extensions import TypedDict

from engine.evidence.base import (
    VAGUE_WEIGHT,
    Family,
    NonNegativeInt,
    PositiveFloat,
    Strict,
    observed_tensors,
    robust_background,
)

N_MAX = 10_000_000  # the largest count the schema accepts; counts live on 0..N_MAX
LOG_N = math.log(N_MAX + 2)  # normaliser of the vague count q_n
SIZE_MM = (0.1, 20_000.0)  # physical range of hole sizes (mm): the vague size component's support
WORDS = {"dozens": (24, 99), "hundreds": (200, 999), "thousands": (2_000, 9_999)}
FORMS = ("at_least", "at_most", "between")
_HINT = ("write a whole number, {at_least: N}, {at_most: N}, {between: [a, b]} or one of "
         + ", ".join(f"{w} ({lo}-{hi})" for w, (lo, hi) in WORDS.items()))


class HoleCount(NamedTuple):
    """A count stated as a range: ``lo <= n <= hi``; ``form`` is how it was written."""

    lo: int
    hi: int
    form: str  # at_least | at_most | between | dozens | hundreds | thousands

    def describe(self) -> str:
        if self.form == "at_least":
            return f"at least {self.lo} holes"
        if self.form == "at_most":
            return f"at most {self.hi} holes"
        if self.form == "between":
            return f"between {self.lo} and {self.hi} holes"
        return f"{self.form} of holes ({self.lo}–{self.hi})"


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= N_MAX:
        raise ValueError(f"{what} must be a whole number from 0 to {N_MAX} (got {value!r})")
    return value


def parse_count(value: Any) -> Any:
    """A count as written (a whole number, a range mapping or a word) -> int or ``HoleCount``."""
    if isinstance(value, HoleCount):
        return value
    if isinstance(value, bool) or isinstance(value, float) or (isinstance(value, int) and value < 0):
        raise ValueError(f"must be a whole number >= 0 (got {value!r})")
    if isinstance(value, int):
        return value  # the field's own bounds apply
    if isinstance(value, str):
        word = value.strip().lower()
        if word in WORDS:
            return HoleCount(*WORDS[word], word)
        raise ValueError(f"{value!r} is not a count; {_HINT}")
    if isinstance(value, dict):
        if len(value) != 1 or next(iter(value)) not in FORMS:
            raise ValueError(f"{value!r} is not a count; {_HINT}")
        form, arg = next(iter(value.items()))
        if form == "between":
            if not isinstance(arg, (list, tuple)) or len(arg) != 2:
                raise ValueError(f"between takes two whole numbers [a, b] (got {arg!r})")
            lo, hi = _whole(arg[0], "between's lower end"), _whole(arg[1], "between's upper end")
            if lo > hi:
                raise ValueError(f"between [{lo}, {hi}] has its ends reversed; write [{hi}, {lo}]")
            return HoleCount(lo, hi, "between")
        n = _whole(arg, form)
        return HoleCount(n, N_MAX, form) if form == "at_least" else HoleCount(0, n, form)
    raise ValueError(f"must be a count (got {value!r}); {_HINT}")


class CountAtLeast(TypedDict):
    at_least: NonNegativeInt


class CountAtMost(TypedDict):
    at_most: NonNegativeInt


class CountBetween(TypedDict):
    between: tuple[NonNegativeInt, NonNegativeInt]


# what a case file may write (shown by `incident schema`); parsed into an int or a HoleCount
_Written = NonNegativeInt | CountAtLeast | CountAtMost | CountBetween | Literal["dozens", "hundreds", "thousands"]
Count = Annotated[NonNegativeInt | HoleCount, BeforeValidator(parse_count, json_schema_input_type=_Written)]


def bounds(holes: int | HoleCount) -> tuple[int, int]:
    """(lo, hi) of a count: an exact count n is [n, n]."""
    return (holes.lo, holes.hi) if isinstance(holes, HoleCount) else (holes, holes)


class PerforationsObs(Strict):
    """Holes counted in one region of the airframe."""

    region: str = ""
    holes: Count
    exposure: PositiveFloat = 1.0
    assessed: NonNegativeInt | None = None
    inward: NonNegativeInt | None = None
    sizes_mm: tuple[PositiveFloat, ...] = ()

    @model_validator(mode="after")
    def _counts(self) -> PerforationsObs:
        lo, hi = bounds(self.holes)
        stated = self.holes.describe() if isinstance(self.holes, HoleCount) else f"holes={lo}"
        if isinstance(self.holes, HoleCount) and self.inward is not None and self.assessed is None:
            raise ValueError(f"holes is a range ({stated}); give assessed, the number of holes whose bending was judged")
        assessed = lo if self.assessed is None else self.assessed
        if assessed > lo:
            what = f"above holes={lo}" if lo == hi else f"above the fewest holes stated ({stated})"
            raise ValueError(f"assessed={assessed} is {what}; assessed counts holes whose bending was judged")
        if self.inward is not None and self.inward > assessed:
            raise ValueError(f"inward={self.inward} is above the {assessed} holes assessed; lower inward or raise assessed")
        if len(self.sizes_mm) > lo:
            what = f"{lo} holes" if lo == hi else f"at least {lo} holes ({stated})"
            raise ValueError(f"{len(self.sizes_mm)} sizes given for {what}; give at most one size per hole")
        return self

    @field_validator("sizes_mm")
    @classmethod
    def _physical(cls, sizes: tuple[float, ...]) -> tuple[float, ...]:
        for j, s in enumerate(sizes):
            if not SIZE_MM[0] <= s <= SIZE_MM[1]:
                raise ValueError(f"size {j + 1} is {s:g} mm, outside {SIZE_MM[0]:g}..{SIZE_MM[1]:g} mm "
                                 "(0.1 mm to 20 m, the range the background covers); check the units (mm)")
        return sizes


def _obs(items):  # noqa: ANN001, ANN202 - a group reports one latent observation
    o = items[0].observed
    lo, _ = bounds(o.holes)
    assessed = lo if o.assessed is None else o.assessed
    return o, assessed


def _exact(o) -> bool:  # noqa: ANN001
    return not isinstance(o.holes, HoleCount)


# ---------------------------------------------------------------- counts in a range (numpy)
def _log1mexp(x: np.ndarray) -> np.ndarray:
    """log(1 - e^x) for x <= 0 (-inf at 0)."""
    x = np.asarray(x, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > -math.log(2), np.log(-np.expm1(x)), np.log1p(-np.exp(x)))


def _window(logpmf, lo: int, hi: int, start: float, drop: float = 60.0) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """(k, log pmf(k)) over the part of [lo, hi] holding all but ~e^-drop of its mass, for a
    unimodal pmf: grown from ``start`` (clipped into [lo, hi]) in both directions until the
    edge terms fall ``drop`` nat below the largest or the range ends."""
    c = int(min(max(round(start), lo), hi))
    ks, vals, best = [], [], -np.inf
    for step in (1, -1):
        k0, size = (c, 256) if step == 1 else (c - 1, 256)
        while (k0 <= hi) if step == 1 else (k0 >= lo):
            k1 = min(hi, k0 + size - 1) if step == 1 else max(lo, k0 - size + 1)
            k = np.arange(k0, k1 + step, step)
            v = np.asarray(logpmf(k), dtype=float)
            ks.append(k), vals.append(v)
            best = max(best, float(np.max(v)))
            if v[-1] < best - drop:
                break
            k0, size = k1 + step, size * 2
    return np.concatenate(ks), np.concatenate(vals)


def log_mass(dist: Any, lo: Any, hi: Any) -> np.ndarray:
    r"""log P(lo <= n <= hi) of a frozen scipy discrete distribution (parameters may be arrays).

    From the smaller tail: :math:`F(u) - F(l-1)` when the lower tail is the smaller, else
    :math:`S(l-1) - S(u)`; where that underflows, the terms are summed in log space (``_window``).
    """
    lo, hi = np.asarray(lo, dtype=float), np.asarray(hi, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        top, bottom = dist.logcdf(hi), dist.logcdf(lo - 1)
        upper, beyond = dist.logsf(lo - 1), dist.logsf(hi)
        out = np.where(upper < top, upper + _log1mexp(beyond - upper), top + _log1mexp(bottom - top))
        out = np.where(lo == hi, dist.logpmf(lo), out)
    out = np.array(out, dtype=float)
    bad = ~np.isfinite(out)
    if bad.any():
        args = np.broadcast_arrays(*dist.args, lo, hi, dist.mean())
        for i in map(tuple, np.argwhere(bad)):
            *a, l_i, h_i, m_i = (x[i] for x in args)
            _, v = _window(lambda k, a=a: dist.dist.logpmf(k, *a), int(l_i), int(h_i), float(m_i))
            out[i] = logsumexp(v)
    return out


def vague_count_log_mass(lo: Any, hi: Any) -> np.ndarray:
    """log Q_n([lo, hi]) of the discrete log-uniform count on 0..N_MAX: log(log((hi+2)/(lo+1)) / log(N_MAX+2))."""
    lo, hi = np.asarray(lo, dtype=float), np.minimum(np.asarray(hi, dtype=float), N_MAX)
    return np.log(np.log1p((hi - lo + 1) / (lo + 1))) - math.log(LOG_N)


def log_normal_sizes(logs: np.ndarray, mu0: float, tau: float, sigma: float) -> float:
    r"""log density (per mm) of sizes whose logs are :math:`\mathcal N(\mu0 \mathbf 1, \sigma^2 I + \tau^2
    \mathbf 1 \mathbf 1^\top)`: by the determinant lemma and the split into the mean :math:`\bar x` and
    the deviations from it, :math:`-\tfrac J2\ln 2\pi - (J-1)\ln\sigma - \tfrac12\ln(\sigma^2 + J\tau^2)
    - \tfrac12[\sum_j (x_j - \bar x)^2/\sigma^2 + J(\bar x - \mu_0)^2/(\sigma^2 + J\tau^2)] - \sum_j x_j`
    (stable for any ratio of :math:`\sigma` to :math:`\tau`)."""
    j, xbar = len(logs), float(np.mean(logs))
    between = sigma**2 + j * tau**2
    quad = float(np.sum((logs - xbar) ** 2)) / sigma**2 + j * (xbar - mu0) ** 2 / between
    return float(-0.5 * j * math.log(2 * math.pi) - (j - 1) * math.log(sigma) - 0.5 * math.log(between) - 0.5 * quad - logs.sum())


def _count_dist(rate, exposure: float):  # noqa: ANN001, ANN202
    """The count's marginal distribution given a hole_rate spec (negative binomial or Poisson)."""
    from scipy import stats

    if rate.kind == "gamma":
        a, b = rate.args
        return stats.nbinom(a, b / (b + exposure))
    return stats.poisson(rate.args[0] * exposure)


def truncated_count_draws(dist: Any, lo: int, hi: int, rng: np.random.Generator, size: int) -> np.ndarray:
    """``size`` draws of a unimodal count distribution (frozen scipy) truncated to [lo, hi]."""
    k, v = _window(dist.logpmf, lo, hi, float(dist.mean()))
    p = np.exp(v - logsumexp(v))
    return rng.choice(k, size=size, p=p / p.sum())


# ---------------------------------------------------------------- counts in a range (tensor)
def poisson_log_mass_tensor(mu, lo, hi):  # noqa: ANN001, ANN201
    r"""log P(lo <= n <= hi | Poisson(mu)), a PyTensor expression.

    With :math:`P(n \ge k) = \gamma(k, \mu)` (regularised lower incomplete gamma) and
    :math:`P(n \le k) = Q(k + 1, \mu)`: the upper-tail difference when :math:`\mu < l`, the
    lower-tail one otherwise. Where that falls below 1e-280 the tail is summed as a geometric
    series from its nearest end (ratio :math:`\mu/(l+1)` upwards, :math:`u/\mu` downwards), an
    upper bound that is within 1e-3 nat there. Both branches stay finite, so gradients do too.
    """
    import pytensor.tensor as pt

    lo_s, ratio_cap = pt.maximum(lo, 1.0), 1.0 - 1e-9
    p_up = pt.switch(lo > 0, pt.gammainc(lo_s, mu), 1.0) - pt.gammainc(hi + 1.0, mu)
    p_down = pt.gammaincc(hi + 1.0, mu) - pt.switch(lo > 0, pt.gammaincc(lo_s, mu), 0.0)
    upper = mu < lo
    p = pt.switch(upper, p_up, p_down)
    width = hi - lo + 1.0

    def logpmf(k):  # noqa: ANN001, ANN202
        return k * pt.log(mu) - mu - pt.gammaln(k + 1.0)

    def geometric(log_r):  # noqa: ANN001, ANN202 - log of sum_{j < width} r^j
        return pt.log(-pt.expm1(width * log_r)) - pt.log(-pt.expm1(log_r))

    r_up = pt.clip(mu / (lo + 1.0), 1e-300, ratio_cap)
    r_down = pt.clip(hi / mu, 1e-300, ratio_cap)
    tail = pt.switch(upper, logpmf(lo) + geometric(pt.log(r_up)), logpmf(hi) + geometric(pt.log(r_down)))
    tail = pt.switch(pt.eq(width, 1.0), logpmf(lo), tail)
    return pt.switch(p > 1e-280, pt.log(pt.maximum(p, 1e-300)), tail)


class Perforations(Family):
    name = "perforations"
    Obs = PerforationsObs
    params = {
        "hole_rate": (("gamma", "fixed"), (1e-9, math.inf)),
        "inward_fraction": (("beta", "fixed"), (0.0, 1.0)),
        "log_size_mean": (("normal", "fixed"), (-math.inf, math.inf)),
        "log_size_sd": (("fixed",), (1e-6, math.inf)),
    }
    sampled = ("hole_rate", "inward_fraction", "log_size_mean")
    simulable = True
    replicable = True
    collapsible = True

    def describe(self, obs) -> str:  # noqa: ANN001
        parts = [obs.holes.describe() if isinstance(obs.holes, HoleCount) else f"{obs.holes} holes"]
        if obs.inward is not None:
            assessed = bounds(obs.holes)[0] if obs.assessed is None else obs.assessed
            parts.append(f"{obs.inward} of {assessed} assessed bent inward")
        if obs.sizes_mm:
            parts.append(f"sizes {min(obs.sizes_mm):g}–{max(obs.sizes_mm):g} mm")
        if obs.region:
            parts.append(f"region: {obs.region}")
        return ", ".join(parts)

    def data(self, items) -> dict[str, np.ndarray]:  # noqa: ANN001
        o, assessed = _obs(items)
        lo, hi = bounds(o.holes)
        out = {"holes": np.asarray(lo)} if _exact(o) else {"holes_lo": np.asarray(float(lo)), "holes_hi": np.asarray(float(hi))}
        out["assessed"] = np.asarray(assessed)
        if o.inward is not None:
            out["inward"] = np.asarray(o.inward)
        if o.sizes_mm:
            out["logs"] = np.log(np.asarray(o.sizes_mm, dtype=float))
        return out

    def loglik(self, items, theta):  # noqa: ANN001, ANN201
        import pymc as pm

        o, _ = _obs(items)
        y = observed_tensors(theta, self.data(items))
        mu = theta["hole_rate"] * o.exposure
        if "holes" in y:
            ll = pm.logp(pm.Poisson.dist(mu), y["holes"])
        else:
            ll = poisson_log_mass_tensor(mu, y["holes_lo"], y["holes_hi"])
        if "inward" in y:
            ll = ll + pm.logp(pm.Binomial.dist(n=y["assessed"], p=theta["inward_fraction"]), y["inward"])
        if "logs" in y:
            ll = ll + pm.logp(pm.Normal.dist(theta["log_size_mean"], theta["log_size_sd"]), y["logs"]).sum() - y["logs"].sum()
        return ll

    def closed_form(self, items, spec) -> float:  # noqa: ANN001
        """log p(y) with every parameter integrated out (conjugate priors or fixed values)."""
        from scipy import stats

        o, assessed = _obs(items)
        rate, frac, mean, sd = (spec[k] for k in ("hole_rate", "inward_fraction", "log_size_mean", "log_size_sd"))
        out = float(log_mass(_count_dist(rate, o.exposure), *bounds(o.holes)))
        if o.inward is not None and assessed > 0:
            if frac.kind == "beta":
                out += stats.betabinom.logpmf(o.inward, assessed, *frac.args)
            else:
                out += stats.binom.logpmf(o.inward, assessed, frac.args[0])
        if o.sizes_mm:
            mu0, tau = (mean.args[0], mean.args[1]) if mean.kind == "normal" else (mean.args[0], 0.0)
            out += log_normal_sizes(np.log(np.asarray(o.sizes_mm, dtype=float)), mu0, tau, sd.args[0])
        return float(out)

    def log_vague(self, items) -> float:  # noqa: ANN001
        """log q(y): the vague component of the background (see the module docstring)."""
        o, assessed = _obs(items)
        out = float(vague_count_log_mass(*bounds(o.holes)))
        if o.inward is not None and assessed > 0:
            out -= math.log(assessed + 1)
        if o.sizes_mm:
            s = np.asarray(o.sizes_mm, dtype=float)
            out -= float(np.sum(np.log(s)) + len(s) * math.log(math.log(SIZE_MM[1] / SIZE_MM[0])))
        return out

    def background(self, items, generic, theta) -> float:  # noqa: ANN001
        """log[(1 - w) p_generic(y) + w q(y)]."""
        return robust_background(self.closed_form(items, generic), self.log_vague(items))

    def log_ratio_cap(self, items, shared=None) -> float:  # noqa: ANN001
        """log K = -log w + C_n + C_k + C_s (module docstring), for the unit's design."""
        o, assessed = _obs(items)
        cap = -math.log(VAGUE_WEIGHT) + math.log(LOG_N * (N_MAX + 1.5) / math.sqrt(2 * math.pi * N_MAX))
        if o.inward is not None and assessed > 0:
            cap += math.log(assessed + 1)
        if o.sizes_mm:
            sds = [spec["log_size_sd"].args[0] for spec in items[0].params.values() if "log_size_sd" in spec]
            sigma = min(sds) if sds else self.params["log_size_sd"][1][0]
            cap += len(o.sizes_mm) * (math.log(math.log(SIZE_MM[1] / SIZE_MM[0])) - math.log(math.sqrt(2 * math.pi) * sigma))
        return cap

    def own_posterior(self, items, spec, rng, faithful):  # noqa: ANN001, ANN201
        """Exact conjugate posteriors where ``faithful``, the prior elsewhere (module docstring)."""
        o, assessed = _obs(items)
        faithful = np.asarray(faithful, dtype=bool)
        n, out = faithful.size, {}
        rate, frac, mean = spec["hole_rate"], spec["inward_fraction"], spec["log_size_mean"]
        if rate.kind == "gamma":
            a, b = rate.args
            lo, hi = bounds(o.holes)
            holes = np.full(n, lo) if lo == hi else truncated_count_draws(_count_dist(rate, o.exposure), lo, hi, rng, n)
            out["hole_rate"] = np.where(faithful, rng.gamma(a + holes, 1.0 / (b + o.exposure)), rng.gamma(a, 1.0 / b, n))
        if frac.kind == "beta":
            al, be = frac.args
            k = o.inward if (o.inward is not None and assessed > 0) else 0
            m = assessed if (o.inward is not None and assessed > 0) else 0
            out["inward_fraction"] = np.where(faithful, rng.beta(al + k, be + m - k, n), rng.beta(al, be, n))
        if mean.kind == "normal":
            mu0, tau = mean.args
            logs = np.log(np.asarray(o.sizes_mm, dtype=float))
            prec = 1 / tau**2 + len(logs) / spec["log_size_sd"].args[0] ** 2
            loc = (mu0 / tau**2 + logs.sum() / spec["log_size_sd"].args[0] ** 2) / prec
            out["log_size_mean"] = np.where(faithful, rng.normal(loc, 1 / math.sqrt(prec), n), rng.normal(mu0, tau, n))
        return out

    def exact_problem(self, case) -> str | None:  # noqa: ANN001
        for it in (it for it in case.items if it.family == self.name):
            for hid, spec in it.params.items():
                mean = spec.get("log_size_mean")
                if mean is not None and mean.kind not in ("normal", "fixed"):
                    return f"{it.id} under {hid}: log_size_mean {mean.describe()} is not conjugate"
        return None

    # ---- simulation: the design keeps which holes are assessed; sizes could outnumber simulated holes
    def design_problems(self, obs) -> list[tuple[str, str]]:  # noqa: ANN001
        problems = []
        if obs.sizes_mm:
            problems.append(("sizes_mm", "remove sizes_mm: their count could exceed simulated holes"))
        return problems

    def simulate_observed(self, items, theta, rng):  # noqa: ANN001, ANN201
        n = int(rng.poisson(theta["hole_rate"][0] * items[0].observed.exposure))
        return self._report(items, n, lambda m: int(rng.binomial(m, theta["inward_fraction"][0])))

    def simulate_background(self, items, theta, rng):  # noqa: ANN001, ANN201
        """An unfaithful report drawn from the whole background: with probability w from the vague
        component (count n = ceil(e^{u ln(N+2)}) - 2, u uniform, which has P(n <= c) = ln(c+2)/ln(N+2);
        inward uniform on 0..assessed), else as ``simulate_observed`` under the generic ``theta``."""
        if rng.random() >= VAGUE_WEIGHT:
            return self.simulate_observed(items, theta, rng)
        n = int(min(N_MAX, max(0, math.ceil(math.exp(rng.random() * LOG_N) - 2))))
        return self._report(items, n, lambda m: int(rng.integers(0, m + 1)))

    def _report(self, items, n: int, inward):  # noqa: ANN001, ANN202
        """The design's report of a true count n (censored at the stated range's cut points)."""
        obs = items[0].observed
        _, design = _obs(items)
        if _exact(obs):
            holes, lo = n, n
        else:
            lo, hi = (int(x[0]) for x in _cells(obs.holes, np.asarray([n])))
            holes = obs.holes if (lo, hi) == bounds(obs.holes) else HoleCount(lo, hi, "at_most" if lo == 0 else "at_least")
        if obs.inward is None:  # a count alone: bending was not assessed
            return [{"holes": holes}] * len(items)
        assessed = min(design, lo)
        return [{"holes": holes, "assessed": assessed, "inward": inward(assessed)}] * len(items)

    # ---- numpy side: replicated data for predictive checks (the mechanism's own prediction)
    def simulate(self, items, theta, rng):  # noqa: ANN001, ANN201
        """Replicate the observation per draw, keeping the design (the count's form and cut points,
        assessed holes, number of sizes)."""
        o, assessed = _obs(items)
        n = np.shape(theta["hole_rate"])[0]
        count = rng.poisson(theta["hole_rate"] * o.exposure)
        if _exact(o):
            y = {"holes": count}
        else:
            y = dict(zip(("holes_lo", "holes_hi"), _cells(o.holes, count), strict=True))
        if o.inward is not None and assessed > 0:
            y["inward"] = rng.binomial(assessed, theta["inward_fraction"])
        if o.sizes_mm:
            y["logs"] = theta["log_size_mean"][:, None] + theta["log_size_sd"][:, None] * rng.standard_normal((n, len(o.sizes_mm)))
        return y

    def observed(self, items):  # noqa: ANN001, ANN201
        o, assessed = _obs(items)
        lo, hi = bounds(o.holes)
        y = {"holes": np.asarray(lo)} if _exact(o) else {"holes_lo": np.asarray(lo), "holes_hi": np.asarray(hi)}
        if o.inward is not None and assessed > 0:
            y["inward"] = np.asarray(o.inward)
        if o.sizes_mm:
            y["logs"] = np.log(np.asarray(o.sizes_mm))[None, :]
        return y

    def logp_np(self, items, y, theta):  # noqa: ANN001, ANN201
        from scipy import stats

        o, assessed = _obs(items)
        mu = theta["hole_rate"] * o.exposure
        if "holes" in y:
            out = stats.poisson.logpmf(y["holes"], mu)
        else:
            out = log_mass(stats.poisson(mu), y["holes_lo"], y["holes_hi"])
        if "inward" in y:
            out = out + stats.binom.logpmf(y["inward"], assessed, theta["inward_fraction"])
        if "logs" in y:
            out = out + stats.norm.logpdf(y["logs"], theta["log_size_mean"][:, None], theta["log_size_sd"][:, None]).sum(axis=1)
        return out


def _cells(holes: HoleCount, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) of the cell holding each count among [0, l-1], [l, u], [u+1, N_MAX]: a replicated
    count censored at the stated range's cut points."""
    lo, hi = holes.lo, holes.hi
    below, above = count < lo, count > hi
    return (np.where(below, 0, np.where(above, hi + 1, lo)),
            np.where(below, lo - 1, np.where(above, N_MAX, hi)))
