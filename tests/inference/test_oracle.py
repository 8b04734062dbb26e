"""The engine against closed-form marginal likelihoods (tests/exact.py, scipy only)."""

from __future__ import annotations

import exact
import numpy as np
import pytest
from oracles import fragments as frag_oracle

from engine.spec.case import load_case


def _frags(mechanism: str) -> float:
    """The frags unit {natural: 2, blade: 1, cube: 1} over the library's category set (tests/oracles/fragments.py)."""
    cats = frag_oracle.category_set(frag_oracle.library_tables().values())
    alpha = frag_oracle.concentrations(frag_oracle.library_tables()[mechanism], cats)
    return frag_oracle.log_polya(frag_oracle.count_vector({"natural": 2, "blade": 1, "cube": 1}, cats), alpha)


def _time(w: float) -> float:
    """The timing item: clock s.d. 3 min, reading rounded to 5 min (tests/oracles/timing.py)."""
    from oracles import timing as timing_oracle

    return timing_oracle.log_evidence([timing_oracle.Report(52.0, 3.0, 5.0)], (40.0, 70.0), (0.0, 600.0), w=w)


def oracle_truth() -> dict[str, float]:
    sizes = [30.0, 45.0, 60.0]
    return {
        "external": exact.perforations(6, 4, sizes, gamma=(0.6, 0.003), beta=(9, 1), normal=(2.3, 0.5), sd=0.5)
        + _frags("proximity_fragmentation")
        + _time(0.9)
        + exact.interval(40.0, mu=3.0, tau=0.5, sd=1.0)
        + exact.claim(0.9, r=0.7, rate=(2.0, 8.0)),
        "internal": exact.perforations(6, 4, sizes, gamma=(1.5, 0.3), beta=(1, 9), normal=(4.0, 1.0), sd=0.5)
        + _frags("internal_explosion")
        + _time(0.0)
        + exact.interval(40.0, mu=4.1, tau=2.0, sd=1.0)
        + exact.claim(0.2, r=0.7, rate=(2.0, 8.0)),
        "engine": exact.perforations(6, 4, sizes, gamma=(1.5, 0.5), beta=(6, 4), normal=(3.9, 0.8), sd=0.5)
        + _frags("uncontained_engine_failure")
        + _time(0.0)
        + exact.interval(40.0, mu=4.1, tau=2.0, sd=1.0)
        + exact.claim(0.3, r=0.7, rate=(2.0, 8.0)),
    }


@pytest.mark.slow
def test_each_estimator_matches_closed_form_log_evidence(oracle_run):
    _, result = oracle_run
    truth = oracle_truth()
    for hid, lz in truth.items():
        got = result["hypotheses"][hid]["log_evidence"]
        for estimator in ("smc", "bridge", "pooled"):
            assert abs(got[estimator] - lz) < 0.1, (hid, estimator, got[estimator], lz)


@pytest.mark.slow
def test_attribution_matches_exact_posterior(oracle_run):
    _, result = oracle_run
    truth = oracle_truth()
    hids = list(truth)
    exact_post = exact.posterior([0.5, 0.3, 0.2], [truth[h] for h in hids])
    for hid, p in zip(hids, exact_post, strict=True):
        assert abs(result["hypotheses"][hid]["posterior"] - p) < 0.01, (hid, result["hypotheses"][hid], p)
    assert result["leader"] == hids[int(np.argmax(exact_post))]
    assert result["converged"], result["warnings"]


@pytest.mark.slow
def test_ambiguous_case_is_not_decided_by_a_mode(tmp_path):
    """Two hypotheses whose exact posterior is within 0.45-0.55: the case the mixture trap fails."""
    from engine.run.lifecycle import read_attribution, run_case
    from engine.run.settings import ExecutionOptions, Settings

    case = load_case(__import__("conftest").CASES / "ambiguous.yaml")
    la = exact.perforations(12, 9, [8.0, 12.0], gamma=(2, 0.2), beta=(6, 2), normal=(2.3, 0.5), sd=0.5)
    lb = exact.perforations(12, 9, [8.0, 12.0], gamma=(4, 0.4), beta=(3, 1), normal=(2.4, 0.5), sd=0.5)
    p = exact.posterior([0.5, 0.5], [la, lb])
    assert 0.45 < p[0] < 0.55  # the case is really ambiguous
    result = read_attribution(run_case(case, settings=Settings(seed=3), out=tmp_path, options=ExecutionOptions(workers=0)))
    assert abs(result["hypotheses"]["a"]["posterior"] - p[0]) < 0.01, (result, p)
    assert abs(result["hypotheses"]["a"]["log_evidence"]["pooled"] - la) < 0.1
    assert abs(result["hypotheses"]["b"]["log_evidence"]["pooled"] - lb) < 0.1


@pytest.mark.slow
def test_unit_contributions_add_up_when_units_share_nothing(oracle_run):
    """With fixed reliabilities every unit's evidence is its own: contributions sum to the Bayes factor."""
    import json

    root, result = oracle_run
    contrib = json.loads((root / "diagnostics.json").read_text())["contributions"]
    truth = oracle_truth()
    lead, runner = contrib["leader"], contrib["runner_up"]
    total = sum(contrib["units"].values())
    assert total == pytest.approx((truth[lead] - truth[runner]) / np.log(10), abs=1e-9)
    assert set(contrib["units"]) == {"tail-holes", "frags", "time", "gap", "statement"}
