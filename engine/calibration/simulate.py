r"""Simulated incidents: the prior predictive of a case template, with the template's design kept.

A *template* is an ordinary case file whose observed values are only a design: which units
exist, holes assessed for bending, fragment types and how many were recovered, timing
window, period and clocks, which statements were asserted. ``simulate_incident`` draws

1. the true hypothesis :math:`H \sim \pi` (the case's normalised priors);
2. every source's reliability :math:`r_s` (its prior; a fixed number stays fixed), hence each
   unit's :math:`r_u = 1 - \prod_s (1 - r_s)`, and once per incident every parameter that
   several units share (``shared_parameters``: claims' assertion rates per interest class);
3. per unit, whether the report is faithful (probability :math:`r_u`);
4. a faithful unit's parameters :math:`\theta_u` from H's resolved specs and its data from the
   family's mechanism (``simulate_observed``); an unfaithful unit's data from the background
   (``simulate_background`` of the ``generic`` parameters bound with the shared ones: e.g.
   timing's time uniform on the period, a claim asserted with its class's assertion rate).

Families whose observation is an *event* (a claim was asserted, an elicited fact was seen) can
only state that it happened; when a draw says it did not, ``simulate_observed`` returns None and
the whole incident is drawn again. Incidents therefore come from the prior predictive
conditioned on the template's events, and since that event is part of the data the engine
conditions on, P(H | y) is still the right forecast of H on them (``attempts`` counts the draws).

That is exactly the generative model the engine's per-hypothesis models assume
(``engine.model.build``), so a calibrated engine states probabilities that match frequencies.
The simulated case is the template with new ``observed`` values (``model_copy``, validated
again by the family's pydantic model) and the same design, so ``observation_data`` keeps its
shapes and a compiled model is reused through ``pm.set_data``.

Design rules (``check_design``): every family must be ``simulable``; perforations give ``inward`` (the number of holes assessed,
``assessed``, becomes ``min(assessed, holes)`` for each simulated hole count) and no
``sizes_mm`` (their count could exceed a simulated hole count); fragments keep their total
count (the multinomial is conditional on it); timing reports keep window, period and clocks.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from engine.dists import Dist
from engine.errors import CaseError, CaseErrors, RunError
from engine.evidence import REGISTRY, combined_reliability, family_of, generic_spec, shared_parameters, unit_sources
from engine.spec.case import Case, ResolvedItem

SIMULABLE = tuple(name for name, fam in REGISTRY.items() if fam.simulable)
MAX_ATTEMPTS = 100_000  # draws of one incident before a template's events are called too rare


@dataclasses.dataclass(frozen=True)
class Incident:
    """One simulated incident: the case to attribute and the truth behind it."""

    index: int
    case: Case
    hypothesis: str
    faithful: dict[str, bool]  # unit id -> report followed the hypothesis's mechanism
    theta: dict[str, dict[str, Any]]  # unit id -> the true hypothesis's parameter draws (constrained)
    shared: dict[str, float] = dataclasses.field(default_factory=dict)  # reliability__<s>, shared parameters -> draw
    attempts: int = 1  # incidents drawn until the template's events all happened


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


def _unit_theta(items: tuple[ResolvedItem, ...], specs: dict[str, Dist], shared: dict[str, np.ndarray],
                rng: np.random.Generator) -> dict[str, Any]:
    fam = family_of(items)
    theta: dict[str, Any] = {name: draw(spec, 1, rng, fam.labels(items)) for name, spec in specs.items()}
    return fam.bind(items, theta, {**shared, **{name: draw(spec, 1, rng) for name, spec in fam.unit_parameters(items).items()}})


def _revalidate(obs: Any, update: dict[str, Any]) -> Any:
    """``obs`` with ``update`` applied, checked again by its pydantic model (e.g. inward <= assessed <= holes)."""
    fields = {name: getattr(obs, name) for name in type(obs).model_fields}
    return type(obs).model_validate({**fields, **update})


def unit_reliability(case: Case, items: tuple[ResolvedItem, ...], reliability: dict[str, float]) -> float:
    """r_u = 1 - prod over the unit's distinct sources of (1 - r_s)."""
    return combined_reliability(reliability[s] for s in unit_sources(items))


def simulate_incident(template: Case, index: int, rng: np.random.Generator) -> Incident:
    """Draw H, reliabilities, shared parameters, faithfulness and data for every unit, again until
    every event of the template happened; return the simulated case."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        inc = _draw_incident(template, index, rng, attempt)
        if inc is not None:
            return inc
    raise RunError(f"template {template.id}: in {MAX_ATTEMPTS} simulated incidents its claims and elicited facts never all "
                   "happened together; use fewer or likelier ones")


def _draw_incident(template: Case, index: int, rng: np.random.Generator, attempt: int) -> Incident | None:
    from engine.model.build import unit_id

    hids = list(template.hypotheses)
    prior = np.array([template.hypotheses[h].prior for h in hids])
    hid = hids[int(rng.choice(len(hids), p=prior / prior.sum()))]
    used = sorted({it.source for it in template.items})
    reliability = {s: float(draw(template.sources[s].reliability, 1, rng)[0]) for s in used}
    shared = {name: draw(spec, 1, rng) for name, spec in shared_parameters(template).items()}
    replaced: dict[str, Any] = {}
    faithful: dict[str, bool] = {}
    truth: dict[str, dict[str, Any]] = {}
    for _, items in template.units():
        uid, fam = unit_id(items), family_of(items)
        r = unit_reliability(template, items, reliability)
        theta = _unit_theta(items, items[0].params[hid], shared, rng)
        faithful[uid] = bool(rng.random() < r)
        if faithful[uid]:
            new = fam.simulate_observed(items, theta, rng)
        else:
            new = fam.simulate_background(items, _unit_theta(items, generic_spec(template, items), shared, rng), rng)
        if new is None:  # an event of the design did not happen: this draw is not an incident of the template
            return None
        for it, upd in zip(items, new, strict=True):
            replaced[it.id] = _revalidate(it.observed, upd)
        truth[uid] = {k: (v if isinstance(v, list) else np.asarray(v)[0]) for k, v in theta.items()}  # per-report lists stay lists
    # an item that restates another is in no unit: it keeps its observation (it has no term of its own)
    items = tuple(dataclasses.replace(it, observed=replaced.get(it.id, it.observed)) for it in template.items)
    case = dataclasses.replace(template, items=items)
    drawn = {**{f"reliability__{s}": v for s, v in reliability.items()}, **{k: float(v[0]) for k, v in shared.items()}}
    return Incident(index, case, hid, faithful, truth, drawn, attempt)
