r"""Simulated incidents: the prior predictive of a case template, with the template's design kept.

A *template* is an ordinary case file whose observed values are only a design: which units
exist, holes assessed for bending, fragment types and how many were recovered, timing
window, period and clocks. ``simulate_incident`` draws

1. the true hypothesis :math:`H \sim \pi` (the case's normalised priors);
2. every source's reliability :math:`r_s` (its prior; a fixed number stays fixed), hence each
   unit's :math:`r_u = 1 - \prod_s (1 - r_s)`;
3. per unit, whether the report is faithful (probability :math:`r_u`);
4. a faithful unit's parameters :math:`\theta_u` from H's resolved specs and its data from the
   family's mechanism; an unfaithful unit's data from the background (the ``generic``
   mechanism: its parameters, then data; timing's background is a time uniform on the period,
   claims and elicited items have none to simulate and are refused).

That is exactly the generative model the engine's per-hypothesis models assume
(``engine.model.build``), so a calibrated engine states probabilities that match frequencies.
The simulated case is the template with new ``observed`` values (``model_copy``, validated
again by the family's pydantic model) and the same design, so ``observation_data`` keeps its
shapes and a compiled model is reused through ``pm.set_data``.

Design rules (``check_design``): perforations give ``inward`` (the number of holes assessed,
``assessed``, becomes ``min(assessed, holes)`` for each simulated hole count) and no
``sizes_mm`` (their count could exceed a simulated hole count); fragments keep their total
count (the multinomial is conditional on it); timing reports keep window, period and clocks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from engine.dists import Dist
from engine.errors import CaseError, CaseErrors
from engine.evidence import REGISTRY, combined_reliability, family_of, generic_spec, unit_sources
from engine.spec.case import Case, ResolvedItem

SIMULABLE = tuple(name for name, fam in REGISTRY.items() if fam.simulable)


@dataclasses.dataclass(frozen=True)
class Incident:
    """One simulated incident: the case to attribute and the truth behind it."""

    index: int
    case: Case
    hypothesis: str
    faithful: dict[str, bool]  # unit id -> report followed the hypothesis's mechanism
    theta: dict[str, dict[str, Any]]  # unit id -> the true hypothesis's parameter draws (constrained)


def check_design(case: Case) -> None:
    """Refuse templates whose incidents cannot be simulated with a fixed design."""
    problems = []
    for i, it in enumerate(case.items):
        where = f"evidence[{i}] ({it.id})"
        fam = REGISTRY[it.family]
        if not fam.simulable:
            problems.append(CaseError(case.path, where, f"family {it.family} cannot be simulated; templates use {', '.join(SIMULABLE)}"))
            continue
        problems += [CaseError(case.path, f"{where}.observed.{fld}", msg) for fld, msg in fam.design_problems(it.observed)]
    if problems:
        raise CaseErrors(problems)


def draw(spec: Dist, n: int, rng: np.random.Generator, labels: tuple[str, ...] = ()) -> np.ndarray:
    """``n`` draws of a parameter spec (leading axis ``n``; dirichlet rows over ``labels``)."""
    if spec.kind == "fixed":
        return np.full(n, float(spec.args[0]))
    if spec.kind == "beta":
        return rng.beta(*spec.args, size=n)
    if spec.kind == "gamma":
        return rng.gamma(spec.args[0], 1.0 / spec.args[1], size=n)
    if spec.kind == "normal":
        return rng.normal(*spec.args, size=n)
    if spec.kind == "halfnormal":
        return np.abs(rng.normal(0.0, spec.args[0], size=n))
    if spec.kind == "dirichlet":
        return rng.dirichlet(np.asarray(spec.alpha_for(labels), dtype=float), size=n)
    raise ValueError(f"cannot draw from {spec.describe()}")


def _unit_theta(items: tuple[ResolvedItem, ...], specs: dict[str, Dist], rng: np.random.Generator) -> dict[str, Any]:
    fam = family_of(items)
    theta: dict[str, Any] = {name: draw(spec, 1, rng, fam.labels(items)) for name, spec in specs.items()}
    return fam.bind(items, theta, {name: draw(spec, 1, rng) for name, spec in fam.unit_parameters(items).items()})


def _simulate_unit(items: tuple[ResolvedItem, ...], theta: dict[str, Any], rng: np.random.Generator) -> list[Any]:
    """New observed values, one per item of the unit (validated by the family's model)."""
    new = family_of(items).simulate_observed(items, theta, rng)
    return [_revalidate(it.observed, upd) for it, upd in zip(items, new, strict=True)]


def _revalidate(obs: Any, update: dict[str, Any]) -> Any:
    """``obs`` with ``update`` applied, checked again by its pydantic model (e.g. inward <= assessed <= holes)."""
    fields = {name: getattr(obs, name) for name in type(obs).model_fields}
    return type(obs).model_validate({**fields, **update})


def unit_reliability(case: Case, items: tuple[ResolvedItem, ...], reliability: dict[str, float]) -> float:
    """r_u = 1 - prod over the unit's distinct sources of (1 - r_s)."""
    return combined_reliability(reliability[s] for s in unit_sources(items))


def simulate_incident(template: Case, index: int, rng: np.random.Generator) -> Incident:
    """Draw H, reliabilities, parameters and data for every unit; return the simulated case."""
    from engine.model.build import unit_id

    hids = list(template.hypotheses)
    prior = np.array([template.hypotheses[h].prior for h in hids])
    hid = hids[int(rng.choice(len(hids), p=prior / prior.sum()))]
    used = sorted({it.source for it in template.items})
    reliability = {s: float(draw(template.sources[s].reliability, 1, rng)[0]) for s in used}
    replaced: dict[str, Any] = {}
    faithful: dict[str, bool] = {}
    truth: dict[str, dict[str, Any]] = {}
    for _, items in template.units():
        uid = unit_id(items)
        r = unit_reliability(template, items, reliability)
        theta = _unit_theta(items, items[0].params[hid], rng)
        faithful[uid] = bool(rng.random() < r)
        source = theta if faithful[uid] else _unit_theta(items, generic_spec(template, items), rng)
        for it, obs in zip(items, _simulate_unit(items, source, rng), strict=True):
            replaced[it.id] = obs
        truth[uid] = {k: (v if isinstance(v, list) else np.asarray(v)[0]) for k, v in theta.items()}  # per-report lists stay lists
    items = tuple(dataclasses.replace(it, observed=replaced[it.id]) for it in template.items)
    case = dataclasses.replace(template, items=items)
    return Incident(index, case, hid, faithful, truth)
