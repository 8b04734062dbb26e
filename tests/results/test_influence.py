"""Each evidence item's stated bound, as case.json and the report carry it."""

from __future__ import annotations

import math

from conftest import CASES

from engine.report.content import odds_cap
from engine.results.casesummary import influence_bounds
from engine.spec.case import load_case


def test_a_presence_items_bound_is_log_of_one_plus_4r_over_1_minus_r():
    case = load_case(CASES / "presence.yaml")
    bounds = influence_bounds(case)
    for it in case.items:
        if it.family == "presence":
            r = case.sources[it.source].reliability.mean()
            assert bounds[it.id] == __import__("pytest").approx(math.log1p(4 * r / (1 - r)), rel=1e-12), it.id


def test_a_fully_reliable_source_has_no_bound_and_the_report_says_so(tmp_path):
    case = load_case(CASES / "oracle.yaml")  # the lab has reliability 1
    bounds = influence_bounds(case)
    assert bounds["tail-holes"] is None and bounds["statement"] is not None
    assert odds_cap(None) == "no bound" and odds_cap(math.log(12.0)) == "×12" and odds_cap(40.0) == "×1e17"
