"""Build one PyMC model per hypothesis; no sampling, no IO.

Every hypothesis of a case gets a model of the same shape: the evidence units (items and
dependency groups) are fixed by the case, and what a hypothesis changes is the
hyper-parameters of the family parameters' priors, which are ``pm.Data`` containers named
``hp__<unit>__<param>``. A worker can therefore compile one model per *structure*
(``structure_key``) and switch hypotheses with ``pm.set_data(hypothesis_data(case, hid))``.

Each unit contributes ``pm.Potential("ll__<unit>", use * log(r p(y|H, theta) + (1 - r) p_bg(y)))``
where ``use`` is ``pm.Data("use__<unit>")`` (1; 0 leaves the unit out for ablation) and
``r = 1 - prod_s (1 - r_s)`` over the distinct sources reporting the unit: one report
counts once, and several independent reports of one fact raise the chance that at least one
carries it faithfully without multiplying its weight. Free random variables are the prior,
potentials the likelihood (SMC relies on that split).

**Collapsed units.** A unit of a ``collapsible`` family whose parameters are all its own and
whose ``closed_form`` exists under the hypothesis has no latent parameter in the model: its
p(y | H) is integrated exactly and enters as the number ``pm.Data("lh__<unit>")``, so its term
is ``log(r p(y | H) + (1 - r) p_bg(y))``. This removes the two far-apart modes a reliability
mixture gives a unit's own parameters (the mechanism explains the report, or the background
does), which samplers and evidence estimators cannot be trusted to find both of.
``own_draws`` restores the unit's parameters in the posterior, drawn from their exact
conditional. A model left with no free parameter at all is evaluated exactly, never sampled
(``engine.run.compiled``).
"""

from __future__ import annotations

import os

import numpy as np
import pymc as pm
import pytensor.tensor as pt

from engine.dists import Dist
from engine.evidence import combined_reliability, family_of, generic_spec, shared_parameters, unit_sources
from engine.model import rewrites
from engine.spec.case import Case, ResolvedItem

rewrites.register()  # every function compiled from these models keeps its scalar arithmetic fused

_RV = {
    "beta": lambda name, hp: pm.Beta(name, alpha=hp[0], beta=hp[1]),
    "gamma": lambda name, hp: pm.Gamma(name, alpha=hp[0], beta=hp[1]),
    "normal": lambda name, hp: pm.Normal(name, mu=hp[0], sigma=hp[1]),
    "halfnormal": lambda name, hp: pm.HalfNormal(name, sigma=hp[0]),
    "dirichlet": lambda name, hp: pm.Dirichlet(name, a=hp),
}


def unit_id(items: tuple[ResolvedItem, ...]) -> str:
    return items[0].group or items[0].id


def _hyper_value(items: tuple[ResolvedItem, ...], spec: Dist, sampled: bool, own: bool) -> tuple[str, np.ndarray]:
    """(structural kind, hyper-parameter array) of one family parameter under one hypothesis;
    ``own``: the unit is collapsed, so a sampled parameter is drawn afterwards (kind ``own:<kind>``)."""
    if spec.kind == "fixed" or not sampled:
        return "const", np.asarray(spec.mean(), dtype=float)
    if spec.kind == "dirichlet":
        kind, value = "dirichlet", np.asarray(spec.alpha_for(family_of(items).labels(items)), dtype=float)
    else:
        kind, value = spec.kind, np.asarray(spec.args, dtype=float)
    return (f"own:{kind}" if own else kind), value


# Set (to anything) to sample conjugate units' parameters rather than integrate them: the estimators'
# own tests need models with latent parameters (tests/calibration). Read per call, so worker processes
# started with it set behave alike.
SAMPLE_CONJUGATE = "INCIDENT_SAMPLE_CONJUGATE"


def collapsed_log_evidence(items: tuple[ResolvedItem, ...], hid: str) -> float | None:
    """log p(y | H) of a unit that the model integrates exactly (its family ``collapsible``, its
    parameters all its own, a closed form under ``hid``), else None."""
    fam = family_of(items)
    if not fam.collapsible or fam.unit_parameters(items) or os.environ.get(SAMPLE_CONJUGATE):
        return None
    value = fam.closed_form(items, items[0].params[hid])
    return None if value is None else float(value)


_HYPER: dict[tuple, tuple[Case, dict]] = {}  # (id(case), hid, sampling conjugate?) -> (case, hyper): a sweep asks ~900 times
_HYPER_KEEP = 64


def hyper(case: Case, hid: str) -> dict[str, tuple[str, np.ndarray]]:
    """Every hypothesis-dependent hyper-parameter: name -> (kind, value); a collapsed unit's
    exact log p(y | H) is ``lh__<unit>`` (kind ``collapsed``). Remembered per case object
    (cases are immutable) and hypothesis."""
    key = (id(case), hid, os.environ.get(SAMPLE_CONJUGATE))
    hit = _HYPER.get(key)
    if hit is not None and hit[0] is case:
        return dict(hit[1])
    out = _hyper(case, hid)
    if len(_HYPER) >= _HYPER_KEEP:
        _HYPER.pop(next(iter(_HYPER)))
    _HYPER[key] = (case, out)
    return dict(out)


