"""Rewrite tests/durations.json (seconds per test file; tests/conftest.py orders files by it) from the
output of ``pytest --durations=0``:

    .venv/bin/python -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder --durations=0 > out.txt; python tests/durations.py out.txt
"""

from __future__ import annotations

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

LINE = re.compile(r"^\s*([0-9.]+)s\s+(?:setup|call|teardown)\s+tests/([^:]+)::")


def main(path: str) -> None:
    cost: dict[str, float] = defaultdict(float)
    for line in Path(path).read_text().splitlines():
        m = LINE.match(line)
        if m:
            cost[m.group(2)] += float(m.group(1))
    if not cost:
        sys.exit(f"{path}: no durations found; run pytest with --durations=0")
    out = Path(__file__).resolve().parent / "durations.json"
    out.write_text(json.dumps({k: round(v, 1) for k, v in sorted(cost.items(), key=lambda kv: -kv[1])}, indent=1) + "\n")
    print(f"{out}: {len(cost)} files, {sum(cost.values()):.0f} s")


if __name__ == "__main__":
    main(sys.argv[1])
