"""Where a run's tasks execute: this process, an embedded LocalCluster, an existing dask
scheduler, or SLURM worker jobs started through dask-jobqueue; and the client-side loop that
submits tasks, retries failures, notices when no workers are left, and reports progress.

Only the client imports this module; workers run ``engine.runner.run_task``. Every worker is
a process with one thread (PyTensor's compiler is not thread-safe). Workers on one machine
share the PyTensor compile directory, which PyTensor guards with a file lock between
processes; SLURM jobs get one compile directory per node (``compiledir``/node-<hostname>).
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import OptionError, RunError

SLURM_KEYS: dict[str, tuple[type, ...]] = {
    "queue": (str,), "account": (str,), "walltime": (str,), "cores": (int,), "memory": (str,),
    "job_extra_directives": (list,), "job_script_prologue": (list,), "interface": (str,), "scheduler_host": (str,),
    "local_directory": (str,), "log_directory": (str,), "compiledir": (str,), "compiledir_per_node": (bool,), "python": (str,),
    "death_timeout": (int, float),
}
TLS_CONFIG = {"ca": "distributed.comm.tls.ca-file", "cert": "distributed.comm.tls.client.cert",
              "key": "distributed.comm.tls.client.key"}
_ADDRESS = re.compile(r"^(?:(tcp|tls|ucx|inproc)://)?(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def load_cluster_config(path: str | Path) -> dict[str, Any]:
    """Read a SLURM cluster-config file (YAML mapping, optionally under a ``slurm:`` key)."""
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OptionError(f"cluster config {p} not found; give an existing YAML file to --cluster-config") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise OptionError(f"cannot read cluster config {p}: {exc}") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" (line {where.line + 1})" if where else ""
        raise OptionError(f"cluster config {p} is not valid YAML{line}; fix its syntax") from None
    if raw is None:
        raw = {}
    if isinstance(raw, dict) and set(raw) == {"slurm"}:
        raw = raw["slurm"]
    if not isinstance(raw, dict):
        raise OptionError(f"cluster config {p} must be a mapping of SLURM settings ({', '.join(SLURM_KEYS)})")
    unknown = sorted(set(raw) - set(SLURM_KEYS))
    if unknown:
        raise OptionError(f"cluster config {p}: unknown keys {', '.join(map(str, unknown))}; known: {', '.join(SLURM_KEYS)}")
    for key, value in raw.items():
        types = SLURM_KEYS[key]
        if (isinstance(value, bool) and bool not in types) or not isinstance(value, types):
            want = " or ".join(t.__name__ for t in types)
            raise OptionError(f"cluster config {p}: {key} = {value!r} should be a {want}")
        if key == "cores" and value < 1:
            raise OptionError(f"cluster config {p}: cores = {value} should be at least 1")
        if isinstance(value, list) and not all(isinstance(x, str) for x in value):
            raise OptionError(f"cluster config {p}: {key} should be a list of strings")
    return dict(raw)


def normalise_address(address: str) -> str:
    m = _ADDRESS.match(address.strip())
    if not m or not 0 < int(m.group(3)) < 65536:
        raise OptionError(f"scheduler address {address!r} is not of the form tcp://HOST:PORT (e.g. tcp://127.0.0.1:8786)")
    return f"{m.group(1) or 'tcp'}://{m.group(2)}:{m.group(3)}"


@dataclass(frozen=True)
class TLSFiles:
    """The client's certificates for a ``tls://`` scheduler (``--tls-ca``, ``--tls-cert``, ``--tls-key``).

    Paths to PEM files: the CA that signed the cluster's certificates, this client's certificate
    and its private key (``key`` may be left out when the certificate file holds the key too).
    """

    ca: str | None = None
    cert: str | None = None
    key: str | None = None

    @classmethod
    def of(cls, ca: str | Path | None, cert: str | Path | None, key: str | Path | None) -> TLSFiles | None:
        """The given options (``None`` when none is given); paths are made absolute."""
        files = [None if x is None else str(Path(x).expanduser().absolute()) for x in (ca, cert, key)]
        return cls(*files) if any(files) else None

    def security(self):  # noqa: ANN201 - a distributed.security.Security
        """The client's ``Security``: mutual TLS with these files, plain TCP refused."""
        from distributed.security import Security

        return Security(tls_ca_file=self.ca, tls_client_cert=self.cert, tls_client_key=self.key, require_encryption=True)

    def dask_config(self) -> dict[str, Any]:
        """The same settings as dask config keys (read by ``Security()`` when no object is passed)."""
        return {TLS_CONFIG["ca"]: self.ca, TLS_CONFIG["cert"]: self.cert, TLS_CONFIG["key"]: self.key,
                "distributed.comm.require-encryption": True}


