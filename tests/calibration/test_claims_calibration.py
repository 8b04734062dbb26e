"""Calibration on claims, Beta source reliabilities, shared assertion rates and elicited items
(tests/cases/calibration-claims.yaml), checked against truth:

* simulated incidents follow the generative story the independent oracle (tests/oracles/claims.py)
  was written from: the rate at which every designed claim is asserted and the hypotheses' frequencies
  among the incidents kept;
* the quadrature reference over the shared parameters (engine.calibration.reference) is exact: it
  equals the closed form where one exists and does not move with more nodes, and it is a calibrated
  forecast on simulated incidents;
* the engine's posterior is calibrated against it on a quick run, and the sign-error control is not.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import CASES
from oracles import claims as oracle
from scipy import stats

from engine.run.settings import ExecutionOptions
from engine.spec.case import load_case

TEMPLATE = CASES / "calibration-claims.yaml"
QUICK = dict(n=8, draws=200, tune=200, chains=2, smc_draws=200, smc_chains=2, seed=5)


@pytest.fixture(scope="module")
def template():
    return load_case(TEMPLATE)


@pytest.fixture(scope="module")
def incidents(template):
    from engine.calibration.simulate import simulate_incident
    from engine.run.seeds import incident_seed

    return [simulate_incident(template, i, np.random.default_rng(incident_seed(13, i))) for i in range(600)]


def test_claims_template_is_simulable_and_keeps_its_design(template, incidents):
    from engine.calibration.simulate import check_design
    from engine.model.build import observation_data

    check_design(template)
    shapes = {k: np.shape(v) for k, v in observation_data(template).items()}
    for inc in incidents[:50]:
        assert {k: np.shape(v) for k, v in observation_data(inc.case).items()} == shapes
        for cid in ("admission", "accusation", "denial", "flash", "smell"):
            assert inc.case.item(cid).observed == template.item(cid).observed  # asserted / seen, as designed
        assert inc.case.item("holes").observed.assessed == min(4, inc.case.item("holes").observed.holes)
        assert set(inc.shared) == {"reliability__analyst", "reliability__party", "reliability__rival", "reliability__media",
                                   "reliability__inspectors", "reliability__radar",
                                   "assertion_rate__against", "assertion_rate__neutral", "assertion_rate__serves"}
        assert inc.shared["reliability__analyst"] == 0.9 and 0 < inc.shared["reliability__party"] < 1
        assert inc.attempts >= 1 and inc.case.digest == template.digest


def test_simulated_incidents_follow_the_oracles_story(template, incidents):
    """Acceptance rate = P(every claim asserted, the fact seen) and P(H | kept) = pi_H P(events | H) / P(events),
    both from the independent oracle (perforations and timing are not conditioned on: they integrate to 1)."""
    log_z = oracle.log_evidence_of(TEMPLATE, others="ignore")
    hids = list(template.hypotheses)
    prior = np.array([template.hypotheses[h].prior for h in hids])
    joint = prior * np.exp([log_z[h] for h in hids])
    p_events = joint.sum()
    n, tries = len(incidents), sum(inc.attempts for inc in incidents)
    z = (tries - n / p_events) / np.sqrt(n * (1 - p_events) / p_events**2)  # total draws: negative binomial
    assert abs(z) < 4, (n / tries, p_events)
    counts = np.array([sum(inc.hypothesis == h for inc in incidents) for h in hids])
    expected = n * joint / p_events
    chi2 = float(np.sum((counts - expected) ** 2 / expected))
    assert stats.chi2.sf(chi2, len(hids) - 1) > 0.001, (counts, expected.round(1))
    # the conditioning matters: the kept incidents' hypotheses are not the prior's
    assert np.abs(joint / p_events - prior).max() > 0.05


def test_reference_equals_the_closed_form_where_one_exists():
    from engine.calibration.reference import reference_log_evidence
    from engine.inference.closedform import exact_log_evidence

    for name in ("calibration-oracle-claims.yaml", "calibration-4h.yaml", "claims.yaml"):
        case = load_case(CASES / name)
        ref = reference_log_evidence(case)
        for hid in case.hypotheses:
            assert ref[hid] == pytest.approx(exact_log_evidence(case, hid), abs=1e-9), (name, hid)


def test_reference_is_exact_with_the_nodes_it_uses(template, incidents):
    """Each unit is linear in each shared parameter, so d + 2 Gauss-Jacobi nodes are exact: more change nothing."""
    from engine.calibration.reference import reference_log_evidence, reference_problem

    assert reference_problem(template) is None
    for inc in incidents[:3]:
        a, b = reference_log_evidence(inc.case), reference_log_evidence(inc.case, extra_nodes=3)
        assert all(abs(a[h] - b[h]) < 1e-10 for h in a), (a, b)


def test_reference_refuses_what_it_cannot_integrate(template):
    import dataclasses

    from engine.calibration.reference import reference_log_evidence, reference_problem
    from engine.dists import Dist

    radar = dataclasses.replace(template.sources["radar"], reliability=Dist("gamma", (2.0, 3.0)))
    case = dataclasses.replace(template, sources={**template.sources, "radar": radar})
    assert "reliability__radar has a gamma prior" in reference_problem(case)
    with pytest.raises(ValueError, match="no quadrature reference"):
        reference_log_evidence(case)


def test_reference_posterior_is_calibrated_on_simulated_incidents(template, incidents):
    """If the simulator and the reference agree, the reference's P(H | y) is a calibrated forecast of H."""
    from engine.calibration.metrics import calibrated_null, ece
    from engine.calibration.reference import reference_posterior

    hids = list(template.hypotheses)
    prob = np.array([reference_posterior(inc.case)[2] for inc in incidents])
    truth = np.array([hids.index(inc.hypothesis) for inc in incidents])
    onehot = np.eye(len(hids))[truth]
    z = (onehot - prob).sum(axis=0) / np.sqrt((prob * (1 - prob)).sum(axis=0))
    assert np.all(np.abs(z) < 4), z
    null = calibrated_null(prob, rng=np.random.default_rng(0), reps=300)
    assert ece(prob, truth) <= np.quantile(null["ece"], 0.995), (ece(prob, truth), np.quantile(null["ece"], [0.5, 0.995]))
    brier = np.mean(np.sum((prob - onehot) ** 2, axis=1))
    assert np.quantile(null["brier"], 0.0025) <= brier <= np.quantile(null["brier"], 0.9975), (brier, null["brier"].mean())
    assert 0.4 < prob.max(axis=1).mean() < 0.95  # spread, not all ~0 or ~1


