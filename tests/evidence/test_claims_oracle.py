"""Claims and elicited items against independent oracles (tests/oracles/claims.py, elicited.py), and
their stated influence bounds (``log_ratio_cap``) under property-based tests.

* exact cases (fixed reliabilities, one claim per uncertain assertion rate): the engine's
  ``exact_log_evidence`` equals the oracle's exact expansion and its brute-force grid;
* Beta reliabilities and a shared assertion rate: the engine's quadrature reference
  (``engine.calibration.reference``) equals the oracle, and so does the engine's sampled estimate
  (SMC and bridge sampling, pooled) within 0.05 nat or its stated error;
* ``log_ratio_cap`` is a true bound: no claim or elicited item moves the odds between two
  hypotheses by more than ``influence_bound(r, cap)``, over random and extreme parameters.

``oracle_table()`` gives the printed grid: (label, engine log evidence, oracle log evidence).
"""

from __future__ import annotations

import math
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import CASES
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import claims as oracle
from oracles.elicited import elicited_alone

TOL = 0.05  # nat

H3 = [{"id": "sam", "description": "missile burst", "prior": 0.5, "mechanism": "proximity_fragmentation"},
      {"id": "bird", "description": "bird strike", "prior": 0.3, "mechanism": "bird_strike"},
      {"id": "engine", "description": "engine failure", "prior": 0.2, "mechanism": "uncontained_engine_failure"}]


def _claim(cid, source, interest, holds, group=None):  # noqa: ANN001, ANN202
    item = {"id": cid, "family": "claim", "source": source, "observed": {"statement": f"statement {cid}", "interest": interest},
            "under": {h: {"holds": v} for h, v in holds.items()}}
    return {**item, "group": group} if group else item


def _elicited(eid, source, p):  # noqa: ANN001, ANN202
    return {"id": eid, "family": "elicited", "source": source, "observed": {"statement": f"fact {eid}"},
            "under": {h: {"p": v} for h, v in p.items()}}


def _doc(cid: str, sources: list[tuple[str, object]], evidence: list[dict], hypotheses: list[dict] = H3) -> dict:
    return {"case": {"id": cid, "title": cid, "date": "2024-01-01"},
            "sources": [{"id": s, "title": s, "reliability": r} for s, r in sources],
            "hypotheses": hypotheses, "evidence": evidence}


# Exact cases: every reliability fixed, at most one claim unit per assertion-rate class.
EXACT = {
    "group-of-two-reports": _doc("group", [("party", 0.6), ("rival", 0.5)], [
        _claim("a1", "party", "serves", {"sam": 1.0, "bird": 0.0, "engine": 0.2}, group="g"),
        _claim("a2", "rival", "serves", {"sam": 1.0, "bird": 0.0, "engine": 0.2}, group="g"),
        _claim("adm", "party", "against", {"sam": {"beta": [9.0, 1.0]}, "bird": 0.1, "engine": 0.1})]),
    "elicited-two-sources": _doc("elicited", [("analyst", 0.8), ("crew", 0.5)], [
        _elicited("smell", "analyst", {"sam": {"beta": [2.0, 8.0]}, "bird": {"beta": [3.0, 7.0]}, "engine": {"beta": [6.0, 4.0]}}),
        _elicited("flash", "crew", {"sam": 0.7, "bird": 0.05, "engine": 0.2})]),
    "claims-and-elicited-extremes": _doc("extremes", [("party", 0.99), ("analyst", 0.999), ("media", 0.01)], [
        _claim("adm", "party", "against", {"sam": 1.0, "bird": 0.001, "engine": 0.5}),
        _claim("neu", "media", "neutral", {"sam": 0.0, "bird": 1.0, "engine": {"beta": [1.0, 1.0]}}),
        _elicited("e", "analyst", {"sam": 1e-6, "bird": 0.999, "engine": {"beta": [0.5, 0.5]}})]),
}

# Beta reliabilities, two claims sharing the 'serves' rate, a party with two claims: no closed form.
SHARED = _doc("shared", [("party", {"beta": [3.0, 3.0]}), ("rival", {"beta": [4.0, 4.0]}), ("analyst", 0.9)], [
    _elicited("smell", "analyst", {"sam": {"beta": [2.0, 8.0]}, "bird": {"beta": [3.0, 7.0]}, "engine": {"beta": [6.0, 4.0]}}),
    _claim("admission", "party", "against", {"sam": {"beta": [9.0, 1.0]}, "bird": 0.3, "engine": 0.2}),
    _claim("accusation", "party", "serves", {"sam": 0.9, "bird": 0.1, "engine": 0.2}),
    _claim("denial", "rival", "serves", {"sam": 0.1, "bird": 0.8, "engine": 0.7})])


