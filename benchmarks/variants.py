"""Wall time of a 20-variant sweep over a single variant: compile once, then each variant costs
its sampling only.

    python benchmarks/variants.py [--draws 1000] [--smc-draws 1000] [--engine-draws 200]

Two levels, each measured from a fresh interpreter with PyTensor's on-disk compile cache warm:

1. one worker process, one model (the oracle case's hypothesis "external"): one NUTS chain and
   one SMC chain per variant (variants: the reliability of its source, 1.0 down to 0.62),
   through ``engine.runner.Compiled`` (compile once, ``pm.Data`` per variant), next to the
   same work through plain ``pm.sample`` / ``pm.sample_smc``, which recompile on every call;
2. the whole engine: ``incident run`` of the oracle case (3 hypotheses x (2 NUTS + 2 SMC +
   bridge) per variant, plus diagnostics and attribution per variant) on 2 local workers with
   ``--variants`` (19 variants besides the base run) against the base run alone.

Target (level 1, the compile-once path): 20 variants cost at most 1.5x one variant.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "tests" / "cases" / "oracle.yaml"


def reliabilities(n: int) -> list[float]:
    return [round(1.0 - 0.02 * i, 2) for i in range(n)]


def one_model(n: int, draws: int, smc: int, fresh_compile: bool) -> None:
    """Sample n variants of one model in this (fresh) process."""
    import warnings

    from engine.runner import _quiet, ensure_compiledir

    ensure_compiledir()
    _quiet()
    warnings.simplefilter("ignore")
    from engine.case import load_case
    from engine.runner import Variant, compiled_for

    case = load_case(CASE)
    for i, r in enumerate(reliabilities(n)):
        variant = Variant.of(f"rel{r}", {"hp__reliability__lab": r})
        cm = compiled_for(case, "external", variant)
        if fresh_compile:  # what pm.sample / pm.sample_smc do: recompile their functions on every call
            import pymc as pm

            with cm.model:
                pm.sample(draws=draws, tune=draws, chains=1, cores=1, random_seed=i, progressbar=False,
                          compute_convergence_checks=False)
                pm.sample_smc(draws=smc, chains=1, cores=1, random_seed=i, progressbar=False, compute_convergence_checks=False)
        else:
            cm.sample_nuts(draws=draws, tune=draws, seed=i, target_accept=0.9)
            cm.sample_smc(draws=smc, seed=i)


def timed(cmd: list[str], compiledir: str | None = None) -> float:
    import os

    env = dict(os.environ)
    if compiledir:  # a cold compile: an empty PyTensor compile directory
        env["PYTENSOR_FLAGS"] = ",".join([f"base_compiledir={compiledir}",
                                          *(f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("base_compiledir"))])
    t0 = time.perf_counter()
    if subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, env=env).returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000, help="level 1: NUTS draws (and tuning steps)")
    ap.add_argument("--smc-draws", type=int, default=1000, help="level 1: SMC particles")
    ap.add_argument("--engine-draws", type=int, default=200, help="level 2: --draws/--tune of incident run (--smc-draws 300)")
    ap.add_argument("--variants", type=int, default=20)
    ap.add_argument("--skip-engine", action="store_true", help="measure level 1 only")
    ap.add_argument("--cold", action="store_true", help="level 1 also from an empty compile cache (a fresh node)")
    ap.add_argument("--compiledir", default=str(Path(tempfile.gettempdir()) / "incident-bench-pytensor"),
                    help="PyTensor compile directory of the benchmark (warmed on first use)")
    ap.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role:
        one_model(int(a.role[0]), a.draws, a.smc_draws, a.role[1] == "fresh")
        return

    import os

    from engine.runner import ensure_compiledir

    # A compile directory of the benchmark's own: other processes compiling into a shared one hold
    # its lock, which would be measured as (serialised) start-up time.
    os.environ["PYTENSOR_FLAGS"] = ",".join([f"base_compiledir={a.compiledir}", *(
        f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("base_compiledir"))])
    ensure_compiledir()
    me = [sys.executable, str(Path(__file__).resolve()), "--draws", str(a.draws), "--smc-draws", str(a.smc_draws), "--role"]
    n = a.variants
    print("warming the PyTensor compile cache ...", flush=True)
    timed([*me, "1", "cached"])
    timed([*me, "1", "fresh"])
    level1 = {}
    for mode in ("cached", "fresh"):
        for k in (1, n):
            level1[mode, k] = timed([*me, str(k), mode])
            print(f"  one model, {mode:6s} compile, {k:2d} variant(s): {level1[mode, k]:6.1f} s", flush=True)
    if a.cold:
        for k in (1, n):
            with tempfile.TemporaryDirectory(prefix="incident-cold-") as cold:
                level1["cold", k] = timed([*me, str(k), "cached"], compiledir=cold)
            print(f"  one model, cached compile from an empty cache, {k:2d} variant(s): {level1['cold', k]:6.1f} s", flush=True)
    result = {"level1": {f"{m}_{k}": t for (m, k), t in level1.items()}}
    if not a.skip_engine:
        with tempfile.TemporaryDirectory(prefix="incident-bench-") as tmp:
            spec = Path(tmp) / "variants.yaml"
            spec.write_text("".join(f"rel{r}: {{hp__reliability__lab: {r}}}\n" for r in reliabilities(n)[1:]))
            small = ["--draws", str(a.engine_draws), "--tune", str(a.engine_draws), "--chains", "2", "--smc-chains", "2",
                     "--smc-draws", "300", "--workers", "2", "--out", tmp]
            cli = [sys.executable, "-m", "engine.cli", "run", str(CASE), *small]
            timed([*cli, "--run-id", "warm"])
            level2 = {1: timed([*cli, "--run-id", "one"]), n: timed([*cli, "--run-id", "sweep", "--variants", str(spec)])}
            for k, t in level2.items():
                print(f"  incident run, {k:2d} variant(s): {t:6.1f} s", flush=True)
        result["level2"] = {str(k): t for k, t in level2.items()}

    print()
    r_cached = level1["cached", n] / level1["cached", 1]
    r_fresh = level1["fresh", n] / level1["fresh", 1]
    per_cached = (level1["cached", n] - level1["cached", 1]) / (n - 1)
    per_fresh = (level1["fresh", n] - level1["fresh", 1]) / (n - 1)
    print(f"one model, NUTS {a.draws}+{a.draws} and SMC {a.smc_draws} per variant:")
    print(f"  compile once (engine):     {n} variants / 1 = {r_cached:.2f}x   ({per_cached:.2f} s per extra variant)"
          f"   target <= 1.5x: {'OK' if r_cached <= 1.5 else 'MISSED'}")
    print(f"  pm.sample per variant:     {n} variants / 1 = {r_fresh:.2f}x   ({per_fresh:.2f} s per extra variant)")
    if a.cold:
        r_cold = level1["cold", n] / level1["cold", 1]
        print(f"  compile once, empty cache: {n} variants / 1 = {r_cold:.2f}x   target <= 1.5x: {'OK' if r_cold <= 1.5 else 'MISSED'}")
        result["ratio_cold"] = r_cold
    result["ratio_cached"], result["ratio_fresh"] = r_cached, r_fresh
    if not a.skip_engine:
        r2 = level2[n] / level2[1]
        print("whole engine (incident run, 3 hypotheses x 5 tasks + attribution per variant, 2 workers):")
        print(f"  {n} variants / 1 = {r2:.2f}x   ({(level2[n] - level2[1]) / (n - 1):.2f} s per extra variant)")
        result["ratio_engine"] = r2
    print(json.dumps(result))


if __name__ == "__main__":
    main()
