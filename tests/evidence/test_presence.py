"""The presence family: a thing looked for, found or not found, against an independent simulation of
its generative story (tests/oracles/presence.py), exact enumeration and the real engine end to end.

``oracle_table()`` prints the engine's exact log evidence next to the oracle's on a grid of cases:
``python -c "import sys; sys.path[:0] = ['tests', 'tests/evidence']; import test_presence as t; t.print_oracle_table()"``
"""

from __future__ import annotations

import dataclasses
import math
import shutil
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from oracles.presence import Search, log_evidence

from engine.dists import Dist
from engine.errors import CaseErrors
from engine.evidence import REGISTRY
from engine.evidence.base import VAGUE_WEIGHT, influence_bound, robust_background
from engine.evidence.presence import PresenceObs
from engine.inference.closedform import exact_log_evidence, exact_posterior, has_exact
from engine.spec.case import load_case
from engine.spec.lint import case_warnings

presence = REGISTRY["presence"]
ROOT = Path(__file__).resolve().parents[2]
CASE = ROOT / "tests" / "cases" / "presence.yaml"
TOL = 0.05  # nat


def item(obs: PresenceObs, **params: Dist) -> SimpleNamespace:
    return SimpleNamespace(observed=obs, params={"h": params}, id="x", source="s", group=None, family="presence")


def obs(thing: str = "explosive-residue", found: bool = False, detection: Dist | float = 0.9) -> PresenceObs:
    return PresenceObs(thing=thing, found=found, detection=detection)


def fixed(x: float) -> Dist:
    return Dist("fixed", (x,))


# ---------------------------------------------------------------- cases written as YAML
def _spec(p: float | tuple) -> object:
    return {"beta": list(p)} if isinstance(p, tuple) else p


def write_case(folder: Path, name: str, units: list[dict], hypotheses: tuple[str, ...] = ("a", "b"),
               priors: str | None = None) -> Path:
    """A case of presence units: each {thing, found, detection, reliability (one per source), present: {h: pi}}."""
    sources, evidence = [], []
    for k, u in enumerate(units):
        rels = u.get("reliability", 1.0)
        rels = rels if isinstance(rels, tuple) else (rels,)
        observed = {"thing": u["thing"], "found": u["found"]}
        if "detection" in u:
            observed["detection"] = _spec(u["detection"])
        for j, r in enumerate(rels):
            sid = f"s{k}-{j}"
            sources.append({"id": sid, "title": sid, "reliability": r})
            entry = {"id": f"u{k}-{j}", "family": "presence", "source": sid, "observed": observed}
            if len(rels) > 1:
                entry["group"] = f"u{k}"
            if "present" in u:
                entry["under"] = {h: {"present": _spec(p)} for h, p in u["present"].items()}
            evidence.append(entry)
    doc = {"case": {"id": name, "title": name, "date": "2024-01-01"}, "sources": sources,
           "hypotheses": [{"id": h, "description": h, "prior": 1, "mechanism": "generic"} for h in hypotheses],
           "evidence": evidence}
    if priors:
        doc["priors"] = priors
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


GRID = [  # (label, units); present under hypotheses a and b
    ("found, d 0.9, r 1", [dict(thing="t", found=True, detection=0.9, present={"a": 0.8, "b": (1, 9)})]),
    ("not found, d Beta(9,1), r 1", [dict(thing="t", found=False, detection=(9, 1), present={"a": (8, 2), "b": 0.02})]),
    ("not found, d default, r 0.7", [dict(thing="t", found=False, present={"a": (8, 2), "b": 0.05})]),
    ("found, d Beta(2,3), r 0.3, pi 0 vs 1", [dict(thing="t", found=True, detection=(2, 3), reliability=0.3,
                                                   present={"a": 0.0, "b": 1.0})]),
    ("not found, d 1, r 0.9, pi 1 vs 0.02", [dict(thing="t", found=False, detection=1.0, reliability=0.9,
                                                  present={"a": 1.0, "b": 0.02})]),
    ("group of two reports (r 0.6, 0.5), found", [dict(thing="t", found=True, detection=(3, 1), reliability=(0.6, 0.5),
                                                       present={"a": (5, 5), "b": 0.1})]),
    ("three things, r 0.8", [dict(thing="x", found=True, detection=0.7, reliability=0.8, present={"a": 0.9, "b": 0.1}),
                             dict(thing="y", found=False, detection=(9, 1), reliability=0.8, present={"a": 0.2, "b": (6, 4)}),
                             dict(thing="z", found=False, detection=0.4, reliability=0.8, present={"a": 0.5, "b": 0.5})]),
]


