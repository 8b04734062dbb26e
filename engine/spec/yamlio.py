"""Safe YAML reading: the one place that parses YAML text.

Only ``yaml.SafeLoader`` is used (Python tags are refused), files are size-limited, aliases
are limited (no "billion laughs"), and every failure becomes a one-line ``CaseError``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from engine.errors import CaseError

MAX_BYTES = 2_000_000
MAX_ALIASES = 100
MAX_NODES = 200_000  # after alias expansion: a "billion laughs" file stops here


def _check_expanded_size(obj: Any) -> None:
    """Walk the document as a consumer would (aliases expanded); refuse it past MAX_NODES."""
    count = 0
    stack = [obj]
    while stack:
        node = stack.pop()
        count += 1
        if count > MAX_NODES:
            raise yaml.YAMLError(f"document expands to more than {MAX_NODES} nodes (alias bomb?)")
        if isinstance(node, dict):
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)


class _Loader(yaml.SafeLoader):
    """SafeLoader that counts alias expansions."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} YAML aliases")
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):  # noqa: ANN001, ANN201 - PyYAML's signature
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}; each key may appear once in a mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """Parse one YAML file, or raise a ``CaseError`` naming the file and the problem."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise CaseError(path, "", "file not found; check the path") from None
    except OSError as exc:
        raise CaseError(path, "", f"cannot read file ({exc.strerror}); check permissions") from None
    if len(raw) > MAX_BYTES:
        raise CaseError(path, "", f"file is {len(raw)} bytes, above the {MAX_BYTES}-byte limit; "
                        "split it or remove embedded data")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CaseError(path, "", f"not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
    try:
        doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
        _check_expanded_size(doc)
        return doc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark is not None else ""
        raise CaseError(path, where, f"invalid YAML: {exc.problem}; fix the syntax") from None
    except yaml.YAMLError as exc:
        raise CaseError(path, "", f"invalid YAML: {exc}; fix the file") from None
    except (ValueError, OverflowError) as exc:  # e.g. an impossible date such as 2024-02-30
        raise CaseError(path, "", f"invalid value in YAML: {exc}; fix the date or number") from None
    except RecursionError:
        raise CaseError(path, "", "YAML nested too deeply; flatten the file") from None
