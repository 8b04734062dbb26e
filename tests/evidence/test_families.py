"""Each family's log-likelihood against an independent numpy/scipy computation."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytensor.tensor as pt
import pytest
from scipy import integrate, special, stats

from engine.dists import Dist
from engine.evidence import REGISTRY
from engine.evidence.claim import ClaimObs
from engine.evidence.fragments import FragmentsObs
from engine.evidence.interval import IntervalObs
from engine.evidence.perforations import PerforationsObs
from engine.evidence.timing import TimingObs, log_uniform_conv

claim, elicited, fragments, interval, perforations, timing = (
    REGISTRY[n] for n in ("claim", "elicited", "fragments", "interval", "perforations", "timing"))


def item(obs, **params):
    return SimpleNamespace(observed=obs, params={"h": params}, id="x", source="s", group=None)


def c(x):
    return pt.as_tensor_variable(np.asarray(x, dtype=float))


def test_perforations_loglik_is_poisson_binomial_lognormal():
    obs = PerforationsObs(holes=7, exposure=2.0, assessed=5, inward=4, sizes_mm=(9.0, 14.0))
    got = perforations.loglik((item(obs),), {"hole_rate": c(3.1), "inward_fraction": c(0.7),
                                            "log_size_mean": c(2.4), "log_size_sd": c(0.6)}).eval()
    want = (stats.poisson.logpmf(7, 6.2) + stats.binom.logpmf(4, 5, 0.7)
            + stats.lognorm.logpdf([9.0, 14.0], s=0.6, scale=math.exp(2.4)).sum())
    assert got == pytest.approx(want, rel=1e-9)


def test_perforations_closed_form_integrates_the_likelihood():
    obs = PerforationsObs(holes=3, inward=1, sizes_mm=(20.0,))
    spec = {"hole_rate": Dist("gamma", (2.0, 0.5)), "inward_fraction": Dist("beta", (2.0, 3.0)),
            "log_size_mean": Dist("normal", (3.0, 0.4)), "log_size_sd": Dist("fixed", (0.5,))}
    lam = integrate.quad(lambda x: stats.poisson.pmf(3, x) * stats.gamma.pdf(x, 2.0, scale=2.0), 0, 60)[0]
    frac = integrate.quad(lambda f: stats.binom.pmf(1, 3, f) * stats.beta.pdf(f, 2, 3), 0, 1)[0]
    size = integrate.quad(lambda m: stats.lognorm.pdf(20.0, s=0.5, scale=math.exp(m)) * stats.norm.pdf(m, 3.0, 0.4), -2, 8)[0]
    assert perforations.closed_form((item(obs),), spec) == pytest.approx(math.log(lam * frac * size), rel=1e-7)


def test_fragments_loglik_is_multinomial_and_closed_form_is_dirichlet_multinomial():
    """Over the full category set (types not written count 0; unlisted types share `other`)."""
    obs = FragmentsObs(counts={"rod": 3, "cube": 0, "natural": 2})
    cats = fragments.labels((item(obs),))
    x = np.array([obs.counts.get(k, 0) for k in cats])
    p = np.random.default_rng(1).dirichlet(np.ones(len(cats)))
    got = fragments.loglik((item(obs),), {"alpha": c(p)}).eval()
    assert got == pytest.approx(stats.multinomial.logpmf(x, 5, p), rel=1e-6)
    table = {"rod": 2.0, "cube": 1.0, "natural": 0.5, "other": 0.6}
    alpha = np.array([table[k] if k in table and k != "other" else 0.6 / (len(cats) - 3) for k in cats])
    # Dirichlet-multinomial by its gamma-function formula
    n = 5
    want = (special.gammaln(n + 1) - special.gammaln(x + 1).sum() + special.gammaln(alpha.sum())
            - special.gammaln(n + alpha.sum()) + (special.gammaln(x + alpha) - special.gammaln(alpha)).sum())
    spec = {"alpha": Dist("dirichlet", tuple(table.values()), tuple(table))}
    assert fragments.closed_form((item(obs),), spec) == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("t", [10.0, 55.0, 71.0, 300.0, 599.0])
def test_timing_loglik_is_uniform_window_mixture_convolved_with_clock_error(t):
    obs = TimingObs(time=t, window=(40.0, 70.0), period=(0.0, 600.0), rounding_min=5.0)
    sd = 2.0
    got = timing.loglik((item(obs),), {"in_window": c(0.8), "clock_sd": [c(sd)]}).eval()

    def conv(lo, hi):  # the reading T + e falls in the reported 5-minute bin (per minute of bin)
        def f(x):
            return (stats.norm.cdf((t + 2.5 - x) / sd) - stats.norm.cdf((t - 2.5 - x) / sd)) / 5.0 / (hi - lo)

        return integrate.quad(f, lo, hi, points=[x for x in (t - 2.5, t + 2.5) if lo < x < hi] or None, limit=200)[0]

    assert got == pytest.approx(math.log(0.8 * conv(40, 70) + 0.2 * conv(0, 600)), rel=1e-6)


def test_timing_group_shares_one_latent_time():
    obs = [TimingObs(time=t, window=(40.0, 70.0), period=(0.0, 600.0)) for t in (50.0, 58.0)]
    sds = (2.0, 5.0)
    got = log_uniform_conv([50.0, 58.0], [c(s) for s in sds], 40.0, 70.0).eval()
    want = integrate.quad(lambda x: stats.norm.pdf(50, x, 2.0) * stats.norm.pdf(58, x, 5.0) / 30, 40, 70)[0]
    assert got == pytest.approx(math.log(want), rel=1e-7)
    assert len(obs) == 2


def test_timing_far_tail_is_finite():
    got = log_uniform_conv([5000.0], [c(1.0)], 40.0, 70.0).eval()
    assert np.isfinite(got) and got < -1e6


def test_interval_loglik_is_lognormal_and_closed_form_integrates_mu():
    obs = IntervalObs(seconds=60.0)
    got = interval.loglik((item(obs),), {"log_median": c(3.5), "log_sd": c(0.8)}).eval()
    assert got == pytest.approx(stats.lognorm.logpdf(60.0, s=0.8, scale=math.exp(3.5)), rel=1e-9)
    spec = {"log_median": Dist("normal", (4.0, 1.5)), "log_sd": Dist("fixed", (0.8,))}
    want = integrate.quad(lambda m: stats.lognorm.pdf(60.0, s=0.8, scale=math.exp(m)) * stats.norm.pdf(m, 4.0, 1.5), -6, 14)[0]
    assert interval.closed_form((item(obs),), spec) == pytest.approx(math.log(want), rel=1e-7)


def test_claim_and_elicited_use_the_mean_probability():
    obs = ClaimObs(statement="s", interest="against")
    assert claim.loglik((item(obs),), {"holds": c(0.25)}).eval() == pytest.approx(math.log(0.25))
    assert claim.closed_form((item(obs),), {"holds": Dist("beta", (1.0, 3.0))}) == pytest.approx(math.log(0.25))
    assert elicited.closed_form(None, {"p": Dist("beta", (2.0, 6.0))}) == pytest.approx(math.log(0.25))


def test_admission_against_interest_outweighs_self_serving_claim(tmp_path):
    """P(assert|true)/P(assert|false) = (r + (1-r) b) / ((1-r) b), evaluated through the model."""
    from engine.model.build import build_model
    from engine.spec.case import load_case

    case = load_case(__import__("conftest").CASES / "claims.yaml")
    r = 0.6
    ratios = {}
    for interest, b in (("against", 0.03), ("serves", 0.8)):
        lz = {}
        for hid in ("true", "false"):
            model = build_model(case, hid)
            pot = next(p for p in model.potentials if p.name == f"ll__{interest}")
            expr = model.replace_rvs_by_values([pot])[0]
            fn = model.compile_fn(expr, inputs=model.value_vars, on_unused_input="ignore")
            point = {v.name: np.asarray(0.0) for v in model.value_vars}
            point[f"assertion_rate__{interest}_logodds__"] = np.asarray(special.logit(b))
            lz[hid] = float(fn(point))
        ratios[interest] = math.exp(lz["true"] - lz["false"])
        assert ratios[interest] == pytest.approx((r + (1 - r) * b) / ((1 - r) * b), rel=1e-6)
    assert ratios["against"] > 10 * ratios["serves"]