def _searches(units: list[dict], hid: str, generic: float | tuple = 0.5) -> list[Search]:
    return [Search(thing=u["thing"], found=u["found"], present=u["present"][hid], detection=u.get("detection", (1.0, 1.0)),
                   reliability=u.get("reliability", 1.0), generic=generic, vague_weight=0.5) for u in units]


def _example_without_claim(folder: Path) -> Path:
    """tests/cases/presence.yaml with its presence items only (the oracle knows no claims)."""
    doc = yaml.safe_load(CASE.read_text(encoding="utf-8"))
    doc["evidence"] = [e for e in doc["evidence"] if e["family"] == "presence"]
    doc["sources"] = [s for s in doc["sources"] if s["id"] in {e["source"] for e in doc["evidence"]}]
    path = folder / "presence-only.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def _example_searches() -> dict[str, list[Search]]:
    """The example case's presence items, read off priors/mechanisms.yaml by hand."""
    lab, field = 0.95, 0.8
    story = {  # thing, found, detection, reliability, P(present) under missile, bomb, bird
        "bowtie-fragments": (True, (4, 2), lab, ((1, 1), 0.02, 0.02)),
        "explosive-residue": (False, (9, 1), lab, ((6, 4), (8, 2), 0.02)),
        "bird-remains": (False, (4, 2), field, (0.02, 0.02, (19, 1))),
    }
    return {h: [Search(thing=t, found=f, present=pis[k], detection=d, reliability=r) for t, (f, d, r, pis) in story.items()]
            for k, h in enumerate(("missile", "bomb", "bird"))}


