"""The damage-map family: a simulated hole map (tests/oracles/burst_sim.py, independent of the engine)
read back for its burst, the background's closed form against numerical integration, the family's
model term against the geometry, and bad maps refused with one line naming the field."""

from __future__ import annotations

import copy
import math
import subprocess
import sys

import numpy as np
import pytest
import yaml
from conftest import python_mode
from oracles.burst_sim import holes
from scipy import integrate, optimize, stats
from test_damage_geometry import AIRCRAFT, BOX

from engine.errors import CaseErrors
from engine.evidence import REGISTRY
from engine.evidence.damage_geometry import log_likelihood, panel_cells
from engine.evidence.damage_map import hole_map
from engine.spec.case import load_case

TRUTH = {"burst": np.array([4.0, 2.5, 2.0]), "axis": np.array([-1.0, -0.3, -0.2]), "speed": 800.0, "n": 3000,
         "phi0": 85.0, "width": 5.0, "v0": 2000.0, "v50": 300.0, "spread": 60.0}
FACES = ("top", "bottom", "left", "right", "front", "back")


def simulated_map(seed: int = 5) -> dict:
    rng = np.random.default_rng(seed)
    axis = TRUTH["axis"] / np.linalg.norm(TRUTH["axis"])
    pan, pts, cos = holes(rng, TRUTH["n"], BOX, TRUTH["burst"], axis, TRUTH["speed"] * axis - AIRCRAFT, TRUTH["v0"],
                          math.radians(TRUTH["phi0"]), math.radians(TRUTH["width"]), TRUTH["v50"], TRUTH["spread"], with_cosine=True)
    elong = np.exp(-np.log(cos) + 0.1 * rng.standard_normal(len(cos)))
    bend = np.where(rng.uniform(size=len(cos)) < 0.95, "in", "out")
    return {
        "panels": [{"id": f, "corner": [float(v) for v in c], "edge1": [float(v) for v in a], "edge2": [float(v) for v in b]}
                   for f, (c, a, b) in zip(FACES, BOX, strict=True)],
        "holes": [{"panel": FACES[k], "at": [round(float(v), 4) for v in p], "bend": str(s), "elongation": round(max(1.0, float(e)), 4)}
                  for k, p, s, e in zip(pan, pts, bend, elong, strict=True)],
    }


SAM = {"burst_x": {"normal": [3.0, 3.0]}, "burst_y": {"normal": [0.0, 3.0]}, "burst_z": {"normal": [0.0, 3.0]},
       "axis_x": {"normal": [0.0, 1.0]}, "axis_y": {"normal": [0.0, 1.0]}, "axis_z": {"normal": [0.0, 1.0]},
       "weapon_speed": {"normal": [700.0, 150.0]}, "log_fragments": {"normal": [8.0, 1.0]},
       "spray_angle": {"normal": [85.0, 5.0]}, "spray_width": 5.0, "fragment_speed": {"normal": [2000.0, 200.0]},
       "v50": 300.0, "v50_spread": 60.0, "inside": 0, "elongation_sd": 0.1, "misread": 0.05}
BOMB = {**SAM, "burst_x": {"normal": [3.0, 0.5]}, "burst_y": {"normal": [0.0, 0.3]}, "burst_z": {"normal": [0.0, 0.3]},
        "weapon_speed": 0.0, "spray_angle": 90.0, "spray_width": 60.0, "fragment_speed": {"normal": [1500.0, 300.0]}, "inside": 1}


def case_doc(observed: dict) -> dict:
    return {
        "case": {"id": "damage-map-test", "title": "Simulated burst near a 6 m box", "date": "2024-01-01"},
        "sources": [{"id": "lab", "title": "Test laboratory", "reliability": 1.0}],
        "hypotheses": [{"id": "sam", "description": "missile outside", "prior": 0.5, "mechanism": "proximity_fragmentation"},
                       {"id": "bomb", "description": "bomb inside", "prior": 0.5, "mechanism": "internal_explosion"}],
        "evidence": [{"id": "hole-map", "family": "damage_map", "source": "lab", "observed": observed,
                      "under": {"sam": SAM, "bomb": BOMB}}],
    }


@pytest.fixture(scope="module")
def observed():
    return simulated_map()


