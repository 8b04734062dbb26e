"""What the compiled-structure store (engine.run.compiled.StructureStore) saves a process.

    python benchmarks/structure_store.py [--cases cases/azal8243-2024.yaml cases/il20-2018.yaml] [--repeat 2]

For every model structure of each case, three fresh interpreters share one PyTensor compile
directory (a temporary one, so the first is cold): the first builds and compiles every function
set a task uses (NUTS with its pointwise log-likelihood, the SMC kernel, the vectorised log
density) and writes the store; then, ``--repeat`` times each, a process with the store off
(C modules cached, the model built and its graphs rewritten again: what every new worker paid
before the store) and a process that loads the structure from the store. Each process reports
the seconds from its first ``compiled_for`` call to having all four sets (the imports of PyMC
and PyTensor are done before the clock starts), and a short NUTS chain's draws, which must be
equal across the three. Prints a table and the ratio built / loaded; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
import numpy as np
import pymc, pytensor  # imported before the clock
from engine.run.compiled import compiled_for, ensure_compiledir, quiet
from engine.spec.case import load_case
ensure_compiledir(); quiet()
case = load_case(sys.argv[1]); hid = sys.argv[2]
t0 = time.perf_counter()
cm = compiled_for(case, hid)
cm._nuts_parts(); cm.smc_kernel(1000); cm.log_density()
t1 = time.perf_counter()
post = cm.sample_nuts(draws=50, tune=50, seed=7, target_accept=0.9).posterior
cm.pointwise_log_likelihood(post)
t2 = time.perf_counter()
draws = [post[v.name].values.ravel().tolist() for v in cm.model.value_vars]
print(json.dumps({"obtain": t1 - t0, "with_pointwise": t2 - t0, "loaded": cm.loaded, "compiles": cm.compiles, "draws": draws}))
"""


def child(case: str, hid: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, case, hid], capture_output=True, text=True, env=env, cwd=ROOT, timeout=1200)
    if out.returncode:
        raise SystemExit(out.stderr[-2000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", nargs="+", default=[str(ROOT / "cases" / "azal8243-2024.yaml"), str(ROOT / "cases" / "il20-2018.yaml")])
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from engine.model.build import structure_key
    from engine.spec.case import load_case

    rows, res = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp}/pytensor"}
        for path in a.cases:
            case = load_case(path)
            seen = {}
            for hid in case.hypotheses:
                seen.setdefault(structure_key(case, hid), hid)
            for hid in seen.values():
                cold = child(path, hid, env)
                built = [child(path, hid, {**env, "INCIDENT_STRUCTURE_CACHE": "0"}) for _ in range(a.repeat)]
                loaded = [child(path, hid, env) for _ in range(a.repeat)]
                assert all(r["loaded"] == 0 for r in built) and all(r["loaded"] == 4 for r in loaded), (built, loaded)
                assert all(r["draws"] == cold["draws"] for r in built + loaded), "draws differ between built and loaded"
                name = f"{Path(path).stem}/{hid}"
                res[name] = {}
                for what in ("obtain", "with_pointwise"):
                    b = statistics.median(r[what] for r in built)
                    lo = statistics.median(r[what] for r in loaded)
                    res[name][what] = {"cold": cold[what], "built": b, "loaded": lo, "ratio": b / lo}
                    rows.append((f"{name} ({'sets' if what == 'obtain' else '+ first chain'})", cold[what], b, lo, b / lo))
                print(name, res[name], flush=True)
    print()
    print(f"{'structure':58s} {'cold C cache':>13s} {'built (C warm)':>15s} {'loaded':>8s} {'ratio':>7s}")
    for name, c, b, lo, r in rows:
        print(f"{name:58s} {c:12.1f}s {b:14.2f}s {lo:7.2f}s {r:6.1f}x")
    print("(sets: seconds from compiled_for to the four function sets; + first chain: and a 50+50-draw NUTS chain with its\n"
          " pointwise log-likelihood, which imports ArviZ and builds the pointwise function when it is not in the store)")
    print(json.dumps(res))


if __name__ == "__main__":
    main()
