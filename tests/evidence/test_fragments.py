"""Fragments: one category set, bounded influence, collapsed units, and the independent oracle
(tests/oracles/fragments.py). ``oracle_table()`` is imported by the lead's benchmark."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import fragments as oracle
from scipy import stats

from engine.dists import Dist
from engine.errors import CaseErrors
from engine.evidence import REGISTRY
from engine.evidence.base import VAGUE_WEIGHT
from engine.evidence.fragments import CATEGORIES, KNOWN, FragmentsObs
from engine.spec.case import load_case
from engine.spec.priors import load_priors

fragments = REGISTRY["fragments"]
ROOT = Path(__file__).resolve().parents[2]
CASES = ROOT / "tests" / "cases"
LIB = load_priors()
GENERIC = LIB.mechanisms["generic"]["fragments"]
ORACLE_CATS = oracle.category_set(oracle.library_tables().values())
ORACLE_GENERIC = oracle.concentrations(oracle.library_tables()["generic"], ORACLE_CATS)


def unit(counts: dict[str, int]) -> tuple:
    return (SimpleNamespace(observed=FragmentsObs(counts=counts), params={}, id="f", source="s", group=None, family="fragments"),)


def spec_of(mechanism: str) -> dict[str, Dist]:
    return LIB.mechanisms[mechanism]["fragments"]


def oracle_log(counts: dict[str, int], mechanism: str) -> float:
    table = oracle.library_tables()[mechanism]
    return oracle.log_polya(oracle.count_vector(counts, ORACLE_CATS), oracle.concentrations(table, ORACLE_CATS))


def oracle_bg(counts: dict[str, int]) -> float:
    return oracle.log_background(oracle.count_vector(counts, ORACLE_CATS), ORACLE_GENERIC, VAGUE_WEIGHT)


# ---------------------------------------------------------------- the oracle grid
GRID_COUNTS = [
    {"rod": 5},
    {"rod": 5, "cube": 0},
    {"ball": 4, "other": 1},
    {"bird_remains": 10, "blade": 0, "other": 0},
    {"rod": 2, "cube": 2, "natural": 1, "blade": 1},
    {"unclassified": 3, "natural": 1},
    {"cube": 0},
]
GRID_MECHANISMS = ["proximity_fragmentation", "bird_strike", "uncontained_engine_failure"]


def _describe(counts: dict[str, int]) -> str:
    return "{" + ", ".join(f"{k}: {v}" for k, v in counts.items()) + "}"


def _case_variants() -> list[tuple[str, str]]:
    """(label, YAML text): tests/cases/calibration-oracle-fragments.yaml (reliability 0.8) as it is,
    and with its observation replaced by {rod: 5} and by {rod: 5, cube: 0}."""
    text = (CASES / "calibration-oracle-fragments.yaml").read_text(encoding="utf-8")
    doc = yaml.safe_load(text)
    out = [("oracle case", text)]
    for counts in ({"rod": 5}, {"rod": 5, "cube": 0}):
        doc["evidence"][0]["observed"] = {"counts": counts}
        out.append((f"oracle case {_describe(counts)}", yaml.safe_dump(doc, sort_keys=False)))
    return out


def oracle_table() -> list[tuple[str, float, float]]:
    """Rows (label, engine log evidence, oracle log evidence) in nat: p(y | H) per mechanism and
    the robust background p_bg(y) on a grid of observations, then log Z_H of the oracle fragments
    case (one unit, reliability 0.8) by ``exact_log_evidence`` against the oracle's mixture."""
    from engine.inference.closedform import exact_log_evidence

    rows = []
    for counts in GRID_COUNTS:
        u = unit(counts)
        for m in GRID_MECHANISMS:
            rows.append((f"{_describe(counts)} | {m}", fragments.closed_form(u, spec_of(m)), oracle_log(counts, m)))
        rows.append((f"{_describe(counts)} | background", fragments.background(u, GENERIC, {}), oracle_bg(counts)))
    tables = oracle.library_tables()
    with tempfile.TemporaryDirectory() as tmp:
        for label, text in _case_variants():
            path = Path(tmp) / "case.yaml"
            path.write_text(text, encoding="utf-8")
            case = load_case(path, priors_dir=ROOT / "priors")
            (item,) = case.items
            c = oracle.count_vector(item.observed.counts, ORACLE_CATS)
            for hid, hyp in case.hypotheses.items():
                want = oracle.log_unit(c, oracle.concentrations(tables[hyp.mechanism], ORACLE_CATS), ORACLE_GENERIC, 0.8, VAGUE_WEIGHT)
                rows.append((f"{label} | log Z {hid}", exact_log_evidence(case, hid), want))
    return rows