def write_case(tmp_path, doc):  # noqa: ANN001, ANN201
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_maximum_likelihood_finds_the_burst_point_of_a_simulated_hole_map(tmp_path, observed):
    """Simulation from known parameters: the likelihood's maximum lies within 0.3 m of the true burst point."""
    case = load_case(write_case(tmp_path, case_doc(observed)))
    hm = hole_map(case.items[0].observed)
    assert 100 <= len(hm.points) <= 1000

    def nll(x):  # noqa: ANN001, ANN202
        a = x[3:6] / np.linalg.norm(x[3:6])
        return -log_likelihood(np, hm, x[:3], a, x[6] * a - AIRCRAFT, TRUTH["v0"], math.radians(TRUTH["phi0"]),
                               math.radians(TRUTH["width"]), math.exp(x[7]), TRUTH["v50"], TRUTH["spread"])

    x0 = np.r_[hm.points.mean(0) + [0, 1, 1], -1, -0.2, -0.1, 700, math.log(2000)]
    fit = optimize.minimize(nll, x0, method="Nelder-Mead", options={"maxiter": 20000, "maxfev": 20000, "xatol": 1e-5, "fatol": 1e-6})
    assert np.linalg.norm(fit.x[:3] - TRUTH["burst"]) < 0.3
    assert math.exp(fit.x[7]) == pytest.approx(TRUTH["n"], rel=0.15)
    truth_axis = TRUTH["axis"] / np.linalg.norm(TRUTH["axis"])
    assert np.degrees(np.arccos(fit.x[3:6] @ truth_axis / np.linalg.norm(fit.x[3:6]))) < 10


def test_the_model_term_equals_the_geometry_at_a_parameter_point(tmp_path, observed):
    import pytensor.tensor as pt

    case = load_case(write_case(tmp_path, case_doc(observed)))
    items = (case.items[0],)
    theta = {k: pt.as_tensor(float(v)) for k, v in {
        "burst_x": 4.0, "burst_y": 2.5, "burst_z": 2.0, "axis_x": -1.0, "axis_y": -0.3, "axis_z": -0.2, "weapon_speed": 800.0,
        "log_fragments": math.log(3000), "spray_angle": 85.0, "spray_width": 5.0, "fragment_speed": 2000.0, "v50": 300.0,
        "v50_spread": 60.0, "inside": 0.0, "elongation_sd": 0.1, "misread": 0.05, "course_heading": 0.0, "course_climb": 0.0,
        "stray_rate": 0.0}.items()}
    fam = REGISTRY["damage_map"]
    got = fam.loglik(items, theta).eval()
    a = TRUTH["axis"] / np.linalg.norm(TRUTH["axis"])

    def geometry(cells):  # noqa: ANN001, ANN202
        return log_likelihood(np, hole_map(items[0].observed, cells), TRUTH["burst"], a, 800.0 * a - AIRCRAFT, 2000.0, math.radians(85),
                              math.radians(5), 3000.0, 300.0, 60.0)

    assert got == pytest.approx(geometry(fam.cells(items)), rel=1e-9)  # the cells adapted to the case (no `cell` given)
    # and those cells are accurate: within their 0.01 tolerance of 0.025 m cells (uniform 0.4 m cells are 0.02 off here)
    panels = [tuple(np.asarray(v, float) for v in (p.corner, p.edge1, p.edge2)) for p in items[0].observed.panels]
    assert abs(got - geometry(panel_cells(panels, 0.025))) < 0.01


def test_the_background_is_uniform_holes_at_a_gamma_rate_integrated_numerically(tmp_path):
    """Closed form against quadrature over the rate: 3 located holes on a 2 m^2 panel, 7 counted on a 1 m^2 one."""
    obs = {"panels": [{"id": "a", "corner": [0, 0, 0], "edge1": [2, 0, 0], "edge2": [0, 1, 0]},
                      {"id": "b", "corner": [0, 0, 1], "edge1": [1, 0, 0], "edge2": [0, 1, 0]}],
           "holes": [{"panel": "a", "at": [0.5, 0.5, 0], "elongation": 1.5, "bend": "in"}, {"panel": "a", "at": [1.5, 0.2, 0]},
                     {"panel": "a", "at": [1.0, 0.9, 0], "elongation": 2.0}],
           "counts": [{"panel": "b", "holes": 7}]}
    case = load_case(write_case(tmp_path, case_doc(obs)))
    fam = REGISTRY["damage_map"]
    items = (case.items[0],)
    got = fam.background(items, fam.generic(items, {}, ()), {})
    a, b = 0.5, 0.005

    def integrand(rho):  # noqa: ANN001, ANN202
        located = rho**3 * math.exp(-rho * 2.0)  # Poisson process density of 3 points on 2 m^2
        counted = stats.poisson.pmf(7, rho * 1.0)
        return located * counted * stats.gamma.pdf(rho, a, scale=1 / b)

    mass, _ = integrate.quad(integrand, 0, 200, points=[1, 5, 10], limit=500)
    elong = sum(stats.norm.logpdf(math.log(e), 0.3, 0.4) - math.log(e) for e in (1.5, 2.0))
    assert got == pytest.approx(math.log(mass) + elong + math.log(0.5), abs=1e-6)


