"""Validation messages in the case author's words: where (by id) and what (in plain words).

Paths name list entries of the three id-keyed sections by their id, ``evidence[tail-holes].observed.holes``,
``hypotheses[external].prior``, ``sources[lab].reliability``; an entry without a usable id is named by its
position counting from 1, ``evidence[#3]``. Other lists keep their position, ``sizes_mm[1]`` (from 0, as
in the file's order). pydantic's errors are translated: its internal tags (union members, validator
wrappers, type names such as ``constrained-float``) never reach a message, a union's branches become one
message ("must be a number or a date-time"), and a follow-on error (a too-short list whose entries failed)
is dropped.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import ValidationError

from engine.dists import Dist
from engine.errors import CaseError

ID_HINT = "ids are 1-64 lowercase letters, digits, '-' or '_'"
SECTIONS = {"sources": "source", "hypotheses": "hypothesis", "evidence": "evidence item"}
KIND_WORDS = {
    "fixed": "a number", "beta": "{beta: [a, b]}", "gamma": "{gamma: [shape, rate]}", "normal": "{normal: [mu, sigma]}",
    "halfnormal": "{halfnormal: sigma}", "dirichlet": "{dirichlet: {type: alpha, ...}}",
}
# what a union field takes, in words, where the branches' own words would be vague
UNION_WORDS = {"prior": "a number >= 0 or {base_rate: NAME} from the priors library"}
DATETIME = "a date-time such as 2024-12-25T08:15:00+00:00"
_PLAIN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.:-]{0,63}$")


def written(spec: Dist) -> str:
    """A parameter as a case file writes it: ``0.3``, ``{beta: [2, 8]}``, ``{dirichlet: {rod: 2}}``."""
    if spec.kind == "fixed":
        return f"{spec.args[0]:g}"
    if spec.kind == "dirichlet":
        return "{dirichlet: {" + ", ".join(f"{k}: {v:g}" for k, v in zip(spec.labels, spec.args, strict=True)) + "}}"
    args = ", ".join(f"{a:g}" for a in spec.args)
    return f"{{{spec.kind}: {args if len(spec.args) == 1 else '[' + args + ']'}}}"


def kinds_in_words(kinds: tuple[str, ...]) -> str:
    words = [KIND_WORDS.get(k, k) for k in kinds]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def labels(raw: Any) -> dict[str, list[str]]:
    """section -> the label of each entry: its id, or ``#N`` (N from 1) when it has no usable id."""
    out: dict[str, list[str]] = {}
    for section in SECTIONS:
        seq = raw.get(section) if isinstance(raw, dict) else None
        if not isinstance(seq, list):
            continue
        names = []
        for i, x in enumerate(seq):
            xid = x.get("id") if isinstance(x, dict) else None
            names.append(xid.strip() if isinstance(xid, str) and _PLAIN_ID.match(xid.strip()) else f"#{i + 1}")
        out[section] = names
    return out


def entry(section: str, label: str) -> str:
    return f"{section}[{label}]"


def show(value: Any, limit: int = 60) -> str:
    """A value as the author wrote it, short: YAML's true/false/null, long values cut."""
    if value is True or value is False:
        text = str(value).lower()
    elif value is None:
        text = "null"
    elif isinstance(value, (list, tuple, dict)):
        text = f"a {'mapping' if isinstance(value, dict) else 'list'} of {len(value)}"
        return text
    else:
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _number_text(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    try:
        float(value)
    except ValueError:
        return False
    return True


def _expected(err: dict) -> str | None:
    """What the field takes, in words, for errors about a value's type or range; else None."""
    t, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    whole = isinstance(value, int) and not isinstance(value, bool)
    number = "a whole number" if whole else "a number"
    table = {
        "float_type": "a number", "float_parsing": "a number", "int_type": "a whole number", "int_parsing": "a whole number",
        "int_from_float": "a whole number", "finite_number": "a finite number", "bool_type": "true or false",
        "bool_parsing": "true or false", "string_type": "text", "dict_type": "a mapping (key: value)",
        "model_type": "a mapping (key: value)", "model_attributes_type": "a mapping (key: value)",
        "tuple_type": "a list", "list_type": "a list", "datetime_type": DATETIME, "datetime_parsing": DATETIME,
        "datetime_from_date_parsing": DATETIME, "datetime_object_invalid": DATETIME, "date_type": "a date such as 2024-12-25",
        "date_parsing": "a date such as 2024-12-25", "date_from_datetime_parsing": "a date such as 2024-12-25",
        "date_from_datetime_inexact": "a date such as 2024-12-25", "none_required": "empty (null)",
    }
    if t in table:
        return table[t]
    bounds = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"), "less_than_equal": ("<=", "le"),
              "less_than": ("<", "lt")}
    if t in bounds:
        op, key = bounds[t]
        bound = ctx.get(key)
        return f"{number} {op} {bound:g}" if isinstance(bound, (int, float)) else f"{number} {op} {bound}"
    if t == "literal_error":
        expected = str(ctx.get("expected"))
        return f"one of {expected}" if " or " in expected else expected
    if t.startswith("datetime_") or t.startswith("date_"):
        return DATETIME if t.startswith("datetime_") else "a date such as 2024-12-25"
    return None


def _is_type_error(err: dict) -> bool:
    """An error that says the value has the wrong type (in a union: the branch was not meant)."""
    t = err["type"]
    return t.endswith(("_type", "_parsing")) or t in ("int_from_float", "datetime_object_invalid", "date_from_datetime_inexact")


