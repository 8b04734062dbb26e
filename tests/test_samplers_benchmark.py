"""benchmarks/samplers.py in its smallest configuration (``quick``): its tables are well formed, and its
independent estimators of the oracle case's log evidence agree with the closed form written from scipy
(tests/inference/test_oracle.py's ``oracle_truth``, no engine code)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str, path: Path):  # noqa: ANN202
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


pytestmark = pytest.mark.slow  # ~55 s of CPU (a NUTS compile in a fresh interpreter, the log densities): make test-quick skips it


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> dict:  # noqa: ANN001
    bench = _load("samplers_benchmark", ROOT / "benchmarks" / "samplers.py")
    out = tmp_path_factory.mktemp("samplers") / "quick.json"
    assert bench.main(["quick", "--json", str(out)]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_quick_tables_are_well_formed(quick: dict) -> None:
    assert quick["versions"]["pymc"] != "not installed"
    (row,) = quick["samplers"]
    assert row["sampler"] == "pymc" and "error" not in row, row
    assert row["dims"] == 1 and row["compile_s"] >= 0 and row["sampling_s"] > 0 and row["z_vs_pymc"] == 0.0
    assert 10 < row["min_ess"] < 3 * 2 * 100  # 2 chains x 100 draws (NUTS can be antithetic, ESS above the draws)
    # the one free parameter is the neutral class's assertion rate, Beta(2, 8) a priori: a mean in (0, 1)
    assert 0 < row["means"]["assertion_rate__neutral"][0] < 1 and row["mcse"]["assertion_rate__neutral"][0] > 0
    ev = quick["evidence"]
    assert set(ev["rows"]) == {"prior-IS 2000", "laplace-t-IS 1000"}
    for key, rows in ev["rows"].items():
        assert len(rows) == 3 * 2, key  # every hypothesis x 2 seeds
        assert all(np.isfinite(r["value"]) and r["se"] > 0 and r["seconds"] > 0 for r in rows), key
        t = ev["tables"]["all"][key]
        assert t["n"] == 6 and t["max_abs"] >= t["mean_abs"] >= 0 and t["per_second"] > 0


def test_importance_sampling_meets_the_exact_log_evidence(quick: dict) -> None:
    """Every estimate within 4 of its stated s.e. (plus 0.005 nat) of the closed form, and the benchmark's
    own "exact" column is that closed form."""
    truth = _load("samplers_oracle_truth", ROOT / "tests" / "inference" / "test_oracle.py").oracle_truth()
    for key, rows in quick["evidence"]["rows"].items():
        for r in rows:
            assert r["exact"] == pytest.approx(truth[r["hypothesis"]], abs=0.01), (key, r["hypothesis"])
            assert abs(r["value"] - truth[r["hypothesis"]]) <= 4 * r["se"] + 0.005, (key, r)
