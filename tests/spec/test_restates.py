"""``restates: <item id>``: a restatement counts once (engine.spec.case.restatements).

Truth used here:

* a case with item A (source lab) and B restating it (source press) has exactly the evidence of the
  case where A is reported by both sources in one dependency group, under every hypothesis;
* for an elicited A the evidence is the closed form log(r p_H + (1 - r) p_bar) with
  r = 1 - (1 - r_lab)(1 - r_press) and p_bar the hypotheses' mean p (computed here by hand);
* without ``restates`` the same two items are two terms (the information counts twice), whose sum
  is again computed by hand.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from engine.errors import CaseErrors
from engine.inference.closedform import exact_log_evidence
from engine.spec.case import load_case
from engine.spec.lint import case_warnings

ROOT = Path(__file__).resolve().parents[2]
R_LAB, R_PRESS = 0.7, 0.4
P = {"sam": 0.8, "bird": 0.05, "engine": 0.3}  # elicited P(video shows shrapnel-like holes | H)
HOLDS = {"sam": 0.9, "bird": 0.1, "engine": 0.3}  # the official's "consistent with shrapnel"
NEUTRAL = 0.2  # mean of the library's neutral assertion rate, Beta(2, 8)


def _doc(evidence: list[dict]) -> dict:
    return {
        "case": {"id": "restates", "title": "t", "date": "2024-01-01"},
        "sources": [{"id": "lab", "title": "lab", "reliability": R_LAB},
                    {"id": "press", "title": "press", "reliability": R_PRESS}],
        "hypotheses": [{"id": "sam", "description": "s", "prior": 0.5, "mechanism": "proximity_fragmentation"},
                       {"id": "bird", "description": "b", "prior": 0.3, "mechanism": "bird_strike"},
                       {"id": "engine", "description": "e", "prior": 0.2, "mechanism": "uncontained_engine_failure"}],
        "evidence": evidence,
    }


def video(iid: str = "video", source: str = "lab", **extra) -> dict:  # noqa: ANN003
    return {"id": iid, "family": "elicited", "source": source, "observed": {"statement": "video shows many small holes"},
            "under": {h: {"p": p} for h, p in P.items()}, **extra}


def official(iid: str = "official", source: str = "press", holds: dict | None = None, **extra) -> dict:  # noqa: ANN003
    return {"id": iid, "family": "claim", "source": source,
            "observed": {"statement": "damage consistent with shrapnel", "interest": "neutral"},
            "under": {h: {"holds": v} for h, v in (holds or HOLDS).items()}, **extra}


def holes(iid: str = "holes", source: str = "lab", **extra) -> dict:  # noqa: ANN003
    return {"id": iid, "family": "perforations", "source": source, "observed": {"holes": 40, "inward": 35}, **extra}


def load(tmp_path: Path, evidence: list[dict], name: str = "case.yaml"):  # noqa: ANN201
    path = tmp_path / name
    path.write_text(yaml.safe_dump(_doc(evidence), sort_keys=False), encoding="utf-8")
    return load_case(path)


def errors(tmp_path: Path, evidence: list[dict]) -> list[tuple[str, str]]:
    with pytest.raises(CaseErrors) as exc:
        load(tmp_path, evidence)
    return [(e.path, e.message) for e in exc.value.errors]


def log_z(case) -> dict[str, float]:  # noqa: ANN001
    return {h: exact_log_evidence(case, h) for h in case.hypotheses}


# ---------------------------------------------------------------- counted once, against truth
def test_a_restatement_is_exactly_a_second_reporter_of_the_fact(tmp_path):
    restated = load(tmp_path, [video(), official(restates="video")], "a.yaml")
    grouped = load(tmp_path, [video(group="g"), video("video-press", "press", group="g")], "b.yaml")
    r = 1 - (1 - R_LAB) * (1 - R_PRESS)  # 0.82
    p_bar = float(np.mean(list(P.values())))
    want = {h: math.log(r * p + (1 - r) * p_bar) for h, p in P.items()}
    got_r, got_g = log_z(restated), log_z(grouped)
    for h in P:
        assert got_r[h] == pytest.approx(want[h], abs=1e-12)
        assert got_g[h] == pytest.approx(want[h], abs=1e-12)
    assert [uid for uid, _ in restated.units()] == ["item:video"]
    assert restated.item("video").reporters == ("press",)


def test_without_restates_the_same_information_counts_twice(tmp_path):
    twice = load(tmp_path, [video(), official()])
    p_bar = float(np.mean(list(P.values())))
    want = {h: math.log(R_LAB * P[h] + (1 - R_LAB) * p_bar) + math.log(R_PRESS * HOLDS[h] + (1 - R_PRESS) * NEUTRAL)
            for h in P}
    got = log_z(twice)
    once = log_z(load(tmp_path, [video(), official(restates="video")], "once.yaml"))
    for h in P:
        assert got[h] == pytest.approx(want[h], abs=1e-12)
    # the log odds sam:bird move more when the report counts twice than when it counts once
    assert got["sam"] - got["bird"] > once["sam"] - once["bird"] + 0.5


def test_across_families_a_count_restated_by_a_claim_equals_the_count_reported_twice(tmp_path):
    """A hole count (perforations, closed form) and an official's claim about the same video."""
    restated = log_z(load(tmp_path, [holes(), official(restates="holes")], "a.yaml"))
    grouped = log_z(load(tmp_path, [holes(group="g"), holes("holes-press", "press", group="g")], "b.yaml"))
    alone = log_z(load(tmp_path, [holes()], "c.yaml"))
    for h in restated:
        assert restated[h] == pytest.approx(grouped[h], abs=1e-12)
    assert any(abs(restated[h] - alone[h]) > 1e-3 for h in restated)  # press's reliability does count


