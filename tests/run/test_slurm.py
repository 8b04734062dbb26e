"""`incident run --cluster slurm` against a real single-node SLURM (slurmctld, slurmd, munge),
brought up by .ci/slurm-up (CI runs it; locally the fixture does when run as root). Without
SLURM the tests skip, except under CI=true, where they fail."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
import runhelp
from runhelp import CASE, ROOT, SMALL, incident, numbers


def _node_ready() -> bool:
    if not shutil.which("sinfo"):
        return False
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%T"], capture_output=True, text=True, timeout=30)
    return out.returncode == 0 and any(s.strip() in ("idle", "mixed", "allocated") for s in out.stdout.split())


DAEMONS = ("slurmd", "slurmctld", "munged")  # stopped in this order


def _pids(name: str) -> list[int]:
    out = subprocess.run(["pgrep", "-x", name], capture_output=True, text=True, timeout=30)
    return [int(p) for p in out.stdout.split()]


def _stop(pid: int, timeout: float = 15.0) -> None:
    """SIGTERM the process ``pid`` (one this fixture started), SIGKILL it if it outlives ``timeout``."""
    import signal
    import time

    try:
        os.kill(pid, signal.SIGTERM)
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            os.kill(pid, 0)
            time.sleep(0.2)
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def slurm():
    """A running single-node SLURM; the daemons this fixture starts (via .ci/slurm-up) are stopped
    at the end of the module, with the worker jobs left in their queue; a SLURM that was already
    running (CI's, or one brought up by hand) is left as it was."""
    started: dict[str, list[int]] = {}
    try:
        if not _node_ready() and os.geteuid() == 0 and shutil.which("pgrep"):
            before = {name: set(_pids(name)) for name in DAEMONS}
            try:
                subprocess.run(["bash", str(ROOT / ".ci" / "slurm-up")], capture_output=True, text=True, timeout=600)
            finally:
                started = {name: [p for p in _pids(name) if p not in before[name]] for name in DAEMONS}
        if not _node_ready():
            if os.environ.get("CI"):
                pytest.fail("SLURM is not running; .ci/run brings it up with .ci/slurm-up")
            pytest.skip("no single-node SLURM here (run .ci/slurm-up as root)")
        yield
    finally:
        if started.get("slurmctld") and shutil.which("scancel"):
            subprocess.run(["scancel", "--name", "dask-worker"], capture_output=True, timeout=30)
        for name in DAEMONS:
            for pid in started.get(name, []):
                _stop(pid)


def _config(tmp_path):  # noqa: ANN001, ANN202
    cfg = tmp_path / "slurm.yaml"
    compiledir = next((f.split("=", 1)[1] for f in os.environ.get("PYTENSOR_FLAGS", "").split(",")
                       if f.startswith("base_compiledir=")), str(ROOT / ".pytensor"))
    # one machine: the workers share the session's warm compile cache (PyTensor locks it between processes)
    cfg.write_text(f"queue: debug\ncores: 1\nmemory: 2GB\nwalltime: '00:30:00'\nscheduler_host: 127.0.0.1\n"
                   f"compiledir: {compiledir}\ncompiledir_per_node: false\n")
    return cfg


def _our_jobs() -> list[str]:
    out = subprocess.run(["squeue", "-h", "-o", "%i %j %T"], capture_output=True, text=True, timeout=30)
    return [line.split()[0] for line in out.stdout.splitlines() if "dask-worker" in line and "RUNNING" in line]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_run_on_slurm_completes_with_the_reference_numbers(slurm, tmp_path, tmp_path_factory):
    ref = runhelp.reference(tmp_path_factory.mktemp("reference"))
    out = incident("run", CASE, "--out", tmp_path, "--run-id", "slurm", "--cluster", "slurm", "--cluster-config", _config(tmp_path),
                   "--workers", "2", *SMALL)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "oracle" / "slurm"
    assert numbers(run) == numbers(ref)
    ex = runhelp.manifest(run)["executions"][-1]
    assert ex["backend"] == "SLURM, 2 workers" and len(ex["tasks_by_process"]) == 2
    assert list((run / "slurm-logs").glob("*.err")), "worker job logs go to the run folder"
    runhelp.wait_for(lambda: not _our_jobs(), 60, "the worker jobs to end with the run")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_scancel_of_a_worker_job_mid_run_still_completes(slurm, tmp_path, tmp_path_factory):
    ref = runhelp.reference(tmp_path_factory.mktemp("reference"))
    run = tmp_path / "oracle" / "cancelled"
    proc = runhelp.popen_incident("run", CASE, "--out", tmp_path, "--run-id", "cancelled", "--cluster", "slurm",
                                  "--cluster-config", _config(tmp_path), "--workers", "2", *SMALL, log=tmp_path / "run.log")
    try:
        runhelp.wait_for(lambda: (len(runhelp.result_files(run)) >= 3 and len(_our_jobs()) == 2) or proc.poll() is not None,
                         600, "three task results on two running worker jobs")
        assert proc.poll() is None, (tmp_path / "run.log").read_text()
        victim = _our_jobs()[0]
        subprocess.run(["scancel", victim], check=True, timeout=30)
        assert proc.wait(600) == 0, (tmp_path / "run.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert numbers(run) == numbers(ref)
    events = runhelp.manifest(run)["executions"][-1]["events"]
    assert any("left; its tasks are rescheduled" in e for e in events), events
