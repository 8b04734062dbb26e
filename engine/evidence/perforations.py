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

import math

import numpy as np
from pydantic import model_validator

from engine.evidence.base import Family, NonNegativeInt, PositiveFloat, Strict, observed_tensors


class PerforationsObs(Strict):
    """Holes counted in one region of the airframe."""

    region: str = ""
    holes: NonNegativeInt
    exposure: PositiveFloat = 1.0
    assessed: NonNegativeInt | None = None
    inward: NonNegativeInt | None = None
    sizes_mm: tuple[PositiveFloat, ...] = ()

    @model_validator(mode="after")
    def _counts(self) -> PerforationsObs:
        assessed = self.holes if self.assessed is None else self.assessed
        if assessed > self.holes:
            raise ValueError(f"assessed={assessed} is above holes={self.holes}; assessed counts holes whose bending was judged")
        if self.inward is not None and self.inward > assessed:
            raise ValueError(f"inward={self.inward} is above the {assessed} holes assessed; lower inward or raise assessed")
        if len(self.sizes_mm) > self.holes:
            raise ValueError(f"{len(self.sizes_mm)} sizes given for {self.holes} holes; give at most one size per hole")
        return self


def _obs(items):  # noqa: ANN001, ANN202 - a group reports one latent observation
    o = items[0].observed
    assessed = o.holes if o.assessed is None else o.assessed
    return o, assessed


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

    def describe(self, obs) -> str:  # noqa: ANN001
        parts = [f"{obs.holes} holes"]
        if obs.inward is not None:
            assessed = obs.holes if obs.assessed is None else obs.assessed
            parts.append(f"{obs.inward} of {assessed} assessed bent inward")
        if obs.sizes_mm:
            parts.append(f"sizes {min(obs.sizes_mm):g}–{max(obs.sizes_mm):g} mm")
        if obs.region:
            parts.append(f"region: {obs.region}")
        return ", ".join(parts)

    def data(self, items) -> dict[str, np.ndarray]:  # noqa: ANN001
        o, assessed = _obs(items)
        out = {"holes": np.asarray(o.holes), "assessed": np.asarray(assessed)}
        if o.inward is not None:
            out["inward"] = np.asarray(o.inward)
        if o.sizes_mm:
            out["logs"] = np.log(np.asarray(o.sizes_mm, dtype=float))
        return out

    def loglik(self, items, theta):  # noqa: ANN001, ANN201
        import pymc as pm

        o, _ = _obs(items)
        y = observed_tensors(theta, self.data(items))
        ll = pm.logp(pm.Poisson.dist(theta["hole_rate"] * o.exposure), y["holes"])
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
        if obs.inward is None:
            problems.append(("inward", "give inward (any value): it fixes that bending is assessed"))
        if obs.sizes_mm:
            problems.append(("sizes_mm", "remove sizes_mm: their count could exceed simulated holes"))
        return problems

    def simulate_observed(self, items, theta, rng):  # noqa: ANN001, ANN201
        obs = items[0].observed
        design = obs.holes if obs.assessed is None else obs.assessed
        holes = int(rng.poisson(theta["hole_rate"][0] * obs.exposure))
        assessed = min(design, holes)
        inward = int(rng.binomial(assessed, theta["inward_fraction"][0]))
        return [{"holes": holes, "assessed": assessed, "inward": inward}] * len(items)

    # ---- numpy side: replicated data for predictive checks (the mechanism's own prediction)
    def simulate(self, items, theta, rng):  # noqa: ANN001, ANN201
        """Replicate the observation per draw, keeping the design (assessed holes, number of sizes)."""
        o, assessed = _obs(items)
        n = np.shape(theta["hole_rate"])[0]
        y = {"holes": rng.poisson(theta["hole_rate"] * o.exposure)}
        if o.inward is not None and assessed > 0:
            y["inward"] = rng.binomial(assessed, theta["inward_fraction"])
        if o.sizes_mm:
            y["logs"] = theta["log_size_mean"][:, None] + theta["log_size_sd"][:, None] * rng.standard_normal((n, len(o.sizes_mm)))
        return y

    def observed(self, items):  # noqa: ANN001, ANN201
        o, assessed = _obs(items)
        y = {"holes": np.asarray(o.holes)}
        if o.inward is not None and assessed > 0:
            y["inward"] = np.asarray(o.inward)
        if o.sizes_mm:
            y["logs"] = np.log(np.asarray(o.sizes_mm))[None, :]
        return y

    def logp_np(self, items, y, theta):  # noqa: ANN001, ANN201
        from scipy import stats

        o, assessed = _obs(items)
        out = stats.poisson.logpmf(y["holes"], theta["hole_rate"] * o.exposure)
        if "inward" in y:
            out = out + stats.binom.logpmf(y["inward"], assessed, theta["inward_fraction"])
        if "logs" in y:
            out = out + stats.norm.logpdf(y["logs"], theta["log_size_mean"][:, None], theta["log_size_sd"][:, None]).sum(axis=1)
        return out
