"""The two real seed cases load, cite their articles, and run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.spec.case import load_case

ROOT = Path(__file__).resolve().parent.parent
SEEDS_DIR = ROOT.parent / "shared" / "seeds"
CASE_FILES = {"azal8243-2024": ROOT / "cases" / "azal8243-2024.yaml", "il20-2018": ROOT / "cases" / "il20-2018.yaml"}


@pytest.mark.parametrize("name", list(CASE_FILES))
def test_every_item_cites_a_sentence_of_its_article(name):
    case = load_case(CASE_FILES[name])
    for it in case.items:
        assert it.cites, f"{it.id} cites nothing"
        for cite in it.cites:
            article = SEEDS_DIR / cite.file
            if article.exists():  # ../shared/seeds is beside the checkout in CI and in sessions
                text = " ".join(article.read_text(encoding="utf-8").split())
                assert " ".join(cite.quote.split()) in text, (it.id, cite.quote)


def test_seed_cases_name_the_competing_accounts():
    azal = load_case(CASE_FILES["azal8243-2024"])
    mechs = {h.mechanism for h in azal.hypotheses.values()}
    assert {"proximity_fragmentation", "contact_warhead", "bird_strike", "internal_explosion"} <= mechs
    il20 = load_case(CASE_FILES["il20-2018"])
    assert len(il20.hypotheses) >= 3
    assert {it.family for it in il20.items} >= {"claim", "interval", "timing"}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CASE_FILES))
def test_seed_case_runs_end_to_end(name, tmp_path):
    from engine.run.lifecycle import read_attribution, run_case
    from engine.run.settings import ExecutionOptions, Settings

    case = load_case(CASE_FILES[name])
    root = run_case(case, settings=Settings(seed=2, draws=300, tune=300, chains=2, smc_draws=500, smc_chains=2), out=tmp_path, options=ExecutionOptions(workers=0))
    result = read_attribution(root)
    assert set(result["hypotheses"]) == set(case.hypotheses)
    assert sum(h["posterior"] for h in result["hypotheses"].values()) == pytest.approx(1.0)
    for h in result["hypotheses"].values():
        assert abs(h["log_evidence"]["smc"] - h["log_evidence"]["bridge"]) < 1.0
    diag = json.loads((root / "diagnostics.json").read_text())
    assert set(diag["predictive"]) and diag["verdict"] in {"pass", "warn", "fail"}
    # the run folder holds what the report shows of the case, and the report reads it, not the YAML
    from pypdf import PdfReader

    from engine.report import write_report
    from engine.results.records import CaseRecord

    record = CaseRecord.from_json(json.loads((root / "case.json").read_text()))
    assert [e.id for e in record.evidence] == [it.id for it in case.items] and all(e.observation for e in record.evidence)
    (root / "case.yaml").unlink()
    page1 = PdfReader(str(write_report(root, tmp_path / "report.pdf"))).pages[0].extract_text()
    assert " ".join(case.title.split())[:40] in " ".join(page1.split())
