"""Diagnostics: the predictive-check twins, 'none explains', and the verdict on a weak run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytensor.tensor as pt
import pytest
from conftest import CASES

from engine.evidence import REGISTRY
from engine.evidence.fragments import FragmentsObs
from engine.evidence.interval import IntervalObs
from engine.evidence.perforations import PerforationsObs
from engine.evidence.timing import TimingObs

fragments, interval, perforations, timing = (REGISTRY[n] for n in ("fragments", "interval", "perforations", "timing"))


def item(obs, iid="x"):
    return SimpleNamespace(observed=obs, id=iid, group=None)


def as_pt(theta):
    return {k: ([pt.as_tensor_variable(float(x[0])) for x in v] if isinstance(v, list) else pt.as_tensor_variable(np.asarray(v[0])))
            for k, v in theta.items()}


CASES_TWIN = [
    (perforations, (item(PerforationsObs(holes=5, inward=3, sizes_mm=(10.0, 30.0))),),
     {"hole_rate": np.array([4.2]), "inward_fraction": np.array([0.6]), "log_size_mean": np.array([2.9]), "log_size_sd": np.array([0.5])},
     -math.log(10.0) - math.log(30.0)),
    (fragments, (item(FragmentsObs(counts={"rod": 2, "cube": 5, "ball": 0})),),  # p over the 14 categories
     {"alpha": np.array([np.arange(1.0, 15.0) / 105.0])}, 0.0),
    (interval, (item(IntervalObs(seconds=45.0)),), {"log_median": np.array([3.5]), "log_sd": np.array([0.7])}, -math.log(45.0)),
    (timing, (item(TimingObs(time=33.0, window=(30.0, 60.0), period=(0.0, 400.0), rounding_min=2.0), "t1"),
              item(TimingObs(time=41.0, window=(30.0, 60.0), period=(0.0, 400.0)), "t2")),
     {"in_window": np.array([0.7]), "clock_sd": [np.array([2.0]), np.array([4.0])]}, 0.0),
]


@pytest.mark.parametrize(("family", "items", "theta", "jacobian"), CASES_TWIN, ids=["perforations", "fragments", "interval", "timing"])
def test_numpy_twin_matches_the_model_likelihood(family, items, theta, jacobian):
    """The predictive checks' numpy log density equals the PyMC model's (up to the size Jacobian)."""
    got = family.logp_np(items, family.observed(items), theta)[0] + jacobian
    want = float(family.loglik(items, as_pt(theta)).eval())
    assert got == pytest.approx(want, rel=1e-6)  # PyMC renormalises p in float arithmetic


@pytest.mark.parametrize(("family", "items", "theta", "jacobian"), CASES_TWIN, ids=["perforations", "fragments", "interval", "timing"])
def test_predictive_p_values_are_uniform_when_data_come_from_the_model(family, items, theta, jacobian):
    """With theta known, the discrepancy p-value of data simulated from the model is ~Uniform(0, 1)."""
    rng = np.random.default_rng(11)
    big = {k: ([np.repeat(x, 400) for x in v] if isinstance(v, list) else np.repeat(v, 400, axis=0)) for k, v in theta.items()}
    ps = []
    for _ in range(300):
        y_obs = {k: v[:1] for k, v in family.simulate(items, big, rng).items()}
        t_obs = -family.logp_np(items, y_obs, big)
        t_rep = -family.logp_np(items, family.simulate(items, big, rng), big)
        ps.append((1 + np.sum(t_rep >= t_obs)) / (t_rep.size + 1))
    ps = np.array(ps)
    assert 0.4 < ps.mean() < 0.6
    assert np.mean(ps < 0.1) < 0.2


@pytest.fixture(scope="module")
def unexplained_run(tmp_path_factory):
    from engine.run.lifecycle import run_case
    from engine.run.settings import ExecutionOptions, Settings
    from engine.spec.case import load_case

    case = load_case(CASES / "unexplained.yaml")
    return run_case(case, settings=Settings(seed=5, draws=400, tune=400, chains=2, smc_draws=500, smc_chains=2),
                    out=tmp_path_factory.mktemp("runs"), options=ExecutionOptions(workers=0))


@pytest.mark.slow
def test_none_of_the_hypotheses_explains_an_impossible_count(unexplained_run):
    diag = json.loads((unexplained_run / "diagnostics.json").read_text())
    assert diag["unexplained"] == ["holes"]
    assert all(p < 0.01 for p in diag["predictive"]["holes"]["p_values"].values())
    assert all(p > 0.05 for p in diag["predictive"]["gap"]["p_values"].values())
    assert any("none of the hypotheses explains holes" in r for r in diag["reasons"])
    out = subprocess.run([sys.executable, "-m", "engine.cli", "diagnose", str(unexplained_run)], capture_output=True, text=True)
    assert "none of the hypotheses explains holes" in out.stdout


@pytest.mark.slow
def test_under_sampled_run_fails_the_verdict_and_is_not_converged(tmp_path):
    from engine.run.lifecycle import read_attribution, run_case
    from engine.run.settings import ExecutionOptions, Settings
    from engine.spec.case import load_case

    # the ambiguous case with something left to sample: its conjugate unit is integrated exactly, so
    # an uncertain reliability and a timing report with an uncertain clock
    text = (CASES / "ambiguous.yaml").read_text().replace("reliability: 1.0", "reliability: {beta: [8.0, 2.0]}") + (
        "  - id: when\n    family: timing\n    source: lab\n"
        "    observed: {time: 52.0, window: [40.0, 70.0], period: [0.0, 600.0], clock_sd_min: {halfnormal: 3.0}}\n")
    (tmp_path / "ambiguous.yaml").write_text(text)
    case = load_case(tmp_path / "ambiguous.yaml")
    root = run_case(case, settings=Settings(seed=1, draws=20, tune=20, chains=2, smc_draws=200, smc_chains=2), out=tmp_path, options=ExecutionOptions(workers=0))
    diag = json.loads((root / "diagnostics.json").read_text())
    assert diag["verdict"] == "fail" and diag["reasons"]
    assert read_attribution(root)["converged"] is False
    out = subprocess.run([sys.executable, "-m", "engine.cli", "diagnose", str(root), "--json"], capture_output=True, text=True)
    assert out.returncode == 4 and json.loads(out.stdout)["verdict"] == "fail"


def test_estimator_disagreement_is_a_warning_and_fails_only_through_the_posteriors_error():
    """README and verdict say the same: estimators that disagree make a warning (the pooled error is
    widened by half the spread); the run fails when that widened error makes P's Monte Carlo error
    exceed 0.05."""
    from engine.results.diagnostics import verdict

    good = {"n_chains": 4, "n_draws": 1000, "rhat_max": 1.0, "ess_bulk_min": 900.0, "divergences": 0, "problems": [],
            "estimators": {"agree": True, "spread": 0.05}}
    split = {**good, "estimators": {"agree": False, "spread": 0.9}}
    assert verdict({"a": good, "b": good}, {"a": 0.01, "b": 0.01}, [])[0] == "pass"
    status, fail, warn = verdict({"a": split, "b": good}, {"a": 0.02, "b": 0.02}, [])
    assert (status, fail) == ("warn", []) and warn == ["a: log-evidence estimators disagree by 0.90 nat (the pooled error is widened by half of it)"]
    status, fail, _ = verdict({"a": split, "b": good}, {"a": 0.12, "b": 0.12}, [])
    assert status == "fail" and fail == ["a: Monte Carlo error of the posterior probability is 0.120 (> 0.05)",
                                         "b: Monte Carlo error of the posterior probability is 0.120 (> 0.05)"]


def test_a_familys_numerical_problem_at_the_posterior_is_a_warning_with_its_hypothesis():
    """Family.numerical_problems (a damage map's quadrature off where the posterior puts the burst), kept under
    "numerical" apart from convergence's "problems", makes the verdict warn, naming the hypothesis."""
    from engine.results.diagnostics import verdict
    from engine.results.records import HypothesisDiagnostics

    good = {"n_chains": 4, "n_draws": 1000, "rhat_max": 1.0, "ess_bulk_min": 900.0, "divergences": 0, "problems": [],
            "estimators": {"agree": True, "spread": 0.05}}
    assert verdict({"a": good}, {"a": 0.01}, [])[0] == "pass"
    status, fail, warn = verdict({"a": {**good, "numerical": ["damage map m: off by 4.2%"]}}, {"a": 0.01}, [])
    assert (status, fail, warn) == ("warn", [], ["a: damage map m: off by 4.2%"])
    record = {"rhat_max": 1.0, "ess_bulk_min": 900.0, "ess_tail_min": 900.0, "divergences": 0, "bfmi_min": 1.0, "n_chains": 4,
              "n_draws": 1000, "problems": []}
    assert HypothesisDiagnostics.model_validate({**record, "numerical": ["x"]}).numerical == ["x"]
    assert HypothesisDiagnostics.model_validate(record).numerical == []  # diagnostics.json written before it had the key
