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
from oracles.burst_sim import holes
from scipy import integrate, optimize, stats
from test_damage_geometry import AIRCRAFT, BOX

from engine.errors import CaseErrors
from engine.evidence import REGISTRY
from engine.evidence.damage_geometry import log_likelihood
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
        "v50_spread": 60.0, "inside": 0.0, "elongation_sd": 0.1, "misread": 0.05}.items()}
    got = REGISTRY["damage_map"].loglik(items, theta).eval()
    a = TRUTH["axis"] / np.linalg.norm(TRUTH["axis"])
    want = log_likelihood(np, hole_map(items[0].observed), TRUTH["burst"], a, 800.0 * a - AIRCRAFT, 2000.0, math.radians(85),
                          math.radians(5), 3000.0, 300.0, 60.0)
    assert got == pytest.approx(want, rel=1e-9)


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
    ("ten thousand holes", lambda o: o.update(holes=[copy.deepcopy(h) for h in o["holes"] * (10_000 // len(o["holes"]) + 1)]), "at most 5000"),
    ("a panel counted and mapped", lambda o: o.update(counts=[{"panel": o["holes"][0]["panel"], "holes": 3}]), "not both"),
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
