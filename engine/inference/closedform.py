r"""Exact log evidence where it exists: every source of fixed reliability, every unit closed form.

With fixed reliabilities each unit's parameters are its own, so the evidence factorises:

.. math::
    Z_H = \prod_u \left[ r_u\, p(y_u \mid H) + (1 - r_u)\, p_{bg}(y_u) \right],\qquad
    r_u = 1 - \prod_{s \in u} (1 - r_s),

with :math:`p(y_u \mid H)` the family's ``closed_form`` (parameters integrated out:
Poisson-Gamma, Beta-Binomial, Dirichlet-multinomial, Normal-Normal) and :math:`p_{bg}` its
``background``. Timing has no free parameters (``in_window`` enters linearly, clocks are
fixed) and is evaluated with its numpy twin. A claim's likelihood is linear in its interest
class's assertion rate, so it is exact with the rate's mean as long as no other claim unit
shares that rate; elicited items are exact with their elicited means.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from engine.errors import RunError
from engine.spec.case import Case, ResolvedItem


def has_exact(case: Case) -> str | None:
    """``None`` when the case's exact evidence is computable, else the reason it is not."""
    for s in {it.source for it in case.items}:
        if case.sources[s].reliability.kind != "fixed":
            return f"source {s} has an uncertain reliability ({case.sources[s].reliability.describe()})"
    claim_units: dict[str, int] = {}
    for _, items in case.units():
        if items[0].family == "claim":
            claim_units[items[0].observed.interest] = claim_units.get(items[0].observed.interest, 0) + 1
    for it in case.items:
        if it.family == "claim" and case.assertion_rates[it.observed.interest].kind != "fixed" and claim_units[it.observed.interest] > 1:
            return f"claims of interest {it.observed.interest!r} share an uncertain assertion rate"
        if it.family == "timing" and it.observed.clock_sd_min.kind != "fixed":
            return f"timing item {it.id} has an uncertain clock error"
        for hid, spec in it.params.items():
            mean = spec.get("log_size_mean")
            if it.family == "perforations" and mean is not None and mean.kind not in ("normal", "fixed"):
                return f"{it.id} under {hid}: log_size_mean {mean.describe()} is not conjugate"
    return None


def _timing_parts(items: tuple[ResolvedItem, ...], in_window: float) -> tuple[float, float]:
    """(log p(t | H), log p(t | background)) of a timing unit."""
    from engine.evidence.timing import _np_log_uniform_conv, _sds

    o = items[0].observed
    theta = {"clock_sd": [np.asarray([it.observed.clock_sd_min.args[0]]) for it in items]}
    s = _sds(items, theta)
    t = np.asarray([[it.observed.time for it in items]], dtype=float)
    lw, lp = _np_log_uniform_conv(t, s, *o.window)[0], _np_log_uniform_conv(t, s, *o.period)[0]
    w = float(in_window)
    if w <= 0:
        return float(lp), float(lp)
    if w >= 1:
        return float(lw), float(lp)
    return float(np.logaddexp(math.log(w) + lw, math.log1p(-w) + lp)), float(lp)


def unit_log_evidence(case: Case, hid: str, items: tuple[ResolvedItem, ...]) -> tuple[float, float, float]:
    """(log r_u, log p(y_u | H), log p_bg(y_u)) of one unit."""
    from engine.evidence import FAMILY_MODULES
    from engine.model.build import _generic

    fam = items[0].family
    r = 1.0 - math.prod(1.0 - case.sources[s].reliability.args[0] for s in sorted({it.source for it in items}))
    spec = items[0].params[hid]
    if fam == "timing":
        lh, lb = _timing_parts(items, spec["in_window"].mean())
    elif fam == "claim":
        lh = FAMILY_MODULES[fam].closed_form(items, spec)
        lb = math.log(case.assertion_rates[items[0].observed.interest].mean())  # one claim per rate: linear in it
    else:
        mod = FAMILY_MODULES[fam]
        lh = mod.closed_form(items, spec)
        lb = mod.background(items, _generic(case, items), {})
    return (math.log(r) if r > 0 else -math.inf), float(lh), float(lb)


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