def check_tls(address: str | None, tls: TLSFiles | None) -> str | None:
    """Check the TLS options against the scheduler address; return where the client's
    certificates come from ("options", "dask config", "security loader") or None (no TLS).

    A ``tls://`` scheduler needs certificates from the options or, when none is given, from
    the dask config (``distributed.comm.tls.ca-file`` and ``distributed.comm.tls.client.cert``
    / ``.key``, which ``distributed.security.Security()`` reads, or a
    ``distributed.client.security-loader``). Options with a ``tcp://`` scheduler, or with no
    scheduler at all, are refused rather than ignored. Files must exist, be readable and hold
    what they should (the CA parses, the certificate matches its key).
    """
    scheme = normalise_address(address).split("://")[0] if address is not None else None
    if tls is not None:
        given = next(f"--tls-{k}" for k in ("ca", "cert", "key") if getattr(tls, k))
        if scheme is None:
            raise OptionError(f"{given} secures the connection to an existing scheduler; add --scheduler tls://HOST:PORT "
                              "or drop the --tls-* options")
        if scheme != "tls":
            raise OptionError(f"{given} is given but the scheduler address {address} is {scheme}:// (unencrypted); "
                              "use --scheduler tls://HOST:PORT or drop the --tls-* options")
        missing = [f"--tls-{k}" for k in ("ca", "cert") if not getattr(tls, k)]
        if missing:
            raise OptionError(f"--scheduler {address} with {given} needs {' and '.join(missing)} too: the cluster's CA "
                              "certificate (--tls-ca) and this client's certificate and key (--tls-cert, --tls-key)")
        _check_tls_files({f"--tls-{k}": getattr(tls, k) for k in ("ca", "cert", "key")}, "give")
        return "options"
    if scheme != "tls":
        return None
    import dask

    if dask.config.get("distributed.client.security-loader", None):
        return "security loader"
    conf = {TLS_CONFIG[k]: dask.config.get(TLS_CONFIG[k], None) for k in ("ca", "cert", "key")}
    if not conf[TLS_CONFIG["ca"]] or not conf[TLS_CONFIG["cert"]]:
        raise OptionError(f"--scheduler {address} needs client certificates: give --tls-ca, --tls-cert and --tls-key "
                          f"(or set {TLS_CONFIG['ca']}, {TLS_CONFIG['cert']} and {TLS_CONFIG['key']} in the dask config)")
    _check_tls_files({f"{k} (dask config)": v for k, v in conf.items()}, "set")
    return "dask config"


