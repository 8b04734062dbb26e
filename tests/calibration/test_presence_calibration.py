"""Calibration template with presence items and censored counts (tests/cases/calibration-presence.yaml),
checked against truth: simulated incidents keep the design (a range is reported as the cell that holds
the simulated count; a search as found or not), and, per hypothesis, how often a search comes back
"found" and how often a count falls in each cell match the independent oracles
(tests/oracles/presence.py, tests/oracles/perforations.py), which are written from the generative
story in plain numpy and read the prior library themselves. The full 400-incident calibration against
the quadrature reference is a benchmark (benchmarks/calibrate_claims.py --template ...).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import yaml
from conftest import CASES
from oracles import perforations as perf_oracle
from oracles import presence as presence_oracle

from engine.spec.case import load_case

TEMPLATE = CASES / "calibration-presence.yaml"
ROOT = CASES.parents[1]
N_INCIDENTS = 900


@pytest.fixture(scope="module")
def template():
    return load_case(TEMPLATE)


@pytest.fixture(scope="module")
def incidents(template):
    from engine.calibration.simulate import simulate_incident
    from engine.run.seeds import incident_seed

    return [simulate_incident(template, i, np.random.default_rng(incident_seed(17, i))) for i in range(N_INCIDENTS)]


def _doc() -> tuple[dict, dict, dict]:
    """(template, sources, prior library) read as plain YAML, without the engine."""
    case = yaml.safe_load(TEMPLATE.read_text(encoding="utf-8"))
    lib = yaml.safe_load((ROOT / "priors" / "mechanisms.yaml").read_text(encoding="utf-8"))["mechanisms"]
    return case, {s["id"]: s for s in case["sources"]}, lib


def _mean_reliability(src: dict) -> float:
    r = src["reliability"]
    return r["beta"][0] / sum(r["beta"]) if isinstance(r, dict) else float(r)


def _prob(v) -> float | tuple[float, float]:  # noqa: ANN001
    return tuple(v["beta"]) if isinstance(v, dict) else float(v)


def _z(hits: int, n: int, p: float) -> float:
    return (hits - n * p) / math.sqrt(n * p * (1 - p))


def test_presence_template_is_simulable_and_keeps_its_design(template, incidents):
    from engine.calibration.simulate import check_design
    from engine.model.build import observation_data

    check_design(template)
    shapes = {k: np.shape(v) for k, v in observation_data(template).items()}
    cells = {"wing-holes": set(), "holes": set()}
    for inc in incidents[:200]:
        assert {k: np.shape(v) for k, v in observation_data(inc.case).items()} == shapes
        for pid in ("bowties", "residue", "disc"):
            got, want = inc.case.item(pid).observed, template.item(pid).observed
            assert (got.thing, got.detection, got.searched) == (want.thing, want.detection, want.searched)
        for cid in cells:
            o = inc.case.item(cid).observed
            cells[cid].add(o.holes.model_dump_json() if hasattr(o.holes, "model_dump_json") else repr(o.holes))
        assert inc.case.item("wing-holes").observed.inward is None  # a count alone stays a count alone
    assert len(cells["wing-holes"]) == 3 and len(cells["holes"]) == 2, cells  # every cell of each range occurs


def test_searches_come_back_found_as_the_presence_oracle_says(template, incidents):
    """P(found | H) for each search, by the oracle's simulation (single report, so a Beta reliability
    enters through its mean), against the share of simulated incidents of H where it was found."""
    case, sources, lib = _doc()
    items = {e["id"]: e for e in case["evidence"]}
    hyps = {h["id"]: h["mechanism"] for h in case["hypotheses"]}
    generic = lib["generic"]["presence"]
    checked = 0
    for pid in ("bowties", "residue", "disc"):
        obs = items[pid]["observed"]
        for hid, mechanism in hyps.items():
            table = lib[mechanism]["presence"]
            search = presence_oracle.Search(thing=obs["thing"], found=True, present=_prob(table.get(obs["thing"], table["other"])),
                                            detection=_prob(obs["detection"]), reliability=_mean_reliability(sources[items[pid]["source"]]),
                                            generic=_prob(generic.get(obs["thing"], generic["other"])))
            log_p, _ = presence_oracle.log_evidence([search], n=400_000, seed=3)
            mine = [inc for inc in incidents if inc.hypothesis == hid]
            hits = sum(inc.case.item(pid).observed.found for inc in mine)
            assert abs(_z(hits, len(mine), math.exp(log_p))) < 4, (pid, hid, hits, len(mine), math.exp(log_p))
            checked += 1
    assert checked == 9


@pytest.mark.parametrize("cid", ["wing-holes", "holes"])
def test_censored_counts_fall_in_each_cell_as_the_perforations_oracle_says(template, incidents, cid):
    """P(count in cell | H) = r P_H(cell) + (1 - r) P_bg(cell), each term by quadrature over the hole
    rate and the vague part summed term by term (the oracle), against the simulated shares."""
    from engine.evidence.perforations import bounds

    case, sources, lib = _doc()
    item = next(e for e in case["evidence"] if e["id"] == cid)
    r = _mean_reliability(sources[item["source"]])
    lo, hi = bounds(template.item(cid).observed.holes)
    top = perf_oracle.N
    cells = [c for c in ((0, lo - 1), (lo, hi), (hi + 1, top)) if c[0] <= c[1]]

    def spec(mechanism: str) -> dict:
        p = lib[mechanism]["perforations"]["hole_rate"]
        return {"rate": ("gamma", *p["gamma"])} if isinstance(p, dict) else {"rate": ("fixed", float(p))}

    for h in case["hypotheses"]:
        mine = [inc for inc in incidents if inc.hypothesis == h["id"]]
        probs = [math.exp(perf_oracle.unit_log_evidence({"lo": a, "hi": b, "m": 0, "k": None}, spec(h["mechanism"]), spec("generic"), r))
                 for a, b in cells]
        assert sum(probs) == pytest.approx(1.0, abs=1e-6)
        for (a, b), p in zip(cells, probs, strict=True):
            hits = sum(a <= bounds(inc.case.item(cid).observed.holes)[0] and bounds(inc.case.item(cid).observed.holes)[1] <= b
                       for inc in mine)
            assert abs(_z(hits, len(mine), p)) < 4, (cid, h["id"], (a, b), hits, len(mine), p)
