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
inward-bent (large :math:`f`) of an external one.

Background (closed form under the ``generic`` mechanism's priors): negative binomial
counts, beta-binomial bending and a multivariate normal of the log sizes with covariance
:math:`\sigma^2 I + \tau^2 \mathbf 1 \mathbf 1^\top`.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
from scipy import stats

from engine.evidence.common import observed_tensors

SAMPLED = ("hole_rate", "inward_fraction", "log_size_mean")


def _obs(items):  # noqa: ANN001, ANN202 - a group reports one latent observation
    o = items[0].observed
    assessed = o.holes if o.assessed is None else o.assessed
    return o, assessed


def data(items) -> dict[str, np.ndarray]:  # noqa: ANN001
    """The observed numbers, which the model holds as ``pm.Data`` (replaceable without recompiling)."""
    o, assessed = _obs(items)
    out = {"holes": np.asarray(o.holes), "assessed": np.asarray(assessed)}
    if o.inward is not None:
        out["inward"] = np.asarray(o.inward)
    if o.sizes_mm:
        out["logs"] = np.log(np.asarray(o.sizes_mm, dtype=float))
    return out


def loglik(items, theta):  # noqa: ANN001, ANN201
    o, _ = _obs(items)
    y = observed_tensors(theta, data(items))
    ll = pm.logp(pm.Poisson.dist(theta["hole_rate"] * o.exposure), y["holes"])
    if "inward" in y:
        ll = ll + pm.logp(pm.Binomial.dist(n=y["assessed"], p=theta["inward_fraction"]), y["inward"])
    if "logs" in y:
        ll = ll + pm.logp(pm.Normal.dist(theta["log_size_mean"], theta["log_size_sd"]), y["logs"]).sum() - y["logs"].sum()
    return ll


def closed_form(items, spec) -> float:  # noqa: ANN001
    """log p(y) with every parameter integrated out (conjugate priors or fixed values)."""
    o, assessed = _obs(items)
    rate, frac, mean, sd = (spec[k] for k in ("hole_rate", "inward_fraction", "log_size_mean", "log_size_sd"))
    if rate.kind == "gamma":
        a, b = rate.args
        out = stats.nbinom.logpmf(o.holes, a, b / (b + o.exposure))
    else:
        out = stats.poisson.logpmf(o.holes, rate.args[0] * o.exposure)
    if o.inward is not None and assessed > 0:
        if frac.kind == "beta":
            out += stats.betabinom.logpmf(o.inward, assessed, *frac.args)
        else:
            out += stats.binom.logpmf(o.inward, assessed, frac.args[0])
    if o.sizes_mm:
        logs = np.log(np.asarray(o.sizes_mm, dtype=float))
        mu0, tau = (mean.args[0], mean.args[1]) if mean.kind == "normal" else (mean.args[0], 0.0)
        cov = sd.args[0] ** 2 * np.eye(len(logs)) + tau**2
        out += stats.multivariate_normal.logpdf(logs, mean=np.full(len(logs), mu0), cov=cov) - logs.sum()
    return float(out)


def background(items, generic, theta) -> float:  # noqa: ANN001
    return closed_form(items, generic)


# ---- numpy side: replicated data for predictive checks (the mechanism's own prediction)
def simulate(items, theta, rng):  # noqa: ANN001, ANN201
    """Replicate the observation per draw, keeping the design (assessed holes, number of sizes)."""
    o, assessed = _obs(items)
    n = np.shape(theta["hole_rate"])[0]
    y = {"holes": rng.poisson(theta["hole_rate"] * o.exposure)}
    if o.inward is not None and assessed > 0:
        y["inward"] = rng.binomial(assessed, theta["inward_fraction"])
    if o.sizes_mm:
        y["logs"] = theta["log_size_mean"][:, None] + theta["log_size_sd"][:, None] * rng.standard_normal((n, len(o.sizes_mm)))
    return y


def observed(items):  # noqa: ANN001, ANN201
    o, assessed = _obs(items)
    y = {"holes": np.asarray(o.holes)}
    if o.inward is not None and assessed > 0:
        y["inward"] = np.asarray(o.inward)
    if o.sizes_mm:
        y["logs"] = np.log(np.asarray(o.sizes_mm))[None, :]
    return y


def logp_np(items, y, theta):  # noqa: ANN001, ANN201
    o, assessed = _obs(items)
    out = stats.poisson.logpmf(y["holes"], theta["hole_rate"] * o.exposure)
    if "inward" in y:
        out = out + stats.binom.logpmf(y["inward"], assessed, theta["inward_fraction"])
    if "logs" in y:
        out = out + stats.norm.logpdf(y["logs"], theta["log_size_mean"][:, None], theta["log_size_sd"][:, None]).sum(axis=1)
    return out
