"""Convergence diagnostics of the NUTS runs (numbers in, data out; printing is elsewhere)."""

from __future__ import annotations

import numpy as np

from engine.inference.estimate import PARETO_K_MAX

RHAT_MAX = 1.01
ESS_MIN = 400


def nuts_diagnostics(idata, *, rhat_max: float = RHAT_MAX, ess_min: float = ESS_MIN) -> dict:  # noqa: ANN001
    """Rank-normalised r-hat, bulk/tail ESS, divergences and BFMI of one hypothesis's NUTS run."""
    import arviz as az

    names = [v for v in idata.posterior.data_vars
             if not str(v).endswith("__") and not idata.posterior[v].attrs.get("incident_exact_conditional")]
    post = idata.posterior[names]
    n_chains = idata.posterior.sizes["chain"]
    if not names:  # a model with no free parameter: nothing was sampled, its evidence is exact (engine.run.compiled)
        return {"rhat_max": 1.0, "ess_bulk_min": float(n_chains * idata.posterior.sizes["draw"]), "ess_tail_min": float(n_chains * idata.posterior.sizes["draw"]), "divergences": 0,
                "bfmi_min": float("nan"), "n_chains": n_chains, "n_draws": int(idata.posterior.sizes["draw"]),
                "problems": [], "exact": True}
    rhat = float(az.rhat(post).to_array().max()) if n_chains > 1 else float("nan")
    ess_bulk = float(az.ess(post, method="bulk").to_array().min())
    ess_tail = float(az.ess(post, method="tail").to_array().min())
    divergences = int(idata.sample_stats["diverging"].sum())
    bfmi = float(np.min(az.bfmi(idata))) if "energy" in idata.sample_stats else float("nan")
    problems = []
    if n_chains > 1 and not rhat <= rhat_max:
        problems.append(f"r-hat {rhat:.3f} above {rhat_max}")
    if not ess_bulk >= ess_min:
        problems.append(f"bulk ESS {ess_bulk:.0f} below {ess_min}")
    if not ess_tail >= ess_min:
        problems.append(f"tail ESS {ess_tail:.0f} below {ess_min}")
    if divergences:
        problems.append(f"{divergences} divergent transitions")
    if bfmi < 0.3:
        problems.append(f"BFMI {bfmi:.2f} below 0.3")
    return {"rhat_max": rhat, "ess_bulk_min": ess_bulk, "ess_tail_min": ess_tail,
            "divergences": divergences, "bfmi_min": bfmi, "n_chains": n_chains,
            "n_draws": int(post.sizes["draw"]), "problems": problems}


# ------------------------------------------------------------------ predictive checks
ALPHA = 0.01  # a unit is "not explained" by a hypothesis when its predictive p-value is below this


def unit_theta(case, hid: str, items, posterior) -> dict:  # noqa: ANN001
    """Per-draw parameter values (numpy, leading axis = draws) of one unit under one hypothesis."""
    from engine.evidence import family_of
    from engine.model.build import hyper, unit_id

    uid = unit_id(items)
    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    kinds = hyper(case, hid)
    theta = {}
    for pname in items[0].params[hid]:
        kind, value = kinds[f"hp__{uid}__{pname}"]
        if kind == "const":
            theta[pname] = np.broadcast_to(np.asarray(value, dtype=float), (n,))
        else:
            v = posterior[f"{uid}__{pname}"].values
            theta[pname] = v.reshape(n, *v.shape[2:])
    fam = family_of(items)
    extra = {name: posterior[name].values.reshape(n) if name in posterior else np.full(n, spec.mean())
             for name, spec in fam.unit_parameters(items).items()}
    theta = fam.bind(items, theta, extra)
    return theta


