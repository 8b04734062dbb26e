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


@pytest.fixture(scope="session")
def oracle_case():
    from engine.spec.case import load_case

    return load_case(CASES / "oracle.yaml")


@pytest.fixture(scope="session")
def oracle_run(oracle_case, tmp_path_factory):
    """The oracle case run once in-process (compiles shared with other tests)."""
    from engine.run.lifecycle import read_attribution, run_case
    from engine.run.settings import ExecutionOptions, Settings

    root = run_case(oracle_case, settings=Settings(seed=7, draws=1000, tune=1000, chains=4, smc_draws=1000, smc_chains=4),
                    options=ExecutionOptions(workers=0), out=tmp_path_factory.mktemp("runs"), command=["pytest"])
    return root, read_attribution(root)


# ---- scheduling over test processes (`make test`: pytest-xdist, --dist loadgroup, no reordering)
# A file's tests run in one process, so its module fixtures (a shared run, a compiled model) are
# built once; a test marked `solo` (long and sharing nothing) may run in any process. The longest
# go first, so that neither process is left with a long tail at the end (measured with
# --durations on a clean clone: the seed-case sweeps 310 s and 217 s, the mixture-trap runs 300 s).
LONG_FILES = ("tests/calibration/test_calibrate.py", "tests/run/test_sensitivity_runs.py", "tests/run/test_variants.py",
              "tests/report/test_report.py", "tests/calibration/test_claims_calibration.py", "tests/run/test_dask.py")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the xdist_group marks
def pytest_collection_modifyitems(config, items):  # noqa: ANN001, ANN201
    def path(item) -> str:  # noqa: ANN001
        return item.nodeid.split("::")[0]

    def rank(item) -> int:  # noqa: ANN001
        if item.get_closest_marker("solo"):
            return 0
        return 1 + LONG_FILES.index(path(item)) if path(item) in LONG_FILES else 1 + len(LONG_FILES)

    items.sort(key=rank)  # stable: the order within a file is kept
    for item in items:
        if not item.get_closest_marker("solo"):
            item.add_marker(pytest.mark.xdist_group(path(item)))
