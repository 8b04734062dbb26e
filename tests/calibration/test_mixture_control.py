"""The quick calibration test fails for the marginalised mixture sampled by NUTS (a negative control).

In its own file, apart from tests/calibration/test_calibrate.py (the engine's quick calibration and the
sign-error control), because it is the suite's costliest fixture (~100-150 s): `make test` hands whole files
to its two processes, longest first, and the two halves now run side by side.
"""

from __future__ import annotations

import os

import pytest
from calibration.test_calibrate import HERE, QUICK, _quietly, quick_criteria
from conftest import CASES

from engine.spec.case import load_case


@pytest.fixture(scope="module")
def trap_mixture():
    """The informative template, 6 incidents, attributed by the marginalised mixture.

    Six, not twelve (issue 17: this fixture was the suite's most expensive, ~200 s, all NUTS on the
    mixture's spike-and-slab geometry: step size 0.03-0.05, 100-130 leapfrog steps per draw). With 12
    incidents the mixture's mean |P - exact| was 0.277 (max 0.76) and its expected Brier excess 0.26;
    the first six alone (the same incidents: seeds follow the index) give a mean error of 0.37, against
    the test's bound of 0.05.

    (The engine's own estimators on this template, with its conjugate units sampled, are measured by
    ``python benchmarks/oracle_crosscheck.py``; two non-strict xfail tests that ran them here passed
    whatever the outcome and were moved there, issue 17.)"""
    from engine.calibration.calibrate import CalibrationSettings, run_calibration

    # the trap's units are conjugate: sampled here (not integrated), so that NUTS faces the
    # latent parameters whose separated modes this template was built to show
    os.environ["INCIDENT_SAMPLE_CONJUGATE"] = "1"
    try:
        trap = load_case(CASES / "calibration-mixture-trap.yaml")
        return _quietly(run_calibration, trap, CalibrationSettings(**dict(QUICK, n=6), estimator="mixture"), options=HERE)
    finally:
        del os.environ["INCIDENT_SAMPLE_CONJUGATE"]


@pytest.mark.slow
def test_calibration_catches_the_marginalised_mixture_where_its_modes_separate(trap_mixture):
    """Informative data, close hypotheses: one NUTS run over the marginalised mixture of both
    hypotheses fails the quick criteria (its chains stay in the mode they find first)."""
    from engine.calibration.calibrate import summarize, verdict

    bad = summarize(trap_mixture)
    assert any("expected" in p for p in verdict(bad, **quick_criteria(bad))), bad["versus_exact"]
    assert bad["versus_exact"]["posterior_abs_error_mean"] > 0.05
