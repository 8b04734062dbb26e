"""Results are records: typed, versioned, validated when read (engine.results.records).

Test data is written by hand (no sampler), except the slow test that reads the records of the
session's real oracle run.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from engine.errors import RunError
from engine.results.records import SCHEMA_VERSION, Attribution, CaseRecord, Diagnostics, Sensitivity
from engine.run.store import write_json


def _attribution() -> dict:
    return {"case": "oracle", "run": "r1", "leader": "a", "converged": True, "warnings": ["a: tail ESS 300 below 400"],
            "hypotheses": {h: {"prior": 0.5, "posterior": p, "posterior_mcse": 0.01,
                               "log_evidence": {"smc": -3.1, "bridge": -3.0, "pooled": -3.0}, "log_evidence_se": 0.05,
                               "method": "sampled"} for h, p in (("a", 0.7), ("b", 0.3))}}


def _diagnostics() -> dict:
    per = {"rhat_max": math.nan, "ess_bulk_min": 812.4, "ess_tail_min": 655.0, "divergences": 0, "bfmi_min": 0.93,
           "n_chains": 1, "n_draws": 100, "problems": [],
           "estimators": {"smc": -3.1, "smc_se": 0.04, "bridge": -3.0, "bridge_se": 0.03, "spread": 0.1, "z": 2.0, "agree": True}}
    return {"case": "oracle", "run": "r1", "verdict": "warn", "reasons": ["x"], "hypotheses": {"a": per, "b": per},
            "posterior_mcse": {"a": 0.01, "b": 0.01},
            "predictive": {"gap": {"family": "claim", "items": ["gap"], "p_values": {"a": None, "b": 0.5}}},
            "unexplained": [], "contributions": {"leader": "a", "runner_up": "b", "units": {"gap": 0.25}}}


def test_attribution_round_trips_with_its_keys_in_the_documented_order() -> None:
    data = {"schema_version": SCHEMA_VERSION, **_attribution()}
    out = Attribution.from_json(json.loads(json.dumps(data))).to_json()
    assert out == data
    assert list(out) == ["schema_version", "case", "run", "leader", "converged", "warnings", "hypotheses"]
    assert list(out["hypotheses"]["a"]) == ["prior", "posterior", "posterior_mcse", "log_evidence", "log_evidence_se", "method"]


def test_diagnostics_round_trip_keeps_nan_and_claims_without_replicates() -> None:
    out = Diagnostics.from_json(json.loads(json.dumps(_diagnostics()))).to_json()
    assert math.isnan(out["hypotheses"]["a"]["rhat_max"])
    assert out["predictive"]["gap"]["p_values"] == {"a": None, "b": 0.5}
    assert "pareto_k" not in out["contributions"]  # absent keys stay absent


def test_reweighted_hypothesis_with_a_constant_ratio_has_no_pareto_k() -> None:
    diag = _diagnostics()
    diag["hypotheses"]["a"]["reweighted"] = {"log_ratio": 0.0, "se": 0.0, "pareto_k": None, "k_max": 0.7, "ess": 200.0}
    assert Diagnostics.from_json(diag).to_json()["hypotheses"]["a"]["reweighted"]["pareto_k"] is None


def test_file_written_before_schema_versions_reads_as_the_current_version() -> None:
    old = _attribution()
    for h in old["hypotheses"].values():
        del h["method"]  # older still: written before variants existed
    record = Attribution.from_json(old)
    assert record.schema_version == SCHEMA_VERSION and record.hypotheses["a"].method == "sampled"


@pytest.mark.parametrize("record", [Attribution, Diagnostics, Sensitivity, CaseRecord])
def test_other_schema_version_is_a_run_error_naming_file_and_field(record) -> None:  # noqa: ANN001
    with pytest.raises(RunError, match=rf"^runs/x/{record.FILE}: schema_version: 2 is not the version this engine reads \(1\)"):
        record.from_json({"schema_version": 2}, source=f"runs/x/{record.FILE}")


@pytest.mark.parametrize(("edit", "field", "message"), [
    (lambda d: d["hypotheses"]["b"].update(posterior="0.3"), "hypotheses.b.posterior", "Input should be a valid number"),
    (lambda d: d["hypotheses"]["a"]["log_evidence"].pop("pooled"), "hypotheses.a.log_evidence.pooled", "Field required"),
    (lambda d: d.update(converged="yes"), "converged", "Input should be a valid boolean"),
    (lambda d: d["hypotheses"]["a"].update(method="guessed"), "hypotheses.a.method", "Input should be 'sampled', 'reweighted' or 'exact'"),
    (lambda d: d.update(leader="c"), "leader", "'c' is not one of the hypotheses"),
    (lambda d: d.update(hypotheses={}), "hypotheses", "at least 1 item"),
])
def test_malformed_attribution_is_a_run_error_naming_the_field(edit, field: str, message: str) -> None:  # noqa: ANN001
    data = _attribution()
    edit(data)
    with pytest.raises(RunError) as err:
        Attribution.from_json(data, source="runs/x/attribution.json")
    assert str(err.value).startswith(f"runs/x/attribution.json: {field}: ") and message in str(err.value)


def test_a_file_that_is_not_an_object_is_a_run_error() -> None:
    with pytest.raises(RunError, match="diagnostics.json: not a JSON object"):
        Diagnostics.from_json([1, 2], source="diagnostics.json")


def test_engine_read_attribution_still_returns_the_json_object(tmp_path: Path) -> None:
    import engine

    data = {"schema_version": SCHEMA_VERSION, **_attribution()}
    write_json(tmp_path / "attribution.json", data)
    assert engine.read_attribution(tmp_path) == data


def test_diagnose_command_exits_3_naming_a_malformed_field(tmp_path: Path) -> None:
    diag = _diagnostics()
    diag["verdict"] = "maybe"
    write_json(tmp_path / "diagnostics.json", diag)
    write_json(tmp_path / "manifest.json", {})  # a run folder has one (diagnose verifies the folder first)
    out = subprocess.run([sys.executable, "-m", "engine.cli", "diagnose", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 3
    assert f"{tmp_path / 'diagnostics.json'}: verdict: Input should be 'pass', 'warn' or 'fail'" in out.stderr


@pytest.mark.slow
def test_a_real_run_writes_every_record_the_report_reads(oracle_run, oracle_case) -> None:  # noqa: ANN001
    from engine.run.collect import read_attribution_record, read_diagnostics

    run_dir, attribution = oracle_run
    assert attribution["schema_version"] == SCHEMA_VERSION
    assert read_attribution_record(run_dir).to_json() == attribution
    assert read_diagnostics(run_dir)["schema_version"] == SCHEMA_VERSION
    case = CaseRecord.from_json(json.loads((run_dir / "case.json").read_text(encoding="utf-8")))
    assert (case.id, case.title, case.digest) == (oracle_case.id, oracle_case.title, oracle_case.digest)
    assert [e.id for e in case.evidence] == [it.id for it in oracle_case.items]
    assert [h.id for h in case.hypotheses] == list(attribution["hypotheses"])
