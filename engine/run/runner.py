"""The names a run's callers used from the former single runner module, re-exported.

The runner is split into modules that each do one job; new code imports from them directly:

* ``engine.run.settings``  - ``Settings``, ``Variant``, ``ExecutionOptions`` (validated when built)
* ``engine.run.seeds``     - every seed derivation
* ``engine.run.plan``      - ``Task``, ``plan``, ``dependencies``, ``followups``, ``fingerprint``, ``code_digest``
* ``engine.run.compiled``  - ``Compiled`` and the per-process model cache, ``ensure_compiledir``
* ``engine.run.task``      - ``run_task``, the worker side of a task
* ``engine.run.loop``      - the task loop (in this process or on dask); ``engine.run.cluster`` where it runs
* ``engine.run.executor``  - ``Executor`` (options -> cluster, once), ``execute``, ``Execution``
* ``engine.run.lifecycle`` - ``run_case``, ``resume_run``, ``open_run``, ``manifest``, ``read_attribution``
"""

from __future__ import annotations

from engine.run.compiled import Compiled, compiled_for, ensure_compiledir, log_density, model_for, unconstrained_draws
from engine.run.compiled import quiet as _quiet
from engine.run.executor import Execution, Executor, execute
from engine.run.lifecycle import manifest, new_run_folder, open_run, read_attribution, resume_run, run_case
from engine.run.plan import ENGINE_VERSION, Task, code_digest, dependencies, fingerprint, followups, plan, sampling_tasks, variant_folder
from engine.run.seeds import task_seed
from engine.run.settings import VARIANT_METHODS, ExecutionOptions, Settings, Variant
from engine.run.store import task_done
from engine.run.task import run_task

__all__ = ["ENGINE_VERSION", "VARIANT_METHODS", "Compiled", "Execution", "ExecutionOptions", "Executor", "Settings", "Task", "Variant",
           "_quiet", "code_digest", "compiled_for", "dependencies", "ensure_compiledir", "execute", "fingerprint", "followups",
           "log_density", "manifest", "model_for", "new_run_folder", "open_run", "plan", "read_attribution", "resume_run",
           "run_case", "run_task", "sampling_tasks", "task_done", "task_seed", "unconstrained_draws", "variant_folder"]
