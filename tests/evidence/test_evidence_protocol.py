"""The evidence-family protocol: one registry, no family names outside engine/evidence, no PyMC in validation."""

from __future__ import annotations

import ast
import math
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytensor.tensor as pt
import pytest

from engine.evidence import REGISTRY, combined_reliability
from engine.evidence.base import Family, Strict

ROOT = Path(__file__).resolve().parents[2]


def test_validating_a_case_imports_neither_pymc_nor_pytensor():
    code = ("import engine.spec.case, sys; engine.spec.case.load_case('cases/azal8243-2024.yaml'); "
            "assert 'pymc' not in sys.modules and 'pytensor' not in sys.modules, "
            "sorted(m for m in sys.modules if m.startswith(('pymc', 'pytensor')))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def _family_literals(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [(node.lineno, node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in REGISTRY]


def test_no_module_outside_the_evidence_folder_names_a_family():
    found = {}
    for path in sorted((ROOT / "engine").rglob("*.py")):
        if (ROOT / "engine" / "evidence") in path.parents:
            continue
        if hits := _family_literals(path):
            found[str(path.relative_to(ROOT))] = hits
    assert found == {}, f"family names outside engine/evidence (ask engine.evidence.REGISTRY instead): {found}"


def test_the_family_name_scan_finds_a_planted_name(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text('def f(item):\n    return item.family == "timing"\n', encoding="utf-8")
    assert _family_literals(planted) == [(2, "timing")]


@pytest.mark.parametrize("name", list(REGISTRY))
def test_each_family_declares_a_consistent_protocol(name):
    fam = REGISTRY[name]
    assert isinstance(fam, Family) and fam.name == name
    assert issubclass(fam.Obs, Strict)
    assert set(fam.sampled) <= set(fam.params), "sampled parameters must be in the parameter table"
    for pname, (kinds, (lo, hi)) in fam.params.items():
        assert kinds and lo <= hi, pname
    overridden = {m for m in vars(Family) if callable(getattr(Family, m)) and getattr(type(fam), m) is not getattr(Family, m)}
    assert "loglik" in overridden
    if fam.simulable:
        assert "simulate_observed" in overridden
    if fam.replicable:
        assert {"simulate", "observed", "logp_np"} <= overridden
    if fam.background_is_tensor:
        assert "unit_log_evidence" in overridden, "a tensor background needs its numpy evaluation"
    else:
        assert "closed_form" in overridden or "background" in overridden, "a number background needs a closed form"


def test_a_family_without_closed_form_is_never_called_exact():
    class Opaque(Family):
        name = "opaque"
        params = {"p": (("fixed",), (0.0, 1.0))}

    item = SimpleNamespace(family="opaque", id="x", group=None, params={"h": {"p": None}})
    case = SimpleNamespace(units=lambda: [("item:x", (item,))], hypotheses={"h": None}, items=(item,))
    assert Opaque().exact_problem(case) == "opaque unit x has no closed form"
    lz, bg = Opaque().unit_log_evidence((item,), item.params["h"], {}, {}, 3)
    assert np.isnan(lz).all() and np.isnan(bg).all()


def test_combined_reliability_is_one_formula_for_numbers_draws_and_tensors():
    rs = [0.5, 0.8, 0.1]
    want = 1 - 0.5 * 0.2 * 0.9
    assert combined_reliability(rs) == pytest.approx(want, rel=1e-15)
    assert combined_reliability([]) == 0.0  # no faithful report possible without a source
    draws = combined_reliability([np.array([0.5, 0.0]), np.array([0.8, 0.0]), np.array([0.1, 1.0])])
    np.testing.assert_allclose(draws, [want, 1.0])
    tensor = combined_reliability([pt.as_tensor_variable(r) for r in rs], one=pt.constant(1.0))
    assert float(tensor.eval()) == pytest.approx(want, rel=1e-15)


TOY = '''
"""A toy family: heads in a number of coin flips, p ~ Beta."""
import numpy as np
from scipy import stats

from engine.dists import Dist
from engine.evidence.base import Family, NonNegativeInt, Strict, observed_tensors


class CoinObs(Strict):
    heads: NonNegativeInt
    flips: NonNegativeInt


class Coin(Family):
    name = "coin"
    Obs = CoinObs
    params = {"p": (("beta", "fixed"), (0.0, 1.0))}
    sampled = ("p",)

    def describe(self, obs):
        return f"{obs.heads} heads in {obs.flips} flips"

    def data(self, items):
        return {"heads": np.asarray(items[0].observed.heads)}

    def loglik(self, items, theta):
        import pymc as pm

        heads = observed_tensors(theta, self.data(items))["heads"]
        return pm.logp(pm.Binomial.dist(n=items[0].observed.flips, p=theta["p"]), heads)

    def generic(self, items, library, hypotheses):
        return {"p": Dist("beta", (1.0, 1.0))}

    def closed_form(self, items, spec):
        o, p = items[0].observed, spec["p"]
        if p.kind == "beta":
            return float(stats.betabinom.logpmf(o.heads, o.flips, *p.args))
        return float(stats.binom.logpmf(o.heads, o.flips, p.args[0]))
'''

TOY_CASE = '''
case: {id: coin-toy, title: A toy family, date: 2024-01-01}
sources:
  - {id: counter, title: The counter, reliability: 0.9}
hypotheses:
  - {id: fair, description: fair coin, prior: 0.5, mechanism: proximity_fragmentation}
  - {id: biased, description: biased coin, prior: 0.5, mechanism: proximity_fragmentation}
evidence:
  - id: flips
    family: coin
    source: counter
    observed: {heads: 8, flips: 10}
    under: {fair: {p: 0.5}, biased: {p: {beta: [8, 2]}}}
'''


def test_a_new_family_is_one_module_plus_its_registry_line(tmp_path):
    """A toy family registered in a fresh process is validated, described, modelled and solved exactly."""
    (tmp_path / "toyfam.py").write_text(TOY, encoding="utf-8")
    (tmp_path / "coin.yaml").write_text(TOY_CASE, encoding="utf-8")
    code = textwrap.dedent(f"""
        import math, sys
        sys.path.insert(0, {str(tmp_path)!r})
        from engine.evidence import REGISTRY
        from toyfam import Coin
        REGISTRY["coin"] = Coin()  # the registry line
        from engine.spec.case import load_case
        from engine.inference.closedform import exact_log_evidence
        case = load_case({str(tmp_path / "coin.yaml")!r})
        assert REGISTRY["coin"].describe(case.items[0].observed) == "8 heads in 10 flips"
        print(exact_log_evidence(case, "fair"))
        from engine.model.build import build_model
        model = build_model(case, "fair")
        print(float(model.compile_logp()(model.initial_point())))
    """)
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    exact, model_logp = (float(x) for x in done.stdout.split())
    from scipy import stats

    want = math.log(0.9 * stats.binom.pmf(8, 10, 0.5) + 0.1 * stats.betabinom.pmf(8, 10, 1, 1))
    assert exact == pytest.approx(want, rel=1e-12)
    assert model_logp == pytest.approx(want, rel=1e-9)  # 'fair' has no free parameter: its model is its evidence


def test_only_a_time_reported_against_a_window_gets_a_coincidence_test():
    from engine.spec.case import load_case

    case = load_case(ROOT / "tests" / "cases" / "oracle.yaml")
    timed = {it.id: REGISTRY[it.family].coincidence(it.observed) for it in case.items}
    assert timed.pop("time") == (52.0, (40.0, 70.0), (0.0, 600.0), 3.0, 5.0)
    assert set(timed.values()) == {None}
