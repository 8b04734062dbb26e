r"""Exact log evidence where it exists: every source of fixed reliability, every unit closed form.

With fixed reliabilities each unit's parameters are its own, so the evidence factorises:

.. math::
    Z_H = \prod_u \left[ r_u\, p(y_u \mid H) + (1 - r_u)\, p_{bg}(y_u) \right],\qquad
    r_u = 1 - \prod_{s \in u} (1 - r_s),

with :math:`p(y_u \mid H)` and :math:`p_{bg}` from the family's ``unit_log_evidence`` (its
``closed_form`` and ``background`` where the parameters are the unit's own: Poisson-Gamma,
Beta-Binomial, Dirichlet-multinomial, Normal-Normal), shared or extra parameters at their
means. Each family says when that is exact (``exact_problem``): e.g. timing has no free
parameters when its clocks are fixed (``in_window`` enters linearly), and a claim is linear in
its interest class's assertion rate, so it is exact with the rate's mean as long as no other
claim unit shares that rate.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from engine.errors import RunError
from engine.evidence import REGISTRY, combined_reliability, family_of, generic_spec, shared_parameters, unit_sources
from engine.spec.case import Case, ResolvedItem


def has_exact(case: Case) -> str | None:
    """``None`` when the case's exact evidence is computable, else the reason it is not."""
    for s in {it.source for it in case.items}:
        if case.sources[s].reliability.kind != "fixed":
            return f"source {s} has an uncertain reliability ({case.sources[s].reliability.describe()})"
    for fam in REGISTRY.values():
        if problem := fam.exact_problem(case):
            return problem
    return None


def unit_log_evidence(case: Case, hid: str, items: tuple[ResolvedItem, ...]) -> tuple[float, float, float]:
    """(log r_u, log p(y_u | H), log p_bg(y_u)) of one unit; shared parameters at their means
    (exact when ``has_exact``: each enters only this unit's likelihood, and linearly)."""
    r = combined_reliability(case.sources[s].reliability.args[0] for s in unit_sources(items))
    fam = family_of(items)
    params = {name: np.asarray([spec.mean()]) for name, spec in {**shared_parameters(case), **fam.unit_parameters(items)}.items()}
    lh, lb = fam.unit_log_evidence(items, items[0].params[hid], generic_spec(case, items), params, 1)
    return (math.log(r) if r > 0 else -math.inf), float(lh[0]), float(lb[0])


def exact_log_evidence(case: Case, hid: str) -> float:
    """log Z_H, exactly; raises ``RunError`` when the case has no exact answer (``has_exact``)."""
    reason = has_exact(case)
    if reason:
        raise RunError(f"no exact evidence for case {case.id}: {reason}")
    total = 0.0
    for _, items in case.units():
        log_r, lh, lb = unit_log_evidence(case, hid, items)
        if log_r == 0.0:
            total += lh
        else:
            total += float(np.logaddexp(log_r + lh, math.log(-math.expm1(log_r)) + lb))
    return total


def exact_posterior(case: Case) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(hypothesis ids, exact log Z per hypothesis, exact P(H | y))."""
    hids = list(case.hypotheses)
    log_z = np.array([exact_log_evidence(case, h) for h in hids])
    lw = np.log([case.hypotheses[h].prior for h in hids]) + log_z
    return hids, log_z, np.exp(lw - logsumexp(lw))