def oracle_table(n: int = 4_000_000) -> list[tuple[str, float, float]]:
    """(label, engine's exact log evidence, oracle's simulated log evidence) on the grid, the example
    case and a priors folder whose generic mechanism has an uncertain P(present)."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for k, (label, units) in enumerate(GRID):
            case = load_case(write_case(folder, f"grid-{k}", units))
            for hid in case.hypotheses:
                rows.append((f"{label} | {hid}", exact_log_evidence(case, hid), log_evidence(_searches(units, hid), n=n, seed=k)[0]))
        case = load_case(_example_without_claim(folder))
        for j, (hid, searches) in enumerate(_example_searches().items()):
            rows.append((f"example case | {hid}", exact_log_evidence(case, hid), log_evidence(searches, n=n, seed=100 + j)[0]))
        priors = folder / "priors"
        shutil.copytree(ROOT / "priors", priors)
        mech = priors / "mechanisms.yaml"
        text = mech.read_text(encoding="utf-8")
        assert text.count("presence: {other: 0.5}") == 1
        mech.write_text(text.replace("presence: {other: 0.5}", "presence: {other: {beta: [1, 3]}}"), encoding="utf-8")
        units = [dict(thing="t", found=True, detection=0.8, reliability=0.4, present={"a": 0.9, "b": 0.05})]
        case = load_case(write_case(folder, "generic-beta", units, priors="priors"))
        for hid in case.hypotheses:
            rows.append((f"generic pi Beta(1,3), found, r 0.4 | {hid}", exact_log_evidence(case, hid),
                         log_evidence(_searches(units, hid, generic=(1, 3)), n=n, seed=200)[0]))
    return rows


def print_oracle_table() -> None:
    rows = oracle_table()
    width = max(len(r[0]) for r in rows)
    print(f"{'case | hypothesis':<{width}}  {'engine':>9}  {'oracle':>9}  {'diff':>7}")
    for label, eng, ora in rows:
        print(f"{label:<{width}}  {eng:9.4f}  {ora:9.4f}  {eng - ora:+7.4f}")


def test_engine_log_evidence_matches_the_independent_oracle():
    rows = oracle_table()
    assert len(rows) == 2 * len(GRID) + 3 + 2
    bad = [(label, eng, ora) for label, eng, ora in rows if not abs(eng - ora) <= TOL]
    assert not bad, bad


def test_the_oracle_error_is_well_below_the_tolerance():
    """The least probable observation of the table (bomb in the example) still has a small Monte Carlo error."""
    _, se = log_evidence(_example_searches()["bomb"], n=4_000_000, seed=101)
    assert se < TOL / 4


# ---------------------------------------------------------------- the likelihood
@pytest.mark.parametrize("found", [True, False])
def test_closed_form_is_linear_in_the_means_of_detection_and_presence(found):
    o = obs(found=found, detection=Dist("beta", (9.0, 1.0)))
    spec = {"present": Dist("beta", (8.0, 2.0))}
    p = 0.9 * 0.8
    assert presence.closed_form((item(o),), spec) == pytest.approx(math.log(p if found else 1 - p), rel=1e-12)


@pytest.mark.parametrize(("found", "pi"), [(True, 0.3), (False, 0.3), (True, 0.0), (False, 1.0)])
def test_tensor_loglik_and_numpy_twin_equal_the_closed_form(found, pi):
    import pytensor.tensor as pt

    o = obs(found=found, detection=0.6)
    want = presence.closed_form((item(o),), {"present": fixed(pi)})
    got = float(presence.loglik((item(o),), {"present": pt.as_tensor_variable(pi)}).eval())
    npy = presence.logp_np((item(o),), presence.observed((item(o),)), {"present": np.array([pi])})[0]
    assert got == pytest.approx(want, rel=1e-12) or (got == want == -math.inf)
    assert npy == pytest.approx(want, rel=1e-12) or (npy == want == -math.inf)


def test_the_model_of_a_presence_case_is_its_exact_evidence(tmp_path):
    """No parameter is sampled: the compiled model's log density is the exact log evidence."""
    from engine.model.build import build_model

    case = load_case(_example_without_claim(tmp_path))
    for hid in case.hypotheses:
        model = build_model(case, hid)
        assert model.free_RVs == []
        assert float(model.compile_logp()(model.initial_point())) == pytest.approx(exact_log_evidence(case, hid), abs=1e-9)