def test_the_model_holds_the_restating_source_in_the_restated_unit(tmp_path):
    """The PyMC model (no free parameter here) gives the same log density as the grouped case."""
    from engine.model.build import build_model, hypothesis_data

    restated = load(tmp_path, [video(), official(restates="video")], "a.yaml")
    grouped = load(tmp_path, [video(group="g"), video("video-press", "press", group="g")], "b.yaml")
    for h in P:
        values = []
        for case in (restated, grouped):
            model = build_model(case, h)
            assert not model.free_RVs  # the restating claim adds no assertion rate of its own
            names = sorted(p.name for p in model.potentials)
            fn = model.compile_fn(model.potentiallogp, inputs=[], on_unused_input="ignore")
            values.append((names, float(fn({}))))
        assert values[0][0] == ["ll__video"] and values[1][0] == ["ll__g"]
        assert values[0][1] == pytest.approx(values[1][1], abs=1e-10)
        assert values[0][1] == pytest.approx(exact_log_evidence(restated, h), abs=1e-10)
        assert set(hypothesis_data(restated, h)) == {"hp__video__p"}


def test_restating_a_group_member_joins_the_group(tmp_path):
    case = load(tmp_path, [holes(group="g"), holes("holes-2", "lab", group="g"), official(restates="holes-2")])
    from engine.evidence import unit_sources

    ((uid, items),) = case.units()
    assert uid == "g" and unit_sources(items) == ["lab", "press"]


def test_a_restating_source_that_already_reports_the_fact_adds_nothing_and_is_warned(tmp_path):
    case = load(tmp_path, [video(), official(source="lab", restates="video")])
    alone = load(tmp_path, [video()], "alone.yaml")
    assert log_z(case) == pytest.approx(log_z(alone), abs=1e-12)
    paths = [(w.path, w.message) for w in case_warnings(case) if w.path.startswith("evidence")]
    assert [p for p, _ in paths] == ["evidence[official].restates"], paths
    assert "'lab'" in paths[0][1] and "'video'" in paths[0][1]


