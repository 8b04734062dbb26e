"""One executor for every kind of work: case runs, resumed runs, sensitivity variants and calibrations.

An :class:`Executor` is made once from checked ``ExecutionOptions`` (it resolves them to one
``ClusterSpec``: in this process, a LocalCluster, an existing scheduler or SLURM) and runs
lists of tasks through the task loop (``engine.run.loop``) with the callables it is handed.
:func:`execute` is a case run's use of it: it skips tasks whose results are already complete
and valid, plans the follow-ups of finished reweightings, and records what happened in an
:class:`Execution` (written to the run's manifest).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.run.cluster import ClusterSpec
from engine.run.loop import TaskLoop
from engine.run.plan import Task, code_digest, dependencies, fingerprint, followups
from engine.run.settings import ExecutionOptions, Settings
from engine.run.store import RunFolder, read_ahead, task_done
from engine.run.task import TaskWork
from engine.spec.case import Case


@dataclass
class Execution:
    """What one execution of a run's tasks did (written to the manifest's ``executions``)."""

    backend: str = "in-process"
    code_digest: str = field(default_factory=lambda: code_digest())
    started: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    finished: str | None = None
    status: str = "running"
    total: int = 0
    already_complete: int = 0
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    tasks_by_process: dict[str, int] = field(default_factory=dict)  # "host:pid" -> tasks computed there
    error: str | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "n_computed": len(self.computed)}


class Executor:
    """Runs tasks where ``options`` say; the cluster is resolved once, here."""

    def __init__(self, options: ExecutionOptions | None = None) -> None:
        self.options = options if options is not None else ExecutionOptions()
        self.spec = ClusterSpec.of(self.options)

    def preflight(self) -> None:
        """Fail fast (before anything is written) when an existing scheduler cannot be reached."""
        self.spec.preflight()

    def describe(self) -> str:
        return self.spec.describe()

    def run(self, tasks: list, *, work: Callable[[Any], dict], name: Callable[[Any], str], execution: Any,
            depends: Callable[[Any], list[str]] | None = None, expand: Callable[[Any], list] | None = None,
            on_done: Callable[[dict, int, int], None] | None = None, on_start: Callable[[str | None], None] | None = None,
            offset: int = 0, total: int | None = None, resume_hint: str = "", log_directory: Path | None = None) -> list[dict]:
        """Run ``tasks`` with ``work`` (see ``engine.run.loop.TaskLoop``); the summaries in completion order."""
        execution.backend = self.describe()
        loop = TaskLoop(self.spec, tasks, work=work, name=name, execution=execution, retries=self.options.retries,
                        depends=depends, expand=expand, on_done=on_done, on_start=on_start, offset=offset, total=total,
                        resume_hint=resume_hint, log_directory=log_directory)
        return loop.run()


def execute(case: Case, tasks: list[Task], folder: RunFolder, settings: Settings, executor: Executor, *,
            execution: Execution | None = None, on_done: Callable[[dict, int, int], None] | None = None,
            on_start: Callable[[str | None], None] | None = None) -> list[dict]:
    """Run a case's tasks into ``folder`` with ``executor``; the tasks' summaries.

    Tasks whose results are already complete and valid are not submitted (a finished
    reweighting's follow-ups are planned from its result). A task that raises is retried up
    to ``options.retries`` times (each failure becomes a run warning); a worker that dies has
    its tasks rescheduled by dask; with no workers for ``options.no_workers_timeout`` seconds
    the run fails with a ``RunError`` instead of waiting forever.
    """
    execution = execution if execution is not None else Execution()
    execution.backend = executor.describe()

    def done(t: Task) -> bool:
        return task_done(t.path(folder), fingerprint(case, settings, t), draws=settings.draws if t.kind == "nuts" else None)

    todo, queue, seen = [], list(tasks), set()
    while queue:  # a finished reweighting may have asked for sampling tasks (resume): plan those too
        t = queue.pop(0)
        if t.id in seen:
            continue
        seen.add(t.id)
        if done(t):
            execution.skipped.append(t.id)
            queue += followups(t, folder, settings)
        else:
            todo.append(t)
    execution.total, execution.already_complete = len(seen), len(seen) - len(todo)
    _clean_temp_files(folder)

    by_id = {t.id: t for t in todo}

    def expand(t: Task) -> list[Task]:  # a task whose result is already there is skipped by the worker
        new = [f for f in followups(t, folder, settings) if f.id not in seen]
        seen.update(f.id for f in new)
        by_id.update((f.id, f) for f in new)
        execution.total += len(new)
        return new

    def finished(summary: dict, n: int, total: int) -> None:
        # the client waits for the other tasks meanwhile: read this chain now rather than when collecting
        t = by_id.get(summary.get("key", ""))
        if t is not None and t.kind == "nuts" and executor.spec.kind != "inprocess":
            read_ahead(t.path(folder))
        if on_done is not None:
            on_done(summary, n, total)

    return executor.run(todo, work=TaskWork(case, str(folder.root), settings), name=lambda t: t.id, execution=execution,
                        depends=lambda t: [d.id for d in dependencies(t, settings)], expand=expand, on_done=finished,
                        on_start=on_start, offset=execution.already_complete, total=execution.total,
                        resume_hint=f"continue with incident run --resume {folder.root}",
                        log_directory=folder.root / "slurm-logs")


def _clean_temp_files(folder: RunFolder) -> None:
    """Remove temporary files left by writers that were killed (only called under the run lock)."""
    for tmp in folder.root.glob("**/.tmp-*"):
        tmp.unlink(missing_ok=True)