def test_a_thorough_search_that_finds_no_residue_moves_the_odds_away_from_a_bomb(tmp_path):
    """Odds of an on-board bomb (pi 0.8) against a missile (pi 0.6) after a laboratory search (d 0.9)
    finds no residue: divided by (r (1 - 0.6 d) + (1 - r) b) / (r (1 - 0.8 d) + (1 - r) b), b = 1 - d / 2."""
    doc = yaml.safe_load(CASE.read_text(encoding="utf-8"))
    doc["evidence"] = [e for e in doc["evidence"] if e["id"] == "residue"]
    doc["hypotheses"] = [h for h in doc["hypotheses"] if h["id"] in ("missile", "bomb")]
    doc["sources"] = [s for s in doc["sources"] if s["id"] == "lab"]
    path = tmp_path / "residue.yaml"

    def log_odds_shift(detection: dict | float) -> float:
        doc["evidence"][0]["observed"]["detection"] = detection
        path.write_text(yaml.safe_dump(doc), encoding="utf-8")
        case = load_case(path)
        hids, _, post = exact_posterior(case)
        prior = np.array([case.hypotheses[h].prior for h in hids])
        return float(np.log(post[1] / post[0]) - np.log(prior[1] / prior[0]))  # bomb against missile

    r, d = 0.95, 0.9
    b = 1 - d * 0.5  # background: pi_bg = (1 - w) 0.5 + w / 2 = 0.5
    want = math.log((r * (1 - 0.8 * d) + (1 - r) * b) / (r * (1 - 0.6 * d) + (1 - r) * b))
    assert log_odds_shift({"beta": [9, 1]}) == pytest.approx(want, rel=1e-12)
    assert want == pytest.approx(-0.459, abs=0.001)  # a factor 1.6 against the bomb (a missile leaves residue too)
    oracle = {h: log_evidence([Search("explosive-residue", False, p, (9, 1), r)], seed=7)[0]
              for h, p in (("missile", (6, 4)), ("bomb", (8, 2)))}
    assert oracle["bomb"] - oracle["missile"] == pytest.approx(want, abs=TOL)
    # a field look (d 0.3) says less; a perfect search (d 1) more; no search at all nothing
    shifts = [log_odds_shift(x) for x in (1e-9, 0.3, 0.9, 1.0)]
    assert shifts[0] == pytest.approx(0.0, abs=1e-8)
    assert shifts[0] > shifts[1] > shifts[2] > shifts[3]


# ---------------------------------------------------------------- parameters and background
def test_mechanism_table_gives_the_things_value_else_its_other():
    case = load_case(CASE)
    got = {it.id: {h: p["present"] for h, p in it.params.items()} for it in case.items if it.family == "presence"}
    assert got["residue"] == {"missile": Dist("beta", (6.0, 4.0)), "bomb": Dist("beta", (8.0, 2.0)), "bird": fixed(0.02)}
    assert got["snarge"]["bird"] == Dist("beta", (19.0, 1.0)) and got["snarge"]["missile"] == fixed(0.02)


def test_a_hypothesis_override_and_an_item_under_take_precedence(tmp_path):
    doc = yaml.safe_load(CASE.read_text(encoding="utf-8"))
    doc["hypotheses"][1]["overrides"] = {"presence": {"present": 0.3}}
    doc["evidence"][1]["under"] = {"bomb": {"present": {"beta": [1, 4]}}}
    path = tmp_path / "o.yaml"
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    case = load_case(path)
    assert case.item("residue").params["bomb"]["present"] == Dist("beta", (1.0, 4.0))
    assert case.item("bowties").params["bomb"]["present"] == fixed(0.3)


def test_background_is_the_robust_mixture_of_generic_and_vague():
    o = obs(found=True, detection=0.8)
    for pi_g in (0.0, 0.5, 1.0):
        g = presence.generic((item(o),), {"other": fixed(pi_g)}, ["h"])
        want = robust_background(math.log(0.8 * pi_g) if pi_g else -math.inf, math.log(0.8 * 0.5))
        assert presence.background((item(o),), g, {}) == pytest.approx(want, rel=1e-12)


@given(pi=st.floats(0, 1), pi_g=st.floats(0, 1), d=st.floats(1e-6, 1), found=st.booleans())
def test_log_ratio_cap_bounds_every_observation_and_parameter(pi, pi_g, d, found):
    o = obs(found=found, detection=d)
    g = presence.generic((item(o),), {"other": fixed(pi_g)}, ["h"])
    ratio = presence.closed_form((item(o),), {"present": fixed(pi)}) - presence.background((item(o),), g, {})
    assert ratio <= presence.log_ratio_cap((item(o),)) + 1e-12


def test_log_ratio_cap_is_attained():
    o = obs(found=True, detection=0.3)
    g = presence.generic((item(o),), {"other": fixed(0.0)}, ["h"])
    ratio = presence.closed_form((item(o),), {"present": fixed(1.0)}) - presence.background((item(o),), g, {})
    assert ratio == pytest.approx(presence.log_ratio_cap((item(o),)), rel=1e-12)
    assert presence.log_ratio_cap((item(o),)) == pytest.approx(math.log(2 / VAGUE_WEIGHT))


