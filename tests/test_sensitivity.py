"""Analytic sensitivity pieces against their closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from engine.estimate import attribute
from engine.sensitivity import break_even_priors, coincidence_test


def test_break_even_prior_flips_the_ranking_exactly():
    prior = {"l": 0.5, "j": 0.2, "k": 0.3}
    log_z = {"l": -3.0, "j": -5.0, "k": -4.0}
    res = break_even_priors(prior, log_z, "l")
    for alt, row in res.items():
        p = row["break_even_prior"]
        # closed form: p/(1-p) = pi_L/(1-pi_j) * Z_L/Z_j
        assert p / (1 - p) == pytest.approx(prior["l"] / (1 - prior[alt]) * np.exp(log_z["l"] - log_z[alt]))
        # and at that prior the two posteriors are equal
        new = {h: (p if h == alt else prior[h] * (1 - p) / (1 - prior[alt])) for h in prior}
        hs = list(prior)
        post, _ = attribute(np.array([new[h] for h in hs]), np.array([log_z[h] for h in hs]), np.zeros(3))
        assert post[hs.index("l")] == pytest.approx(post[hs.index(alt)], rel=1e-9)


def test_coincidence_inside_a_small_window_is_rare_by_chance():
    res = coincidence_test(50.0, (40.0, 70.0), (0.0, 600.0), clock_sd=0.01, n=50000, seed=1)
    assert res["distance"] == 0.0
    assert res["p_value"] == pytest.approx(30 / 600, abs=0.005)


def test_coincidence_far_from_the_window_is_unremarkable():
    res = coincidence_test(500.0, (40.0, 70.0), (0.0, 600.0), clock_sd=1.0, seed=2)
    assert res["p_value"] > 0.7
