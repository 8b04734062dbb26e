"""incident-engine: Bayesian attribution of an incident's cause among competing hypotheses.

Public API (imports are lazy so that ``import engine`` stays fast)::

    case = engine.load_case("cases/azal8243-2024.yaml")
    run_dir = engine.run_case(case, settings=engine.Settings(seed=1), out="runs")
    result = engine.read_attribution(run_dir)

    # where the tasks run (default: a local cluster of 2 worker processes)
    engine.run_case(case, settings=engine.Settings(seed=1), options=engine.ExecutionOptions(workers=0))
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["load_case", "run_case", "Settings", "ExecutionOptions", "read_attribution", "case_schema", "EngineError", "CaseError",
           "RunError", "OptionError"]

_LAZY = {
    "load_case": ("engine.spec.case", "load_case"),
    "case_schema": ("engine.spec.case", "case_schema"),
    "run_case": ("engine.run.lifecycle", "run_case"),
    "Settings": ("engine.run.settings", "Settings"),
    "ExecutionOptions": ("engine.run.settings", "ExecutionOptions"),
    "read_attribution": ("engine.run.lifecycle", "read_attribution"),
    "EngineError": ("engine.errors", "EngineError"),
    "CaseError": ("engine.errors", "CaseError"),
    "RunError": ("engine.errors", "RunError"),
    "OptionError": ("engine.errors", "OptionError"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'engine' has no attribute {name!r}")