@given(p1=st.floats(0, 1), p2=st.floats(0, 1), d=st.floats(1e-6, 1), r=st.floats(0, 0.999), found=st.booleans())
def test_one_unit_moves_the_odds_by_at_most_its_influence_bound(p1, p2, d, r, found):
    o = obs(found=found, detection=d)
    bg = presence.background((item(o),), presence.generic((item(o),), {"other": fixed(0.5)}, ["h"]), {})

    def log_z(pi: float) -> float:
        lh = presence.closed_form((item(o),), {"present": fixed(pi)})
        return float(np.logaddexp(math.log(r) + lh if r > 0 else -math.inf, math.log1p(-r) + bg))

    assert abs(log_z(p1) - log_z(p2)) <= influence_bound(r, presence.log_ratio_cap((item(o),))) + 1e-9


# ---------------------------------------------------------------- exactness, groups, validation
def test_two_searches_for_one_thing_are_not_called_exact_and_one_merged_item_is(tmp_path):
    """Presence is one fact: two unmerged searches are not independent units (the oracle shares the thing);
    one item with detection 1 - (1 - d1)(1 - d2) is exact."""
    pis = {"a": 0.8, "b": 0.1}
    two = [dict(thing="t", found=False, detection=d, present=pis) for d in (0.5, 0.6)]
    case = load_case(write_case(tmp_path, "two", two))
    assert has_exact(case) == ("presence units u0-0 and u1-0 both look for t: its presence is one fact, "
                               "so their terms are not independent; make them one item")
    merged = load_case(write_case(tmp_path, "merged", [dict(thing="t", found=False, detection=1 - 0.5 * 0.4, present=pis)]))
    oracle = log_evidence([Search("t", False, pis["a"], d) for d in (0.5, 0.6)], seed=3)[0]
    assert exact_log_evidence(merged, "a") == pytest.approx(oracle, abs=TOL)
    product = sum(math.log1p(-d * pis["a"]) for d in (0.5, 0.6))
    assert abs(product - oracle) > 0.1  # two separate units: log 0.312 against log 0.36, 0.14 nat off


def test_reports_of_one_search_must_agree_on_found(tmp_path):
    path = write_case(tmp_path, "g", [dict(thing="t", found=True, detection=0.9, reliability=(0.6, 0.5), present={"a": 0.5, "b": 0.1})])
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["evidence"][1]["observed"] = {**doc["evidence"][1]["observed"], "found": False}
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(CaseErrors) as err:
        load_case(path)
    assert [(e.path, e.message) for e in err.value.errors] == [(
        "evidence[u0-1].group",
        "presence reports in group 'u0' disagree on thing, found or detection; reports of one search share them "
        "(a different search is its own item) ('u0-1' against 'u0-0', the group's first report)")]


BAD = {  # observed -> (field, start of the message)
    "found-missing": ({"thing": "t"}, "found", "missing"),
    "found-text": ({"thing": "t", "found": "yes"}, "found", "must be true or false"),
    "detection-zero": ({"thing": "t", "found": False, "detection": 0}, "detection", "detection must be a number in (0, 1]"),
    "detection-above-one": ({"thing": "t", "found": False, "detection": 1.5}, "detection", "detection must be a number in (0, 1]"),
    "detection-gamma": ({"thing": "t", "found": False, "detection": {"gamma": [1, 2]}}, "detection", "detection must be"),
    "thing-with-spaces": ({"thing": "Explosive Residue", "found": True}, "thing", "'Explosive Residue' is not a valid id"),
}