def _check_tls_files(files: dict[str, str | None], verb: str) -> None:
    """Each file exists and is readable; the CA parses; the certificate and key belong together."""
    import ssl

    (ca_opt, ca), (cert_opt, cert), (key_opt, key) = files.items()
    for opt, value in files.items():
        if not value or "\n" in value:  # absent, or PEM text held in the dask config itself
            continue
        try:
            with open(value, "rb") as fh:
                fh.read(1)
        except FileNotFoundError:
            raise OptionError(f"{opt} {value}: file not found; {verb} the path of an existing PEM file") from None
        except OSError as exc:
            raise OptionError(f"{opt} {value}: cannot be read ({exc.strerror or type(exc).__name__}); "
                              f"fix its permissions or {verb} another file") from None
    try:
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, **({"cadata": ca} if "\n" in ca else {"cafile": ca}))
    except (ssl.SSLError, ValueError) as exc:
        shown = "(PEM text)" if "\n" in ca else ca
        raise OptionError(f"{ca_opt} {shown} holds no PEM CA certificate "
                          f"({_ssl_reason(exc)}); {verb} the CA certificate that signed the cluster's certificates") from None
    if "\n" in cert or (key and "\n" in key):
        return  # in-memory PEM text: distributed checks it when it connects
    try:
        ctx.load_cert_chain(cert, key)
    except (ssl.SSLError, ValueError) as exc:
        what = f"{cert_opt} {cert}" + (f" with {key_opt} {key}" if key else f" (no {key_opt})")
        raise OptionError(f"{what} is not a PEM certificate and its private key ({_ssl_reason(exc)}); "
                          f"{verb} this client's certificate and the key that belongs to it") from None


def _ssl_reason(exc: BaseException) -> str:
    return getattr(exc, "reason", None) or str(exc).strip() or type(exc).__name__


@dataclass(frozen=True)
class ClusterSpec:
    """Validated execution options (no connection is made here)."""

    kind: str  # "inprocess" | "local" | "scheduler" | "slurm"
    workers: int = 2
    address: str | None = None
    slurm: dict = field(default_factory=dict)
    no_workers_timeout: float = 120.0
    tls: TLSFiles | None = None  # None with a tls:// scheduler: the dask config's certificates

    @classmethod
    def make(cls, *, workers: int = 2, scheduler: str | None = None, cluster: str = "local",
             cluster_config: str | Path | None = None, no_workers_timeout: float = 120.0,
             tls: TLSFiles | None = None) -> ClusterSpec:
        if cluster not in ("local", "slurm"):
            raise OptionError(f"--cluster {cluster!r} is not known; use local or slurm (or --scheduler tcp://HOST:PORT)")
        if workers < 0:
            raise OptionError(f"--workers {workers} must be 0 (in this process) or more")
        if not no_workers_timeout > 0:
            raise OptionError(f"--no-workers-timeout {no_workers_timeout} must be positive (seconds)")
        if cluster_config is not None and cluster != "slurm":
            raise OptionError("--cluster-config applies to --cluster slurm only")
        if scheduler is not None and cluster == "slurm":
            raise OptionError("--scheduler and --cluster slurm exclude each other; pick one")
        check_tls(scheduler, tls)
        if scheduler is not None:
            return cls("scheduler", workers, normalise_address(scheduler), {}, no_workers_timeout, tls)
        if cluster == "slurm":
            if workers < 1:
                raise OptionError("--cluster slurm needs --workers 1 or more (worker processes to start as SLURM jobs)")
            config = load_cluster_config(cluster_config) if cluster_config is not None else {}
            if shutil.which("sbatch") is None:
                raise RunError("sbatch not found; --cluster slurm needs SLURM's client commands (slurm-client) on this machine")
            return cls("slurm", workers, None, config, no_workers_timeout)
        return cls("inprocess" if workers == 0 else "local", workers, None, {}, no_workers_timeout)

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


@contextmanager
def connect(spec: ClusterSpec, *, log_directory: Path | None = None) -> Iterator[tuple[Any, str | None]]:
    """A dask client for ``spec`` and the dashboard address (None when there is none)."""
    from distributed import Client, LocalCluster

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
            if cluster is not None:
                cluster.close(timeout=30)


def _worker_engine(dask_worker=None) -> dict:  # noqa: ANN001
    from engine.run.runner import ENGINE_VERSION

    return {"engine": ENGINE_VERSION, "pid": os.getpid(), "nthreads": getattr(getattr(dask_worker, "state", None), "nthreads", None)}


