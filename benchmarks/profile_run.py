"""Where one warm run's time goes: a seed case to PDF, split by phase and by task kind.

    python benchmarks/profile_run.py [--case cases/azal8243-2024.yaml] [--draws 1000] [--tune 1000]
                                     [--chains 4] [--smc-draws 1000] [--smc-chains 4] [--seed 20241225]

Three fresh interpreters share one PyTensor compile directory: the first runs the case once to
warm it (not measured), the second measures the imports alone, the third runs the case in its own
process (``workers=0``: one process, so the profile sees every task) under ``cProfile`` and then
writes the PDF report. The table gives each phase's cumulative time from the profile (phases nest:
compiling happens inside a task's first sampling call, which is why the sampling rows are printed
net of it), and per task kind the count, total and mean seconds the tasks reported.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# phase -> (module file suffix, function name); cumulative time of every matching function
PHASES = {
    "model build": [("engine/run/compiled.py", "compiled_for")],
    "compile: NUTS functions": [("engine/run/compiled.py", "_nuts_parts")],
    "compile: SMC kernel": [("engine/run/compiled.py", "smc_kernel")],
    "compile: log density (bridge, reweighting)": [("engine/run/compiled.py", "log_density")],
    "NUTS: family starting points (L-BFGS, Laplace)": [("engine/run/compiled.py", "_family_start")],
    "NUTS: sampling iterations": [("pymc/sampling/mcmc.py", "_iter_sample")],
    "NUTS: pointwise log-likelihood": [("engine/run/compiled.py", "pointwise_log_likelihood")],
    "SMC (net of its kernel's compile)": [("engine/run/compiled.py", "sample_smc")],
    "bridge sampling": [("engine/inference/estimate.py", "bridge_log_evidence")],
    "reweighting": [("engine/run/task.py", "_run_reweight")],
    "diagnostics (R-hat, ESS, verdict)": [("engine/results/diagnostics.py", "nuts_diagnostics"),
                                          ("engine/results/diagnostics.py", "verdict")],
    "predictive checks": [("engine/results/diagnostics.py", "predictive_checks")],
    "contributions": [("engine/results/diagnostics.py", "contributions")],
    "netCDF writes": [("engine/run/store.py", "write_idata")],
    "netCDF reads": [("engine/run/store.py", "read_idata")],
    "JSON writes": [("engine/run/store.py", "write_json")],
    "report (figures, Typst, PDF)": [("engine/report/document.py", "write_report")],
}
NET = {"SMC (net of its kernel's compile)": "compile: SMC kernel"}


def cumulative(stats: pstats.Stats, targets: list[tuple[str, str]]) -> float:
    total = 0.0
    for (file, _line, name), (_cc, _nc, _tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if any(file.endswith(suffix) and name == fn for suffix, fn in targets):
            total += ct
    return total


def measured(a: argparse.Namespace, out: Path) -> None:
    """The profiled process: the run in-process, then the report."""
    t0 = time.perf_counter()
    from engine.report import write_report
    from engine.run.lifecycle import run_case
    from engine.run.settings import ExecutionOptions, Settings
    from engine.spec.case import load_case

    t_import = time.perf_counter() - t0
    case = load_case(Path(a.case))
    settings = Settings(seed=a.seed, draws=a.draws, tune=a.tune, chains=a.chains, smc_draws=a.smc_draws, smc_chains=a.smc_chains)
    tasks: list[dict] = []
    prof = cProfile.Profile()
    t1 = time.perf_counter()
    prof.enable()
    root = run_case(case, settings=settings, options=ExecutionOptions(workers=0), out=out / "runs",
                    on_done=lambda s, done, total: tasks.append(s))
    t_run = time.perf_counter() - t1
    write_report(root, out / "report.pdf")
    prof.disable()
    t_total = time.perf_counter() - t1
    stats = pstats.Stats(prof)
    phases = {name: cumulative(stats, targets) for name, targets in PHASES.items()}
    for name, minus in NET.items():
        phases[name] -= phases[minus]
    by_kind: dict[str, dict] = {}
    for s in tasks:
        if s.get("skipped"):
            continue
        k = by_kind.setdefault(s["kind"], {"tasks": 0, "seconds": 0.0})
        k["tasks"] += 1
        k["seconds"] += s["seconds"]
    (out / "profile.json").write_text(json.dumps({"import_in_run_process": t_import, "run": t_run, "run_and_report": t_total,
                                                  "phases": phases, "tasks": by_kind}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default=str(ROOT / "cases" / "azal8243-2024.yaml"))
    ap.add_argument("--seed", type=int, default=20241225)
    ap.add_argument("--draws", type=int, default=1000)
    ap.add_argument("--tune", type=int, default=1000)
    ap.add_argument("--chains", type=int, default=4)
    ap.add_argument("--smc-draws", type=int, default=1000)
    ap.add_argument("--smc-chains", type=int, default=4)
    ap.add_argument("--role", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role:
        measured(a, Path(a.role))
        return
    tmp = Path(tempfile.mkdtemp(prefix="incident-profile-"))
    env = {**os.environ}
    if "base_compiledir" not in env.get("PYTENSOR_FLAGS", ""):
        env["PYTENSOR_FLAGS"] = ",".join(f for f in [env.get("PYTENSOR_FLAGS", ""), f"base_compiledir={ROOT / '.pytensor'}"] if f)
    args = [sys.executable, str(Path(__file__).resolve()), "--case", a.case, "--seed", str(a.seed), "--draws", str(a.draws),
            "--tune", str(a.tune), "--chains", str(a.chains), "--smc-draws", str(a.smc_draws), "--smc-chains", str(a.smc_chains)]
    print("warming the compile cache (one run, not measured) ...", flush=True)
    subprocess.run([*args, "--role", str(tmp / "warm")], check=True, env=env, capture_output=True)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import engine.run.lifecycle, engine.report, pymc"], check=True, env=env)
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    subprocess.run([*args, "--role", str(tmp / "measured")], check=True, env=env, capture_output=True)
    t_wall = time.perf_counter() - t0
    res = json.loads((tmp / "measured" / "profile.json").read_text())
    print(f"\n{Path(a.case).name}: draws {a.draws}+{a.tune} x {a.chains} chains, SMC {a.smc_draws} x {a.smc_chains}, "
          f"one process (workers=0), compile cache warm")
    print(f"  {'interpreter + imports (engine, report, pymc)':50s} {t_import:7.1f} s")
    print(f"  {'process wall (imports, run, report)':50s} {t_wall:7.1f} s")
    print(f"  {'run (profiled)':50s} {res['run']:7.1f} s")
    print(f"  {'run and report (profiled)':50s} {res['run_and_report']:7.1f} s")
    print("  phases (cumulative, profiled; share of run and report):")
    for name, t in res["phases"].items():
        print(f"    {name:48s} {t:7.1f} s  {100 * t / res['run_and_report']:5.1f} %")
    print("  tasks (seconds as the tasks report them):")
    for kind, k in sorted(res["tasks"].items()):
        print(f"    {kind:10s} {k['tasks']:4d} tasks {k['seconds']:7.1f} s  mean {k['seconds'] / k['tasks']:6.2f} s")
    print(json.dumps({"import": t_import, "wall": t_wall, **res}))


if __name__ == "__main__":
    main()