def test_brier_noise_floor_is_the_expected_brier_of_a_calibrated_forecaster():
    """E[Brier] of calibrated forecasts p is mean(1 - sum p^2); a miscalibrated forecaster's realized Brier leaves the band."""
    from engine.calibration.metrics import brier, calibrated_null

    rng = np.random.default_rng(3)
    prob = rng.dirichlet([1, 1, 1], size=400)
    null = calibrated_null(prob, rng=rng, reps=400)
    assert null["brier"].mean() == pytest.approx(np.mean(1 - np.sum(prob**2, axis=1)), abs=0.005)
    truth = prob.argmin(axis=1)  # outcomes where the forecaster is least confident
    assert brier(prob, truth) > np.quantile(null["brier"], 0.999)


# ------------------------------------------------------------------ the engine on the claims template
def _quietly(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _criteria(summary: dict) -> dict:
    return dict(ece_max=summary["ece_noise_floor"]["q95"], brier_gap_max=0.02, brier_excess_max=0.002, ece_expected_max=0.02)


@pytest.fixture(scope="module")
def quick_claims(template):
    from engine.calibration.calibrate import CalibrationSettings, run_calibration, summarize

    run = _quietly(run_calibration, template, CalibrationSettings(**QUICK), options=ExecutionOptions(workers=0))
    return run, summarize(run)


@pytest.mark.slow
def test_quick_claims_calibration_passes_for_the_engine(quick_claims):
    from engine.calibration.calibrate import format_summary, verdict

    run, summary = quick_claims
    assert all(r["exact"]["method"] == "quadrature" and r["attempts"] >= 1 for r in run.records)
    assert verdict(summary, **_criteria(summary)) == [], format_summary(summary)
    assert summary["versus_exact"]["posterior_abs_error_mean"] < 0.02
    assert summary["log_evidence_errors"]["pooled"]["median_abs"] < 0.1, summary["log_evidence_errors"]
    assert {"sam:reliability__party", "sam:assertion_rate__serves"} <= set(summary["sbc"]) or run.records[0]["truth"] != "sam"
    assert 0 < summary["acceptance"] < 0.2 and "Brier of a calibrated forecaster" in format_summary(summary)


@pytest.mark.slow
def test_quick_claims_calibration_fails_for_a_sign_error(template, quick_claims):
    from engine.calibration.calibrate import CalibrationSettings, run_calibration, summarize, verdict

    broken = _quietly(run_calibration, template, CalibrationSettings(**{**QUICK, "estimator": "sign-error"}),
                      options=ExecutionOptions(workers=0))
    summary = summarize(broken)
    problems = verdict(summary, **_criteria(quick_claims[1]))
    assert any("expected Brier excess" in p for p in problems), summary["versus_exact"]
    assert [r["observed"] for r in broken.records] == [r["observed"] for r in quick_claims[0].records]
