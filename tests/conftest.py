"""Test set-up: one stable PyTensor compile cache for the whole session (and its dask
workers), set before anything imports PyTensor; shared runs of the oracle cases."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("PYTENSOR_FLAGS", f"base_compiledir={ROOT / '.pytensor'}")
from engine.run.compiled import ensure_compiledir  # noqa: E402  (no PyTensor import)

ensure_compiledir()
sys.path.insert(0, str(Path(__file__).resolve().parent))

import pytest  # noqa: E402
from hypothesis import settings as hypothesis_settings  # noqa: E402

CASES = Path(__file__).resolve().parent / "cases"

# The loader fuzz tests explore new inputs on every local run (they found a crash on `prior: {}`);
# under CI they replay one fixed sequence, so a landing never depends on a random draw.
hypothesis_settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


# Longest files first. `make test` spreads whole files over two processes (--dist loadfile --no-loadscope-reorder), handing out
# the next file in collection order to whichever process is free; with the costly files collected late
# (tests/run/, tests/test_cli.py) one process ran alone at the end. Ordering files by their measured cost
# (tests/durations.json: seconds per file, summed from `pytest --durations=0`; `python tests/durations.py
# <that output>` rewrites it) is the longest-processing-time-first rule. A file it does not list counts as
# the median file. Tests keep their order within a file. (xdist re-sorts files by their number of tests unless
# given --no-loadscope-reorder, as the Makefile does: without it this order only broke ties.)
DURATIONS = Path(__file__).resolve().parent / "durations.json"


def pytest_collection_modifyitems(session, config, items):  # noqa: ANN001, ARG001 - pytest's hook signature
    import json
    import statistics

    if not DURATIONS.exists():
        return
    cost = json.loads(DURATIONS.read_text())
    default = statistics.median(cost.values()) if cost else 0.0
    here = Path(__file__).resolve().parent

    files = {id(item): Path(item.path).resolve().relative_to(here).as_posix() for item in items}
    first: dict[str, int] = {}
    for i, item in enumerate(items):
        first.setdefault(files[id(item)], i)
    items.sort(key=lambda item: (-cost.get(files[id(item)], default), first[files[id(item)]]))


def python_mode():
    """PyTensor's full graph rewrites with numpy/Python implementations instead of C: for a test that
    evaluates a one-off graph a few times (a value against its numpy twin, a gradient against finite
    differences), where compiling its C modules cold (up to ~50 modules, ~40 s in CI) is all the cost.
    The runs' tests exercise the same graphs through C."""
    from pytensor.compile.mode import Mode
    from pytensor.link.vm import VMLinker

    return Mode(linker=VMLinker(c_thunks=False, use_cloop=False), optimizer="fast_run")


@pytest.fixture(scope="session")
def oracle_case():
    from engine.spec.case import load_case

    return load_case(CASES / "oracle.yaml")


@pytest.fixture(scope="session")
def oracle_run(oracle_case, tmp_path_factory, worker_id):
    """The oracle case run once in-process (compiles shared with other tests), and once per test session: under
    pytest-xdist the first worker process to need it runs it in the session's shared temporary folder while
    the others wait on a file lock, then every process reads the same run folder (which no test writes into)."""
    from filelock import FileLock

    from engine.run.lifecycle import read_attribution, run_case
    from engine.run.settings import ExecutionOptions, Settings

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    done = shared / "oracle-run.done"
    with FileLock(str(shared / "oracle-run.lock")):
        if not done.exists():
            root = run_case(oracle_case, settings=Settings(seed=7, draws=1000, tune=1000, chains=4, smc_draws=1000, smc_chains=4),
                            options=ExecutionOptions(workers=0), out=shared / "oracle-runs", command=["pytest"])
            done.write_text(str(root), encoding="utf-8")
        root = Path(done.read_text(encoding="utf-8"))
    return root, read_attribution(root)
