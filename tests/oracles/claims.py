r"""Independent oracle for claims (with elicited items, which share sources with them): the probability
that every statement of a case is asserted, from the generative story alone. It reads the case YAML
and the priors library itself (yaml, numpy, scipy); it does not import the engine.

The story (re-derived from the claim family's description):

* Under hypothesis H the statement of claim u is true with probability :math:`h_u(H)`, a number or
  a Beta(a, b) draw; the draw only decides whether the statement is true, so by the tower rule
  it is true with probability :math:`\bar h_u(H)` (the number, or a / (a + b)).
* Source s carries the truth faithfully with probability :math:`r_s`, one value for all its
  reports (a number, or a Beta draw shared by them).
* Several reports of one statement (a dependency group) are faithful when at least one of them
  is, independently: :math:`\rho_u = 1 - \prod_{s \in u} (1 - r_s)`.
* A faithful report asserts the statement exactly when it is true. An unfaithful one asserts it
  with the assertion rate :math:`b_c` of its interest class c (``serves``, ``neutral``,
  ``against``): one value per class for all claims of that class (a number or a Beta draw, from
  the priors library's ``assertion_rate``).
* An elicited item is seen with probability :math:`\bar p(H)` under H, and with the background
  probability (the average of the hypotheses' :math:`\bar p`) when its report is unfaithful
  (``tests/oracles/elicited.py``).

Given the reliabilities and rates the units are independent, so

.. math::
    P(\text{all asserted} \mid H) = \mathbb E_{r, b} \prod_u \left[\rho_u\, \bar h_u(H) + (1 - \rho_u)\, b_{c(u)}\right].

The integrand is a polynomial in the independent :math:`r_s` and :math:`b_c`. ``log_evidence``
expands it and takes the expectation term by term with the Beta moments
:math:`\mathbb E[x^k] = \prod_{i<k} (a + i) / (a + b + i)`: exact. ``log_evidence_grid`` integrates
it by brute force instead (a midpoint rule on each parameter's quantiles, tensor grid).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import yaml
from scipy import stats

from oracles.elicited import seen_probability

ROOT = Path(__file__).resolve().parents[2]

Spec = float | tuple[float, float]  # a number, or Beta(a, b)


def spec_of(raw) -> Spec:  # noqa: ANN001
    """A number or {beta: [a, b]} from the YAML."""
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, dict) and set(raw) == {"beta"}:
        a, b = raw["beta"]
        return (float(a), float(b))
    raise ValueError(f"the oracle reads numbers and {{beta: [a, b]}} only, got {raw!r}")


def mean(spec: Spec) -> float:
    return spec if isinstance(spec, float) else spec[0] / (spec[0] + spec[1])


def read_case(path: str | Path) -> dict:
    """The numbers the story needs: priors, reliabilities, assertion rates and the claim/elicited units."""
    doc = yaml.safe_load(Path(path).read_text())
    pdir = (Path(path).parent / doc["priors"]) if doc.get("priors") else ROOT / "priors"
    lib = yaml.safe_load((pdir / "sources.yaml").read_text())
    prior = {h["id"]: float(h["prior"]) for h in doc["hypotheses"]}
    total = sum(prior.values())
    rel = {}
    for s in doc["sources"]:
        raw = s["reliability"]
        rel[s["id"]] = spec_of(lib["reliability"][raw] if isinstance(raw, str) else raw)
    rates = {c: spec_of(v) for c, v in lib["assertion_rate"].items()}
    units: dict[str, dict] = {}
    for ev in doc["evidence"]:
        key = ev.get("group") or f"item:{ev['id']}"
        under = ev.get("under", {})
        if ev["family"] == "claim":
            per_h = {h: mean(spec_of({**under.get("default", {}), **under.get(h, {})}["holds"])) for h in prior}
            unit = {"family": "claim", "interest": ev["observed"]["interest"], "true": per_h}
        elif ev["family"] == "elicited":
            p, bg = seen_probability({h: spec_of({**under.get("default", {}), **under.get(h, {})}["p"]) for h in prior})
            unit = {"family": "elicited", "seen": p, "background": bg}
        else:
            unit = {"family": ev["family"]}
        units.setdefault(key, {**unit, "sources": []})["sources"].append(ev["source"])
    return {"prior": {h: v / total for h, v in prior.items()}, "reliability": rel, "rates": rates, "units": list(units.values())}


# ------------------------------------------------------------------ polynomials in the uncertain parameters
class Poly:
    """A polynomial in the uncertain parameters: {exponent tuple: coefficient}."""

    def __init__(self, terms: dict[tuple[int, ...], float], nvar: int) -> None:
        self.terms, self.nvar = terms, nvar

    @classmethod
    def const(cls, c: float, nvar: int) -> Poly:
        return cls({(0,) * nvar: float(c)}, nvar)

    @classmethod
    def var(cls, j: int, nvar: int) -> Poly:
        return cls({tuple(int(i == j) for i in range(nvar)): 1.0}, nvar)

    def __add__(self, other: Poly) -> Poly:
        out = dict(self.terms)
        for e, c in other.terms.items():
            out[e] = out.get(e, 0.0) + c
        return Poly(out, self.nvar)

    def __mul__(self, other: Poly) -> Poly:
        out: dict[tuple[int, ...], float] = {}
        for ea, ca in self.terms.items():
            for eb, cb in other.terms.items():
                e = tuple(x + y for x, y in zip(ea, eb, strict=True))
                out[e] = out.get(e, 0.0) + ca * cb
        return Poly(out, self.nvar)

    def scale(self, c: float) -> Poly:
        return Poly({e: c * v for e, v in self.terms.items()}, self.nvar)


def beta_moment(a: float, b: float, k: int) -> float:
    return math.prod((a + i) / (a + b + i) for i in range(k))


def _parameters(case: dict) -> dict[str, Spec]:
    """Every reliability and rate the units use (name -> spec)."""
    out: dict[str, Spec] = {}
    for u in case["units"]:
        for s in u["sources"]:
            out[f"r:{s}"] = case["reliability"][s]
        if u["family"] == "claim":
            out[f"b:{u['interest']}"] = case["rates"][u["interest"]]
    return out


def _unit_polys(case: dict, hid: str, names: list[str]) -> list[Poly]:
    """Each unit's P(observation | H, r, b) as a polynomial in the uncertain parameters ``names``."""
    params = _parameters(case)
    n = len(names)

    def value(name: str) -> Poly:
        spec = params[name]
        return Poly.var(names.index(name), n) if name in names else Poly.const(spec, n)

    one = Poly.const(1.0, n)
    out = []
    for u in case["units"]:
        if u["family"] not in ("claim", "elicited"):
            raise ValueError(f"the claims oracle reads claim and elicited units only, not {u['family']}")
        unfaithful = one
        for s in sorted(set(u["sources"])):
            unfaithful = unfaithful * (one + value(f"r:{s}").scale(-1.0))
        faithful = one + unfaithful.scale(-1.0)
        if u["family"] == "claim":
            out.append(faithful.scale(u["true"][hid]) + unfaithful * value(f"b:{u['interest']}"))
        else:
            out.append(faithful.scale(u["seen"][hid]) + unfaithful.scale(u["background"]))
    return out


