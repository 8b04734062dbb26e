"""The client-side task loop: submit tasks, follow them to completion, retry failures, notice
when no workers are left, and report progress.

The loop knows nothing of what a task is: it is handed ``work`` (a picklable callable that
runs one task and returns a small JSON-able summary), ``name`` (a task's unique name) and,
optionally, ``depends`` (names of the tasks whose results a task reads: it is submitted once
they have finished) and ``expand`` (tasks a finished task asks for). In this process
(``spec.kind == "inprocess"``) tasks run one after another in the order given, so every task's
dependencies must come before it; on dask they run as the cluster allows.
"""

from __future__ import annotations

import importlib
import threading
import time
import uuid
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

from engine.errors import OptionError, RunError
from engine.run.cluster import ClusterSpec, connect, worker_engine
from engine.run.plan import ENGINE_VERSION

# what the client imports after the tasks (ArviZ alone is about 3 s): imported while it waits for the workers
AFTER_TASKS = ("arviz", "engine.run.collect", "engine.results.diagnostics")


class TaskLoop:
    """Run ``tasks`` with ``work`` on ``spec``'s cluster; ``run()`` returns the summaries in completion order.

    A task that raises is retried up to ``retries`` times (each failure becomes a warning in
    ``execution``); one more failure raises a ``RunError`` that ends with ``resume_hint``
    ("continue with incident run --resume RUN"), as does a cluster left without workers. ``execution``
    (an ``engine.run.executor.Execution``) records what was computed or skipped and where.
    ``on_done(summary, done, total)`` follows progress, counting from ``offset`` of ``total``;
    ``on_start(dashboard address or None)`` is called once the workers are there.
    """

    def __init__(self, spec: ClusterSpec, tasks: list, *, work: Callable[[Any], dict], name: Callable[[Any], str],
                 execution: Any, retries: int = 2, depends: Callable[[Any], list[str]] | None = None,
                 expand: Callable[[Any], list] | None = None, on_done: Callable[[dict, int, int], None] | None = None,
                 on_start: Callable[[str | None], None] | None = None, offset: int = 0, total: int | None = None,
                 resume_hint: str = "", log_directory: Path | None = None, poll: float = 1.0) -> None:
        if retries < 0:
            raise OptionError(f"--retries {retries} must be 0 or more")
        self.spec, self.tasks, self.work, self.name = spec, list(tasks), work, name
        self.execution, self.retries = execution, retries
        self.depends = depends or (lambda task: [])
        self.expand = expand or (lambda task: [])
        self.on_done, self.on_start = on_done, on_start
        self.done, self.total, self.poll = offset, offset + len(self.tasks) if total is None else total, poll
        self.resume_hint, self.log_directory = resume_hint, log_directory
        self.failures: dict[str, int] = {}
        self.results: list[dict] = []

    # -- bookkeeping shared by both modes
    def _finished(self, summary: dict, task: Any) -> list:
        """Record a finished task; return the tasks it asks for."""
        new = self.expand(task)
        self.total += len(new)
        self.results.append(summary)
        (self.execution.skipped if summary.get("skipped") else self.execution.computed).append(self.name(task))
        if not summary.get("skipped") and summary.get("process"):
            by = self.execution.tasks_by_process
            by[str(summary["process"])] = by.get(str(summary["process"]), 0) + 1
        self.done += 1
        if self.on_done:
            self.on_done(summary, self.done, self.total)
        return new

    def _failed(self, task: Any, exc: BaseException) -> None:
        tid = self.name(task)
        n = self.failures[tid] = self.failures.get(tid, 0) + 1
        what = f"{type(exc).__name__}: {exc}".strip().rstrip(":")
        if n > self.retries:
            hint = f" and {self.resume_hint}" if self.resume_hint else ""
            raise RunError(f"task {tid} failed {n} times (last: {what}); fix the cause{hint}")
        self.execution.warnings.append(f"task {tid} failed (attempt {n} of {self.retries + 1}: {what}); retried")

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
        self._started(None)
        queue = list(self.tasks)  # in the order given, so every task's dependencies have run before it
        while queue:
            task = queue.pop(0)
            while True:
                try:
                    summary = self.work(task)
                except Exception as exc:  # noqa: BLE001 - every task failure is retried, then reported
                    self._failed(task, exc)
                    continue
                queue += self._finished(summary, task)
                break
        return self.results

    # -- dask
    def _run_dask(self) -> list[dict]:
        from distributed import wait

        imports = threading.Thread(target=_import_quietly, args=(AFTER_TASKS,), name="import-after-tasks", daemon=True)
        with connect(self.spec, log_directory=self.log_directory) as (client, dashboard):
            imports.start()
            self._started(dashboard)
            token = uuid.uuid4().hex[:8]
            futures: dict[Any, Any] = {}
            pending = {self.name(t) for t in self.tasks}  # not finished yet
            blocked: list = []  # waiting for tasks whose results they read
            watchdog = _Watchdog(client, self.spec, self.execution, self.resume_hint)
            watchdog.check_workers()
            watchdog.tick(len(self.tasks))  # know the workers before any task runs: one that dies at once is still seen leaving

            def submit(task: Any) -> None:
                tid = self.name(task)
                key = f"{tid.replace('/', '.')}-{token}-{self.failures.get(tid, 0)}"
                futures[client.submit(self.work, task, key=key, pure=False, retries=0)] = task

            def add(tasks: list) -> None:
                for t in tasks:
                    pending.add(self.name(t))
                    if set(self.depends(t)) & pending:
                        blocked.append(t)
                    else:
                        submit(t)

            def release() -> None:
                for t in list(blocked):
                    if not set(self.depends(t)) & pending:
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
                            pending.discard(self.name(task))
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
            finally:
                imports.join()  # no import runs in two threads at once after this
        return self.results


def _import_quietly(modules: tuple[str, ...]) -> None:
    for m in modules:
        try:
            importlib.import_module(m)
        except Exception:  # noqa: BLE001 - a failing import fails again, with its message, where it is needed
            return


class _Watchdog:
    """Fail the run when no worker has been connected for ``no_workers_timeout`` seconds."""

    def __init__(self, client: Any, spec: ClusterSpec, execution: Any, resume_hint: str) -> None:
        self.client, self.spec, self.execution, self.resume_hint = client, spec, execution, resume_hint
        self.since: float | None = None
        self.known: set[Hashable] = set()
        self.checked: set[Hashable] = set()
        self.last = 0.0

    def check_workers(self, workers: list[str] | None = None) -> None:
        """Workers must run this engine's version; more than one thread per worker is reported."""
        try:
            infos = self.client.run(worker_engine, workers=workers, on_error="return" if workers else "raise")
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
            hint = f" and {self.resume_hint}" if self.resume_hint else ""
            raise RunError(f"no dask workers{where} for {waited:.0f} s with {remaining} tasks unfinished; start workers "
                           f"(or raise --no-workers-timeout){hint}")


def _stamp() -> str:
    return time.strftime("%H:%M:%S")