# ---------------------------------------------------------------- ablation
def test_dropping_the_restated_unit_drops_the_fact(tmp_path):
    import pymc as pm

    from engine.model.build import build_model
    from engine.results.sensitivity import plan_variants

    case = load(tmp_path, [video(), official(restates="video"), holes()])
    variants = plan_variants(case)
    assert variants["drop-video"]["overrides"] == {"use__video": 0.0}
    assert "drop-official" not in variants  # it is no unit of its own
    model = build_model(case, "sam")
    fn = model.compile_fn(model.potentiallogp, inputs=[], on_unused_input="ignore")
    full = float(fn({}))
    with model:
        pm.set_data(variants["drop-video"]["overrides"])
    fn = model.compile_fn(model.potentiallogp, inputs=[], on_unused_input="ignore")
    without = float(fn({}))
    holes_only = exact_log_evidence(load(tmp_path, [holes()], "h.yaml"), "sam")
    assert without == pytest.approx(holes_only, abs=1e-9) and full != pytest.approx(without)


def test_a_calibration_template_with_a_restatement_simulates(tmp_path):
    """The restating item is in no unit: a simulated incident keeps its observation and draws the rest."""
    from engine.calibration.simulate import simulate_incident

    case = load(tmp_path, [holes(), official(restates="holes")])
    inc = simulate_incident(case, 0, np.random.default_rng(1))
    assert inc.case.item("official").observed == case.item("official").observed
    assert set(inc.faithful) == {"holes"}


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(("evidence", "path", "words"), [
    ([video(), official(restates="vidoe")], "evidence[official].restates", "unknown item 'vidoe'"),
    ([video(), official(restates="official")], "evidence[official].restates", "restates itself"),
    ([video(), official(restates="other"), official("other", restates="video")], "evidence[official].restates",
     "'other' itself restates 'video'; restate the original directly (restates: video)"),
    ([video(), official(group="g", restates="video"), official("o2", group="g")], "evidence[official].restates",
     "is in group 'g' and restates 'video'"),
])
def test_a_wrong_restates_is_one_error_naming_the_item_and_field(tmp_path, evidence, path, words):
    ((where, message),) = errors(tmp_path, evidence)
    assert where == path and words in message, message


def test_a_cycle_is_one_error_at_its_first_item(tmp_path):
    found = errors(tmp_path, [video(), official("a", restates="b"), official("b", restates="c"), official("c", restates="a")])
    assert found == [("evidence[a].restates", "restatements form a cycle ('a' -> 'b' -> 'c' -> 'a'); one item is the "
                      "original: remove restates from it")]


def test_a_chain_to_an_unknown_id_is_one_error(tmp_path):
    found = errors(tmp_path, [video(), official("a", restates="b"), official("b", restates="nope")])
    assert [p for p, _ in found] == ["evidence[b].restates"], found


def test_a_restatement_pointing_the_other_way_is_refused_naming_both_ids(tmp_path):
    reverse = {"sam": 0.1, "bird": 0.9, "engine": 0.3}
    ((where, message),) = errors(tmp_path, [video(), official(holds=reverse, restates="video")])
    assert where == "evidence[official].restates"
    assert "'official' points the other way from 'video'" in message and "'bird' over 'sam'" in message, message
    assert "\n" not in message


def test_a_restated_item_that_failed_gets_no_follow_on_error(tmp_path):
    bad = video()
    bad["observed"] = {"statment": "typo"}
    found = errors(tmp_path, [bad, official(restates="video")])
    assert all(not p.endswith(".restates") for p, _ in found), found


def test_validate_exits_2_on_a_wrong_restates(tmp_path):
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(_doc([video(), official(restates="nope")]), sort_keys=False), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "engine.cli", "validate", str(path)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 2, (out.stdout, out.stderr)
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith(f"{path}: evidence[official].restates: unknown item 'nope'"), line


def test_the_schema_documents_restates():
    from engine.spec.case import case_schema

    schema = case_schema()
    evidence = next(v for k, v in schema["$defs"].items() if k == "Evidence")
    assert "restates" in evidence["properties"]