def log_evidence(case: dict, hid: str) -> float:
    """log P(every claim asserted, every elicited fact seen | H), exactly (Beta moments)."""
    names = [k for k, v in _parameters(case).items() if not isinstance(v, float)]
    total = Poly.const(1.0, len(names))
    for p in _unit_polys(case, hid, names):
        total = total * p
    specs = [_parameters(case)[k] for k in names]
    z = sum(c * math.prod(beta_moment(*specs[j], e[j]) for j in range(len(names))) for e, c in total.terms.items())
    return math.log(z) if z > 0 else -math.inf


def log_evidence_grid(case: dict, hid: str, nodes: int = 64) -> float:
    """The same by brute force: a midpoint rule on each uncertain parameter's quantiles (tensor grid)."""
    params = _parameters(case)
    names = [k for k, v in params.items() if not isinstance(v, float)]
    u = (np.arange(nodes) + 0.5) / nodes
    axes = [stats.beta.ppf(u, *params[k]) for k in names]
    grid = dict(zip(names, (g.ravel() for g in np.meshgrid(*axes, indexing="ij")), strict=True)) if names else {}
    m = nodes ** len(names)

    def value(name: str) -> np.ndarray:
        return grid[name] if name in grid else np.full(m, params[name])

    log_f = np.zeros(m)
    for unit in case["units"]:
        unfaithful = np.prod([1.0 - value(f"r:{s}") for s in sorted(set(unit["sources"]))], axis=0)
        if unit["family"] == "claim":
            p = (1.0 - unfaithful) * unit["true"][hid] + unfaithful * value(f"b:{unit['interest']}")
        else:
            p = (1.0 - unfaithful) * unit["seen"][hid] + unfaithful * unit["background"]
        with np.errstate(divide="ignore"):
            log_f += np.log(p)
    top = log_f.max()
    return float(top + np.log(np.mean(np.exp(log_f - top))))


def log_evidence_of(path: str | Path, *, grid: bool = False, others: str = "refuse") -> dict[str, float]:
    """log Z per hypothesis of the case file at ``path``; ``others="ignore"`` leaves out units of other
    families (their observations integrate to 1 when only claims and elicited facts are conditioned on)."""
    case = read_case(path)
    if others == "ignore":
        case = {**case, "units": [u for u in case["units"] if u["family"] in ("claim", "elicited")]}
    fn = log_evidence_grid if grid else log_evidence
    return {h: fn(case, h) for h in case["prior"]}


def claim_alone(true: dict[str, float], rate: Spec, reliability: Spec) -> dict[str, float]:
    """log P(assert | H) of one claim evaluated alone, per hypothesis (``true``: P(statement true | H))."""
    case = {"prior": {h: 1.0 for h in true}, "reliability": {"s": reliability}, "rates": {"c": rate},
            "units": [{"family": "claim", "interest": "c", "true": true, "sources": ["s"]}]}
    return {h: log_evidence(case, h) for h in true}
