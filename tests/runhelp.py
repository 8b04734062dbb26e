"""Helpers for the execution tests (test_dask, test_resume, test_slurm): the `incident`
command as a subprocess, a shared reference run, real dask scheduler/worker processes, and
a fault injector that workers can import (tests/ is on their PYTHONPATH)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
CASE = TESTS / "cases" / "oracle.yaml"
SEED = "11"
SMALL = ["--seed", SEED, "--draws", "200", "--tune", "200", "--chains", "2", "--smc-chains", "2", "--smc-draws", "300"]
N_TASKS = 3 * (2 + 2 + 1)  # oracle: 3 hypotheses x (2 NUTS + 2 SMC + 1 bridge)
_REFERENCE: dict[str, Path] = {}


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(p for p in (str(TESTS), e.get("PYTHONPATH", "")) if p)
    return e


def incident(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=ROOT, env=env(), stdin=subprocess.DEVNULL)


def popen_incident(*args: str, log: Path) -> subprocess.Popen:
    fh = open(log, "w")  # noqa: SIM115 - closed by the caller's process ending
    return subprocess.Popen([sys.executable, "-m", "engine.cli", *map(str, args)], stdout=fh, stderr=subprocess.STDOUT,
                            cwd=ROOT, env=env(), stdin=subprocess.DEVNULL)


def numbers(run_dir: Path) -> dict:
    """The numbers of a run's attribution (everything but the run's name and warnings)."""
    result = json.loads((Path(run_dir) / "attribution.json").read_text())
    return {"leader": result["leader"], "hypotheses": result["hypotheses"]}


def reference(tmp_root: Path) -> Path:
    """The oracle case run once in-process with the small settings (computed once per session)."""
    if "run" not in _REFERENCE:
        out = incident("run", CASE, "--out", tmp_root, "--run-id", "reference", "--workers", "0", *SMALL)
        assert out.returncode == 0, out.stderr
        _REFERENCE["run"] = Path(tmp_root) / "oracle" / "reference"
    return _REFERENCE["run"]


def manifest(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / "manifest.json").read_text())


def result_files(run_dir: Path) -> list[Path]:
    return sorted(p for p in (Path(run_dir) / "tasks").glob("*") if not p.name.startswith(".tmp-"))


def wait_for(predicate, timeout: float, what: str, every: float = 0.2) -> None:  # noqa: ANN001
    t0 = time.monotonic()
    while not predicate():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DaskProcesses:
    """A real `dask scheduler` and `dask worker` processes on 127.0.0.1."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = Path(tmp)
        self.port = free_port()
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.procs: dict[str, subprocess.Popen] = {}
        dask = str(Path(sys.executable).with_name("dask"))
        self._dask = dask if Path(dask).exists() else shutil.which("dask")

    def _start(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "w")  # noqa: SIM115
        p = subprocess.Popen([self._dask, *args], stdout=log, stderr=subprocess.STDOUT, env=env(), cwd=self.tmp,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs[name] = p
        return p

    def start_scheduler(self) -> None:
        self._start("scheduler", ["scheduler", "--host", "127.0.0.1", "--port", str(self.port), "--dashboard-address", "127.0.0.1:0"])
        wait_for(self._listening, 60, "the dask scheduler to listen")

    def _listening(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def start_worker(self, name: str) -> subprocess.Popen:
        return self._start(name, ["worker", self.address, "--nthreads", "1", "--no-nanny", "--name", name,
                                  "--host", "127.0.0.1", "--dashboard-address", "127.0.0.1:0"])

    def n_workers(self) -> int:
        from distributed import Client

        with Client(self.address, timeout="10s") as c:
            return len(c.scheduler_info()["workers"])

    def kill(self, name: str) -> None:
        p = self.procs[name]
        if p.poll() is None:
            os.kill(p.pid, signal.SIGKILL)
            p.wait(10)

    def running(self, *workers: str):  # noqa: ANN201 - a generator for pytest fixtures
        """Start the scheduler and ``workers``, wait until all are connected, yield ``self``, stop them all."""
        try:
            self.start_scheduler()
            for w in workers:
                self.start_worker(w)
            wait_for(lambda: self.n_workers() == len(workers), 120, f"{len(workers)} dask worker(s) connected")
            yield self
        finally:
            self.stop()

    def stop(self) -> None:
        for name in reversed(list(self.procs)):
            p = self.procs[name]
            if p.poll() is None:
                p.terminate()
        for p in self.procs.values():
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


# -- fault injection (imported by dask workers through PYTHONPATH)
def install_fault(marker_dir: str, task_key: str) -> str:
    """Make ``task_key``'s SMC task raise once (cluster-wide, through a marker file)."""
    import engine.run.task as task_module

    original = getattr(task_module, "_original_run_smc", task_module._run_smc)
    task_module._original_run_smc = original

    def faulty(cm, task, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        marker = Path(marker_dir) / f"{task.id.replace('/', '_')}.failed"
        if task.id == task_key and not marker.exists():
            marker.write_text(str(os.getpid()))
            raise RuntimeError("injected fault")
        return original(cm, task, *args, **kwargs)

    task_module._run_smc = faulty
    return "installed"


def remove_fault() -> str:
    import engine.run.task as task_module

    if hasattr(task_module, "_original_run_smc"):
        task_module._run_smc = task_module._original_run_smc
    return "removed"