class TaskLoop:
    """Submit tasks, follow them to completion, retry failures, and fail in bounded time."""

    def __init__(self, case, tasks, folder, settings, *, spec: ClusterSpec, retries: int, execution,  # noqa: ANN001
                 on_done: Callable[[dict, int, int], None] | None, on_start: Callable[[str | None], None] | None,
                 offset: int, total: int, poll: float = 1.0, expand: Callable[[Any], list] | None = None) -> None:
        if retries < 0:
            raise OptionError(f"--retries {retries} must be 0 or more")
        self.case, self.tasks, self.folder, self.settings = case, tasks, folder, settings
        self.spec, self.retries, self.execution = spec, retries, execution
        self.on_done, self.on_start = on_done, on_start
        self.done, self.total, self.poll = offset, total, poll
        self.expand = expand or (lambda task: [])  # tasks a finished task asks for (runner.followups)
        self.failures: dict[str, int] = {}
        self.results: list[dict] = []

    # -- bookkeeping shared by both modes
    def _finished(self, summary: dict, task) -> list:  # noqa: ANN001
        """Record a finished task; return the tasks it asks for."""
        new = self.expand(task)
        self.total += len(new)
        self.results.append(summary)
        (self.execution.skipped if summary.get("skipped") else self.execution.computed).append(summary["key"])
        if not summary.get("skipped") and summary.get("process"):
            by = self.execution.tasks_by_process
            by[summary["process"]] = by.get(summary["process"], 0) + 1
        self.done += 1
        if self.on_done:
            self.on_done(summary, self.done, self.total)
        return new

    def _failed(self, task, exc: BaseException) -> None:  # noqa: ANN001
        n = self.failures[task.id] = self.failures.get(task.id, 0) + 1
        what = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        if n > self.retries:
            raise RunError(f"task {task.id} failed {n} times (last: {what}); fix the cause and continue with "
                           f"incident run --resume {self.folder.root}")
        self.execution.warnings.append(f"task {task.id} failed (attempt {n} of {self.retries + 1}: {what}); retried")

    def _started(self, address: str | None) -> None:
        if self.on_start:
            self.on_start(address)
        if self.done and self.on_done:
            self.on_done({"key": f"{self.done} already complete", "skipped": True}, self.done, self.total)

    def run(self) -> list[dict]:
        if self.spec.kind == "inprocess":
            return self._run_inprocess()
        return self._run_dask()

    def _run_inprocess(self) -> list[dict]:
        from engine.run.runner import run_task

        self._started(None)
        queue = list(self.tasks)  # in plan order, so every task's dependencies have run before it
        while queue:
            task = queue.pop(0)
            while True:
                try:
                    summary = run_task(self.case, task, str(self.folder.root), self.settings)
                except Exception as exc:  # noqa: BLE001 - every task failure is retried, then reported
                    self._failed(task, exc)
                    continue
                queue += self._finished(summary, task)
                break
        return self.results

    # -- dask
    def _run_dask(self) -> list[dict]:
        from distributed import wait

        with connect(self.spec, log_directory=self.folder.root / "slurm-logs") as (client, dashboard):
            self._started(dashboard)
            token = uuid.uuid4().hex[:8]
            futures: dict[Any, Any] = {}
            pending = {t.id for t in self.tasks}  # not finished yet
            blocked: list = []  # waiting for tasks whose results they read
            watchdog = _Watchdog(client, self.spec, self.folder, self.execution)
            watchdog.check_workers()

            def submit(task) -> None:  # noqa: ANN001
                from engine.run.runner import run_task

                attempt = self.failures.get(task.id, 0)
                key = f"{task.id.replace('/', '.')}-{token}-{attempt}"
                futures[client.submit(run_task, self.case, task, str(self.folder.root), self.settings, key=key,
                                      pure=False, retries=0)] = task

            def add(tasks: list) -> None:
                from engine.run.runner import dependencies

                for t in tasks:
                    pending.add(t.id)
                    if {d.id for d in dependencies(t, self.settings)} & pending:
                        blocked.append(t)
                    else:
                        submit(t)

            def release() -> None:
                from engine.run.runner import dependencies

                for t in list(blocked):
                    if not {d.id for d in dependencies(t, self.settings)} & pending:
                        blocked.remove(t)
                        submit(t)

            add(self.tasks)
            try:
                while futures:
                    try:
                        done = wait(list(futures), timeout=self.poll, return_when="FIRST_COMPLETED").done
                    except TimeoutError:
                        done = set()
                    for fut in done:
                        task = futures.pop(fut)
                        if fut.status == "finished":
                            pending.discard(task.id)
                            add(self._finished(fut.result(), task))
                        else:
                            exc = fut.exception() if fut.status == "error" else RuntimeError(f"lost by the scheduler ({fut.status})")
                            self._failed(task, exc)
                            submit(task)
                    if done:
                        release()
                    watchdog.tick(len(futures) + len(blocked))
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
        return self.results


