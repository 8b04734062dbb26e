"""How far can one unit move the odds? The largest log Bayes factor one evidence unit reaches over a
stress grid of observations, hypotheses and source reliabilities, per family, next to the bound the
family states (``Family.log_ratio_cap`` through ``engine.evidence.base.influence_bound``).

For each family and each observation of its grid, a case is written with one source of fixed
reliability r, one item, and as hypotheses every mechanism of the prior library that predicts the
family plus extreme hypotheses (parameters pushed to the ends of their ranges through ``under``).
Each hypothesis's log evidence is exact (one unit, fixed reliability:
``engine.inference.closedform.exact_log_evidence``); the unit's influence is the largest minus the
smallest. The bound must hold for every row: the script exits 1 if one exceeds it.

    python benchmarks/influence.py [--reliabilities 0.1 0.5 0.9 0.99] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.evidence import REGISTRY, shared_parameters  # noqa: E402
from engine.evidence.base import influence_bound  # noqa: E402
from engine.inference.closedform import exact_log_evidence, has_exact  # noqa: E402
from engine.spec.case import load_case  # noqa: E402
from engine.spec.priors import load_priors  # noqa: E402

SIZES = [[2.0] * 5, [40.0, 41.0, 39.0], [900.0]]

# family -> (observations, extreme hypotheses' parameters)
GRIDS: dict[str, tuple[list[dict], list[dict]]] = {
    "perforations": (
        [{"holes": n} for n in (0, 1, 5, 50, 800, 5000, 100_000, 10_000_000)]
        + [{"holes": 800, "inward": 800}, {"holes": 800, "inward": 0}, {"holes": 3, "inward": 3, "sizes_mm": [2.0, 2.0, 2.0]}]
        + [{"holes": len(s), "sizes_mm": s} for s in SIZES]
        + [{"holes": {"at_least": 100}}, {"holes": {"between": [200, 999]}}, {"holes": "hundreds"}, {"holes": {"at_most": 3}}],
        [{"hole_rate": 1e-6, "inward_fraction": 0.001, "log_size_mean": -3.0}, {"hole_rate": 800.0, "inward_fraction": 0.999, "log_size_mean": 3.7},
         {"hole_rate": 1e6, "inward_fraction": 0.5, "log_size_mean": 7.0}],
    ),
    "fragments": (
        [{"counts": c} for c in ({"rod": 5}, {"rod": 5, "cube": 0}, {"cube": 200}, {"natural": 1000}, {"bowtie": 2, "cube": 30, "natural": 0},
                                 {"blade": 3, "disc": 1}, {"ball": 50}, {"unclassified": 20})],
        [],
    ),
    "timing": (
        [{"time": t, "window": [40.0, 70.0], "period": [0.0, 600.0], "clock_sd_min": sd, "rounding_min": rd}
         for t in (-300.0, 0.0, 39.0, 55.0, 70.5, 599.0, 900.0) for sd in (0.1, 3.0) for rd in (0.0, 15.0)]
        + [{"time": 10.0, "window": [9.99, 10.01], "period": [0.0, 14400.0], "clock_sd_min": 0.001}],
        [{"in_window": 0.0}, {"in_window": 1.0}],
    ),
    "interval": (
        [{"seconds": s} for s in (1e-3, 1.0, 60.0, 1e5, 1e6)],
        [{"log_median": -5.0, "log_sd": 0.05}, {"log_median": 20.0, "log_sd": 0.05}, {"log_median": 4.0, "log_sd": 0.05}],
    ),
    "claim": (
        [{"statement": "we did it", "interest": i} for i in ("serves", "neutral", "against")],
        [{"holds": 0.0}, {"holds": 1.0}],
    ),
    "elicited": (
        [{"statement": "the recorder stopped at the moment of the burst"}],
        [{"p": 1e-12}, {"p": 1.0}, {"p": 0.5}],
    ),
    "presence": (
        [{"thing": t, "found": f, "detection": d} for t in ("explosive-residue", "bowtie-fragments", "bird-remains")
         for f in (True, False) for d in (0.01, 0.5, 1.0)],
        [{"present": 0.0}, {"present": 1.0}],
    ),
}


def _case(family: str, observed: dict, hypotheses: list[tuple[str, str, dict]], r: float) -> dict:
    return {
        "case": {"id": "stress", "title": "one unit", "date": "2024-01-01"},
        "sources": [{"id": "src", "title": "a source", "reliability": r}],
        "hypotheses": [{"id": h, "description": h, "prior": 1, "mechanism": m} for h, m, _ in hypotheses],
        "evidence": [{"id": "unit", "family": family, "source": "src", "observed": observed,
                      "under": {h: p for h, _, p in hypotheses if p}}],
    }


def stress(family: str, reliabilities: list[float], tmp: Path) -> dict:
    lib = load_priors()
    mechs = [m for m, spec in lib.mechanisms.items() if family in spec and m != "generic"]
    observations, extremes = GRIDS[family]
    hyps = [(m, m, {}) for m in mechs] + [(f"extreme{i}", mechs[0] if mechs else "generic", p) for i, p in enumerate(extremes)]
    worst = {"family": family, "rows": 0, "skipped": [], "max_excess": -math.inf}
    for obs in observations:
        for r in reliabilities:
            path = tmp / f"{family}.yaml"
            path.write_text(yaml.safe_dump(_case(family, obs, hyps, r)))
            try:
                case = load_case(path)
            except Exception as exc:  # noqa: BLE001 - an observation this schema refuses is reported, not fatal
                worst["skipped"].append(f"{json.dumps(obs)}: {str(exc).splitlines()[0][:160]}")
                break
            if reason := has_exact(case):
                worst["skipped"].append(f"{json.dumps(obs)}: {reason}")
                break
            lz = {h: exact_log_evidence(case, h) for h in case.hypotheses}
            finite = [v for v in lz.values() if math.isfinite(v)]
            moved = max(finite) - min(finite) if len(finite) == len(lz) else math.inf
            ((_, items),) = list(case.units())
            cap = REGISTRY[family].log_ratio_cap(items, shared_parameters(case))
            bound = influence_bound(r, cap)
            worst["rows"] += 1
            excess = moved - bound
            if excess > worst["max_excess"]:
                worst.update(max_excess=excess, moved=moved, bound=bound, r=r, log_cap=cap, observed=obs,
                             lead=max(lz, key=lz.get), last=min(lz, key=lz.get))
            key = f"max_at_{r:g}"
            if moved > worst.get(key, (-math.inf,))[0]:
                worst[key] = (moved, bound)
    return worst


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reliabilities", type=float, nargs="+", default=[0.1, 0.5, 0.9, 0.99])
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    out, ok = [], True
    with tempfile.TemporaryDirectory() as tmp:
        for family in GRIDS:
            if family not in REGISTRY:
                print(f"{family:13s} (not in this engine's registry)")
                continue
            res = stress(family, args.reliabilities, Path(tmp))
            out.append(res)
            cells = "  ".join(f"r={r:g}: {res[f'max_at_{r:g}'][0]:7.2f} <= {res[f'max_at_{r:g}'][1]:7.2f}"
                              for r in args.reliabilities if f"max_at_{r:g}" in res)
            held = res["max_excess"] <= 1e-9
            ok &= held
            print(f"{family:13s} {res['rows']:4d} rows  largest log BF vs bound (nat): {cells}  {'ok' if held else 'EXCEEDED'}")
            if not held:
                print(f"    worst: {res}")
            for s in res["skipped"]:
                print(f"    skipped {s}")
    for fam in sorted(set(REGISTRY) - set(GRIDS)):
        print(f"{fam:13s} no stress grid; stated log cap: see the family ({REGISTRY[fam].__class__.__name__}.log_ratio_cap)")
    if args.json:
        args.json.write_text(json.dumps(out, default=str, indent=1))
    print(json.dumps({"bound_held": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
