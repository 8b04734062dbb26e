"""The package's folders read as the data flow: each layer imports only from the layers before it.

Every ``import`` and ``from ... import`` in engine/ is read with ``ast`` (including imports inside
functions, which hide cycles from the interpreter), resolved to the engine module it names, and
checked against the layer order below. A second check forbids import cycles between modules of
the same layer.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "engine"

# Layer order (engine/__init__.py, the lazy public API, sits on top and is not checked).
LAYERS = (
    ("engine.errors", "engine.terms", "engine.dists"),
    ("engine.evidence",),
    ("engine.spec",),
    ("engine.model",),
    ("engine.inference",),
    ("engine.results",),
    ("engine.run",),
    ("engine.calibration",),
    ("engine.report",),
    ("engine.cli",),
)


def layer_of(module: str) -> int:
    for i, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes):
            return i
    raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in tests/test_layers.py")


def module_name(path: Path) -> str:
    parts = path.relative_to(ENGINE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def engine_modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ENGINE.rglob("*.py"))}


def imports_of(path: Path, known: set[str]) -> set[str]:
    """The engine modules that ``path`` imports, anywhere in its body."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from engine.x import y` may import the module engine.x.y or a name of engine.x
            names = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in known else node.module for a in node.names]
        for n in names:
            if n == "engine" or not n.startswith("engine."):
                continue
            while n not in known and "." in n:
                n = n.rsplit(".", 1)[0]
            if n in known:
                out.add(n)
    return out


def graph() -> dict[str, set[str]]:
    mods = engine_modules()
    known = set(mods)
    return {m: imports_of(p, known) - {m} for m, p in mods.items() if m != "engine"}


def upward_imports(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in sorted(g.items()):
        for d in sorted(deps):
            if d == "engine" or d.startswith(m + "."):  # a package's __init__ may re-export its own modules
                continue
            if layer_of(d) > layer_of(m):
                bad.append(f"{m} -> {d}")
    return bad


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_no_module_imports_from_a_later_layer():
    assert upward_imports(graph()) == []


def test_no_import_cycles_between_modules():
    assert cycles(graph()) == []


def test_every_module_belongs_to_a_layer():
    for m in graph():
        layer_of(m)


@pytest.mark.parametrize(
    "extra, kind",
    [({"engine.spec.case": {"engine.run.store"}}, "upward"), ({"engine.run.store": {"engine.run.plan_x"}, "engine.run.plan_x": {"engine.run.store"}}, "cycle")],
)
def test_the_checks_catch_an_added_upward_import_or_cycle(extra, kind):
    g = {k: set(v) for k, v in graph().items()}
    for m, deps in extra.items():
        g.setdefault(m, set()).update(deps)
    if kind == "upward":
        assert "engine.spec.case -> engine.run.store" in upward_imports(g)
    else:
        assert ["engine.run.plan_x", "engine.run.store"] in cycles(g)


def test_imports_inside_functions_are_seen(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("def f():\n    from engine.run.store import RunFolder\n    import engine.report.fmt\n")
    assert imports_of(f, {"engine.run.store", "engine.report.fmt", "engine.run"}) == {"engine.run.store", "engine.report.fmt"}
