"""Sensitivity variants run as tasks on a finished run, with known answers."""

from __future__ import annotations

import json

import pytest
from conftest import CASES


@pytest.fixture(scope="module")
def sensitivity_result(tmp_path_factory):
    from engine.case import load_case
    from engine.runner import Settings, run_case
    from engine.sensitivity import run_sensitivity

    case = load_case(CASES / "sensitivity.yaml")
    root = run_case(case, settings=Settings(seed=4, draws=300, tune=300, chains=2, smc_draws=400, smc_chains=2),
                    out=tmp_path_factory.mktemp("runs"), workers=0)
    return root, run_sensitivity(root, workers=0)


@pytest.mark.slow
def test_the_only_support_of_the_leader_fires_the_single_leg_alarm(sensitivity_result):
    _, res = sensitivity_result
    assert res["leader"] == "a"
    assert any("strong" in a for a in res["alarms"]), res["alarms"]
    row = next(r for r in res["ablation"] if r["label"] == "strong")
    assert row["leader"] == "b" or row["shift"] < -0.3


@pytest.mark.slow
def test_dropping_one_copy_inside_a_group_changes_nothing(sensitivity_result):
    root, res = sensitivity_result
    base = json.loads((root / "attribution.json").read_text())
    for item in ("w1", "w2"):
        row = next(r for r in res["ablation"] if r["variant"] == f"drop-{item}")
        assert row["leader_posterior"] == base["hypotheses"]["a"]["posterior"]
    assert not any("w1" in a or "w2" in a for a in res["alarms"])


@pytest.mark.slow
def test_reliability_sweep_waterfall_and_break_even_are_reported(sensitivity_result):
    root, res = sensitivity_result
    assert set(res["reliability"]) == {"witness"} and set(res["reliability"]["witness"]) == {"lo", "hi"}
    steps = [w["step"] for w in res["waterfall"]]
    assert steps == list(range(len(steps)))
    assert res["waterfall"][0]["leader_posterior"] == pytest.approx(0.5, abs=0.02)  # priors only
    assert res["break_even"]["b"]["break_even_prior"] > 0.5
    assert (root / "sensitivity.json").exists()


@pytest.mark.slow
def test_report_gains_a_sensitivity_section(sensitivity_result, tmp_path):
    from pypdf import PdfReader

    from engine.report import write_report
    from engine.report.document import build_report
    from engine.report.layout import layout_problems
    from engine.report.rundata import load_run

    root, res = sensitivity_result
    pdf = write_report(root, tmp_path / "s.pdf")
    text = " ".join(page.extract_text() for page in PdfReader(str(pdf)).pages)
    assert "7. Sensitivity" in text and "single-leg" in text and "break-even" in text.lower()
    assert layout_problems(build_report(load_run(root))) == []