def _hyper(case: Case, hid: str) -> dict[str, tuple[str, np.ndarray]]:
    out = {}
    for _, items in case.units():
        fam, uid = family_of(items), unit_id(items)
        lh = collapsed_log_evidence(items, hid)
        for pname, spec in items[0].params[hid].items():
            out[f"hp__{uid}__{pname}"] = _hyper_value(items, spec, pname in fam.sampled, lh is not None)
        if lh is not None:
            out[f"lh__{uid}"] = ("collapsed", np.asarray(lh if np.isfinite(lh) else -1e300, dtype=float))
    return out


def structure_key(case: Case, hid: str) -> tuple:
    """Hypotheses with equal keys share one compiled model (only pm.Data values differ)."""
    return (case.digest, tuple((k, kind) for k, (kind, _) in sorted(hyper(case, hid).items())))


def _current_spec(items: tuple[ResolvedItem, ...], hid: str, hp: dict, data: dict[str, np.ndarray]) -> tuple[dict[str, Dist], bool]:
    """A unit's parameter specs under ``hid`` with the hyper-parameters ``data`` holds (a variant may
    change them), and whether any changed."""
    uid, fam = unit_id(items), family_of(items)
    spec, changed = dict(items[0].params[hid]), False
    for pname in spec:
        kind, value = hp[f"hp__{uid}__{pname}"]
        new = np.asarray(data.get(f"hp__{uid}__{pname}", value), dtype=float)
        if new.shape == np.shape(value) and np.array_equal(new, value):
            continue
        changed, kind = True, kind.removeprefix("own:")
        if kind == "const":
            spec[pname] = Dist("fixed", (float(new),))
        elif kind == "dirichlet":
            spec[pname] = Dist("dirichlet", tuple(float(x) for x in new), fam.labels(items))
        else:
            spec[pname] = Dist(kind, tuple(float(x) for x in new))
    return spec, changed