def test_engine_matches_the_independent_oracle_within_0_05_nat():
    rows = oracle_table()
    assert len(rows) == len(GRID_COUNTS) * (len(GRID_MECHANISMS) + 1) + 3 * 3
    bad = [(label, e, o) for label, e, o in rows if not abs(e - o) <= 0.05]
    assert not bad, bad


def test_the_oracle_urn_agrees_with_monte_carlo_over_p():
    """The oracle's exact urn against brute force: Multinomial(c | p) averaged over p ~ Dirichlet."""
    rng = np.random.default_rng(7)
    for counts, m in [({"rod": 2, "cube": 2, "natural": 1, "blade": 1}, "proximity_fragmentation"),
                      ({"rod": 5}, "proximity_fragmentation"), ({"blade": 3, "disc": 1}, "uncontained_engine_failure")]:
        c = oracle.count_vector(counts, ORACLE_CATS)
        alpha = oracle.concentrations(oracle.library_tables()[m], ORACLE_CATS)
        est, se = oracle.log_mc(c, alpha, rng, 400_000)
        assert abs(est - oracle.log_polya(c, alpha)) < 4 * se + 1e-3, (counts, m, est, se)


# ---------------------------------------------------------------- one category set
def test_the_known_types_are_the_library_union():
    assert set(KNOWN) == set(ORACLE_CATS) - {"other"}
    assert CATEGORIES[-1] == "other" and fragments.labels(unit({"rod": 1})) == CATEGORIES


@pytest.mark.parametrize("mechanism", sorted(m for m in LIB.mechanisms if "fragments" in LIB.mechanisms[m]))
def test_writing_zero_counts_changes_nothing(mechanism):
    a, b = unit({"rod": 5}), unit({"rod": 5, "cube": 0, "bird_remains": 0, "other": 0})
    spec = spec_of(mechanism)
    assert fragments.closed_form(a, spec) == fragments.closed_form(b, spec)
    assert fragments.background(a, GENERIC, {}) == fragments.background(b, GENERIC, {})
    assert fragments.log_ratio_cap(a) == fragments.log_ratio_cap(b)
    np.testing.assert_array_equal(fragments.data(a)["counts"], fragments.data(b)["counts"])


def test_writing_zero_counts_changes_nothing_in_a_case():
    from engine.inference.closedform import exact_log_evidence

    with tempfile.TemporaryDirectory() as tmp:
        cases = []
        for i, (_, text) in enumerate(_case_variants()[1:]):
            path = Path(tmp) / f"case{i}.yaml"
            path.write_text(text, encoding="utf-8")
            cases.append(load_case(path, priors_dir=ROOT / "priors"))
    for hid in cases[0].hypotheses:
        assert exact_log_evidence(cases[0], hid) == exact_log_evidence(cases[1], hid)


def test_a_single_type_is_evidence():
    """{rod: 5} alone favours the missile over a bird strike (it used to be 0 under every hypothesis)."""
    u = unit({"rod": 5})
    sam, bird = fragments.closed_form(u, spec_of("proximity_fragmentation")), fragments.closed_form(u, spec_of("bird_strike"))
    assert sam - bird > 3
    assert fragments.suspicious(FragmentsObs(counts={"rod": 5})) == []
    assert fragments.suspicious(FragmentsObs(counts={"rod": 0}))  # no fragment: no evidence, a warning


