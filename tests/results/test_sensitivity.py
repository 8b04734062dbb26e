"""Analytic sensitivity pieces against their closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from engine.inference.estimate import attribute
from engine.results.sensitivity import break_even_priors, coincidence_test


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


def _att(p: dict, le_se: float) -> dict:
    """An attribution record's numbers: posteriors p, every log evidence with s.e. le_se (and the
    posteriors' delta-method errors that follow)."""
    from engine.inference.estimate import attribute

    names = list(p)
    post, mcse = attribute(np.full(len(p), 1 / len(p)), np.log([p[h] for h in names]), np.full(len(p), le_se))
    return {"leader": max(p, key=p.get),
            "hypotheses": {h: {"posterior": float(post[i]), "posterior_mcse": float(mcse[i]), "prior": 1 / len(p),
                               "log_evidence": {"pooled": float(np.log(p[h]))}, "log_evidence_se": le_se}
                           for i, h in enumerate(names)}}


def test_the_margins_error_is_the_spread_of_simulated_margins():
    """Log evidences drawn around known values with known errors (independent per hypothesis): the
    standard deviation of P(a) - P(b) over the draws is margin_se's, and with two hypotheses it is
    twice P(a)'s error (the posteriors are anticorrelated), not sqrt(2) times."""
    from engine.results.sensitivity import margin_se

    rng = np.random.default_rng(4)
    for p, se in (({"a": 0.47, "b": 0.53}, 0.06), ({"a": 0.385, "b": 0.39, "c": 0.225}, 0.02), ({"a": 0.2, "b": 0.1, "c": 0.7}, 0.05)):
        rec = _att(p, se)["hypotheses"]
        lz = np.log(list(p.values())) + se * rng.standard_normal((200_000, len(p)))
        post = np.exp(lz - lz.max(axis=1, keepdims=True))
        post /= post.sum(axis=1, keepdims=True)
        simulated = np.std(post[:, 0] - post[:, 1])
        assert margin_se(rec, "a", "b") == pytest.approx(simulated, rel=0.03), (p, simulated)
    two = _att({"a": 0.47, "b": 0.53}, 0.06)["hypotheses"]
    assert margin_se(two, "b", "a") == pytest.approx(2 * two["a"]["posterior_mcse"], rel=1e-12)


def test_a_leader_change_within_monte_carlo_error_is_inconclusive_and_says_how_many_draws():
    """Il-20's near three-way tie fired the alarm on flips of 0.003 with MCSE 0.004; such a flip is
    inconclusive (rerun with more draws), never calm."""
    from types import SimpleNamespace

    from engine.results.sensitivity import margin_se, summarize

    base = {**_att({"a": 0.40, "b": 0.38, "c": 0.22}, 0.01), "case": "x", "run": "r"}
    results = {"drop-tie": _att({"a": 0.385, "b": 0.390, "c": 0.225}, 0.01),  # b ahead by 0.005 < 2 s.e. of the margin
               "drop-flip": _att({"a": 0.30, "b": 0.50, "c": 0.20}, 0.01),
               "drop-move": _att({"a": 0.75, "b": 0.15, "c": 0.10}, 0.01)}
    variants = {n: {"kind": "ablation", "label": n.removeprefix("drop-")} for n in results}
    out = summarize(SimpleNamespace(items=[]), base, variants, results)
    assert out["alarms"] == ["single-leg: dropping flip makes b the leader", "single-leg: dropping move moves P(a) by +0.35"]
    (tie,) = [r for r in out["ablation"] if r["variant"] == "drop-tie"]
    se = margin_se(results["drop-tie"]["hypotheses"], "b", "a")
    assert tie["margin"] == pytest.approx(0.005) and tie["margin_se"] == pytest.approx(se)
    want = int(np.ceil((2 * se / 0.005) ** 2))
    assert out["ties"] == [f"inconclusive: dropping tie puts b level with a within Monte Carlo error (P 0.390 vs 0.385, "
                           f"margin 0.005 ± {se:.3f}); rerun with about {want}x the draws to tell whether the leader changes"]


def test_an_inconclusive_flip_that_moves_the_leader_far_still_raises_the_shift_alarm():
    """The issue's case: dropping one unit took P(leader) from 0.90 to 0.47 at an MC error of 0.03,
    within 2 s.e. of the margin, and no alarm fired. Now the row is inconclusive and the shift alarm fires."""
    from types import SimpleNamespace

    from engine.results.sensitivity import summarize

    base = {**_att({"a": 0.90, "b": 0.10}, 0.2), "case": "x", "run": "r"}
    drop = _att({"a": 0.47, "b": 0.53}, 0.085)
    assert drop["hypotheses"]["a"]["posterior_mcse"] == pytest.approx(0.03, abs=0.001)
    out = summarize(SimpleNamespace(items=[]), base, {"drop-x": {"kind": "ablation", "label": "x"}}, {"drop-x": drop})
    assert out["alarms"] == ["single-leg: dropping x moves P(a) by -0.43"]
    assert len(out["ties"]) == 1 and out["ties"][0].startswith("inconclusive: dropping x puts b level with a")