BAD = [
    ("hole outside every panel", lambda o: o["holes"][0].update(at=[50.0, 0.0, 0.0]), "outside panel"),
    ("unknown panel", lambda o: o["holes"][0].update(panel="wing"), "unknown panel"),
    ("non-perpendicular edges", lambda o: o["panels"][0].update(edge2=[1.0, 2.0, 0.0]), "not perpendicular"),
    ("degenerate panel", lambda o: o["panels"][0].update(edge1=[0.0, 0.0, 0.0]), "1 mm to 200 m"),
    ("elongation below 1", lambda o: o["holes"][0].update(elongation=0.5), "must be a number >= 1"),
    ("ten thousand holes", lambda o: o.update(holes=[copy.deepcopy(h) for h in o["holes"] * (10_000 // len(o["holes"]) + 1)]), "located holes, at most 5000; give the densest panels"),
    ("a panel counted and mapped", lambda o: o.update(counts=[{"panel": o["holes"][0]["panel"], "holes": 3}]), "not both"),
    ("unknown fragment shape", lambda o: o.update(recovered=[{"shape": "star", "mass_g": 3.0}]), "recovered[0].shape: must be one of"),
    ("fragment mass zero", lambda o: o.update(recovered=[{"shape": "rod", "mass_g": 0.0}]), "recovered[0].mass_g"),
    ("negative fragment mass", lambda o: o.update(recovered=[{"shape": "ball", "mass_g": -2.0}]), "recovered[0].mass_g: must be a number > 0"),
]


@pytest.mark.parametrize("name, spoil, message", BAD, ids=[b[0] for b in BAD])
def test_a_bad_damage_map_is_refused_naming_the_field(tmp_path, observed, name, spoil, message):
    obs = copy.deepcopy(observed)
    spoil(obs)
    with pytest.raises(CaseErrors) as err:
        load_case(write_case(tmp_path, case_doc(obs)))
    text = str(err.value)
    assert message in text and "evidence" in text and "observed" in text, text


def test_validate_refuses_a_bad_map_with_exit_2_one_line_and_no_traceback(tmp_path, observed):
    obs = copy.deepcopy(observed)
    obs["holes"][0]["at"] = [50.0, 0.0, 0.0]
    path = write_case(tmp_path, case_doc(obs))
    out = subprocess.run([sys.executable, "-m", "engine.cli", "validate", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in out.stderr and "outside panel" in lines[0], lines


def _theta_point():  # noqa: ANN202
    return {"burst_x": 4.1, "burst_y": 2.4, "burst_z": 2.1, "axis_x": 1.0, "axis_y": 0.0, "axis_z": 0.0, "course_heading": 195.0,
            "course_climb": -10.0, "weapon_speed": 780.0, "log_fragments": math.log(2900), "spray_angle": 84.0, "spray_width": 5.5,
            "fragment_speed": 1950.0, "v50": 300.0, "v50_spread": 60.0, "inside": 0.0, "elongation_sd": 0.1, "misread": 0.05,
            "stray_rate": 0.0}


def test_the_model_term_and_its_gradient_by_angles_equal_the_generic_formula(tmp_path, observed):
    """The op's value (with the bend term) and PyTensor's gradient through it against log_likelihood in numpy
    and central differences of it, with the course given by heading and climb."""
    import pytensor
    import pytensor.tensor as pt

    from engine.evidence.damage_map import course_direction

    case = load_case(write_case(tmp_path, case_doc(observed)))
    items = (case.items[0],)
    point = _theta_point()
    free = ("burst_x", "burst_y", "burst_z", "course_heading", "course_climb", "weapon_speed", "log_fragments", "spray_angle",
            "spray_width", "fragment_speed")
    x = pt.dvector("x")
    theta = {k: (x[free.index(k)] if k in free else pt.as_tensor(float(v))) for k, v in point.items()}
    ll = REGISTRY["damage_map"].loglik(items, theta)
    f = pytensor.function([x], [ll, pt.grad(ll, x)], mode=python_mode())
    hm = hole_map(items[0].observed, REGISTRY["damage_map"].cells(items))

    def ref(v):  # noqa: ANN001, ANN202
        t = {**point, **dict(zip(free, v, strict=True))}
        a = course_direction(np, [1.0, 0.0, 0.0], t["course_heading"], t["course_climb"])
        return log_likelihood(np, hm, np.array([t["burst_x"], t["burst_y"], t["burst_z"]]), a, t["weapon_speed"] * a - AIRCRAFT,
                              t["fragment_speed"], math.radians(t["spray_angle"]), math.radians(t["spray_width"]),
                              math.exp(t["log_fragments"]), 300.0, 60.0, elongation_sd=0.1, misread=0.05)

    x0 = np.array([point[k] for k in free])
    value, grad = f(x0)
    assert value == pytest.approx(ref(x0), rel=1e-10)
    for i in range(len(free)):
        h = 1e-6 * max(1.0, abs(x0[i]))
        e = np.zeros(len(free))
        e[i] = h
        assert grad[i] == pytest.approx((ref(x0 + e) - ref(x0 - e)) / (2 * h), rel=1e-5, abs=1e-4), free[i]


def test_course_angles_turn_the_axis():
    from engine.evidence.damage_map import course_direction

    assert course_direction(np, [2.0, 0.0, 0.0], 0.0, 0.0) == pytest.approx([1.0, 0.0, 0.0])
    assert course_direction(np, [1.0, 0.0, 0.0], 90.0, 0.0) == pytest.approx([0.0, 1.0, 0.0], abs=1e-12)
    h, c = math.radians(200.0), math.radians(20.0)
    assert course_direction(np, [1.0, 0.0, 0.0], 200.0, 20.0) == pytest.approx([math.cos(c) * math.cos(h), math.cos(c) * math.sin(h), math.sin(c)])
    assert course_direction(np, [0.0, 0.0, 3.0], 0.0, 0.0) == pytest.approx([0.0, 0.0, 1.0])


def test_predictive_p_values_are_uniform_when_maps_come_from_the_reference_simulator(tmp_path, observed):
    """Maps drawn by the independent simulator at known parameters, replicated by the family at the same
    parameters: the p-value of the summaries' discrepancy (holes per panel, mean distance) is uniform."""
    from engine.evidence.damage_map import DamageMapObs

    case = load_case(write_case(tmp_path, case_doc(observed)))
    fam = REGISTRY["damage_map"]
    base = case.items[0]
    a = TRUTH["axis"] / np.linalg.norm(TRUTH["axis"])
    heading, climb = math.degrees(math.atan2(a[1], a[0])), math.degrees(math.asin(a[2]))
    n_rep = 150
    theta = {**{k: np.full(n_rep, v) for k, v in _theta_point().items()}, "course_heading": np.full(n_rep, heading),
             "course_climb": np.full(n_rep, climb), "burst_x": np.full(n_rep, 4.0), "burst_y": np.full(n_rep, 2.5),
             "burst_z": np.full(n_rep, 2.0), "weapon_speed": np.full(n_rep, 800.0), "log_fragments": np.full(n_rep, math.log(600)),
             "spray_angle": np.full(n_rep, 85.0), "spray_width": np.full(n_rep, 5.0), "fragment_speed": np.full(n_rep, 2000.0)}
    rng = np.random.default_rng(17)
    p_values = []
    for _ in range(60):
        pan, pts = holes(rng, 600, BOX, TRUTH["burst"], a, 800.0 * a - AIRCRAFT, 2000.0, math.radians(85), math.radians(5), 300.0, 60.0)
        obs = {**observed, "cell": 0.4,  # uniform cells: 60 maps, and the check is of the replication, not of the cells
               "holes": [{"panel": FACES[k], "at": [float(v) for v in p]} for k, p in zip(pan, pts, strict=True)]}
        items = (type(base)(**{**base.__dict__, "observed": DamageMapObs.model_validate(obs)}),)
        t_obs = -fam.logp_np(items, fam.observed(items), theta)
        t_rep = -fam.logp_np(items, fam.simulate(items, theta, rng), theta)
        p_values.append((1 + np.sum(t_rep >= t_obs[0])) / (n_rep + 1))
    assert stats.kstest(p_values, "uniform").pvalue > 0.01, np.sort(p_values)
    # and the check can fail: a burst 1.5 m off its true place is flagged
    far = {**theta, "burst_x": np.full(n_rep, 5.5)}
    t_obs = -fam.logp_np(items, fam.observed(items), far)
    t_rep = -fam.logp_np(items, fam.simulate(items, far, rng), far)
    assert (1 + np.sum(t_rep >= t_obs[0])) / (n_rep + 1) < 0.01


@pytest.mark.slow
def test_nuts_reads_the_burst_point_back_from_a_simulated_map(tmp_path, observed):
    """The engine's sampler (the family's starting points, a Laplace full mass matrix), two chains on the
    simulated map with the course by its angles: the chains agree, few divergences, the burst point found."""
    import arviz as az

    from engine.run.compiled import Compiled, quiet

    quiet()
    angles = {**SAM, "axis_x": 1.0, "axis_y": 0.0, "axis_z": 0.0, "course_heading": {"normal": [200.0, 40.0]},
              "course_climb": {"normal": [0.0, 30.0]}}
    doc = case_doc(observed)
    doc["evidence"][0]["under"] = {"sam": angles, "bomb": BOMB}
    case = load_case(write_case(tmp_path, doc))
    cm = Compiled(case, "sam").use(case, "sam")
    chains = [cm.sample_nuts(draws=300, tune=300, seed=s, target_accept=0.9) for s in (1, 2)]
    post = az.concat(chains, dim="chain")
    names = ["hole-map__burst_x", "hole-map__burst_y", "hole-map__burst_z", "hole-map__course_heading", "hole-map__log_fragments"]
    assert float(az.rhat(post.posterior[names]).to_array().max()) < 1.05
    assert int(post.sample_stats["diverging"].sum()) <= 6  # 1 % of 600 draws
    mean = np.array([float(post.posterior[n].mean()) for n in names[:3]])
    assert np.linalg.norm(mean - TRUTH["burst"]) < 0.3


RECOVERED = [{"shape": "bow_tie", "mass_g": 8.1}, {"shape": "square", "mass_g": 4.6}, {"shape": "bow_tie", "mass_g": 7.2}]


def _hand_fragment_term(weights: dict, log_mass: dict) -> float:
    """Recovered fragments by hand: p(shape) = (w + 0.005) / (sum w + 5 x 0.005) times a log-normal mass density
    (s.d. of ln mass 0.2 for preformed shapes, 1.0 for natural ones; median 5 g where the class states none)."""
    total = sum(weights.values()) + 5 * 0.005
    out = 0.0
    for f in RECOVERED:
        s = f["shape"]
        tau = 1.0 if s == "natural" else 0.2
        out += math.log((weights.get(s, 0.0) + 0.005) / total)
        out += stats.lognorm.logpdf(f["mass_g"], s=tau, scale=math.exp(log_mass.get(s, 1.6)))
    return out


def test_recovered_fragments_add_the_shape_and_mass_term_computed_by_hand(tmp_path, observed):
    """The model term with recovered fragments minus the term without them, at one parameter point, equals the
    hand computation from priors/mechanisms.yaml's numbers (large SAM: bow-tie 2, square 3, ball 2, natural 1;
    bow-ties ln 2.1 g; the bomb: natural 1 only, so a bow-tie is at the floor); so does the background's."""
    import pytensor.tensor as pt

    fam = REGISTRY["damage_map"]
    with_frag = load_case(write_case(tmp_path, case_doc({**observed, "recovered": RECOVERED})))
    without = load_case(write_case(tmp_path, case_doc(observed)))
    hands = {"sam": _hand_fragment_term({"bow_tie": 2, "square": 3, "ball": 2, "natural": 1}, {"bow_tie": 2.1, "ball": 1.0}),
             "bomb": _hand_fragment_term({"natural": 1}, {})}
    for hid, hand in hands.items():
        spec = with_frag.items[0].params[hid]
        theta = {**{k: pt.as_tensor(float(v.mean())) for k, v in spec.items()}, **{k: pt.as_tensor(float(v)) for k, v in _theta_point().items()},
                 "inside": pt.as_tensor(float(spec["inside"].mean()))}
        if hid == "bomb":
            theta.update(burst_x=pt.as_tensor(3.0), burst_y=pt.as_tensor(0.0), burst_z=pt.as_tensor(0.0))
        got = fam.loglik((with_frag.items[0],), theta).eval() - fam.loglik((without.items[0],), theta).eval()
        assert got == pytest.approx(hand, abs=1e-9), hid
    assert hands["sam"] - hands["bomb"] > 10  # two bow-ties: a large SAM's, not a bomb's
    generic = fam.generic((with_frag.items[0],), {}, ())
    bg = fam.background((with_frag.items[0],), generic, {}) - fam.background((without.items[0],), generic, {})
    assert bg == pytest.approx(_hand_fragment_term({}, {}), abs=1e-9)  # background: the five shapes alike, 5 g medians


def test_the_damage_map_describes_its_recovered_fragments(tmp_path, observed):
    case = load_case(write_case(tmp_path, case_doc({**observed, "recovered": RECOVERED})))
    assert "3 fragments recovered (2 bow_tie, 1 square)" in REGISTRY["damage_map"].describe(case.items[0].observed)


def test_a_hole_recorded_round_is_censored_at_elongation_1():
    """Elongation is length over width, never below 1: a hole recorded as 1 adds P(latent log elongation <= 0)
    = Phi(log cos i / s.d.), a measured one the log-normal density; the hand gradient agrees with both."""
    from engine.evidence.damage_geometry import HoleMap, log_likelihood_and_gradient

    burst, point, normal = np.array([1.0, 0.5, 2.0]), np.array([0.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0])
    cos_i = 2.0 / np.linalg.norm(burst - point)
    weapon = (np.array([1.0, 0.0, 0.0]), np.zeros(3), 2000.0, math.radians(60), math.radians(30), 1000.0, 200.0, 60.0)

    def value(e: float, b: np.ndarray = burst) -> tuple[float, np.ndarray]:
        hm = HoleMap(None, point[None], normal[None], np.array([e]), np.array([-1]))
        return log_likelihood_and_gradient(hm, b, *weapon, elongation_sd=0.15)

    base = value(np.nan)[0]
    assert value(1.0)[0] - base == pytest.approx(stats.norm.logcdf(math.log(cos_i) / 0.15), abs=1e-10)
    assert value(1.6)[0] - base == pytest.approx(stats.lognorm.logpdf(1.6, s=0.15, scale=1 / cos_i), abs=1e-10)
    for e in (1.0, 1.6):
        g = value(e)[1][:3]
        for k in range(3):
            h = np.zeros(3)
            h[k] = 1e-6
            assert g[k] == pytest.approx((value(e, burst + h)[0] - value(e, burst - h)[0]) / 2e-6, rel=1e-5, abs=1e-6)


def test_a_burst_prior_close_to_the_skin_warns_that_the_cells_are_coarse_and_the_advice_is_accurate(tmp_path, observed):
    """The warning fires for a burst prior 0.5 m off a panel at uniform 0.4 m cells, not at 1.5 m; and the cell it
    advises does what it says: expected holes per panel within 2 % of a 0.03 m reference, where 0.4 m cells miss by more."""
    import re

    from engine.evidence.damage_geometry import expected_counts, panel_quadrature
    from engine.spec.lint import case_warnings

    # the top face is z = 1 (BOX): a burst 0.5 m above it, its spray band across the face below
    near = {**SAM, "burst_x": {"normal": [3.0, 0.2]}, "burst_y": {"normal": [0.0, 0.2]}, "burst_z": {"normal": [1.5, 0.2]}}
    doc = case_doc({**observed, "cell": 0.4})
    doc["evidence"][0]["under"] = {"sam": near, "bomb": BOMB}
    warnings = [w for w in case_warnings(load_case(write_case(tmp_path, doc))) if w.path.endswith("observed.cell")]
    assert len(warnings) == 1 and "under sam" in warnings[0].message, [str(w) for w in warnings]
    advised = float(re.search(r"cell: ([0-9.]+)", warnings[0].message).group(1))
    assert advised == pytest.approx(0.12)
    far = {**SAM, "burst_z": {"normal": [3.0, 0.2]}, "burst_x": {"normal": [3.0, 0.2]}, "burst_y": {"normal": [0.0, 0.2]}}
    doc["evidence"][0]["under"] = {"sam": far, "bomb": BOMB}
    assert not [w for w in case_warnings(load_case(write_case(tmp_path, doc))) if w.path.endswith("observed.cell")]

    panels = [tuple(np.asarray(v, float) for v in p) for p in BOX]
    args = (np.array([3.0, 0.1, 1.5]), np.array([1.0, 0.0, 0.0]), np.array([470.0, 0.0, 0.0]), 2000.0, math.radians(85.0),
            math.radians(3.0), 3000.0, 300.0, 60.0)
    ref = expected_counts(np, panel_quadrature(panels, cell=0.03), *args)
    big = ref > 0.02 * ref.sum()
    err = {c: np.max(np.abs(expected_counts(np, panel_quadrature(panels, cell=c), *args)[big] / ref[big] - 1)) for c in (0.4, advised)}
    assert err[advised] < 0.02 < err[0.4], err


def test_the_weapon_speed_sampled_as_the_apparent_spray_angle_keeps_its_normal_prior(tmp_path, observed):
    """A normal weapon speed is sampled as the spray zone's apparent half-angle about the course (the angle of
    v0 d + (v_m - v_aircraft . a) a to the course a, d at the band's centre): that variable's prior density, given
    the fragment speed, spray angle and course, integrates to 1 and pushes forward to Normal(700, 150) at every
    quantile. The angle is computed here from explicit vectors, the density integrated numerically."""
    from engine.model.build import build_model

    case = load_case(write_case(tmp_path, case_doc(observed)))
    model = build_model(case, "sam")
    assert "hole-map__weapon_speed" in {d.name for d in model.deterministics}
    rv = model["hole-map__spray_angle_apparent"]
    logp = model.compile_logp(vars=[rv], jacobian=False, mode=python_mode())
    v0, spray, raw = 1900.0, 80.0, np.array([-1.0, -0.3, -0.2])
    point = {**model.initial_point(), "hole-map__fragment_speed": np.array(v0), "hole-map__spray_angle": np.array(spray),
             **{f"hole-map__axis_{c}": np.array(v) for c, v in zip("xyz", raw, strict=True)}}
    a = raw / np.linalg.norm(raw)
    e1 = np.cross(a, [0.0, 0.0, 1.0])
    e1 /= np.linalg.norm(e1)
    d = math.cos(math.radians(spray)) * a + math.sin(math.radians(spray)) * e1  # a fragment at the band's centre

    def angle(speed: float) -> float:  # degrees between the fragment's velocity relative to the aircraft and the course
        u = v0 * d + speed * a - AIRCRAFT  # the aircraft's velocity across the course is left out of the angle
        u = u + (AIRCRAFT - (AIRCRAFT @ a) * a)
        return math.degrees(math.acos(u @ a / np.linalg.norm(u)))

    def density(theta: float) -> float:
        x = math.log(theta / (180.0 - theta))  # the interval transform's unconstrained value
        return math.exp(float(logp({**point, "hole-map__spray_angle_apparent_interval__": np.array(x)})))

    assert integrate.quad(density, 1e-6, 180 - 1e-6, limit=200, points=[angle(700.0)])[0] == pytest.approx(1.0, abs=1e-6)
    for q in (0.01, 0.2, 0.5, 0.8, 0.99):
        speed = stats.norm.ppf(q, 700.0, 150.0)
        # the angle falls as the speed rises: P(speed <= s) = P(angle >= angle(s))
        assert integrate.quad(density, angle(speed), 180 - 1e-6, limit=200)[0] == pytest.approx(q, abs=1e-6), q


def test_a_model_with_the_apparent_angle_survives_the_structure_stores_pickle(tmp_path, observed):
    """The structure store (engine.run.compiled.StructureStore) keeps models pickled by cloudpickle; a model whose
    apparent-angle variable is loaded in another process must still have its log density (a distribution made
    per model, pickled by value, loses it)."""
    import pickle

    import cloudpickle

    from engine.model.build import build_model

    case = load_case(write_case(tmp_path, case_doc(observed)))
    model = build_model(case, "sam")
    loaded = pickle.loads(cloudpickle.dumps(model))
    point = model.initial_point()
    want = model.compile_logp(mode="FAST_COMPILE")(point)  # no C compile (nor fusion: more than 32 inputs)
    assert np.isfinite(want)
    code = ("import pickle, sys; m = pickle.load(open(sys.argv[1], 'rb')); p = pickle.load(open(sys.argv[2], 'rb')); "
            "print(repr(float(m.compile_logp(mode='FAST_COMPILE')(p))))")
    (tmp_path / "m.pkl").write_bytes(cloudpickle.dumps(loaded))
    (tmp_path / "p.pkl").write_bytes(pickle.dumps(point))
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.pkl"), str(tmp_path / "p.pkl")], capture_output=True,
                         text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.strip()) == pytest.approx(float(want), rel=1e-12)


@pytest.mark.parametrize("cell", [0.4, None], ids=["uniform-0.4", "adapted"])
def test_the_run_warns_where_the_posterior_puts_the_burst_too_close_for_the_quadrature(tmp_path, observed, cell):
    """``numerical_problems`` checks the per-panel quadrature at posterior draws against its cells cut in half. A burst
    0.3 m above the top face with a 3-degree band, where the model's cells (uniform 0.4 m, or adapted to the case's fits
    1-2 m off the box) really are off (against 0.03 m cells by the generic numpy formula, not the numba kernel the check
    uses), gets a warning naming the face, stating that error, and advising a cell that is accurate; the simulated map's
    own burst gets none. Fragments slower than the weapon relative to the aircraft get a warning that names the cone's edge."""
    import re

    from engine.evidence.damage_geometry import expected_counts, panel_quadrature

    case = load_case(write_case(tmp_path, case_doc({**observed, **({"cell": cell} if cell else {})})))
    fam = REGISTRY["damage_map"]
    model = fam.cells(case.items).quadrature()
    n = 8
    at_truth = {k: np.full(n, v) for k, v in _theta_point().items()}
    assert fam.numerical_problems(case.items, at_truth) == []
    close = {**at_truth, "burst_x": np.full(n, 3.0), "burst_y": np.full(n, 0.1), "burst_z": np.full(n, 1.3),
             "spray_width": np.full(n, 3.0), "course_heading": np.full(n, 0.0), "course_climb": np.full(n, 0.0)}
    (problem,) = fam.numerical_problems(case.items, close)
    assert "panel top" in problem and "100% of 8 posterior draws" in problem, problem
    advised = float(re.search(r"cell: ([0-9.]+)", problem).group(1))
    stated = float(re.search(r"off by ([0-9.]+)%", problem).group(1)) / 100

    t = {k: float(v[0]) for k, v in close.items()}
    axis = np.array([1.0, 0.0, 0.0])  # heading 0, climb 0
    phi0, sigma = math.radians(t["spray_angle"]), math.radians(t["spray_width"])
    args = (np.array([3.0, 0.1, 1.3]), axis, t["weapon_speed"] * axis - AIRCRAFT, t["fragment_speed"], phi0, sigma,
            math.exp(t["log_fragments"]), t["v50"], t["v50_spread"])
    ref = expected_counts(np, panel_quadrature(BOX, cell=0.03), *args)
    err = {c: abs(expected_counts(np, panel_quadrature(BOX, cell=c), *args)[0] / ref[0] - 1) for c in (advised,)}
    err["model"] = abs(expected_counts(np, model, *args)[0] / ref[0] - 1)
    assert err["model"] > 0.01 > err[advised], err
    assert stated == pytest.approx(err["model"], rel=0.05)  # the stated error is the real one
    assert "slower than the weapon" not in problem
    # fragments slower than the weapon relative to the aircraft (|V| = 870 m/s, v0 = 600 m/s), thrown 150 degrees back:
    # the cone's edge (the caustic) crosses the left face, and the warning says so
    slow = {**at_truth, "fragment_speed": np.full(n, 600.0), "weapon_speed": np.full(n, 1100.0), "spray_angle": np.full(n, 150.0),
            "spray_width": np.full(n, 10.0), "course_heading": np.full(n, 0.0), "course_climb": np.full(n, 0.0), "log_fragments": np.full(n, 10.0)}
    (problem,) = fam.numerical_problems(case.items, slow)
    assert "in 100% of these draws the fragments are slower than the weapon" in problem, problem


def test_the_adapted_cells_are_the_same_in_another_process(tmp_path, observed):
    """The cells adapted to a case are a function of the case alone: every worker of a run builds the same model. A
    fresh process reading the same case file finds the same cells, bit for bit."""
    from engine.evidence.damage_map import _cells_digest

    path = write_case(tmp_path, case_doc(observed))
    here = _cells_digest(REGISTRY["damage_map"].cells(load_case(path).items))
    code = ("import sys; from engine.spec.case import load_case; from engine.evidence import REGISTRY; "
            "from engine.evidence.damage_map import _cells_digest; "
            "print(_cells_digest(REGISTRY['damage_map'].cells(load_case(sys.argv[1]).items)))")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == here
