"""The calibration gate's error rates, by simulation from known forecasters (plain numpy): a
calibrated forecaster (outcomes drawn from its own probabilities) fails the default ECE gate about
5 % of the time at the chosen N, an overconfident one nearly always. The old fixed gate (ECE <= 0.03)
failed a calibrated engine far more often at N = 200."""

from __future__ import annotations

import numpy as np

from engine.calibration.calibrate import ECE_FALSE_FAIL, verdict
from engine.calibration.metrics import calibrated_null, ece

N, REPLICATES, NULL_REPS = 200, 200, 200


def _summary(stated: np.ndarray, truth: np.ndarray, rng: np.random.Generator) -> dict:
    null = calibrated_null(stated, rng=rng, reps=NULL_REPS)
    return {"n": len(truth), "scores": {"engine": {"ece": ece(stated, truth)}},
            "ece_noise_floor": {"mean": float(null["ece"].mean()), "q95": float(np.quantile(null["ece"], 0.95))}}


def _truth(p: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (rng.random(len(p))[:, None] > np.cumsum(p, axis=1)).sum(axis=1).clip(max=p.shape[1] - 1)


def test_the_default_ece_gate_fails_a_calibrated_forecaster_at_its_stated_rate_and_catches_an_overconfident_one():
    rng = np.random.default_rng(11)
    calibrated = overconfident = fixed = 0
    for _ in range(REPLICATES):
        p = rng.dirichlet([1.0, 1.0, 1.0], size=N)
        truth = _truth(p, rng)
        calibrated += bool(verdict(_summary(p, truth, rng)))
        fixed += bool(verdict(_summary(p, truth, rng), ece_max=0.03))
        sharp = p**3 / np.sum(p**3, axis=1, keepdims=True)  # states more certainty than the outcomes carry
        overconfident += bool(verdict(_summary(sharp, truth, rng)))
    # binomial(200, 0.05): mean 10, sd 3.1; the q95 is itself estimated from 200 null draws
    assert calibrated <= 2 * ECE_FALSE_FAIL * REPLICATES, calibrated
    assert calibrated >= 2, calibrated  # the gate is not vacuous
    assert fixed > 2 * calibrated, (fixed, calibrated)
    assert overconfident >= 0.9 * REPLICATES, overconfident
