# The two set-up commands of the README: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# One stable PyTensor compile cache for the demo, the tests and their dask workers.
export PYTENSOR_FLAGS ?= base_compiledir=$(CURDIR)/.pytensor

.PHONY: demo test test-quick lint clean

$(BIN)/incident: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

DEMO_RUN := demo-$(shell date -u +%Y%m%dT%H%M%SZ)

demo: $(BIN)/incident
	$(BIN)/incident validate cases/azal8243-2024.yaml cases/il20-2018.yaml
	$(BIN)/incident run cases/azal8243-2024.yaml --seed 20241225 --run-id $(DEMO_RUN) --report

# Two test processes (pytest-xdist), one test file each at a time: a file's module fixtures (a
# shared run, a compiled model) are built once; the PyTensor cache is shared through the file system.
# Files go out longest first (tests/conftest.py, tests/durations.json); --no-loadscope-reorder keeps that
# order (xdist's default re-sorts files by their number of tests, which sent the costly two-test files last).
TEST_PROCS ?= 2
XDIST := -n $(TEST_PROCS) --dist loadfile --no-loadscope-reorder

test: $(BIN)/incident
	$(BIN)/python -m pytest -q $(XDIST) --durations=25

test-quick: $(BIN)/incident
	$(BIN)/python -m pytest -q $(XDIST) -m "not slow"

lint: $(BIN)/incident
	$(BIN)/ruff check engine tests benchmarks

clean:
	rm -rf $(VENV) .pytensor .pytest_cache
