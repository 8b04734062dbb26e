"""Issue 14's trap, run through the whole engine: one 800-hole count from a source of Beta(4, 4)
reliability, three hypotheses (``tests/cases/overreach-800.yaml``). Prints each hypothesis's SMC and
bridge log evidence with their errors next to the exact value, the posterior next to the exact
posterior, and the run's verdict.

One unit evaluated alone has Z_H = E[r] p(y | H) + (1 - E[r]) p_bg(y) exactly (r enters linearly once),
with p(y | H) and p_bg(y) the family's closed forms.

    python benchmarks/overreach800.py [--seed 1] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from engine.evidence import family_of, generic_spec  # noqa: E402
from engine.run.lifecycle import read_attribution, run_case  # noqa: E402
from engine.run.settings import ExecutionOptions, Settings  # noqa: E402
from engine.spec.case import load_case  # noqa: E402

CASE = ROOT / "tests" / "cases" / "overreach-800.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    case = load_case(CASE)
    ((_, items),) = list(case.units())
    fam = family_of(items)
    mean_r = case.sources["witness"].reliability.mean()
    bg = fam.background(items, generic_spec(case, items), {})
    exact = {h: float(np.logaddexp(np.log(mean_r) + fam.closed_form(items, items[0].params[h]), np.log1p(-mean_r) + bg))
             for h in case.hypotheses}
    lz = np.array(list(exact.values()))
    exact_post = dict(zip(exact, np.exp(lz - np.logaddexp.reduce(lz)), strict=True))
    with tempfile.TemporaryDirectory() as tmp:
        root = run_case(case, settings=Settings(seed=args.seed), options=ExecutionOptions(workers=args.workers), out=tmp,
                        command=["benchmarks/overreach800.py"])
        result = read_attribution(root)
        diag = json.loads((root / "diagnostics.json").read_text())
    print(f"{'hypothesis':10s} {'SMC':>16s} {'bridge':>16s} {'exact':>9s}  {'posterior':>9s} {'exact':>7s}")
    for hid, h in result["hypotheses"].items():
        e = diag["hypotheses"][hid]["estimators"]
        print(f"{hid:10s} {e['smc']:9.3f} ± {e['smc_se']:.3f} {e['bridge']:9.3f} ± {e['bridge_se']:.3f} {exact[hid]:9.3f}  "
              f"{h['posterior']:9.4f} {exact_post[hid]:7.4f}")
    print(f"verdict: {diag['verdict']}; reasons: {diag.get('reasons') or []}")
    worst = max(abs(result["hypotheses"][h]["log_evidence"][k] - exact[h]) for h in exact for k in ("smc", "bridge"))
    print(json.dumps({"verdict": diag["verdict"], "max_error_nat": worst}))
    return 0 if diag["verdict"] != "fail" and worst < 0.1 else 1


if __name__ == "__main__":
    raise SystemExit(main())
