"""C compiler flags for PyTensor's C modules: cold compile time against sampling speed (issue 17).

    python benchmarks/cflags.py [--repeat 1] [--only '-O1 -g0' '-Og -g0']

For each flag set (PyTensor's own ``-O3 -g``, then ``gcc__cxxflags`` values that gcc applies after
them: the last ``-O`` and ``-g`` win), in fresh interpreters on a new, empty compile directory:

* **cold**: build and sample (50 + 50 NUTS steps) the models of the AZAL case's first two hypotheses,
  C modules compiled from nothing, the way a first ``make demo`` or CI's ``make test`` pays it;
* **warm NUTS**: in a second interpreter on the now filled directory, 3 chains of 1000 + 1000 NUTS
  steps of the first hypothesis of AZAL and of Il-20 (compile excluded).

The engine sets ``-O1 -g0`` (``engine.run.compiled.ensure_compiledir``) unless PYTENSOR_FLAGS gives
``gcc__cxxflags``. Run on an idle machine; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FLAGS = {"-O3 -g (PyTensor's own)": None, "-O1 -g0 (the engine's)": "-O1 -g0", "-O1": "-O1", "-Og -g0": "-Og -g0",
         "-O0 -g0": "-O0 -g0"}

COLD = """
import time, warnings
warnings.simplefilter("ignore")
from engine.spec.case import load_case
from engine.run.compiled import compiled_for
case = load_case("cases/azal8243-2024.yaml")
t0 = time.perf_counter()
for h in list(case.hypotheses)[:2]:
    compiled_for(case, h).use(case, h, None).sample_nuts(draws=50, tune=50, seed=1, target_accept=0.9)
print(time.perf_counter() - t0)
"""

WARM = """
import sys, time, warnings
warnings.simplefilter("ignore")
from engine.spec.case import load_case
from engine.run.compiled import compiled_for
case = load_case(sys.argv[1])
h = list(case.hypotheses)[0]
cm = compiled_for(case, h).use(case, h, None)
cm.sample_nuts(draws=20, tune=20, seed=1, target_accept=0.9)
t0 = time.perf_counter()
for s in range(3):
    cm.sample_nuts(draws=1000, tune=1000, seed=s, target_accept=0.9)
print(time.perf_counter() - t0)
"""


def timed(code: str, compiledir: Path, cxxflags: str | None, *args: str) -> float:
    flags = [f"base_compiledir={compiledir}"] + ([f"gcc__cxxflags={cxxflags}"] if cxxflags is not None else [])
    env = {**os.environ, "PYTENSOR_FLAGS": ",".join(flags)}
    if cxxflags is None:  # keep PyTensor's default: ensure_compiledir adds the engine's unless told otherwise
        env["PYTENSOR_FLAGS"] += ",gcc__cxxflags="
    out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=1, help="best of this many")
    ap.add_argument("--only", nargs="+", metavar="FLAGS", help="only these gcc__cxxflags values, e.g. --only '-O1 -g0' '-Og -g0'")
    a = ap.parse_args()
    rows = {}
    for name, cxx in FLAGS.items():
        if a.only and cxx not in a.only:
            continue
        cold, azal, il20 = [], [], []
        for _ in range(a.repeat):
            d = Path(tempfile.mkdtemp(prefix="incident-cflags-"))
            try:
                cold.append(timed(COLD, d, cxx))
                modules = sum(1 for _ in d.rglob("*.so"))
                azal.append(timed(WARM, d, cxx, "cases/azal8243-2024.yaml"))
                il20.append(timed(WARM, d, cxx, "cases/il20-2018.yaml"))
            finally:
                shutil.rmtree(d, ignore_errors=True)
        rows[name] = {"cold_s": min(cold), "modules": modules, "azal_nuts_s": min(azal), "il20_nuts_s": min(il20)}
        r = rows[name]
        print(f"{name:26s} cold {r['cold_s']:6.1f} s ({r['modules']} modules)   warm NUTS 3 x 2000: AZAL {r['azal_nuts_s']:5.1f} s, "
              f"Il-20 {r['il20_nuts_s']:5.1f} s", flush=True)
    print(json.dumps(rows))


if __name__ == "__main__":
    main()
