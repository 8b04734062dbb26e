"""Where tasks execute: this process, an embedded LocalCluster, an existing dask scheduler,
or SLURM worker jobs started through dask-jobqueue.

:class:`ClusterSpec` is made once per run from its checked ``ExecutionOptions``
(``engine.run.settings``); :func:`connect` gives a dask client for it. Only the client uses
this module; workers run the callables the task loop (``engine.run.loop``) hands them. Every
worker is a process with one thread (PyTensor's compiler is not thread-safe). Workers on one
machine share the PyTensor compile directory, which PyTensor guards with a file lock between
processes; SLURM jobs get one compile directory per node (``compiledir``/node-<hostname>).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import RunError
from engine.run.checks import TLSFiles
from engine.run.settings import ExecutionOptions


@dataclass(frozen=True)
class ClusterSpec:
    """Checked execution options, resolved to one kind of cluster (no connection is made here)."""

    kind: str  # "inprocess" | "local" | "scheduler" | "slurm"
    workers: int = 2
    address: str | None = None
    slurm: dict = field(default_factory=dict)
    no_workers_timeout: float = 120.0
    tls: TLSFiles | None = None  # None with a tls:// scheduler: the dask config's certificates

    @classmethod
    def of(cls, options: ExecutionOptions) -> ClusterSpec:
        """The cluster of ``options``; SLURM needs ``sbatch`` on this machine (``RunError`` otherwise)."""
        if options.kind == "slurm" and shutil.which("sbatch") is None:
            raise RunError("sbatch not found; --cluster slurm needs SLURM's client commands (slurm-client) on this machine")
        return cls(options.kind, options.workers, options.scheduler, dict(options.slurm), options.no_workers_timeout,
                   options.tls)

    @classmethod
    def make(cls, **options: Any) -> ClusterSpec:
        """``ClusterSpec.of(ExecutionOptions(**options))``."""
        return cls.of(ExecutionOptions(**options))

    def preflight(self, timeout: float = 5.0) -> None:
        """Fail fast (before a run folder is made) when an existing scheduler cannot be reached."""
        if self.kind != "scheduler" or not self.address.startswith(("tcp://", "tls://")):
            return
        import socket

        host, port = self.address.split("://", 1)[1].rsplit(":", 1)
        try:
            socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            raise RunError(f"cannot reach the dask scheduler at {self.address} ({reason}); "
                           "start one with `dask scheduler` or check --scheduler") from None

    def describe(self) -> str:
        return {"inprocess": "in-process", "local": f"local cluster, {self.workers} workers",
                "scheduler": f"dask scheduler {self.address}", "slurm": f"SLURM, {self.workers} workers"}[self.kind]


def _slurm_cluster(spec: ClusterSpec, log_directory: Path | None):  # noqa: ANN202
    import dask
    from dask_jobqueue import SLURMCluster

    cfg = dict(spec.slurm)
    cores = int(cfg.pop("cores", None) or dask.config.get("jobqueue.slurm.cores", None) or 1)
    memory = cfg.pop("memory", None) or dask.config.get("jobqueue.slurm.memory", None) or "2GB"
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("base_compiledir")]
    base = cfg.pop("compiledir", None) or next(
        (f.split("=", 1)[1] for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f.startswith("base_compiledir=")),
        str(Path.home() / ".cache" / "incident-engine" / "pytensor"))
    per_node = cfg.pop("compiledir_per_node", True)
    flags.insert(0, f"base_compiledir={base}/node-$(hostname -s)" if per_node else f"base_compiledir={base}")
    prologue = [f'export PYTENSOR_FLAGS="{",".join(flags)}"', *cfg.pop("job_script_prologue", [])]
    host = cfg.pop("scheduler_host", None)
    kwargs: dict[str, Any] = {
        "cores": cores, "processes": cores, "memory": memory,  # one single-threaded worker process per core
        "python": cfg.pop("python", None) or sys.executable,
        "job_script_prologue": prologue,
        "death_timeout": cfg.pop("death_timeout", 60),
        "log_directory": cfg.pop("log_directory", None) or (str(log_directory) if log_directory else None),
        "scheduler_options": {"dashboard_address": ":0", **({"host": host} if host else {})},
        **cfg,
    }
    try:
        cluster = SLURMCluster(**kwargs)
    except (ValueError, TypeError, OSError) as exc:
        raise RunError(f"cannot set up SLURM workers: {exc}") from None
    jobs = math.ceil(spec.workers / cores)
    cluster.adapt(minimum_jobs=jobs, maximum_jobs=jobs)  # adaptive: a cancelled job is replaced
    return cluster


_closing: list[threading.Thread] = []  # local clusters being shut down while the client collects


def finish_closing() -> None:
    """Wait until every local cluster this process started has shut down (its workers exited)."""
    while _closing:
        _closing.pop().join()


def _close_in_background(cluster: Any) -> None:  # noqa: ANN401 - a distributed LocalCluster
    """Shut a local cluster down in a thread: stopping the worker processes takes seconds that the
    client spends collecting the results instead. :func:`finish_closing` waits for it (a run does,
    before it returns; so does the next :func:`connect`); a non-daemon thread also holds the
    interpreter's exit until the workers are gone."""
    t = threading.Thread(target=cluster.close, kwargs={"timeout": 30}, name="close-local-cluster")
    t.start()
    _closing.append(t)


@contextmanager
def connect(spec: ClusterSpec, *, log_directory: Path | None = None) -> Iterator[tuple[Any, str | None]]:
    """A dask client for ``spec`` and the dashboard address (None when there is none).

    A local cluster is shut down in the background when the block ends (``finish_closing``)."""
    from distributed import Client, LocalCluster

    finish_closing()  # one local cluster at a time
    cluster = None
    try:
        if spec.kind == "local":
            cluster = LocalCluster(n_workers=spec.workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                                   dashboard_address="127.0.0.1:0", silence_logs=logging.CRITICAL)
            client = Client(cluster, timeout="60s")
        elif spec.kind == "slurm":
            cluster = _slurm_cluster(spec, log_directory)
            client = Client(cluster, timeout="60s")
        else:
            security = spec.tls.security() if spec.tls is not None else None  # None: Client reads the dask config
            try:
                client = Client(spec.address, timeout="10s", security=security)
            except (OSError, TimeoutError) as exc:
                if spec.address.startswith("tls://"):
                    ssl_reason = re.search(r"\[SSL: (\w+)\]", str(exc))
                    why = type(exc).__name__ + (f": {ssl_reason.group(1)}" if ssl_reason else "")
                    raise RunError(f"no TLS connection to the dask scheduler at {spec.address} ({why}); check "
                                   "that it runs with --protocol tls and that the CA given to --tls-ca signed its certificate "
                                   "and --tls-cert") from None
                raise RunError(f"cannot reach the dask scheduler at {spec.address} ({type(exc).__name__}); "
                               f"start one with `dask scheduler` or check --scheduler") from None
    except BaseException:
        if cluster is not None:
            cluster.close()
        raise
    try:
        info = client.scheduler_info()
        dashboard = client.dashboard_link if "dashboard" in info.get("services", {}) else None
        yield client, dashboard
    finally:
        try:
            client.close(timeout=10)
        finally:
            if cluster is not None and spec.kind == "local":
                _close_in_background(cluster)
            elif cluster is not None:
                cluster.close(timeout=30)


def worker_engine(dask_worker=None) -> dict:  # noqa: ANN001
    from engine.run.plan import ENGINE_VERSION

    return {"engine": ENGINE_VERSION, "pid": os.getpid(), "nthreads": getattr(getattr(dask_worker, "state", None), "nthreads", None)}

