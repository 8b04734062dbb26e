"""benchmarks/verdicts.py cannot silently rot: its pure-numpy parts, at small replicate counts and
fixed seeds, feed the engine's verdict functions with simulated inputs of known truth and the rates
must meet the bounds the benchmark states (false alarm <= bound, detection >= bound), each with a
Monte Carlo allowance: a one-sided binomial test at the 0.1 % level against the bound. (The sampler part, real NUTS /
SMC / bridge runs of the oracle case, is left to the benchmark's full run.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from scipy import stats

_spec = importlib.util.spec_from_file_location("verdicts_benchmark", Path(__file__).resolve().parent.parent / "benchmarks" / "verdicts.py")
V = sys.modules["verdicts_benchmark"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(V)

SEED = 19


def _consistent(r) -> bool:  # noqa: ANN001
    """One-sided binomial test at the 0.1 % level: a false-alarm count not improbably high for the bound,
    a detection count not improbably low."""
    if r.bound is None:
        return True
    if r.wrong:
        return stats.binom.cdf(r.fired, r.n, r.bound) >= 0.001
    return stats.binom.sf(r.fired - 1, r.n, r.bound) >= 0.001


def _check(rows: list) -> None:
    assert rows and all(r.n > 0 for r in rows)
    bad = [(r.verdict, r.scenario, r.fired, r.n, r.bound) for r in rows if not _consistent(r)]
    assert not bad, bad
    wrong = [r for r in rows if r.wrong]
    calm = [r for r in rows if not r.wrong]
    assert wrong and calm  # every part has both kinds of truth


def _rate(rows: list, verdict: str, scenario: str) -> float:
    (row,) = [r for r in rows if r.verdict == verdict and r.scenario.startswith(scenario)]
    return row.rate


def test_sensitivity_alarms_are_rare_without_cause_and_the_issues_tie_raises_one():
    rows = V.sensitivity_rows(300, SEED)
    _check(rows)
    # the issue's case (P(leader) 0.90 -> 0.47 at MC error 0.03) fires the alarm every time
    assert _rate(rows, "single-leg alarm", "the issue's case") >= 0.97
    # a flip within Monte Carlo error is mostly inconclusive, not an alarm, and rarely silent
    assert _rate(rows, "single-leg alarm", "flip within MC error") < 0.6
    assert _rate(rows, "alarm or inconclusive", "flip within MC error") >= 0.85
    # a kept near tie is often inconclusive (rerun), almost never an alarm
    assert _rate(rows, "inconclusive (rerun)", "near tie kept") > 0.1


def test_estimator_agreement_false_alarms_and_power_by_chain_count():
    rows = V.agreement_rows(400, SEED)
    _check(rows)
    # four chains catch a 3-nat bias nearly always; two chains much less often (Student's t with 1 d.f.)
    two = _rate(rows, "estimators disagree", "simulated: 2 SMC chains (chain log-Z s.d. 0.3), bridge s.e. 0.05; SMC biased by -3")
    four = _rate(rows, "estimators disagree", "simulated: 4 SMC chains (chain log-Z s.d. 0.3), bridge s.e. 0.05; SMC biased by -3")
    assert four >= 0.95 and two < four


def test_calibration_gates_pass_the_exact_posterior_and_fail_miscalibrated_forecasters():
    rows = V.calibration_rows(8, SEED, sizes=(200,)) + V.calibration_rows(20, SEED, sizes=(16,))
    _check(rows)
    # at the quick test's N the ECE gate alone has less power against overconfidence than the quick criteria
    assert _rate(rows, "ECE gate alone (noise floor q95)", "N = 16: overconfident") < _rate(rows, "calibration gate (quick test criteria)", "N = 16: overconfident")


def test_the_benchmarks_quick_criteria_are_the_quick_tests():
    from calibration.test_calibrate import quick_criteria

    summary = {"ece_noise_floor": {"q95": 0.123}}
    assert quick_criteria(summary) == {"ece_max": 0.123, **V.QUICK_CRITERIA}


def test_convergence_verdict_passes_mixing_chains_and_fails_a_stuck_one():
    rows = V.convergence_rows(40, SEED)
    _check(rows)
    assert _rate(rows, "convergence: fail", "one chain of 4 stuck") == 1.0


def test_the_rows_interval_is_clopper_pearson():
    row = V.Row("x", "y", False, 3, 40)
    lo, hi = row.interval()
    assert lo == pytest.approx(stats.beta.ppf(0.025, 3, 38)) and hi == pytest.approx(stats.beta.ppf(0.975, 4, 37))