class _Watchdog:
    """Fail the run when no worker has been connected for ``no_workers_timeout`` seconds."""

    def __init__(self, client, spec: ClusterSpec, folder, execution) -> None:  # noqa: ANN001
        self.client, self.spec, self.folder, self.execution = client, spec, folder, execution
        self.since: float | None = None
        self.known: set[str] = set()
        self.checked: set[str] = set()
        self.last = 0.0

    def check_workers(self, workers: list[str] | None = None) -> None:
        """Workers must run this engine's version; more than one thread per worker is reported."""
        try:
            infos = self.client.run(_worker_engine, workers=workers, on_error="return" if workers else "raise")
        except Exception as exc:  # noqa: BLE001 - e.g. ModuleNotFoundError raised on a worker
            raise RunError(f"dask workers cannot run the engine ({type(exc).__name__}: {exc}); "
                           "install incident-engine in the workers' environment") from None
        for addr, info in list(infos.items()):
            if isinstance(info, BaseException):
                if isinstance(info, ImportError):
                    raise RunError(f"worker {addr} cannot run the engine ({type(info).__name__}: {info}); "
                                   "install incident-engine in the workers' environment")
                infos.pop(addr)  # e.g. a worker that left again at once
        self.checked.update(infos)
        from engine.run.runner import ENGINE_VERSION

        for addr, info in infos.items():
            if info["engine"] != ENGINE_VERSION:
                raise RunError(f"worker {addr} runs engine {info['engine']}, this client {ENGINE_VERSION}; "
                               "install the same version on the workers")
            if info["nthreads"] and info["nthreads"] > 1:
                self.execution.warnings.append(
                    f"worker {addr} has {info['nthreads']} threads; its tasks run one at a time (PyTensor is not thread-safe); "
                    "start workers with --nthreads 1")

    def tick(self, remaining: int) -> None:
        now = time.monotonic()
        if now - self.last < 1.0:
            return
        self.last = now
        try:
            workers = set(self.client.nthreads(callback_timeout=10))
        except Exception:  # noqa: BLE001 - scheduler unreachable counts as no workers
            workers = set()
        for gone in sorted(self.known - workers):
            self.execution.events.append(f"{_stamp()} worker {gone} left; its tasks are rescheduled")
        for new in sorted(workers - self.known):
            self.execution.events.append(f"{_stamp()} worker {new} joined")
        unchecked = sorted(workers - self.checked)
        if unchecked:
            self.check_workers(unchecked)
        self.known = workers
        if workers:
            self.since = None
            return
        self.since = self.since or now
        waited = now - self.since
        if waited > self.spec.no_workers_timeout:
            where = {"scheduler": f" at {self.spec.address}", "slurm": " (SLURM jobs pending or cancelled? see squeue)"}.get(self.spec.kind, "")
            raise RunError(f"no dask workers{where} for {waited:.0f} s with {remaining} tasks unfinished; start workers "
                           f"(or raise --no-workers-timeout) and continue with incident run --resume {self.folder.root}")


def _stamp() -> str:
    return time.strftime("%H:%M:%S")
