"""One simulated incident, attributed on a worker: the calibration's task.

``run_incident(template, i, settings)`` simulates incident ``i`` from the template's prior
predictive (``engine.calibration.simulate``) and attributes it with the engine's own samplers
and estimators on this process's compiled model (``engine.run.compiled``), or with a negative
control (``engine.calibration.controls``), and records the exact posterior where it exists
(``engine.inference.closedform``) or else the quadrature over the shared parameters
(``engine.calibration.reference``); ``CalibrationSettings`` are the sampling settings per
incident. Seeds come from ``engine.run.seeds`` (``incident_seed``, ``sampler_seed``).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.errors import OptionError
from engine.run.seeds import incident_seed, sampler_seed
from engine.spec.case import Case

ESTIMATORS = ("engine", "sign-error", "mixture")


@dataclass(frozen=True)
class CalibrationSettings:
    """Sampling settings per incident and hypothesis (cheaper than a case run's defaults)."""

    seed: int = 1
    n: int = 200
    draws: int = 500
    tune: int = 500
    chains: int = 2
    smc_draws: int = 500
    smc_chains: int = 2
    target_accept: float = 0.9
    sbc_draws: int = 99  # thinned NUTS draws the true parameters are ranked among
    estimator: str = "engine"

    def __post_init__(self) -> None:
        if self.estimator not in ESTIMATORS:
            raise OptionError(f"estimator {self.estimator!r} is not known; use one of {', '.join(ESTIMATORS)}")
        if self.n < 1 or self.draws < 10 or self.tune < 0 or self.chains < 1 or self.smc_draws < 50 or self.smc_chains < 1:
            raise OptionError(f"calibration settings out of range: {self}")
        if self.sbc_draws >= self.draws * self.chains:
            raise OptionError(f"sbc_draws={self.sbc_draws} must be below the {self.draws * self.chains} NUTS draws kept")


def _quiet() -> None:
    for name in ("pymc", "pymc.sampling", "pymc.smc", "pymc.stats", "pytensor"):
        logging.getLogger(name).setLevel(logging.ERROR)


# ------------------------------------------------------------------ one incident (worker side)
def run_incident(template: Case, index: int, settings: CalibrationSettings) -> dict:
    """Simulate incident ``index`` and attribute it; a JSON-able record (worker side)."""
    from engine.calibration.reference import reference_posterior, reference_problem
    from engine.calibration.simulate import simulate_incident
    from engine.inference.closedform import exact_posterior, has_exact
    from engine.run.compiled import ensure_compiledir

    ensure_compiledir()
    _quiet()
    t0 = time.perf_counter()
    inc = simulate_incident(template, index, np.random.default_rng(incident_seed(settings.seed, index)))
    hids = list(template.hypotheses)
    record: dict[str, Any] = {
        "index": index, "truth": inc.hypothesis, "faithful": inc.faithful,
        "observed": {it.id: _observed_json(it.observed) for it in inc.case.items},
        "prior": [template.hypotheses[h].prior for h in hids], "hypotheses": hids,
    }
    record["attempts"] = inc.attempts
    if has_exact(inc.case) is None:
        _, log_z, post = exact_posterior(inc.case)
        record["exact"] = {"log_z": log_z.tolist(), "posterior": post.tolist(), "method": "closed form"}
    elif reference_problem(inc.case) is None:
        _, log_z, post = reference_posterior(inc.case)
        record["exact"] = {"log_z": log_z.tolist(), "posterior": post.tolist(), "method": "quadrature"}
    if settings.estimator == "mixture":
        from engine.calibration.controls import mixture_posterior

        record["estimated"] = mixture_posterior(template, inc.case, index, settings)
    else:
        record["estimated"] = _engine_estimates(template, inc, settings)
    record["seconds"] = round(time.perf_counter() - t0, 3)
    record["process"] = os.getpid()
    return record


def _observed_json(obs: Any) -> dict:
    keep = {"holes", "assessed", "inward", "counts", "time", "seconds"}
    return {k: getattr(obs, k) for k in type(obs).model_fields if k in keep}


def hypothesis_estimates(template: Case, case: Case, hid: str, index: int, settings: CalibrationSettings,
                         variant: Any = None) -> tuple[dict, Any]:
    """log Z of ``hid`` on ``case`` (a dataset of ``template``'s design) by SMC, bridge sampling and
    the engine's combination, on this process's compiled model (``engine.run.compiled.Compiled``, the
    same code path as a case run); also the NUTS posterior (InferenceData)."""
    import arviz as az

    from engine.inference.estimate import bridge_log_evidence, combine, smc_log_evidence
    from engine.run.compiled import compiled_for, unconstrained_draws

    j = list(template.hypotheses).index(hid)
    cm = compiled_for(template, hid).use(template, hid, variant, observed=case)
    chains = [cm.sample_nuts(draws=settings.draws, tune=settings.tune, seed=sampler_seed(settings.seed, index, j, "nuts", c),
                             target_accept=settings.target_accept) for c in range(settings.chains)]
    idata = az.concat(chains, dim="chain") if len(chains) > 1 else chains[0]
    smc = smc_log_evidence(np.array([cm.sample_smc(draws=settings.smc_draws, seed=sampler_seed(settings.seed, index, j, "smc", c))
                                     ["log_marginal_likelihood"] for c in range(settings.smc_chains)]))
    bridge = bridge_log_evidence(unconstrained_draws(cm.model, idata), cm.log_density(),
                                 seed=sampler_seed(settings.seed, index, j, "bridge"))
    pooled = combine([smc, bridge])
    est = {"smc": smc.value, "smc_se": smc.se, "smc_chains": smc.detail["chains"], "bridge": bridge.value, "bridge_se": bridge.se,
           "pooled": pooled.value, "pooled_se": pooled.se, "agree": pooled.agree, "z": pooled.z,
           "divergences": int(idata.sample_stats["diverging"].sum())}
    return est, idata


def _engine_estimates(template: Case, inc, settings: CalibrationSettings) -> dict:  # noqa: ANN001
    from engine.inference.estimate import attribute

    hids = list(template.hypotheses)
    variant = None
    if settings.estimator == "sign-error":
        from engine.calibration.controls import sign_error_data
        from engine.run.settings import Variant

        variant = Variant.of("sign-error", sign_error_data(template))
    per: dict[str, dict] = {}
    sbc: dict[str, list[int]] = {}
    for j, hid in enumerate(hids):
        per[hid], idata = hypothesis_estimates(template, inc.case, hid, inc.index, settings, variant)
        if hid == inc.hypothesis:
            sbc = _sbc_ranks(idata.posterior, inc, settings, j)
    prior = np.array([template.hypotheses[h].prior for h in hids])
    out: dict[str, Any] = {"log_z": per, "sbc": sbc, "sbc_draws": settings.sbc_draws}
    for name, key in (("engine", "pooled"), ("smc", "smc"), ("bridge", "bridge")):
        se = np.array([per[h][f"{key}_se"] for h in hids])
        p, mcse = attribute(prior, np.array([per[h][key] for h in hids]), np.nan_to_num(se, nan=0.0))
        out[name] = {"posterior": p.tolist(), "mcse": mcse.tolist()}
    return out


def fixed_case_estimates(case: Case, hid: str, replicate: int, settings: CalibrationSettings) -> dict:
    """Estimators against the exact log evidence on a fixed (oracle) case; replicate r uses seeds of index r."""
    from engine.inference.closedform import exact_log_evidence
    from engine.run.compiled import ensure_compiledir

    ensure_compiledir()
    _quiet()
    t0 = time.perf_counter()
    est, _ = hypothesis_estimates(case, case, hid, replicate, settings)
    return {"case": case.id, "hypothesis": hid, "replicate": replicate, "exact": exact_log_evidence(case, hid), **est,
            "seconds": round(time.perf_counter() - t0, 3)}


def _sbc_ranks(posterior, inc, settings: CalibrationSettings, hyp: int) -> dict[str, list[int]]:  # noqa: ANN001
    """Ranks of the true parameter values among ``sbc_draws`` thinned posterior draws."""
    from engine.calibration.metrics import sbc_rank

    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    keep = np.linspace(0, n - 1, settings.sbc_draws).round().astype(int)
    rng = np.random.default_rng(sampler_seed(settings.seed, inc.index, hyp, "sbc"))
    ranks: dict[str, list[int]] = {}
    for name in posterior.data_vars:
        uid, _, pname = str(name).rpartition("__")
        truth = inc.shared.get(str(name), inc.theta.get(uid, {}).get(pname))  # reliability__<s>, assertion_rate__<c>, <unit>__<param>
        if truth is None:
            continue
        values = posterior[name].values
        draws = values.reshape(n, -1)[keep]
        truth = np.atleast_1d(truth)
        for k in range(truth.size):
            ranks[str(name) if truth.size == 1 else f"{name}[{k}]"] = [sbc_rank(float(truth[k]), draws[:, k], rng)]
    return ranks


@dataclass(frozen=True)
class IncidentWork:
    """``run_incident`` for one calibration: what the task loop submits (picklable)."""

    template: Case
    settings: CalibrationSettings

    def __call__(self, index: int) -> dict:
        return run_incident(self.template, index, self.settings)
