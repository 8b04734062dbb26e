"""Fuzzing the readers (hypothesis): random bytes, deep nesting and huge numbers given to the
YAML reader (case, priors, variants, cluster config), the run folder's JSON reader and the
run-folder verification. Each either returns a document or raises the engine's one-line error
of the right exit code; nothing else escapes (no RecursionError, MemoryError, UnicodeError,
yaml or json exceptions). Example counts are bounded so the file runs in well under a minute."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import CaseError, CaseErrors, EngineError, OptionError, RunError

ROOT = Path(__file__).resolve().parent.parent
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

YAML_PIECES = st.sampled_from([
    "a: ", "- ", "[", "]", "{", "}", ": ", ", ", "\n", "  ", "&x ", "*x ", "<<: ", "!!python/object:os.system ", "!!str ",
    "'", '"', "\\u202e", "\\e", "? ", "|", ">", "#", "---\n", "...\n", "1e999", "-.inf", ".nan", "9" * 60, "0x_1",
    "2024-02-30", "2024-01-01T10:00:00+25:00", "~", "null", "true", "\t", "\x00", "\x85", "\ufeff", "%YAML 1.1\n",
])


def _one_line(exc: EngineError) -> None:
    lines = [str(e) for e in exc.errors] if isinstance(exc, CaseErrors) else [str(exc)]
    assert lines and all(line for line in lines)
    assert all(len(line) < 5000 for line in lines), "an error should name the problem, not dump the input"


@FAST
@given(data=st.binary(max_size=400))
def test_yaml_reader_on_random_bytes(tmp_path, data):
    from engine.spec.yamlio import read_yaml

    path = tmp_path / "random.yaml"
    path.write_bytes(data)
    try:
        read_yaml(path)
    except CaseError as exc:
        assert exc.exit_code == 2 and exc.file == str(path)
        _one_line(exc)


@FAST
@given(pieces=st.lists(YAML_PIECES, max_size=60))
def test_yaml_reader_on_yaml_like_text(tmp_path, pieces):
    from engine.spec.yamlio import read_yaml

    path = tmp_path / "pieces.yaml"
    path.write_text("".join(pieces), encoding="utf-8")
    try:
        doc = read_yaml(path)
    except CaseError as exc:
        _one_line(exc)
    else:
        json.dumps(doc, default=str)  # a plain document: no Python objects were built


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(depth=st.integers(1, 3000), kind=st.sampled_from(["flow-list", "flow-map", "block"]))
def test_yaml_reader_on_deep_nesting(tmp_path, depth, kind):
    from engine.spec.yamlio import MAX_DEPTH, read_yaml

    if kind == "flow-list":
        text = "[" * depth + "]" * depth
    elif kind == "flow-map":
        text = "{a: " * depth + "1" + "}" * depth
    else:
        text = "".join(f"{' ' * i}a:\n" for i in range(depth)) + " " * depth + "1\n"
    path = tmp_path / "deep.yaml"
    path.write_text(text)
    try:
        read_yaml(path)
        assert depth <= MAX_DEPTH + 1
    except CaseError as exc:
        assert depth > MAX_DEPTH - 2, exc  # refused only when too deep
        assert any(w in exc.message for w in ("nested", "invalid YAML", "-byte limit")), exc.message


@FAST
@given(digits=st.integers(1, 20000), exponent=st.integers(-100000, 100000))
def test_yaml_reader_on_huge_numbers(tmp_path, digits, exponent):
    from engine.spec.yamlio import read_yaml

    path = tmp_path / "numbers.yaml"
    path.write_text(f"int: {'7' * digits}\nfloat: 1.5e{exponent:+d}\n")  # YAML 1.1 floats need the exponent's sign
    try:
        doc = read_yaml(path)
    except CaseError as exc:
        assert digits > 4000 and "thousands of digits" in exc.message
    else:
        assert doc["int"] == int("7" * digits) and isinstance(doc["float"], float)


@FAST
@given(data=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                      st.integers(1, 50000).map(lambda n: b"[" * n + b"]" * n),
                      st.integers(1, 20000).map(lambda n: b'{"a": ' + b"9" * n + b"}")))
def test_run_json_reader(tmp_path, data):
    from engine.run.store import read_json

    path = tmp_path / "attribution.json"
    path.write_bytes(data)
    try:
        read_json(path)
    except RunError as exc:
        assert exc.exit_code == 3 and str(path) in str(exc)
        _one_line(exc)


@FAST
@given(data=st.binary(max_size=300), which=st.sampled_from(["attribution.json", "diagnostics.json", "manifest.json"]))
def test_run_folder_records_and_verification(tmp_path, data, which):
    """A hand-made run folder with one record replaced by random bytes: verification and the
    typed readers refuse it with a RunError (exit 3), never anything else."""
    from engine.run.collect import read_attribution_record, read_diagnostics
    from engine.run.verify import verify_run

    run = tmp_path / "run"
    if not run.exists():
        run.mkdir()
    (run / which).write_bytes(data)
    for name in ("attribution.json", "diagnostics.json", "manifest.json"):
        if not (run / name).exists():
            (run / name).write_text("{}")
    for read in (verify_run, read_attribution_record, read_diagnostics):
        try:
            read(run)
        except RunError as exc:
            _one_line(exc)
    shutil.rmtree(run)


VALUES = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**30, 10**30), st.floats(allow_nan=True, allow_infinity=True),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=6), inner, max_size=4)),
    max_leaves=20)


@FAST
@given(doc=VALUES)
def test_variants_and_cluster_config_readers(tmp_path, doc):
    """Any YAML document as a --variants file or a cluster config: parsed or refused with an
    OptionError (exit 2)."""
    import yaml

    from engine.cli.runs import _read_variants
    from engine.run.checks import load_cluster_config

    path = tmp_path / "options.yaml"
    path.write_text(yaml.safe_dump(doc))
    for read in (_read_variants, load_cluster_config):
        try:
            read(path)
        except OptionError as exc:
            assert exc.exit_code == 2
            _one_line(exc)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(["mechanisms.yaml", "sources.yaml", "base_rates.yaml"]),
       value=st.one_of(st.floats(allow_nan=False, allow_infinity=False, min_value=-1e6, max_value=1e6),
                       st.sampled_from(["{beta: [2, 0]}", "{gamma: [-1, 1]}", "{normal: [0, 0]}", "{dirichlet: {a: -1}}",
                                        "{beta: [1e308, 1e308]}", "[1, 2]", "hello", "null", "{}"])))
def test_priors_library_values_are_checked(tmp_path_factory, name, value):
    """A value of the library replaced by an arbitrary one: loaded only if it obeys the case
    values' rules, else a CaseError naming the priors file."""
    from engine.spec.priors import load_priors

    lib = tmp_path_factory.mktemp("priors")
    for n in ("mechanisms.yaml", "sources.yaml", "base_rates.yaml"):
        shutil.copy(ROOT / "priors" / n, lib / n)
    text = (lib / name).read_text()
    old = {"mechanisms.yaml": "in_window: {beta: [18.0, 2.0]}", "sources.yaml": "eyewitness: {beta: [6.0, 4.0]}",
           "base_rates.yaml": None}[name]
    if old is None:
        import yaml

        doc = yaml.safe_load(text)
        key = next(iter(doc["base_rates"]))
        doc["base_rates"][key] = yaml.safe_load(str(value)) if isinstance(value, str) else value
        (lib / name).write_text(yaml.safe_dump(doc))
    else:
        field = old.split(":")[0]
        assert old in text
        (lib / name).write_text(text.replace(old, f"{field}: {value}", 1))
    try:
        library = load_priors(lib)
    except CaseError as exc:
        assert exc.file.endswith(name)
        return
    # loaded: then the value obeys the rules
    if name == "mechanisms.yaml":
        d = library.mechanisms["proximity_fragmentation"]["timing"]["in_window"]
        assert d.kind == "beta" or (d.kind == "fixed" and 0 <= d.args[0] <= 1)
    elif name == "sources.yaml":
        d = library.reliability["eyewitness"]
        assert d.kind == "beta" or (d.kind == "fixed" and 0 < d.args[0] <= 1)
    else:
        assert all(math.isfinite(v) and v >= 0 for v in library.base_rates.values())


def test_special_files_are_refused_without_blocking(tmp_path):
    """A FIFO, a device and a folder, directly or through a link, for each kind of reader."""
    import os

    from engine.run.store import read_json
    from engine.spec.readers import ReadProblem, read_bytes
    from engine.spec.yamlio import read_yaml

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "link"
    os.symlink("/dev/zero", link)
    for path, kind in ((fifo, "named pipe"), (Path("/dev/zero"), "character device"), (tmp_path, "folder"), (link, "character device")):
        with pytest.raises(ReadProblem, match=kind):
            read_bytes(path, limit=100)
        with pytest.raises(CaseError, match=kind):
            read_yaml(path)
    with pytest.raises(RunError, match="symbolic link"):
        read_json(link)  # inside a run folder a link is refused, whatever it points to
    with pytest.raises(RunError, match="named pipe"):
        read_json(fifo)
    big = tmp_path / "big.json"
    with open(big, "wb") as fh:
        fh.truncate(1000)
    with pytest.raises(ReadProblem, match="above the 999-byte limit"):
        read_bytes(big, limit=999)
    assert read_bytes(big, limit=1000) == b"\0" * 1000
