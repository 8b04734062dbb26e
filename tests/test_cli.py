"""The `incident` command as a user runs it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BAD = sorted((ROOT / "tests" / "fixtures" / "bad").glob("*.yaml"))
SEEDS = [ROOT / "cases" / "azal8243-2024.yaml", ROOT / "cases" / "il20-2018.yaml"]


def incident(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT)


def expected(path: Path) -> str:
    first = path.read_text(encoding="utf-8", errors="replace").splitlines()[0]
    assert first.startswith("# expect:"), f"{path.name} lacks its '# expect:' line"
    return first.removeprefix("# expect:").strip()


def test_help_and_version_start_fast():
    t0 = time.perf_counter()
    out = incident("--version")
    assert out.returncode == 0 and "incident-engine" in out.stdout
    assert time.perf_counter() - t0 < 5  # generous bound for a loaded CI machine; pymc is not imported
    assert "pymc" not in incident("--help").stderr


def test_schema_is_json_schema_with_every_family():
    out = incident("schema")
    schema = json.loads(out.stdout)
    assert "properties" in schema and {"case", "sources", "hypotheses", "evidence"} <= set(schema["properties"])
    assert "TimingObs" in schema["$defs"]


def test_seed_cases_validate():
    out = incident("validate", *map(str, SEEDS))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(": ok") == 2


def test_there_are_enough_bad_fixtures():
    assert len(BAD) >= 30


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_case_gives_one_line_errors_exit_2_and_no_run_folder(path, tmp_path):
    out = incident("run", str(path), "--out", str(tmp_path / "runs"))
    assert out.returncode == 2, (out.stdout, out.stderr)
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines and all(line.startswith(str(path.relative_to(ROOT)) + ":") or line.startswith(str(path) + ":") for line in lines), lines
    assert expected(path) in out.stderr, out.stderr
    assert not (tmp_path / "runs").exists()


def test_validate_reports_every_bad_file_and_exits_2():
    out = incident("validate", *map(str, BAD[:3]), str(SEEDS[0]))
    assert out.returncode == 2
    assert out.stdout.count(": ok") == 1
    assert len(out.stderr.strip().splitlines()) >= 3


def test_show_of_a_missing_run_is_a_clean_error(tmp_path):
    out = incident("show", str(tmp_path / "nope"))
    assert out.returncode == 3 and "Traceback" not in out.stderr and out.stderr.count("\n") == 1


@pytest.mark.slow
def test_run_on_a_local_dask_cluster_then_show(tmp_path):
    pdf = tmp_path / "e2e.pdf"
    out = incident("run", "tests/cases/oracle.yaml", "--out", str(tmp_path), "--run-id", "e2e", "--workers", "2",
                   "--draws", "300", "--tune", "300", "--chains", "2", "--smc-chains", "2", "--smc-draws", "400",
                   "--report", "--report-output", str(pdf))
    assert out.returncode == 0, out.stderr
    run_dir = tmp_path / "oracle" / "e2e"
    assert f"run folder: {run_dir}" in out.stdout
    assert f"report: {pdf}" in out.stdout  # the run wrote its PDF report in the same process
    page1 = subprocess.run(["pdftotext", "-l", "1", str(pdf), "-"], capture_output=True, text=True, check=True).stdout
    assert "Attribution report" in page1 and "run e2e" in page1
    assert "external" in out.stdout and "posterior" in out.stdout
    result = json.loads((run_dir / "attribution.json").read_text())
    assert set(result) >= {"case", "run", "leader", "converged", "warnings", "hypotheses"}
    assert sum(h["posterior"] for h in result["hypotheses"].values()) == pytest.approx(1.0)
    for h in result["hypotheses"].values():
        assert set(h) == {"prior", "posterior", "posterior_mcse", "log_evidence", "log_evidence_se", "method"}
        assert h["method"] == "sampled"  # a base run samples; only variants can be reweighted
        assert set(h["log_evidence"]) >= {"smc", "bridge"}
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["settings"]["seed"] == 20181017 and manifest["finished"] and manifest["packages"]["pymc"]
    assert (run_dir / "case.yaml").read_text() == (ROOT / "tests/cases/oracle.yaml").read_text()
    import arviz as az

    idata = az.from_netcdf(str(run_dir / "posterior" / "external.nc"))  # another reader (h5netcdf) than the engine's
    assert idata.posterior.sizes["chain"] == 2 and idata.posterior.sizes["draw"] == 300
    shown = incident("show", str(run_dir), "--json")
    assert json.loads(shown.stdout) == result
    assert "leader" in incident("show", str(run_dir)).stdout