def test_alpha_for_keeps_listed_types_and_shares_other():
    table = Dist("dirichlet", (2.0, 3.0, 0.6), ("rod", "cube", "other"))
    alpha = np.array(table.alpha_for(CATEGORIES))
    assert alpha[CATEGORIES.index("rod")] == 2.0 and alpha[CATEGORIES.index("cube")] == 3.0
    assert alpha.sum() == pytest.approx(5.6)
    assert np.allclose(np.delete(alpha, [CATEGORIES.index("rod"), CATEGORIES.index("cube")]), 0.6 / (len(CATEGORIES) - 2))
    # a listed type outside the set folds into the shared part: the total is kept
    assert sum(table.alpha_for(("rod", "other"))) == pytest.approx(5.6)


def _errors(tmp_path: Path, counts: dict, under: dict | None = None) -> list[str]:
    doc = yaml.safe_load((CASES / "calibration-oracle-fragments.yaml").read_text(encoding="utf-8"))
    doc["evidence"][0]["observed"] = {"counts": counts}
    if under:
        doc["evidence"][0]["under"] = under
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    with pytest.raises(CaseErrors) as exc:
        load_case(path, priors_dir=ROOT / "priors")
    return [f"{e.path}: {e.message}" for e in exc.value.errors]


def test_an_unknown_type_is_refused_in_one_line_listing_the_known_ones(tmp_path):
    (line,) = _errors(tmp_path, {"rods": 2, "cube": 1})
    assert line.startswith("evidence[frags].observed.counts: unknown fragment type rods; known types: ball, bird_remains")
    assert all(t in line for t in CATEGORIES)


def test_a_table_with_an_unknown_type_or_without_other_is_refused(tmp_path):
    (line,) = _errors(tmp_path, {"rod": 2}, {"sam": {"alpha": {"dirichlet": {"rod": 2.0, "flechette": 1.0, "other": 0.3}}}})
    assert "names unknown type flechette" in line and "(mechanism proximity_fragmentation)" in line
    (line,) = _errors(tmp_path, {"rod": 2}, {"sam": {"alpha": {"dirichlet": {"rod": 2.0, "cube": 1.0}}}})
    assert "has no 'other' entry" in line


# ---------------------------------------------------------------- bounded influence
def test_the_cap_is_the_uniform_composition_bound():
    for n in (0, 1, 5, 800):
        k = len(CATEGORIES)
        want = math.log(math.comb(n + k - 1, k - 1)) - math.log(VAGUE_WEIGHT)
        assert fragments.log_ratio_cap(unit({"rod": n})) == pytest.approx(want, rel=1e-12)


def test_the_cap_is_attained_when_the_background_misses_the_composition():
    """p = e_rod, y = (n, 0, ...) and a generic that gives rod almost nothing: the ratio reaches the cap."""
    u = unit({"rod": 40})
    generic = {"alpha": Dist("dirichlet", (1e-14, 5.0), ("rod", "other"))}
    p = np.full((1, len(CATEGORIES)), 1e-300)
    p[0, CATEGORIES.index("rod")] = 1.0
    ratio = fragments.logp_np(u, fragments.observed(u), {"alpha": p})[0] - fragments.background(u, generic, {})
    assert fragments.log_ratio_cap(u) - 1e-6 < ratio <= fragments.log_ratio_cap(u) + 1e-9


concentration = st.floats(1e-3, 50.0)
tables = st.lists(concentration, min_size=len(CATEGORIES), max_size=len(CATEGORIES))


