"""Every evidence family's log evidence against its independent oracle, side by side.

Each family's oracle (``tests/oracles/<family>.py``) is written from the family's generative story
in plain numpy/scipy and imports nothing from ``engine``; each family's test module exposes
``oracle_table()``: rows of (case, engine log evidence, oracle log evidence) over a grid that
includes the awkward cases (zero counts written or not, coarse rounding, censored counts, extreme
observations). This script prints every row and the largest gap per family; it exits 1 when a gap
exceeds 0.05 nat.

    python benchmarks/oracles.py
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "evidence")]

TOLERANCE = 0.05
MODULES = {  # family -> test module exposing oracle_table()
    "perforations": "test_perforations",
    "fragments": "test_fragments",
    "timing": "test_timing",
    "interval": "test_interval",
    "claim": "test_claims_oracle",
    "presence": "test_presence",
}


def main() -> int:
    ok, summary = True, {}
    for family, module in MODULES.items():
        try:
            table = importlib.import_module(module).oracle_table
        except (ImportError, AttributeError) as exc:
            print(f"{family}: no oracle table ({exc})")
            ok = False
            continue
        rows = list(table())
        gap = max(abs(e - o) for _, e, o in rows)
        summary[family] = {"rows": len(rows), "max_gap": gap}
        print(f"\n{family}: {len(rows)} cases, largest gap {gap:.2e} nat {'ok' if gap <= TOLERANCE else 'EXCEEDED'}")
        for label, e, o in rows:
            print(f"  {label:60.60s} engine {e:12.4f}  oracle {o:12.4f}  gap {e - o:+.1e}")
        ok &= gap <= TOLERANCE
    print(json.dumps({"tolerance": TOLERANCE, "families": summary, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
