r"""Reference posterior by quadrature over the parameters that several units share.

With uncertain (Beta) source reliabilities or an uncertain assertion rate shared by several
claims the evidence no longer factorises over units (``engine.inference.closedform``), but it
does given those shared parameters :math:`\phi` (the reliabilities :math:`r_s` and the
``shared_parameters``):

.. math::
    Z_H = \int \prod_u \left[ r_u(\phi)\, p(y_u \mid H, \phi) + (1 - r_u(\phi))\, p_{bg}(y_u \mid \phi) \right] p(\phi)\, d\phi,
    \qquad r_u = 1 - \prod_{s \in u} (1 - r_s),

with each unit's two densities from its family's ``unit_log_evidence`` at every node (exact
given :math:`\phi` when the case with :math:`\phi` fixed has exact evidence: ``reference_problem``).
Each coordinate of :math:`\phi` has a Beta prior (fixed ones are a point), so the integral is a
tensor-product Gauss-Jacobi rule: the nodes and weights of each Beta density. A unit's term is
linear in every reliability and in a claim's assertion rate, so the integrand is a polynomial of
degree at most :math:`d_j` (the number of units that depend on coordinate :math:`j`: the units a
source reports, the units whose term moves with a shared parameter) in coordinate :math:`j`, and :math:`d_j + 2` nodes integrate it exactly (a rule of
:math:`k` nodes is exact to degree :math:`2k - 1`). Plain numpy and scipy's Jacobi roots.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.special import logsumexp, roots_jacobi

from engine.dists import Dist
from engine.evidence import combined_reliability, family_of, generic_spec, shared_parameters, unit_sources
from engine.spec.case import Case

MAX_NODES = 2_000_000


def beta_rule(a: float, b: float, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes in (0, 1) and weights (summing to 1) of the k-point Gauss rule for the Beta(a, b) density."""
    t, w = roots_jacobi(k, b - 1.0, a - 1.0)  # weight (1 - t)^(b-1) (1 + t)^(a-1) on [-1, 1], x = (1 + t) / 2
    return (1.0 + t) / 2.0, w / w.sum()


def _fixed(case: Case) -> Case:
    """``case`` with every source reliability and assertion rate at its mean."""
    fix = lambda d: Dist("fixed", (float(d.mean()),))  # noqa: E731
    sources = {s: dataclasses.replace(src, reliability=fix(src.reliability)) for s, src in case.sources.items()}
    return dataclasses.replace(case, sources=sources, assertion_rates={c: fix(d) for c, d in case.assertion_rates.items()})


def _coordinates(case: Case) -> dict[str, Dist]:
    """The uncertain shared parameters: reliability__<source> and the families' shared parameters."""
    used = sorted({it.source for it in case.items})
    coords = {f"reliability__{s}": case.sources[s].reliability for s in used}
    coords.update(shared_parameters(case))
    return {name: d for name, d in coords.items() if d.kind != "fixed"}


def reference_problem(case: Case) -> str | None:
    """Why the quadrature reference is not exact for ``case``, or None."""
    from engine.inference.closedform import has_exact

    for name, d in _coordinates(case).items():
        if d.kind != "beta":
            return f"{name} has a {d.kind} prior; the quadrature takes Beta or fixed shared parameters"
    if reason := has_exact(_fixed(case)):
        return f"not exact even with every shared parameter fixed: {reason}"
    return None


def _unit_terms(case: Case, hid: str, values: dict[str, np.ndarray], n: int, units: list | None = None) -> list[np.ndarray]:
    """Each unit's log[r_u p(y_u | H) + (1 - r_u) p_bg(y_u)] at ``n`` values of the shared parameters."""
    def value(name: str, spec: Dist) -> np.ndarray:
        return values[name] if name in values else np.full(n, float(spec.mean()))

    shared = {name: value(name, d) for name, d in shared_parameters(case).items()}
    out = []
    for _, items in (case.units() if units is None else units):
        fam = family_of(items)
        r = combined_reliability((value(f"reliability__{s}", case.sources[s].reliability) for s in unit_sources(items)),
                                 one=np.ones(n))
        params = {**shared, **{name: value(name, d) for name, d in fam.unit_parameters(items).items()}}
        lh, lb = fam.unit_log_evidence(items, items[0].params[hid], generic_spec(case, items), params, n)
        with np.errstate(divide="ignore"):
            out.append(np.logaddexp(np.log(r) + lh, np.log1p(-r) + lb))
    return out


def _degrees(case: Case, coords: dict[str, Dist]) -> dict[str, int]:
    """Per coordinate, how many units' terms depend on it: a reliability, the units its source
    reports; a shared parameter, the units of the families sharing it whose term changes with it
    under some hypothesis (probed at 0.3 and 0.7)."""
    deg = {}
    for name in coords:
        if name.startswith("reliability__"):
            deg[name] = sum(name.removeprefix("reliability__") in unit_sources(items) for _, items in case.units())
            continue
        units = [u for u in case.units() if name in family_of(u[1]).shared_parameters(case)]
        deg[name] = max(sum(not np.isclose(t[0], t[1], rtol=0.0, atol=1e-13)
                            for t in _unit_terms(case, hid, {name: np.array([0.3, 0.7])}, 2, units)) for hid in case.hypotheses)
    return deg


def reference_log_evidence(case: Case, extra_nodes: int = 0) -> dict[str, float]:
    """log Z per hypothesis by the quadrature (``extra_nodes`` more per coordinate than exactness
    needs); raises ``ValueError`` when ``reference_problem``."""
    if reason := reference_problem(case):
        raise ValueError(f"no quadrature reference for case {case.id}: {reason}")
    coords = _coordinates(case)
    deg = _degrees(case, coords)
    rules = [beta_rule(*d.args, deg[name] + 2 + extra_nodes) for name, d in coords.items()]
    if math.prod(len(x) for x, _ in rules) > MAX_NODES:
        raise ValueError(f"case {case.id}: {len(rules)} shared parameters need more than {MAX_NODES} quadrature nodes")
    grids = np.meshgrid(*[x for x, _ in rules], indexing="ij") if rules else []
    weights = np.meshgrid(*[w for _, w in rules], indexing="ij") if rules else []
    values = {name: g.ravel() for name, g in zip(coords, grids, strict=True)}
    log_w = np.sum([np.log(w.ravel()) for w in weights], axis=0) if rules else np.zeros(1)
    n = log_w.size
    return {hid: float(logsumexp(log_w + np.sum(_unit_terms(case, hid, values, n), axis=0))) for hid in case.hypotheses}


def reference_posterior(case: Case) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(hypothesis ids, log Z per hypothesis, P(H | y)) by the quadrature."""
    log_z = reference_log_evidence(case)
    hids = list(case.hypotheses)
    lz = np.array([log_z[h] for h in hids])
    lw = np.log([case.hypotheses[h].prior for h in hids]) + lz
    return hids, lz, np.exp(lw - logsumexp(lw))
