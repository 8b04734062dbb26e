"""Calibration benchmark: simulated incidents from a 4-hypothesis template, scored against truth.

    /work/venv/bin/python benchmarks/calibration.py --n 400 --workers 2

prints the command, the scores of the engine and of the exact posterior (ECE, Brier, log
score), the Brier gap to the exact posterior, the estimators' log-evidence errors, their
disagreement rate and SBC ranks, and checks the acceptance criteria (class-wise ECE <= 0.03,
Brier within 0.01 of the exact posterior's). Results go to
``<out>/calibration/<template>/<run>/`` (summary.json, summary.txt, reliability.png); a rerun
with the same settings continues from the incidents already there.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--template", default=str(ROOT / "tests" / "cases" / "calibration-4h.yaml"))
    p.add_argument("--n", type=int, default=400)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--scheduler", default=None)
    p.add_argument("--estimator", default="engine")
    p.add_argument("--draws", type=int, default=500)
    p.add_argument("--tune", type=int, default=500)
    p.add_argument("--chains", type=int, default=2)
    p.add_argument("--smc-draws", type=int, default=500)
    p.add_argument("--smc-chains", type=int, default=2)
    p.add_argument("--out", default=str(ROOT / "runs"))
    p.add_argument("--run-id", default=None)
    p.add_argument("--ece-max", type=float, default=0.03)
    p.add_argument("--brier-gap-max", type=float, default=0.01)
    a = p.parse_args()

    from engine.calibration.calibrate import CalibrationSettings, calibration_folder, format_summary, run_calibration, verdict, write_report
    from engine.report.calibration_plot import reliability_figure
    from engine.run.settings import ExecutionOptions
    from engine.run.store import atomic_write
    from engine.spec.case import load_case

    print("command:", shlex.join([sys.executable, *sys.argv]), flush=True)
    case = load_case(a.template)
    settings = CalibrationSettings(seed=a.seed, n=a.n, draws=a.draws, tune=a.tune, chains=a.chains, smc_draws=a.smc_draws,
                                   smc_chains=a.smc_chains, estimator=a.estimator)
    folder = calibration_folder(a.out, case, settings, a.run_id)
    t0 = time.monotonic()

    def done(rec: dict, k: int, total: int) -> None:
        if k % 20 == 0 or k == total:
            print(f"  {k}/{total} incidents, {time.monotonic() - t0:.0f} s", flush=True)

    options = ExecutionOptions(workers=a.workers, scheduler=a.scheduler)
    run = run_calibration(case, settings, options=options, out=folder, on_done=done)
    summary = write_report(run, folder)
    fig = reliability_figure(summary, forecasters=("engine", "exact", "mixture"))
    atomic_write(folder / "reliability.png", lambda p: fig.savefig(p, format="png", dpi=120))
    print(format_summary(summary))
    print(f"results: {folder}")
    problems = verdict(summary, ece_max=a.ece_max, brier_gap_max=a.brier_gap_max)
    ece_line = f"class-wise ECE {summary['scores'][next(iter(summary['scores']))]['ece']:.4f} (criterion <= {a.ece_max})"
    if "versus_exact" in summary:
        v = summary["versus_exact"]
        ece_line += (f"; exact posterior's ECE {summary['scores']['exact']['ece']:.4f}; Brier gap {v['brier_difference']:+.4f} "
                     f"± {v['brier_difference_se']:.4f} (criterion <= {a.brier_gap_max})")
    print(ece_line)
    print("ACCEPTANCE:", "PASS" if not problems else "FAIL: " + "; ".join(problems))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
