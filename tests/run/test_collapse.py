"""Collapsed units and exact models (issue 14): a unit whose parameters are its own and conjugate is
integrated exactly by the model; a model with no free parameter is evaluated, never sampled.

Truth here is the unit's two closed-form terms combined by hand: one unit evaluated alone has
Z_H = E[r] p(y | H) + (1 - E[r]) p_bg(y) exactly, whatever the law of r (it enters linearly once).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from engine.evidence import family_of, generic_spec
from engine.spec.case import load_case

CASES = __import__("pathlib").Path(__file__).resolve().parent.parent / "cases"
SMALL = dict(seed=5, draws=500, tune=500, chains=2, smc_draws=500, smc_chains=2)


def _run(case, tmp_path, **settings):
    from engine.run.lifecycle import read_attribution, run_case
    from engine.run.settings import ExecutionOptions, Settings

    root = run_case(case, settings=Settings(**{**SMALL, **settings}), options=ExecutionOptions(workers=0), out=tmp_path,
                    command=["pytest"])
    return root, read_attribution(root)


def _terms(case):
    """{hypothesis: (log p(y | H), log p_bg(y))} of the case's single unit."""
    ((_, items),) = list(case.units())
    fam = family_of(items)
    return {h: (fam.closed_form(items, items[0].params[h]), fam.background(items, generic_spec(case, items), {}))
            for h in case.hypotheses}


def test_a_model_with_no_free_parameter_is_evaluated_exactly(tmp_path):
    """The oracle case without its claim: every unit collapsed or fixed, every source fixed."""
    from engine.inference.closedform import exact_log_evidence
    from engine.model.build import build_model

    text = (CASES / "oracle.yaml").read_text()
    (tmp_path / "exact.yaml").write_text(text[:text.index("  - id: statement")])
    case = load_case(tmp_path / "exact.yaml")
    assert all(not build_model(case, h).value_vars for h in case.hypotheses)
    root, result = _run(case, tmp_path / "runs", draws=100, tune=100)
    diag = json.loads((root / "diagnostics.json").read_text())
    for hid, h in result["hypotheses"].items():
        assert h["method"] == "exact"
        exact = exact_log_evidence(case, hid)
        for est in ("smc", "bridge", "pooled"):
            assert h["log_evidence"][est] == pytest.approx(exact, abs=1e-9), (hid, est)
        assert diag["hypotheses"][hid]["exact"] is True and diag["hypotheses"][hid]["problems"] == []


@pytest.mark.slow
def test_one_800_hole_count_from_a_half_reliable_source_is_neither_lost_nor_a_failed_verdict(tmp_path):
    """The issue's trap: the sampled hole rate had two modes and both samplers missed the
    mechanism's; the exact answer (one unit: E[r] = 0.5) is what the run must give."""
    case = load_case(CASES / "overreach-800.yaml")
    root, result = _run(case, tmp_path)
    diag = json.loads((root / "diagnostics.json").read_text())
    assert diag["verdict"] != "fail", diag
    lz = {}
    for hid, (lh, lb) in _terms(case).items():
        lz[hid] = float(np.logaddexp(np.log(0.5) + lh, np.log(0.5) + lb))
        got = result["hypotheses"][hid]["log_evidence"]
        assert abs(got["smc"] - lz[hid]) < 0.05 and abs(got["bridge"] - lz[hid]) < 0.05, (hid, got, lz[hid])
    post = np.exp(np.array(list(lz.values())) - np.logaddexp.reduce(list(lz.values())))
    got = np.array([result["hypotheses"][h]["posterior"] for h in lz])
    assert np.abs(got - post).max() < 0.01, (got, post)


@pytest.mark.slow
def test_the_collapsed_units_parameters_follow_their_exact_posterior(tmp_path):
    """The stored draws of the hole rate against its exact marginal posterior: with probability
    P(faithful | y) the Gamma posterior, else the Gamma prior (fixed reliability 0.5)."""
    from engine.run.store import read_idata

    text = (CASES / "overreach-800.yaml").read_text().replace("reliability: {beta: [4.0, 4.0]}", "reliability: 0.5")
    (tmp_path / "fixed.yaml").write_text(text)
    case = load_case(tmp_path / "fixed.yaml")
    root, _ = _run(case, tmp_path / "runs", draws=2000)
    (lh, lb) = _terms(case)["missile"]
    w = 1.0 / (1.0 + np.exp(lb - lh))
    a, b = case.items[0].params["missile"]["hole_rate"].args
    idata = read_idata(root / "posterior" / "missile.nc")
    draws = idata.posterior["fuselage-holes__hole_rate"].values.ravel()
    grid = np.quantile(draws, [0.1, 0.3, 0.5, 0.7, 0.9])
    exact_cdf = w * stats.gamma.cdf(grid, a + 800, scale=1 / (b + 1)) + (1 - w) * stats.gamma.cdf(grid, a, scale=1 / b)
    assert np.abs(exact_cdf - [0.1, 0.3, 0.5, 0.7, 0.9]).max() < 0.05, (w, grid, exact_cdf)
