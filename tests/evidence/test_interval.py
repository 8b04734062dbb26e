"""Interval: bounded influence, the physical range, the collapsed posterior, and the engine's evidence
against the independent oracle (tests/oracles/interval.py)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from oracles import interval as oracle
from scipy import stats

from engine.dists import Dist, parse_dist
from engine.evidence import REGISTRY
from engine.evidence.interval import SECONDS, IntervalObs

fam = REGISTRY["interval"]
ROOT = Path(__file__).resolve().parents[2]
GENERIC = {k: parse_dist(v) for k, v in yaml.safe_load((ROOT / "priors" / "mechanisms.yaml").read_text(encoding="utf-8"))
           ["mechanisms"]["generic"]["interval"].items()}


def unit(seconds: float, **specs: dict[str, Dist]) -> tuple:
    return (SimpleNamespace(observed=IntervalObs(seconds=seconds), params=specs or {"h": GENERIC}, id="x", source="s",
                            group=None),)


def spec(mu: float, tau: float | None, sd: float) -> dict[str, Dist]:
    return {"log_median": Dist("fixed", (mu,)) if tau is None else Dist("normal", (mu, tau)), "log_sd": Dist("fixed", (sd,))}


def as_oracle(s: dict[str, Dist]) -> tuple:
    med = s["log_median"]
    return ((med.kind, *med.args), s["log_sd"].args[0])


GRID = [  # (seconds, hypothesis spec (mu, tau, sd), reliability)
    (60.0, (4.1, 2.0, 1.0), 0.5), (40.0, (3.0, 0.5, 1.0), 1.0), (1e-3, (3.0, 0.5, 1.0), 0.5), (1e6, (4.1, 2.0, 1.0), 0.7),
    (2.0, (0.5, None, 0.2), 0.9), (86_400.0, (2.0, 0.1, 0.05), 0.5), (0.5, (8.0, 3.0, 0.3), 0.99),
]


def oracle_table(tmp: Path | None = None) -> list[tuple[str, float, float]]:
    """(label, engine log evidence, oracle log evidence): the unit over the grid, then a YAML case's
    exact_log_evidence per hypothesis (engine.inference.closedform)."""
    import tempfile

    from engine.inference.closedform import exact_log_evidence
    from engine.spec.case import load_case

    rows = []
    for d, (mu, tau, sd), r in GRID:
        s = spec(mu, tau, sd)
        items = unit(d, h=s)
        lh = fam.closed_form(items, s)
        got = lh if r >= 1 else float(np.logaddexp(math.log(r) + lh, math.log1p(-r) + fam.background(items, GENERIC, {})))
        want = oracle.unit_log_evidence(d, *as_oracle(s), as_oracle(GENERIC), r)
        rows.append((f"interval {d:g} s | log_median {'fixed' if tau is None else 'normal'}({mu:g}, {tau}), sd {sd:g}, r={r:g}",
                     got, want))
    doc = {
        "case": {"id": "interval-oracle", "title": "t", "date": "2024-01-01"},
        "sources": [{"id": "press", "title": "press", "reliability": 0.6}],
        "hypotheses": [{"id": "sam", "description": "s", "prior": 0.5, "mechanism": "proximity_fragmentation"},
                       {"id": "bomb", "description": "b", "prior": 0.5, "mechanism": "internal_explosion"}],
        "evidence": [{"id": "gap", "family": "interval", "source": "press", "observed": {"seconds": 7.0},
                      "under": {"sam": {"log_median": {"normal": [1.0, 0.5]}, "log_sd": 0.4}}},
                     {"id": "warning", "family": "interval", "source": "press", "observed": {"seconds": 3600.0}}],
    }
    tmp = Path(tempfile.mkdtemp()) if tmp is None else tmp
    path = tmp / "interval-oracle.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    case = load_case(path)
    under = {"sam": {"gap": spec(1.0, 0.5, 0.4)}}
    for hid in ("sam", "bomb"):
        want = sum(oracle.unit_log_evidence(e["observed"]["seconds"], *as_oracle(under.get(hid, {}).get(e["id"], GENERIC)),
                                            as_oracle(GENERIC), 0.6) for e in doc["evidence"])
        rows.append((f"interval YAML case, exact_log_evidence | {hid}", exact_log_evidence(case, hid), want))
    return rows


def test_engine_matches_the_independent_oracle(tmp_path):
    rows = oracle_table(tmp_path)
    bad = [row for row in rows if not abs(row[1] - row[2]) <= 0.05]
    assert not bad, bad


@settings(max_examples=300, deadline=None)
@given(log_d=st.one_of(st.floats(math.log(SECONDS[0]), math.log(SECONDS[1])), st.sampled_from([math.log(s) for s in SECONDS])),
       sd=st.sampled_from([1e-6, 0.01, 1.0, 5.0]), other=st.floats(0.01, 5.0), mu=st.floats(-30, 30),
       prior=st.tuples(st.floats(-10, 20), st.floats(0.01, 10)))
def test_no_duration_or_parameter_exceeds_the_stated_cap(log_d, sd, other, mu, prior):
    d = float(np.clip(math.exp(log_d), *SECONDS))
    a, b = spec(prior[0], prior[1], sd), spec(4.1, 2.0, other)
    items = unit(d, a=a, b=b)
    cap, bg = fam.log_ratio_cap(items), fam.background(items, GENERIC, {})
    for m in (mu, math.log(d)):  # any value, and the maximiser
        assert stats.norm.logpdf(math.log(d), m, sd) - math.log(d) - bg <= cap + 1e-9
    assert fam.closed_form(items, a) - bg <= cap + 1e-9


def test_the_cap_is_reached_far_from_the_generic_durations():
    items = unit(SECONDS[0], h=spec(0.0, 1.0, 1.0))
    got = stats.norm.logpdf(math.log(SECONDS[0]), math.log(SECONDS[0]), 1.0) - math.log(SECONDS[0]) - fam.background(items, GENERIC, {})
    assert fam.log_ratio_cap(items) - 0.01 < got <= fam.log_ratio_cap(items)


@pytest.mark.parametrize("seconds", [1e-4, 2e6])
def test_durations_outside_the_physical_range_are_refused(seconds):
    with pytest.raises(ValueError, match="outside 0.001..1e\\+06 s"):
        IntervalObs(seconds=seconds)


def test_own_posterior_is_normal_normal_where_faithful_and_the_prior_elsewhere():
    items = unit(60.0)
    n = 200_000
    faithful = np.arange(n) % 3 == 0
    d = fam.own_posterior(items, spec(4.1, 2.0, 1.0), np.random.default_rng(5), faithful)["log_median"]
    prec = 1 / 4 + 1
    mean, var = (4.1 / 4 + math.log(60.0)) / prec, 1 / prec
    for sel, (m, v) in ((faithful, (mean, var)), (~faithful, (4.1, 4.0))):
        assert abs(d[sel].mean() - m) < 5 * math.sqrt(v / sel.sum())
        assert d[sel].var() == pytest.approx(v, rel=0.03)
    assert fam.own_posterior(items, spec(4.1, None, 1.0), np.random.default_rng(5), faithful) == {}


def test_background_simulation_is_half_log_uniform():
    items = unit(60.0)
    rng = np.random.default_rng(7)
    theta = {"log_median": np.array([4.1]), "log_sd": np.array([1e-6])}  # generic part: always e^4.1 s
    d = np.array([fam.simulate_background(items, theta, rng)[0]["seconds"] for _ in range(20_000)])
    generic = np.isclose(d, math.exp(4.1), rtol=1e-4)
    assert abs(generic.mean() - 0.5) < 0.015
    u = (np.log(d[~generic]) - math.log(SECONDS[0])) / math.log(SECONDS[1] / SECONDS[0])
    assert stats.kstest(u, "uniform").pvalue > 1e-3
