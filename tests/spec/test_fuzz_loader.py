"""Property-based fuzzing of the loader: mutated seed cases load or fail cleanly, never crash."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.errors import CaseError, CaseErrors
from engine.spec.case import load_case

ROOT = Path(__file__).resolve().parents[2]
SEEDS = [yaml.safe_load((ROOT / "cases" / n).read_text()) for n in ("azal8243-2024.yaml", "il20-2018.yaml")]
SEED_TEXT = [(ROOT / "cases" / n).read_text() for n in ("azal8243-2024.yaml", "il20-2018.yaml")]

JUNK = st.one_of(
    st.none(), st.booleans(), st.integers(-10**12, 10**12), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12), st.lists(st.integers(-5, 5), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
    st.sampled_from(["2024-02-30", "nan", "-1", "generic", "beta", {"beta": [-1, 2]}, {"gamma": [0, 0]}, [1, 0], "../../etc"]),
)


def paths(node, prefix=()):
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*prefix, i))


def mutate(doc, path, op, value):
    doc = copy.deepcopy(doc)
    if not path:
        return value
    parent = doc
    for p in path[:-1]:
        parent = parent[p]
    key = path[-1]
    if op == "replace":
        parent[key] = value
    elif op == "delete":
        del parent[key]
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    elif isinstance(parent, dict):
        parent[f"{key}_x"] = value
    return doc


def check(tmp_path, text):
    f = tmp_path / "fuzz.yaml"
    f.write_text(text, encoding="utf-8")
    try:
        load_case(f)
    except (CaseError, CaseErrors) as exc:
        assert str(exc).startswith(str(f)), str(exc)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 1), data=st.data(), op=st.sampled_from(["replace", "delete", "duplicate", "add"]), value=JUNK)
def test_structural_mutations_never_crash(tmp_path, which, data, op, value):
    doc = SEEDS[which]
    path = data.draw(st.sampled_from(list(paths(doc))))
    check(tmp_path, yaml.safe_dump(mutate(doc, path, op, value), allow_unicode=True))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, 1), pos=st.floats(0, 1), cut=st.integers(0, 40), insert=st.text(max_size=20))
def test_textual_mutations_never_crash(tmp_path, which, pos, cut, insert):
    text = SEED_TEXT[which]
    i = int(pos * len(text))
    check(tmp_path, text[:i] + insert + text[i + cut:])


def test_oversized_file_is_refused_before_parsing(tmp_path):
    f = tmp_path / "huge.yaml"
    f.write_text("# " + "x" * 2_100_000 + "\n", encoding="utf-8")
    try:
        load_case(f)
    except CaseError as exc:
        assert "limit" in str(exc)
    else:
        raise AssertionError("a 2 MB file was accepted")


def test_non_utf8_file_is_reported(tmp_path):
    f = tmp_path / "latin1.yaml"
    f.write_bytes("case: {id: x, title: caf\xe9}\n".encode("latin-1"))
    try:
        load_case(f)
    except CaseError as exc:
        assert "UTF-8" in str(exc)
    else:
        raise AssertionError("a latin-1 file was accepted")