@pytest.mark.parametrize("defect", list(BAD))
def test_bad_observation_is_one_line_naming_the_field(tmp_path, defect):
    observed, field, start = BAD[defect]
    path = write_case(tmp_path, "bad", [dict(thing="t", found=True, present={"a": 0.5, "b": 0.1})])
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    doc["evidence"][0]["observed"] = observed
    path.write_text(yaml.safe_dump(doc), encoding="utf-8")
    with pytest.raises(CaseErrors) as err:
        load_case(path)
    (e,) = err.value.errors
    assert e.path == f"evidence[u0-0].observed.{field}" and e.message.startswith(start) and "\n" not in e.message


def test_a_search_unlikely_to_find_anything_is_a_warning(tmp_path):
    path = write_case(tmp_path, "low", [dict(thing="t", found=False, detection=0.05, present={"a": 0.5, "b": 0.1})])
    (w,) = case_warnings(load_case(path))
    assert w.path == "evidence[u0-0].observed.detection" and w.message.startswith("detection 0.05 is below 0.1")


def test_describe_reads_the_observation():
    o = PresenceObs(thing="bird-remains", found=False, detection=Dist("beta", (4.0, 2.0)), searched="radome and inlets")
    assert presence.describe(o) == "bird-remains not found (detection Beta(4, 2), mean 0.67; radome and inlets)"
    assert presence.describe(obs(found=True, detection=0.9)) == "explosive-residue found (detection 0.9)"
    assert PresenceObs(thing="t", found=True).detection == Dist("beta", (1.0, 1.0))  # the stated default


# ---------------------------------------------------------------- simulation and predictive checks
def test_simulated_incidents_report_found_at_the_exact_rate(tmp_path):
    """Calibration's simulator (simulate_observed) against P(found | H) of the closed form."""
    from engine.calibration.simulate import simulate_incident

    case = load_case(_example_without_claim(tmp_path))
    rng = np.random.default_rng(5)
    counts: dict[tuple[str, str], list[int]] = {}
    for i in range(3000):
        inc = simulate_incident(case, i, rng)
        for it in inc.case.items:
            counts.setdefault((inc.hypothesis, it.id), []).append(int(it.observed.found))
    for (hid, iid), found in counts.items():
        it = case.item(iid)
        yes = dataclasses.replace(it, observed=it.observed.model_copy(update={"found": True}))
        p = math.exp(exact_log_evidence(dataclasses.replace(case, items=(yes,)), hid))  # P(found | H), mixture included
        assert abs(np.mean(found) - p) < 4.5 * math.sqrt(p * (1 - p) / len(found)), (hid, iid, np.mean(found), p)


def test_replicates_are_found_at_rate_d_pi():
    o = obs(found=False, detection=Dist("beta", (3.0, 1.0)))
    y = presence.simulate((item(o),), {"present": np.full(200_000, 0.4)}, np.random.default_rng(2))["found"]
    assert y.shape == (200_000, 1)
    assert y.mean() == pytest.approx(0.75 * 0.4, abs=4 * math.sqrt(0.3 * 0.7 / 200_000))


# ---------------------------------------------------------------- the real engine, end to end
@pytest.mark.slow
def test_example_case_runs_end_to_end_to_the_exact_posterior(tmp_path):
    import engine

    case = engine.load_case(CASE)
    hids, log_z, post = exact_posterior(case)
    assert hids[int(np.argmax(post))] == "missile"
    settings = engine.Settings(seed=1, draws=200, tune=200, chains=2, smc_draws=300, smc_chains=2)
    result = engine.read_attribution(engine.run_case(case, settings=settings, out=tmp_path,
                                                     options=engine.ExecutionOptions(workers=0)))
    assert result["leader"] == "missile"
    for hid, lz, p in zip(hids, log_z, post, strict=True):
        got = result["hypotheses"][hid]
        assert abs(got["posterior"] - p) < 0.01, (hid, got, p)
        assert abs(got["log_evidence"]["pooled"] - lz) < 0.1, (hid, got, lz)