def _message(err: dict, path: str) -> str:
    """One pydantic error in plain words."""
    t, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    if t == "extra_forbidden":
        return "unknown key; remove it or check its spelling (see `incident schema`)"
    if t == "missing":
        return "missing; add it"
    if t == "string_pattern_mismatch":
        return f"{show(value)} is not a valid id; {ID_HINT}"
    if t == "literal_error" and err["loc"] and err["loc"][-1] == "[key]":
        return f"unknown key {show(value)}; use {ctx.get('expected')}"
    if t == "literal_error" and path.endswith("family"):
        from engine.evidence import REGISTRY

        return f"unknown family {show(value)}; use one of {', '.join(REGISTRY)}"
    if t == "too_short":
        section = path.rsplit(".", 1)[-1]
        n = ctx.get("min_length")
        noun = {"hypotheses": ("hypothesis", "hypotheses"), "evidence": ("evidence item", "evidence items"),
                "sources": ("source", "sources")}.get(section, ("entry", "entries"))[n != 1]
        return f"give at least {n} {noun} (found {ctx.get('actual_length')})"
    if t == "too_long":
        return f"give at most {ctx.get('max_length')} entries (found {ctx.get('actual_length')})"
    if t in ("string_too_short",):
        return "must not be empty"
    if t in ("string_too_long",):
        return f"is too long: at most {ctx.get('max_length')} characters"
    if t in ("value_error", "assertion_error"):
        return re.sub(r"^(Value|Assertion) error, ", "", err["msg"])
    expected = _expected(err)
    if expected is None:
        msg = err["msg"].replace("Input should be", "must be")
        return f"{msg} (got {show(value)})"
    return f"must be {expected} (got {_got(value)})"


def _got(value: Any) -> str:
    if _number_text(value):  # e.g. 1.0e308: YAML 1.1 reads an exponent without a sign as text
        return f"the text {show(value)}; write numbers unquoted, exponents with a sign as in 1.0e+8"
    return show(value)


def _clean(raw: Any, loc: tuple, etype: str) -> list[Any]:
    """The real keys and positions of ``loc`` in the input: pydantic's tags of union members, validator
    wrappers and dict keys (``[key]``) left out, found by walking the input along the path."""
    node, out = raw, []
    for k, part in enumerate(loc):
        if isinstance(part, int) and isinstance(node, (list, tuple)) and 0 <= part < len(node):
            out.append(part)
            node = node[part]
        elif isinstance(node, dict) and part in node:
            out.append(part)
            node = node[part]
        elif k == len(loc) - 1 and etype == "missing" and isinstance(node, dict):
            out.append(part)
    return out


def _at(raw: Any, parts: tuple) -> Any:
    for part in parts:
        raw = raw[part]
    return raw


def _path(parts: list[Any], prefix: str, names: dict[str, list[str]]) -> str:
    out = prefix
    for k, part in enumerate(parts):
        if isinstance(part, int):
            section = parts[k - 1] if k == 1 and not prefix else None
            if section in names and part < len(names[section]):
                out += f"[{names[section][part]}]"
            else:
                out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def pydantic_errors(file: str, exc: ValidationError, raw: Any, prefix: str = "") -> list[CaseError]:
    """pydantic's errors about ``raw`` as ``CaseError``s: one per field, in plain words, by id."""
    names = labels(raw) if not prefix else {}
    found = [(_clean(raw, err["loc"], err["type"]), err) for err in exc.errors(include_url=False)]
    # a mapping none of whose keys is known (e.g. an entry pasted into the wrong section): one error, not one per key
    keys: dict[tuple, tuple[list, list]] = {}
    for parts, err in found:
        if err["type"] in ("missing", "extra_forbidden") and parts:
            keys.setdefault(tuple(parts[:-1]), ([], []))[err["type"] == "extra_forbidden"].append(parts[-1])
    strange = {parent: (missing, extra) for parent, (missing, extra) in keys.items()
               if missing and extra and isinstance(node := _at(raw, parent), dict) and len(extra) == len(node)}
    out = []
    for parent, (missing, extra) in strange.items():
        out.append(CaseError(file, _path(list(parent), prefix, names),
                             f"none of its keys ({', '.join(map(str, extra))}) is known here; give {', '.join(map(str, missing))} "
                             "(see `incident schema`)"))
    grouped: dict[str, list[dict]] = {}
    for parts, err in found:
        if parts and tuple(parts[:-1]) in strange and err["type"] in ("missing", "extra_forbidden"):
            continue
        grouped.setdefault(_path(parts, prefix, names), []).append(err)
    for path, errs in grouped.items():
        inner = any(p.startswith((path + "[", path + ".")) for p in [*grouped, *(e.path for e in out)] if p != path)
        if inner and all(e["type"] == "too_short" or _is_type_error(e) for e in errs):
            # a list too short because some of its entries failed, or a union value of the right shape for one
            # branch (a mapping) and the wrong type for the others: the errors inside it say what is wrong
            continue
        wrong_type = [e for e in errs if _is_type_error(e)]
        if len(errs) > 1 and len(wrong_type) == len(errs):  # no branch of a union takes the value's type
            leaf = path.rsplit(".", 1)[-1]
            words = UNION_WORDS.get(leaf) or " or ".join(dict.fromkeys(str(_expected(e)) for e in errs))
            msg = f"must be {words} (got {_got(errs[0].get('input'))})"
        else:  # the branch that takes the value's type says what is wrong with it
            msg = _message(next((e for e in errs if not _is_type_error(e)), errs[0]), path)
        out.append(CaseError(file, path, msg))
    return out