def predictive_p_value(case, hid: str, items, posterior, rng: np.random.Generator) -> float | None:  # noqa: ANN001
    """Posterior predictive Monte Carlo p-value of one unit under one hypothesis's mechanism.

    Discrepancy T(y, theta) = -log p(y | H, theta) (the mechanism's own prediction, as if
    the report were faithful); p = (1 + #{T(y_rep) >= T(y_obs)}) / (N + 1). ``None`` for
    families with nothing to replicate (claims, elicited probabilities).
    """
    from engine.evidence import family_of

    fam = family_of(items)
    if not fam.replicable:
        return None
    theta = unit_theta(case, hid, items, posterior)
    t_obs = -fam.logp_np(items, fam.observed(items), theta)
    t_rep = -fam.logp_np(items, fam.simulate(items, theta, rng), theta)
    return float((1 + np.sum(t_rep >= t_obs)) / (t_rep.size + 1))


def predictive_checks(case, posteriors: dict, *, seeds) -> tuple[dict, list[str]]:  # noqa: ANN001
    """p-values per unit and hypothesis, and the units that no hypothesis explains; ``seeds(k, j)``
    seeds the replicates of the k-th unit under the j-th hypothesis (``engine.run.seeds.predictive_seed``)."""
    from engine.model.build import unit_id

    out, unexplained = {}, []
    for k, (_, items) in enumerate(case.units()):
        uid = unit_id(items)
        pv = {}
        for j, hid in enumerate(case.hypotheses):
            rng = np.random.default_rng(seeds(k, j))
            pv[hid] = predictive_p_value(case, hid, items, posteriors[hid].posterior, rng)
        out[uid] = {"family": items[0].family, "items": [it.id for it in items], "p_values": pv}
        checked = [p for p in pv.values() if p is not None]
        if checked and max(checked) < ALPHA:
            unexplained.append(uid)
    return out, unexplained


def numerical_problems(case, posteriors: dict) -> dict[str, list[str]]:  # noqa: ANN001
    """Per hypothesis, where a family's own numerical approximation is not accurate at its posterior draws
    (``Family.numerical_problems``: a damage map's quadrature, say)."""
    from engine.evidence import family_of
    from engine.evidence.base import Family

    out: dict[str, list[str]] = {hid: [] for hid in case.hypotheses}
    for _, items in case.units():
        fam = family_of(items)
        if type(fam).numerical_problems is Family.numerical_problems:
            continue
        for hid in case.hypotheses:
            out[hid] += fam.numerical_problems(items, unit_theta(case, hid, items, posteriors[hid].posterior))
    return out


def _users(case) -> dict[str, int]:  # noqa: ANN001
    """How many units each source reliability and shared parameter enters (by name)."""
    from engine.evidence import family_of, shared_parameters, unit_sources

    shared = shared_parameters(case)
    count = dict.fromkeys([*(f"reliability__{s}" for s in case.sources), *shared], 0)
    for _, items in case.units():
        for s in unit_sources(items):
            count[f"reliability__{s}"] += 1
        marks = {name: object() for name in shared}  # which shared parameters the unit binds, by identity
        fam = family_of(items)
        bound = fam.bind(items, {}, {**{name: object() for name in fam.unit_parameters(items)}, **marks})
        for name, mark in marks.items():
            count[name] += any(v is mark for v in bound.values())
    return count


def unit_log_evidence(case, hid: str, items, posterior, users: dict[str, int] | None = None) -> float:  # noqa: ANN001
    """log p(y_u | H, other units): one unit's evidence under one hypothesis.

    The unit's own parameters are integrated out in closed form (each family's
    ``closed_form``; timing and claims are analytic given their shared parameters). A source
    reliability or shared parameter that no other unit uses is integrated over its prior (what
    the unit alone says); those it shares with other units (source reliabilities, assertion
    rates) are averaged over their posterior draws:
    log mean_d [ r_d p(y_u | H, d) + (1 - r_d) p_bg(y_u | d) ]. With nothing shared the
    contributions add up to the log Bayes factor.
    """
    import zlib

    from scipy.special import logsumexp

    from engine.evidence import combined_reliability, family_of, generic_spec, shared_parameters, unit_sources

    n = posterior.sizes["chain"] * posterior.sizes["draw"]
    users = _users(case) if users is None else users
    rng = np.random.default_rng(zlib.crc32(repr(sorted(it.id for it in items)).encode()))

    def draws(name: str, spec, linear: bool) -> np.ndarray:  # noqa: ANN001
        if name in posterior and users.get(name, 1) > 1:
            return posterior[name].values.reshape(n)
        # this unit's alone: its prior; a parameter entering linearly once is exact at its mean
        return np.full(n, spec.mean()) if linear or name not in posterior else spec.draw(rng, n)

    fam = family_of(items)
    # reliabilities and shared parameters (the claims' assertion rates) enter the unit linearly; a
    # unit's extra parameters (timing's clock errors) need not
    r = combined_reliability(draws(f"reliability__{s}", case.sources[s].reliability, True) for s in unit_sources(items))
    params = {name: draws(name, spec, True) for name, spec in shared_parameters(case).items()}
    params.update({name: draws(name, spec, False) for name, spec in fam.unit_parameters(items).items()})
    lz, bg = fam.unit_log_evidence(items, items[0].params[hid], generic_spec(case, items), params, n)
    with np.errstate(divide="ignore", invalid="ignore"):  # r = 1 and a draw the unit rules out: -inf, not a warning
        mix = np.logaddexp(np.log(r) + lz, np.log1p(-r) + bg)
    return float(logsumexp(mix) - np.log(n))