def collapsed_data(case: Case, hid: str, data: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``lh__<unit>`` of the collapsed units whose hyper-parameters ``data`` changes (a sensitivity
    variant may move a prior): their exact log p(y | H) under the changed prior."""
    hp, out = hyper(case, hid), {}
    for _, items in case.units():
        uid = unit_id(items)
        if f"lh__{uid}" in hp:
            spec, changed = _current_spec(items, hid, hp, data)
            if changed:
                out[f"lh__{uid}"] = np.asarray(family_of(items).closed_form(items, spec), dtype=float)
    return out


def hypothesis_data(case: Case, hid: str) -> dict[str, np.ndarray]:
    """Values for ``pm.set_data`` that turn a model built for one hypothesis into ``hid``'s."""
    return {k: v for k, (_, v) in hyper(case, hid).items()}


def observation_data(case: Case) -> dict[str, np.ndarray]:
    """The observed numbers of every unit (``obs__<unit>__<name>``) and the log background
    density of units whose background is a number (``bg__<unit>``), for ``pm.set_data``:
    a simulated incident with the same design reuses the compiled model."""
    out: dict[str, np.ndarray] = {}
    for _, items in case.units():
        uid, fam = unit_id(items), family_of(items)
        out.update({f"obs__{uid}__{k}": v for k, v in fam.data(items).items()})
        if not fam.background_is_tensor:
            out[f"bg__{uid}"] = np.asarray(fam.background(items, generic_spec(case, items), {}), dtype=float)
    return out


TINY = 1e-300  # e^-690.8: a mixture component this far below the other is floored, not lost


def log_mix(w, log_a, log_b):  # noqa: ANN001, ANN201
    """log(w e^a + (1 - w) e^b), stable, with finite gradients when w is 0 or 1.

    Each component's ratio to the larger one is floored at ``TINY``: with w = 1 (a source of
    reliability 1) and a hypothesis that explains a unit more than 690 nat worse than the
    background, the mixture would otherwise underflow to -inf and the sampler could not start
    (seen with damage maps). Where it applies, the unit's log likelihood is over-stated, yet
    still at least 690 nat below the background's: a hypothesis there has no posterior weight.
    Elsewhere the value and gradient are unchanged to the last bit.
    """
    top = pt.maximum(log_a, log_b)
    return top + pt.log(w * pt.maximum(pt.exp(log_a - top), TINY) + (1 - w) * pt.maximum(pt.exp(log_b - top), TINY))


def _param(name: str, spec: Dist):  # noqa: ANN202
    """A hypothesis-independent parameter: a random variable or a constant.

    Its hyper-parameters are ``pm.Data`` named ``hp__<name>`` so that sensitivity variants
    (e.g. a source-reliability sweep) can change them without recompiling.
    """
    if spec.kind == "fixed":
        return pm.Data(f"hp__{name}", np.asarray(spec.args[0], dtype=float))
    return _RV[spec.kind](name, pm.Data(f"hp__{name}", np.asarray(spec.args, dtype=float)))


def build_model(case: Case, hid: str) -> pm.Model:
    """The PyMC model of hypothesis ``hid``: priors of its parameters, one potential per unit."""
    hp = hyper(case, hid)
    obs = observation_data(case)
    with pm.Model(coords={}) as model:
        used = {it.source for it in case.items}
        reliability = {s: _param(f"reliability__{s}", case.sources[s].reliability) for s in sorted(used)}
        shared = {name: _param(name, spec) for name, spec in shared_parameters(case).items()}
        for _, items in case.units():
            uid, fam = unit_id(items), family_of(items)
            theta, later = {}, []
            for pname in items[0].params[hid]:
                kind, value = hp[f"hp__{uid}__{pname}"]
                data = pm.Data(f"hp__{uid}__{pname}", value)
                if kind == "normal" and pname in fam.reparametrised:
                    later.append((pname, data))
                    continue
                theta[pname] = data if kind == "const" or kind.startswith("own:") else _RV[kind](f"{uid}__{pname}", data)
            for pname, data in later:  # sampled in the family's own coordinate, given the unit's other parameters
                theta[pname] = fam.sample_as(items, f"{uid}__{pname}", pname, data, theta)
            collapsed = f"lh__{uid}" in hp
            if data := fam.data(items):  # held even when collapsed: a simulated incident sets every unit's
                theta["data"] = {k: pm.Data(f"obs__{uid}__{k}", obs[f"obs__{uid}__{k}"]) for k in data}
            extra = {name: _param(name, spec) for name, spec in fam.unit_parameters(items).items()}
            theta = fam.bind(items, theta, {**shared, **extra})
            ll_h = pm.Data(f"lh__{uid}", hp[f"lh__{uid}"][1]) if collapsed else fam.loglik(items, theta)
            ll_bg = (fam.background(items, generic_spec(case, items), theta) if fam.background_is_tensor
                     else pm.Data(f"bg__{uid}", obs[f"bg__{uid}"]))
            sources = unit_sources(items)
            # inc__<unit>__<source> (1; 0 drops that source's reports of the unit, for ablation)
            inc = {s: pm.Data(f"inc__{uid}__{s}", np.asarray(1.0)) for s in sources}
            r = combined_reliability((inc[s] * reliability[s] for s in sources), one=pt.constant(1.0))
            use = pm.Data(f"use__{uid}", np.asarray(1.0))  # 0 drops the unit (evidence ablation) without recompiling
            pm.Potential(f"ll__{uid}", use * log_mix(r, ll_h, ll_bg))
    return model


def pointwise_log_likelihood(model: pm.Model, posterior) -> dict[str, np.ndarray]:  # noqa: ANN001
    """Each unit's log-likelihood term at every draw: {unit id: array (chain, draw)}.

    ``posterior`` must hold the value (transformed) variables (``include_transformed``).
    """
    pots = model.potentials
    fn = model.compile_fn(model.replace_rvs_by_values(pots), inputs=model.value_vars, on_unused_input="ignore")
    n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
    values = {v.name: posterior[v.name].values for v in model.value_vars}
    out = np.empty((len(pots), n_chain, n_draw))
    for c in range(n_chain):
        for d in range(n_draw):
            out[:, c, d] = fn({k: v[c, d] for k, v in values.items()})
    return {p.name.removeprefix("ll__"): out[i] for i, p in enumerate(pots)}


def own_draws(case: Case, hid: str, reliability_draws: dict[str, np.ndarray], data: dict[str, np.ndarray],
              rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    """Draws of the collapsed units' own parameters (``<unit>__<param>`` -> array, leading axis n),
    one per posterior draw of the source reliabilities (``reliability_draws``: name -> (n,), for the
    sampled ones; ``data``: the model's current ``pm.Data`` values).

    Given the reliabilities the unit's parameters are independent of everything else, and their
    conditional posterior is exact: with probability w = r p(y | H) / (r p(y | H) + (1 - r) p_bg(y))
    the report carried the fact and they follow their conjugate posterior, else their prior
    (``Family.own_posterior``). A unit left out (``use`` is not 1) keeps its prior.
    """
    hp = hyper(case, hid)
    out: dict[str, np.ndarray] = {}
    for _, items in case.units():
        uid = unit_id(items)
        if f"lh__{uid}" not in hp:
            continue
        fam = family_of(items)

        def rel(s: str) -> np.ndarray:
            name = f"reliability__{s}"
            return reliability_draws[name] if name in reliability_draws else np.full(n, float(data[f"hp__{name}"]))

        r = combined_reliability((float(data[f"inc__{uid}__{s}"]) * rel(s) for s in unit_sources(items)), one=np.ones(n))
        lh, lb = float(data[f"lh__{uid}"]), float(data[f"bg__{uid}"])
        with np.errstate(divide="ignore"):
            a, b = np.log(r) + lh, np.log1p(-r) + lb
        w = np.exp(a - np.logaddexp(a, b))
        faithful = (rng.random(n) < w) if float(data[f"use__{uid}"]) == 1.0 else np.zeros(n, dtype=bool)
        draws = fam.own_posterior(items, _current_spec(items, hid, hp, data)[0], rng, faithful)
        out.update({f"{uid}__{name}": np.asarray(v, dtype=float) for name, v in draws.items()})
    return out