def _write(folder: Path, name: str, doc: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _quietly(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def sampled_rows(path: Path, settings_kw: dict | None = None) -> list[tuple[str, float, float, float]]:
    """(hypothesis, engine pooled log Z, its stated error, oracle log Z) on a case with uncertain shared parameters."""
    from engine.calibration.incident import CalibrationSettings, hypothesis_estimates
    from engine.spec.case import load_case

    case = load_case(path)
    truth = oracle.log_evidence_of(path)
    s = CalibrationSettings(**(settings_kw or dict(draws=1000, tune=1000, chains=2, smc_draws=1000, smc_chains=2, seed=3)))
    rows = []
    for hid in case.hypotheses:
        est, _ = _quietly(hypothesis_estimates, case, case, hid, 0, s)
        rows.append((hid, est["pooled"], est["pooled_se"], truth[hid]))
    return rows


def oracle_table(sampled: bool = True) -> list[tuple[str, float, float]]:
    """Rows (label, engine log evidence, oracle log evidence): the engine's exact evidence on the exact
    cases, its quadrature reference and (``sampled``) its SMC + bridge estimate on the shared case."""
    from engine.calibration.reference import reference_log_evidence
    from engine.inference.closedform import exact_log_evidence
    from engine.spec.case import load_case

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {name: _write(Path(tmp), name, doc) for name, doc in {**EXACT, "shared": SHARED}.items()}
        paths["claims.yaml"] = CASES / "claims.yaml"
        for name in [*EXACT, "claims.yaml"]:
            case, truth = load_case(paths[name]), oracle.log_evidence_of(paths[name])
            rows += [(f"{name} {h} (exact)", exact_log_evidence(case, h), truth[h]) for h in case.hypotheses]
        shared, truth = load_case(paths["shared"]), oracle.log_evidence_of(paths["shared"])
        ref = reference_log_evidence(shared)
        rows += [(f"shared {h} (quadrature)", ref[h], truth[h]) for h in shared.hypotheses]
        if sampled:
            rows += [(f"shared {h} (SMC + bridge, s.e. {se:.3f})", est, want) for h, est, se, want in sampled_rows(paths["shared"])]
    return rows


# ------------------------------------------------------------------ exact cases and the quadrature
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp("claims-oracle")
    return {name: _write(out, name, doc) for name, doc in {**EXACT, "shared": SHARED}.items()} | {"claims.yaml": CASES / "claims.yaml"}


@pytest.mark.parametrize("name", [*EXACT, "claims.yaml"])
def test_exact_evidence_equals_the_oracle(folder, name):
    from engine.inference.closedform import exact_log_evidence
    from engine.spec.case import load_case

    case = load_case(folder[name])
    exact, grid = oracle.log_evidence_of(folder[name]), oracle.log_evidence_of(folder[name], grid=True)
    for hid in case.hypotheses:
        assert exact_log_evidence(case, hid) == pytest.approx(exact[hid], abs=1e-6), hid  # the engine floors holds at 1e-9
        assert grid[hid] == pytest.approx(exact[hid], abs=0.01), hid  # the oracle's two ways agree


def test_uncertain_shared_parameters_quadrature_equals_the_oracle(folder):
    """Beta reliabilities (one shared by two claims) and a shared 'serves' rate: the quadrature
    reference equals the oracle's exact Beta-moment expansion and its brute-force grid."""
    from engine.calibration.reference import reference_log_evidence, reference_problem
    from engine.inference.closedform import has_exact
    from engine.spec.case import load_case

    case = load_case(folder["shared"])
    assert has_exact(case) is not None and reference_problem(case) is None
    ref = reference_log_evidence(case)
    exact, grid = oracle.log_evidence_of(folder["shared"]), oracle.log_evidence_of(folder["shared"], grid=True, )
    for hid in case.hypotheses:
        assert ref[hid] == pytest.approx(exact[hid], abs=1e-9), hid
        assert grid[hid] == pytest.approx(exact[hid], abs=0.01), hid
    # the shared parameters matter: evaluating with their means is off
    means = {h: v for h, v in oracle.log_evidence_of(folder["shared"]).items()}
    fixed = oracle.read_case(folder["shared"])
    fixed["reliability"] = {s: oracle.mean(v) for s, v in fixed["reliability"].items()}
    fixed["rates"] = {c: oracle.mean(v) for c, v in fixed["rates"].items()}
    assert max(abs(oracle.log_evidence(fixed, h) - means[h]) for h in means) > 0.02


@pytest.mark.slow
def test_sampled_engine_estimate_equals_the_brute_force_integral(folder):
    """The engine's samplers (SMC and bridge sampling, pooled) on the shared case: within 0.05 nat of the
    oracle, or within three of their stated standard errors."""
    rows = sampled_rows(folder["shared"])
    for hid, est, se, want in rows:
        assert abs(est - want) <= max(TOL, 3 * se), (hid, est, se, want)


# ------------------------------------------------------------------ bounded influence (hypothesis)
def _item(family: str, params: dict[str, dict], observed) -> tuple:  # noqa: ANN001
    from engine.spec.case import ResolvedItem

    return (ResolvedItem(id="u", family=family, source="s", group=None, description="", observed=observed, cites=(), params=params),)


def _dist(spec):  # noqa: ANN001, ANN202
    from engine.dists import Dist

    return Dist("fixed", (spec,)) if isinstance(spec, float) else Dist("beta", spec)


unit_prob = st.floats(0.0, 1.0)
beta_args = st.tuples(st.floats(0.05, 50.0), st.floats(0.05, 50.0))
spec_01 = st.one_of(unit_prob, beta_args)
rate_spec = st.one_of(st.floats(1e-8, 1.0, exclude_max=True), beta_args)
rel_spec = st.one_of(st.floats(0.0, 0.999999), beta_args)
extreme = st.sampled_from([0.0, 1e-12, 1e-6, 0.5, 1 - 1e-9, 1.0])


def _worst_log_odds(logp: dict[str, float]) -> float:
    return max(logp.values()) - min(logp.values())


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(holds=st.lists(st.one_of(spec_01, extreme), min_size=2, max_size=4), rate=st.one_of(rate_spec, extreme.filter(lambda x: 0 < x < 1)),
       rel=st.one_of(rel_spec, extreme.filter(lambda x: x < 1)))
def test_a_claim_moves_the_odds_by_at_most_its_stated_bound(holds, rate, rel):
    from engine.evidence import REGISTRY
    from engine.evidence.base import influence_bound
    from engine.evidence.claim import HOLDS_MIN, ClaimObs

    fam = REGISTRY["claim"]
    hids = [f"h{k}" for k in range(len(holds))]
    items = _item("claim", {h: {"holds": _dist(s)} for h, s in zip(hids, holds, strict=True)},
                  ClaimObs(statement="s", interest="against"))
    cap = fam.log_ratio_cap(items, {"assertion_rate__against": _dist(rate)})
    assert math.isfinite(cap)
    assert fam.log_ratio_cap(items) == math.inf  # without the rate no bound is claimed
    true = {h: min(max(oracle.mean(s), HOLDS_MIN), 1.0) for h, s in zip(hids, holds, strict=True)}  # the model clips holds
    if isinstance(rate, float):  # the pointwise ratio p(y | H) / p_bg(y) = h / b
        assert max(math.log(v) - math.log(rate) for v in true.values()) <= cap + 1e-12
    moved = _worst_log_odds(oracle.claim_alone(true, rate, rel))
    assert moved <= influence_bound(oracle.mean(rel), cap) + 1e-7, (moved, influence_bound(oracle.mean(rel), cap))  # rounding


@settings(max_examples=200, deadline=None)
@given(p=st.lists(st.one_of(st.floats(1e-12, 1.0), beta_args, st.sampled_from([1e-12, 1e-9, 1.0])), min_size=2, max_size=5),
       rel=st.one_of(rel_spec, extreme.filter(lambda x: x < 1)))
def test_an_elicited_item_moves_the_odds_by_at_most_its_stated_bound(p, rel):
    from engine.evidence import REGISTRY
    from engine.evidence.base import influence_bound
    from engine.evidence.elicited import ElicitedObs

    fam = REGISTRY["elicited"]
    hids = [f"h{k}" for k in range(len(p))]
    items = _item("elicited", {h: {"p": _dist(s)} for h, s in zip(hids, p, strict=True)}, ElicitedObs(statement="s"))
    cap = fam.log_ratio_cap(items)
    assert cap <= math.log(len(p)) + 1e-12
    specs = dict(zip(hids, p, strict=True))
    means = {h: oracle.mean(s) for h, s in specs.items()}
    bg = float(np.mean(list(means.values())))
    assert max(math.log(v) - math.log(bg) for v in means.values()) <= cap + 1e-12
    moved = _worst_log_odds(elicited_alone(specs, rel))
    assert moved <= influence_bound(oracle.mean(rel), cap) + 1e-7


def test_the_bounds_are_attained():
    """Not loose: a statement true under one hypothesis and false under the other, or a fact only one
    hypothesis predicts, reaches the bound exactly."""
    from engine.evidence import REGISTRY
    from engine.evidence.base import influence_bound
    from engine.evidence.claim import ClaimObs
    from engine.evidence.elicited import ElicitedObs

    items = _item("claim", {"a": {"holds": _dist(1.0)}, "b": {"holds": _dist(0.0)}}, ClaimObs(statement="s", interest="serves"))
    for rate, rel in ((0.03, 0.5), ((1.0, 30.0), (3.0, 3.0)), ((8.0, 2.0), 0.9)):
        cap = REGISTRY["claim"].log_ratio_cap(items, {"assertion_rate__serves": _dist(rate)})
        moved = _worst_log_odds(oracle.claim_alone({"a": 1.0, "b": 1e-9}, rate, rel))
        assert moved == pytest.approx(influence_bound(oracle.mean(rel), cap), abs=1e-6)
    p = {"a": 0.5, "b": 1e-12, "c": 1e-12}
    items = _item("elicited", {h: {"p": _dist(v)} for h, v in p.items()}, ElicitedObs(statement="s"))
    cap = REGISTRY["elicited"].log_ratio_cap(items)
    assert cap == pytest.approx(math.log(3), abs=1e-9)
    assert _worst_log_odds(elicited_alone(p, 0.7)) == pytest.approx(influence_bound(0.7, cap), abs=1e-6)
