"""Safe YAML reading: the one place that parses YAML text.

Every YAML file the engine reads (case files, priors files, the ``--variants`` file, the
cluster config) goes through :func:`read_yaml`, with the same limits:

* the file is read by ``engine.spec.readers`` (regular files only, at most ``MAX_BYTES``);
* only ``yaml.SafeLoader`` is used (Python tags are refused);
* at most ``MAX_ALIASES`` aliases, ``MAX_DEPTH`` levels of nesting, and ``MAX_NODES`` nodes
  once aliases are expanded (no "billion laughs");
* a key may appear once in a mapping; merge keys (``<<: *base``) are standard YAML and are
  accepted, the mapping's own keys overriding the merged ones;
* every failure is one error naming the file (and the line when there is one).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from engine.errors import CaseError, EngineError
from engine.spec.readers import INPUT_LIMIT, ReadProblem, read_bytes

MAX_BYTES = INPUT_LIMIT
MAX_ALIASES = 100
MAX_DEPTH = 64  # nested mappings/lists; case files need fewer than 10
MAX_NODES = 200_000  # after alias expansion: a "billion laughs" file stops here
MERGE_TAG = "tag:yaml.org,2002:merge"

ErrorFactory = Callable[[str, str, str], EngineError]  # (file, where, message) -> the error to raise


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
    """SafeLoader that counts alias expansions and nesting, and refuses duplicate keys."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0

    def compose_node(self, parent, index):  # noqa: ANN001, ANN201 - PyYAML's signature
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise yaml.YAMLError(f"more than {MAX_ALIASES} YAML aliases")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested more than {MAX_DEPTH} levels deep", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):  # noqa: ANN001, ANN201 - PyYAML's signature
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == MERGE_TAG:  # `<<: *base`: merged keys may be overridden by the mapping's own
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, (str, int, float, bool)):
                    continue  # an unhashable key is PyYAML's own error below
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r}; each key may appear once in a mapping", key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _case_error(file: str, where: str, message: str) -> EngineError:
    return CaseError(file, where, message)


def parse_yaml(text: str) -> Any:
    """The document in ``text`` under the limits above (``yaml.YAMLError``, ``ValueError``,
    ``OverflowError`` or ``RecursionError`` otherwise; :func:`read_yaml` words them)."""
    doc = yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    _check_expanded_size(doc)
    return doc


def read_yaml(path: str | Path, *, error: ErrorFactory = _case_error, limit: int = MAX_BYTES) -> Any:
    """Parse one YAML file, or raise ``error(file, where, message)`` (a ``CaseError`` by default)."""
    return read_yaml_text(path, error=error, limit=limit)[1]


def read_yaml_text(path: str | Path, *, error: ErrorFactory = _case_error, limit: int = MAX_BYTES) -> tuple[str, Any]:
    """The text of one YAML file and its document, from one bounded read (see :func:`read_yaml`)."""
    path = Path(path)
    try:
        raw = read_bytes(path, limit=limit)
        text = raw.decode("utf-8")
    except ReadProblem as exc:
        raise error(str(path), "", exc.message) from None
    except UnicodeDecodeError as exc:
        raise error(str(path), "", f"not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
    try:
        return text, parse_yaml(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}" if mark is not None else ""
        fix = "fix the syntax" if isinstance(exc, (yaml.scanner.ScannerError, yaml.parser.ParserError)) else "fix the file there"
        raise error(str(path), where, f"invalid YAML: {exc.problem}; {fix}") from None
    except yaml.YAMLError as exc:
        raise error(str(path), "", f"invalid YAML: {exc}; fix the file") from None
    except (ValueError, OverflowError) as exc:  # e.g. an impossible date such as 2024-02-30, an int of 5000 digits
        if "integer string conversion" in str(exc):
            raise error(str(path), "", "invalid value in YAML: a number with thousands of digits; give an ordinary number") from None
        raise error(str(path), "", f"invalid value in YAML: {' '.join(str(exc).split())[:200]}; fix the date or number") from None
    except RecursionError:
        raise error(str(path), "", "YAML nested too deeply; flatten the file") from None
    except TypeError as exc:  # e.g. a mapping or list used as a key where PyYAML does not check it
        raise error(str(path), "", f"invalid YAML: {' '.join(str(exc).split())[:200]}; use plain keys") from None
