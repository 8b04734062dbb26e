"""Perforations: bounded influence, counts stated as ranges, collapsed posteriors, and the engine's
evidence against the independent oracle (tests/oracles/perforations.py)."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from conftest import python_mode
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from oracles import perforations as oracle
from scipy import integrate, stats

from engine.dists import Dist, parse_dist
from engine.evidence import REGISTRY
from engine.evidence.perforations import N_MAX, SIZE_MM, WORDS, HoleCount, PerforationsObs, bounds, log_mass

fam = REGISTRY["perforations"]
ROOT = Path(__file__).resolve().parents[2]
LIBRARY = yaml.safe_load((ROOT / "priors" / "mechanisms.yaml").read_text(encoding="utf-8"))["mechanisms"]


def mech(name: str) -> dict[str, Dist]:
    return {k: parse_dist(v) for k, v in LIBRARY[name]["perforations"].items()}


def unit(obs: dict, **specs: dict[str, Dist]) -> tuple:
    return (SimpleNamespace(observed=PerforationsObs(**obs), params=specs or {"h": mech("generic")}, id="x",
                            source="s", group=None),)


def oracle_spec(spec: dict[str, Dist]) -> dict:
    def one(d: Dist) -> tuple:
        return (d.kind, *d.args)

    return {"rate": one(spec["hole_rate"]), "frac": one(spec["inward_fraction"]), "mean": one(spec["log_size_mean"]),
            "sd": spec["log_size_sd"].args[0]}


def oracle_obs(obs: dict) -> dict:
    o = PerforationsObs(**obs)
    lo, hi = bounds(o.holes)
    return {"lo": lo, "hi": hi, "exposure": o.exposure, "m": lo if o.assessed is None else o.assessed, "k": o.inward,
            "sizes": list(o.sizes_mm)}


def engine_unit(items: tuple, spec: dict, generic: dict, r: float) -> float:
    lh = fam.closed_form(items, spec)
    if r >= 1:
        return lh
    return float(np.logaddexp(math.log(r) + lh, math.log1p(-r) + fam.background(items, generic, {})))


GRID = [  # (label, observation, mechanism, reliability)
    ("6 holes, 4/6 inward, 3 sizes", {"holes": 6, "inward": 4, "sizes_mm": [30.0, 45.0, 60.0]}, "proximity_fragmentation", 0.7),
    ("0 holes", {"holes": 0}, "bird_strike", 0.5),
    ("800 holes", {"holes": 800}, "proximity_fragmentation", 0.5),
    ("800 holes, all 800 inward", {"holes": 800, "inward": 800}, "internal_explosion", 0.5),
    ("100,000 holes, exposure 3", {"holes": 100_000, "exposure": 3.0}, "proximity_fragmentation", 0.9),
    ("10^7 holes (the largest)", {"holes": N_MAX}, "generic", 0.5),
    ("at least 100", {"holes": {"at_least": 100}}, "proximity_fragmentation", 0.5),
    ("at least 10^6", {"holes": {"at_least": 1_000_000}}, "proximity_fragmentation", 1.0),
    ("at most 5", {"holes": {"at_most": 5}, "assessed": 0}, "uncontained_engine_failure", 0.8),
    ("between 3 and 9, 2/3 inward, 2 sizes", {"holes": {"between": [3, 9]}, "assessed": 3, "inward": 2, "sizes_mm": [8.0, 12.0]},
     "internal_explosion", 0.6),
    ("dozens", {"holes": "dozens"}, "proximity_fragmentation", 0.5),
    ("hundreds, 10/10 inward", {"holes": "hundreds", "assessed": 10, "inward": 10}, "proximity_fragmentation", 0.5),
    ("thousands", {"holes": "thousands"}, "internal_explosion", 0.3),
    ("1 hole of 5.5 m", {"holes": 1, "sizes_mm": [5500.0]}, "bird_strike", 0.9),
    ("2 holes of 0.1 mm and 20 m", {"holes": 2, "sizes_mm": [0.1, 20_000.0]}, "generic", 0.5),
]
FIXED = {"hole_rate": Dist("fixed", (30.0,)), "inward_fraction": Dist("fixed", (0.8,)),
         "log_size_mean": Dist("fixed", (2.5,)), "log_size_sd": Dist("fixed", (0.4,))}


def yaml_case(tmp: Path) -> Path:
    """A small case with two perforation items (one a range) from a source of fixed reliability 0.6."""
    doc = {
        "case": {"id": "perf-oracle", "title": "t", "date": "2024-01-01"},
        "sources": [{"id": "press", "title": "press", "reliability": 0.6}, {"id": "lab", "title": "lab", "reliability": 0.9}],
        "hypotheses": [
            {"id": "sam", "description": "s", "prior": 0.5, "mechanism": "proximity_fragmentation"},
            {"id": "bomb", "description": "b", "prior": 0.5, "mechanism": "internal_explosion"},
        ],
        "evidence": [
            {"id": "tail", "family": "perforations", "source": "press", "observed": {"holes": "hundreds", "assessed": 12, "inward": 11}},
            {"id": "door", "family": "perforations", "source": "lab", "observed": {"holes": {"at_least": 30}, "sizes_mm": [9.0, 14.0]}},
            {"id": "wing", "family": "perforations", "source": "press", "observed": {"holes": 800}},
        ],
    }
    path = tmp / "perf-oracle.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def oracle_table(tmp: Path | None = None) -> list[tuple[str, float, float]]:
    """(label, engine log evidence, oracle log evidence) over the grid, then the YAML case's
    exact_log_evidence per hypothesis (engine.inference.closedform)."""
    import tempfile

    from engine.inference.closedform import exact_log_evidence
    from engine.spec.case import load_case

    generic = mech("generic")
    rows = []
    for label, obs, name, r in GRID:
        spec = mech(name)
        items = unit(obs, h=spec)
        rows.append((f"perforations {label} | {name}, r={r:g}", engine_unit(items, spec, generic, r),
                     oracle.unit_log_evidence(oracle_obs(obs), oracle_spec(spec), oracle_spec(generic), r)))
    for label, obs, _, r in GRID[:4] + GRID[6:10]:
        items = unit(obs, h=FIXED)
        rows.append((f"perforations {label} | fixed rate 30, f 0.8, mu 2.5, r={r:g}", engine_unit(items, FIXED, generic, r),
                     oracle.unit_log_evidence(oracle_obs(obs), oracle_spec(FIXED), oracle_spec(generic), r)))
    tmp = Path(tempfile.mkdtemp()) if tmp is None else tmp
    case = load_case(yaml_case(tmp))
    raw = yaml.safe_load((tmp / "perf-oracle.yaml").read_text(encoding="utf-8"))
    rel = {s["id"]: s["reliability"] for s in raw["sources"]}
    for h in raw["hypotheses"]:
        want = sum(oracle.unit_log_evidence(oracle_obs(e["observed"]), oracle_spec(mech(h["mechanism"])), oracle_spec(generic),
                                            rel[e["source"]]) for e in raw["evidence"])
        rows.append((f"perforations YAML case, exact_log_evidence | {h['id']}", exact_log_evidence(case, h["id"]), want))
    return rows


def test_engine_matches_the_independent_oracle(tmp_path):
    rows = oracle_table(tmp_path)
    bad = [(label, got, want) for label, got, want in rows if not abs(got - want) <= 0.05]
    assert not bad, bad
    assert len(rows) >= 25


# ---------------------------------------------------------------- bounded influence
def logp_at(items: tuple, theta: dict) -> float:
    """log p(y | H, theta) with the size Jacobian (logp_np omits it: it is a discrepancy)."""
    o = items[0].observed
    t = {k: np.asarray([v], dtype=float) for k, v in theta.items()}
    return float(fam.logp_np(items, fam.observed(items), t)[0] - np.log(np.asarray(o.sizes_mm, dtype=float)).sum())


def adversary(items: tuple, sd: float) -> dict:
    """The parameter value that maximises the likelihood of the observation."""
    o = items[0].observed
    lo, hi = bounds(o.holes)
    m = lo if o.assessed is None else o.assessed
    return {"hole_rate": max(hi if hi < N_MAX else lo, 1e-9) / o.exposure,
            "inward_fraction": (o.inward or 0) / m if m else 0.5,
            "log_size_mean": float(np.mean(np.log(o.sizes_mm))) if o.sizes_mm else 0.0, "log_size_sd": sd}


counts = st.one_of(
    st.integers(0, N_MAX), st.sampled_from([0, 1, N_MAX, N_MAX - 1]),
    st.integers(0, N_MAX).map(lambda n: {"at_least": n}), st.integers(0, N_MAX).map(lambda n: {"at_most": n}),
    st.tuples(st.integers(0, N_MAX), st.integers(0, 1000)).map(lambda t: {"between": [t[0], min(N_MAX, t[0] + t[1])]}),
    st.sampled_from(sorted(WORDS)))
sizes = st.lists(st.one_of(st.floats(*SIZE_MM), st.sampled_from(SIZE_MM)), max_size=4)


@st.composite
def observations(draw):  # noqa: ANN001, ANN201
    holes = draw(counts)
    lo = bounds(PerforationsObs(holes=holes).holes)[0]
    obs = {"holes": holes, "exposure": draw(st.sampled_from([1e-3, 1.0, 7.0, 1e6]))}
    if draw(st.booleans()):
        m = draw(st.integers(0, min(lo, 5000)))
        obs |= {"assessed": m, "inward": draw(st.sampled_from([0, m, m // 2]))}
    obs["sizes_mm"] = draw(sizes)[: min(lo, 4)]
    return obs


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obs=observations(), sd=st.sampled_from([1e-6, 0.05, 0.5, 3.0]), rate=st.floats(-20, 20), frac=st.floats(0, 1),
       mu=st.floats(-10, 15))
def test_no_observation_or_parameter_exceeds_the_stated_cap(obs, sd, rate, frac, mu):
    spec = {**mech("proximity_fragmentation"), "log_size_sd": Dist("fixed", (sd,))}
    items = unit(obs, a=spec, b=mech("generic"))
    cap = fam.log_ratio_cap(items)
    bg = fam.background(items, mech("generic"), {})
    assert np.isfinite(cap) and np.isfinite(bg)
    theta = {"hole_rate": math.exp(rate), "inward_fraction": frac, "log_size_mean": mu, "log_size_sd": sd}
    for t in (theta, adversary(items, sd)):
        assert logp_at(items, t) - bg <= cap + 1e-9, (t, logp_at(items, t), bg, cap)
    assert fam.closed_form(items, spec) - bg <= cap + 1e-9


def test_the_cap_is_nearly_reached_at_the_largest_count():
    """The bound is not loose: at n = N_MAX the adversarial rate comes within 0.01 nat of it."""
    items = unit({"holes": N_MAX})
    got = logp_at(items, adversary(items, 0.5)) - fam.background(items, mech("generic"), {})
    assert fam.log_ratio_cap(items) - 0.01 < got <= fam.log_ratio_cap(items)


def test_800_holes_from_a_half_reliable_source_no_longer_decide_the_case():
    """Before: log BF(proximity : generic) = 39.5 nat from one count (the light-tailed background);
    now the vague component explains a count neither mechanism predicts, and the bound is 10.6 nat."""
    from engine.evidence.base import influence_bound

    # the library's proximity_fragmentation hole rate as the issue measured it: Gamma(2, 0.05)
    sam = {**mech("proximity_fragmentation"), "hole_rate": Dist("gamma", (2.0, 0.05))}
    items = unit({"holes": 800}, a=sam, b=mech("generic"))
    lh, lg = fam.closed_form(items, sam), fam.closed_form(items, mech("generic"))
    old = np.logaddexp(math.log(0.5) + lh, math.log(0.5) + lg) - lg
    bg = fam.background(items, mech("generic"), {})
    new = np.logaddexp(math.log(0.5) + lh, math.log(0.5) + bg) - np.logaddexp(math.log(0.5) + lg, math.log(0.5) + bg)
    assert old == pytest.approx(39.52, abs=0.01)
    assert abs(new) < 0.01
    assert influence_bound(0.5, fam.log_ratio_cap(items)) == pytest.approx(10.61, abs=0.01)


# ---------------------------------------------------------------- ranges
def test_range_forms_parse_and_describe():
    assert PerforationsObs(holes={"at_least": 100}).holes == HoleCount(100, N_MAX, "at_least")
    assert PerforationsObs(holes="hundreds").holes == HoleCount(200, 999, "hundreds")
    assert fam.describe(PerforationsObs(holes={"at_least": 100})) == "at least 100 holes"
    assert fam.describe(PerforationsObs(holes={"at_most": 4})) == "at most 4 holes"
    assert fam.describe(PerforationsObs(holes={"between": [3, 9]}, assessed=3, inward=2)) == \
        "between 3 and 9 holes, 2 of 3 assessed bent inward"
    assert fam.describe(PerforationsObs(holes="dozens")) == "dozens of holes (24–99)"


@pytest.mark.parametrize(("obs", "message"), [
    ({"holes": {"between": [9, 3]}}, "ends reversed"),
    ({"holes": {"at_least": 5}, "inward": 2}, "give assessed"),
    ({"holes": {"at_most": 9}, "assessed": 2, "inward": 1}, "above the fewest holes stated (at most 9 holes)"),
    ({"holes": {"at_least": 1}, "sizes_mm": [3.0, 4.0]}, "2 sizes given for at least 1 holes"),
    ({"holes": "many"}, "is not a count"),
    ({"holes": {"around": 5}}, "is not a count"),
    ({"holes": 3, "sizes_mm": [0.05]}, "outside 0.1..20000 mm"),
])
def test_inconsistent_ranges_are_refused(obs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        PerforationsObs(**obs)


def test_log_mass_is_the_sum_of_the_pmf_even_deep_in_the_tails():
    for dist, lo, hi in [(stats.poisson(100.0), 800, N_MAX), (stats.poisson(2000.0), 0, 10), (stats.poisson(50.0), 40, 60),
                         (stats.nbinom(1.5, 0.9), 800, N_MAX), (stats.nbinom(2.0, 0.05 / 1.05), 200, 999)]:
        k = np.arange(lo, min(hi, lo + 100_000) + 1)
        assert float(log_mass(dist, lo, hi)) == pytest.approx(float(np.logaddexp.reduce(dist.logpmf(k))), abs=1e-9)


def test_tensor_range_loglik_matches_numpy_and_has_finite_gradient():
    """Central, deep upper-tail and deep lower-tail ranges (one compiled function)."""
    import pytensor
    import pytensor.tensor as pt

    from engine.evidence.perforations import poisson_log_mass_tensor

    m, lo, hi = pt.dscalars("m", "lo", "hi")
    expr = poisson_log_mass_tensor(m, lo, hi)
    f = pytensor.function([m, lo, hi], [expr, pytensor.grad(expr, m)], mode=python_mode())
    for mu, a, b in [(50.0, 40, 60), (3.0, 800, N_MAX), (100.0, 800, 900), (2000.0, 0, 10), (7.0, 0, 5), (20.0, 24, 99),
                     (1e5, 200, 999), (40.0, 40, 40), (5.0, 0, N_MAX)]:
        val, grad = f(mu, a, b)
        want = float(log_mass(stats.poisson(mu), a, b))
        assert val == pytest.approx(want, abs=1e-3 if want < -600 else 1e-7), (mu, a, b)
        assert np.isfinite(grad), (mu, a, b)


def test_model_loglik_of_a_range_is_the_poisson_mass():
    import pytensor.tensor as pt

    items = unit({"holes": "hundreds", "assessed": 10, "inward": 7})
    got = fam.loglik(items, {"hole_rate": pt.as_tensor_variable(300.0), "inward_fraction": pt.as_tensor_variable(0.6)}).eval()
    want = np.log(stats.poisson.cdf(999, 300.0) - stats.poisson.cdf(199, 300.0)) + stats.binom.logpmf(7, 10, 0.6)
    assert got == pytest.approx(want, rel=1e-8)


def test_replicated_ranges_are_censored_at_the_same_cut_points():
    """Replicated cells occur as often as their probability under the same theta (logp_np)."""
    items = unit({"holes": {"between": [20, 30]}, "assessed": 5, "inward": 4})
    rng = np.random.default_rng(1)
    n = 40_000
    theta = {"hole_rate": np.full(n, 25.0), "inward_fraction": np.full(n, 0.5)}
    y = fam.simulate(items, theta, rng)
    cells = {(0, 19), (20, 30), (31, N_MAX)}
    assert set(zip(y["holes_lo"].tolist(), y["holes_hi"].tolist(), strict=True)) <= cells
    for lo, hi in cells:
        share = np.mean(y["holes_lo"] == lo)
        p = stats.poisson.cdf(hi, 25.0) - stats.poisson.cdf(lo - 1, 25.0)
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n)
    want = np.log(stats.poisson.cdf(30, 25.0) - stats.poisson.cdf(19, 25.0)) + stats.binom.logpmf(4, 5, 0.5)
    one = {k: v[:1] for k, v in theta.items()}
    assert fam.logp_np(items, fam.observed(items), one)[0] == pytest.approx(want, rel=1e-9)


def test_simulated_incidents_keep_a_range_design_and_revalidate():
    from engine.calibration.simulate import _revalidate

    items = unit({"holes": {"at_least": 30}, "assessed": 8, "inward": 3})
    rng = np.random.default_rng(2)
    seen = set()
    for _ in range(300):
        upd = fam.simulate_observed(items, {"hole_rate": np.array([30.0]), "inward_fraction": np.array([0.7])}, rng)[0]
        obs = _revalidate(items[0].observed, upd)
        assert isinstance(obs.holes, HoleCount) and obs.assessed <= obs.holes.lo and obs.inward <= obs.assessed
        seen.add(obs.holes)
        assert set(fam.data((SimpleNamespace(observed=obs),))) == set(fam.data(items))
    assert seen == {HoleCount(30, N_MAX, "at_least"), HoleCount(0, 29, "at_most")}


# ---------------------------------------------------------------- collapsed posterior
def test_own_posterior_has_the_exact_conjugate_moments():
    spec = {"hole_rate": Dist("gamma", (2.0, 0.05)), "inward_fraction": Dist("beta", (9.0, 1.0)),
            "log_size_mean": Dist("normal", (2.3, 0.5)), "log_size_sd": Dist("fixed", (0.5,))}
    items = unit({"holes": 12, "exposure": 2.0, "assessed": 6, "inward": 2, "sizes_mm": [8.0, 12.0, 30.0]})
    n = 200_000
    faithful = np.arange(n) < n // 2
    d = fam.own_posterior(items, spec, np.random.default_rng(3), faithful)
    assert set(d) == {"hole_rate", "inward_fraction", "log_size_mean"}
    logs = np.log([8.0, 12.0, 30.0])
    prec = 1 / 0.25 + 3 / 0.25
    exact = {"hole_rate": ((2 + 12) / 2.05, (2 + 12) / 2.05**2), "inward_fraction": (11 / 16, 11 * 5 / (16**2 * 17)),
             "log_size_mean": ((2.3 / 0.25 + logs.sum() / 0.25) / prec, 1 / prec)}
    prior = {"hole_rate": (40.0, 800.0), "inward_fraction": (0.9, 9 / (100 * 11)), "log_size_mean": (2.3, 0.25)}
    for name, draws in d.items():
        for sel, (mean, var) in ((faithful, exact[name]), (~faithful, prior[name])):
            x = draws[sel]
            assert abs(x.mean() - mean) < 5 * math.sqrt(var / x.size), name
            assert x.var() == pytest.approx(var, rel=0.03), name


def test_own_posterior_of_a_range_matches_quadrature():
    """E[lambda | 200 <= n <= 999] and its variance by quadrature over the Gamma prior."""
    a, b = 2.0, 0.05
    spec = {**mech("proximity_fragmentation"), "hole_rate": Dist("gamma", (a, b)), "inward_fraction": Dist("fixed", (0.5,)),
            "log_size_mean": Dist("fixed", (2.0,))}
    items = unit({"holes": "hundreds"})
    d = fam.own_posterior(items, spec, np.random.default_rng(4), np.ones(100_000, dtype=bool))
    assert set(d) == {"hole_rate"}

    def moment(j: int) -> float:
        return integrate.quad(lambda x: x**j * stats.gamma.pdf(x, a, scale=1 / b)
                              * (stats.poisson.cdf(999, x) - stats.poisson.cdf(199, x)), 0, 3000, points=[200, 999], limit=400)[0]

    z = moment(0)
    mean, var = moment(1) / z, moment(2) / z - (moment(1) / z) ** 2
    x = d["hole_rate"]
    assert abs(x.mean() - mean) < 5 * math.sqrt(var / x.size)
    assert x.var() == pytest.approx(var, rel=0.03)


def test_background_simulation_draws_the_vague_count_with_its_stated_law():
    """simulate_background: half the reports from the generic mechanism, half from q_n (its CDF
    ln(c+2)/ln(N+2) checked at several c) with inward uniform on 0..assessed."""
    items = unit({"holes": 5, "assessed": 2, "inward": 1})
    rng = np.random.default_rng(6)
    theta = {"hole_rate": np.array([1e-9]), "inward_fraction": np.array([0.0])}  # generic part: always 0 holes
    draws = [fam.simulate_background(items, theta, rng)[0] for _ in range(20_000)]
    holes = np.array([d["holes"] for d in draws])
    vague = holes[holes > 0]  # the vague part gives 0 with probability ln 2 / ln(N+2)
    p0 = math.log(2) / math.log(N_MAX + 2)
    assert abs(np.mean(holes == 0) - (0.5 + 0.5 * p0)) < 4 * math.sqrt(0.25 / holes.size)
    for c in (1, 10, 1000, 100_000):
        want = (math.log(c + 2) - math.log(2)) / (math.log(N_MAX + 2) - math.log(2))
        assert abs(np.mean(vague <= c) - want) < 4 * math.sqrt(want * (1 - want) / vague.size), c
    inward = np.array([d["inward"] for d in draws if d["holes"] >= 2])
    assert set(np.unique(inward)) == {0, 1, 2} and abs(np.mean(inward == 1) - 1 / 3) < 0.02