def contributions(case, posteriors: dict, leader: str, runner_up: str) -> dict:  # noqa: ANN001
    """log10 Bayes factor of each unit, leader vs runner-up (``unit_log_evidence`` of each).

    These are per-unit Bayes factors given the posterior of the shared parameters; they need
    not add up to the overall Bayes factor when units share sources.
    """
    from engine.model.build import unit_id

    units, users = {}, _users(case)
    for _, items in case.units():
        la = unit_log_evidence(case, leader, items, posteriors[leader].posterior, users)
        lb = unit_log_evidence(case, runner_up, items, posteriors[runner_up].posterior, users)
        units[unit_id(items)] = float((la - lb) / np.log(10))
    return {"leader": leader, "runner_up": runner_up, "units": units}


def verdict(per_hypothesis: dict, posterior_mcse: dict, unexplained: list[str]) -> tuple[str, list[str], list[str]]:
    """pass / warn / fail with reasons. Fail means the attribution must not be relied on."""
    fail, warn = [], []
    for hid, d in per_hypothesis.items():
        if d["n_chains"] > 1 and not d["rhat_max"] <= 1.05:
            fail.append(f"{hid}: r-hat {d['rhat_max']:.3f} > 1.05 (chains disagree)")
        if not d["ess_bulk_min"] >= 100:
            fail.append(f"{hid}: bulk ESS {d['ess_bulk_min']:.0f} < 100 (too few effective draws)")
        if d["divergences"] > 0.01 * d["n_chains"] * d["n_draws"]:
            fail.append(f"{hid}: {d['divergences']} divergent transitions (> 1% of draws)")
        if d["estimators"]["agree"] is False:  # a warning (README): the pooled error is widened by half the spread, and
            # the posterior's Monte Carlo error below (which carries it) fails the run where the disagreement matters
            warn.append(f"{hid}: log-evidence estimators disagree by {d['estimators']['spread']:.2f} nat "
                        "(the pooled error is widened by half of it)")
        k = d["estimators"].get("pareto_k")
        if k is not None and not k <= PARETO_K_MAX:  # importance sampling at the Laplace fits (damage maps)
            warn.append(f"{hid}: the independent estimate's importance weights have Pareto k {k:.2f} > {PARETO_K_MAX} "
                        "(heavy-tailed: that estimate is unreliable; bridge sampling's value leads)")
        warn += [f"{hid}: {p}" for p in d["problems"]]
        warn += [f"{hid}: {p}" for p in d.get("numerical", [])]  # a family's approximation inaccurate at the posterior
    for hid, e in posterior_mcse.items():
        if e > 0.05:
            fail.append(f"{hid}: Monte Carlo error of the posterior probability is {e:.3f} (> 0.05)")
    warn += [f"none of the hypotheses explains {u} (predictive p < {ALPHA})" for u in unexplained]
    warn = [w for w in warn if w not in fail]
    return ("fail" if fail else "warn" if warn else "pass"), fail, warn