@st.composite
def extreme_counts(draw):
    """Count vectors at the edges: everything in one type, in two, spread evenly, or random; totals up to 2000."""
    n = draw(st.sampled_from([0, 1, 2, 7, 50, 400, 2000]) | st.integers(0, 2000))
    k = len(CATEGORIES)
    shape = draw(st.sampled_from(["one", "two", "even", "random"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if shape == "one":
        c = np.zeros(k, int)
        c[draw(st.integers(0, k - 1))] = n
    elif shape == "two":
        c = np.zeros(k, int)
        i, j = rng.choice(k, 2, replace=False)
        c[i] = draw(st.integers(0, n))
        c[j] = n - c[i]
    elif shape == "even":
        c = np.full(k, n // k)
        c[: n % k] += 1
    else:
        c = rng.multinomial(n, rng.dirichlet(np.full(k, 0.2)))
    return {t: int(x) for t, x in zip(CATEGORIES, c, strict=True) if x} or {"rod": 0}


@settings(max_examples=300, deadline=None)
@given(counts=extreme_counts(), h=tables, g=tables, p_seed=st.integers(0, 2**32 - 1), real_generic=st.booleans())
def test_no_hypothesis_parameter_or_observation_exceeds_the_cap(counts, h, g, p_seed, real_generic):
    u = unit(counts)
    cap = fragments.log_ratio_cap(u)
    generic = GENERIC if real_generic else {"alpha": Dist("dirichlet", tuple(g), CATEGORIES)}
    bg = fragments.background(u, generic, {})
    spec = {"alpha": Dist("dirichlet", tuple(h), CATEGORIES)}
    assert fragments.closed_form(u, spec) - bg <= cap + 1e-9
    rng = np.random.default_rng(p_seed)
    p = np.vstack([rng.dirichlet(h, size=4), np.eye(len(CATEGORIES))[[np.argmax(fragments.data(u)["counts"])]]])
    p = np.clip(p, 1e-300, None)
    assert (fragments.logp_np(u, fragments.observed(u), {"alpha": p}) - bg <= cap + 1e-9).all()


# ---------------------------------------------------------------- collapsed units
def test_own_posterior_is_the_conjugate_dirichlet():
    """Faithful rows: sample moments of Dirichlet(alpha + c); unfaithful rows: of Dirichlet(alpha)."""
    u = unit({"rod": 3, "cube": 1, "ball": 2})
    spec = spec_of("proximity_fragmentation")
    alpha = np.array(spec["alpha"].alpha_for(CATEGORIES))
    c = fragments.data(u)["counts"]
    faithful = np.arange(60_000) % 3 != 0
    draws = fragments.own_posterior(u, spec, np.random.default_rng(3), faithful)["alpha"]
    assert draws.shape == (faithful.size, len(CATEGORIES)) and np.allclose(draws.sum(axis=1), 1.0)
    for rows, a in ((draws[faithful], alpha + c), (draws[~faithful], alpha)):
        a0 = a.sum()
        mean, var = a / a0, a * (a0 - a) / (a0**2 * (a0 + 1))
        se_mean = np.sqrt(var / len(rows))
        assert (np.abs(rows.mean(axis=0) - mean) < 5 * se_mean + 1e-12).all()
        dev = rows - rows.mean(axis=0)
        se_var = np.sqrt(((dev**4).mean(axis=0) - rows.var(axis=0) ** 2) / len(rows))
        assert (np.abs(rows.var(axis=0) - var) < 5 * se_var).all()
        k = CATEGORIES.index("rod")  # the marginal of one share is Beta(a_k, a0 - a_k)
        assert stats.kstest(rows[:, k], stats.beta(a[k], a0 - a[k]).cdf).pvalue > 1e-3


def test_own_posterior_mean_agrees_with_importance_sampling_from_the_prior():
    """Independent of the conjugate algebra: prior draws weighted by the multinomial likelihood."""
    u = unit({"rod": 3, "cube": 1, "ball": 2})
    spec = spec_of("proximity_fragmentation")
    alpha = np.array(spec["alpha"].alpha_for(CATEGORIES))
    c = fragments.data(u)["counts"]
    rng = np.random.default_rng(11)
    prior = rng.dirichlet(alpha, size=400_000)
    logw = (c * np.log(np.clip(prior, 1e-300, None))).sum(axis=1)
    w = np.exp(logw - logw.max())
    is_mean = (w[:, None] * prior).sum(axis=0) / w.sum()
    got = fragments.own_posterior(u, spec, rng, np.ones(100_000, bool))["alpha"].mean(axis=0)
    assert np.abs(got - is_mean).max() < 0.01


def test_simulated_observations_keep_the_total_and_validate():
    u = unit({"rod": 3, "cube": 1, "ball": 2})
    rng = np.random.default_rng(5)
    theta = {"alpha": rng.dirichlet(np.ones(len(CATEGORIES)), size=1)}
    (new,) = fragments.simulate_observed(u, theta, rng)
    obs = FragmentsObs.model_validate(new)
    assert sum(obs.counts.values()) == 6 and fragments.check_observed(obs) == []
