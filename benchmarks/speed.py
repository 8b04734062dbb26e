"""Issue 17's targets, measured side by side in one run and printed as one table.

    python benchmarks/speed.py [--test-suite] [--skip-sweep] [--variants 20]

1. **Seed case to PDF**: the commands of ``make demo`` (``incident validate`` of both seed
   cases, ``incident run --report`` of the AZAL case, which writes the PDF in the same process) in
   fresh interpreters, timed together (and once more with the report in its own process,
   ``incident report``, as ``make demo`` did before): *cold* with an empty PyTensor compile directory, then *warm* with the same directory
   (the venv install of ``make demo`` is not included). Targets: <= 90 s cold, <= 30 s warm.
2. **Sweep**: ``incident run`` of the AZAL case with ``--variants`` (the sensitivity sweep's form:
   the source ``kremlin``'s Beta reliability pinned at ``n - 1`` quantiles of its prior) against the
   same run without variants, both at the engine's default settings on 2 workers. Target <= 3x.
3. **Per-attribution cost after compile** on the oracle case (tests/cases/oracle.yaml): one
   process (``workers=0``) attributes the case once to compile, then again; the second run's wall
   time against the engine's numpy closed form of the same three log evidences
   (``engine.inference.closedform.exact_log_evidence``, mean of 200 calls). Target: within 10x.
4. **Worker memory**: the largest resident set size of any worker process (a descendant of the
   ``incident run`` process) during the runs of 1 and 2, sampled every 0.2 s. Target < 1.5 GB.
5. **``make test``** (``--test-suite``, about 20 minutes): a fresh clone of this repository,
   ``make test`` (venv from pip's cache, cold compile cache), its wall time and the test count.
   Target <= 15 min.

Every step runs with this interpreter (the venv's) and prints as it goes; the last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SEEDS = [ROOT / "cases" / "azal8243-2024.yaml", ROOT / "cases" / "il20-2018.yaml"]
DEMO_SEED = "20241225"
PINNED_SOURCE = "kremlin"
ORACLE = ROOT / "tests" / "cases" / "oracle.yaml"


class PeakWorkerMemory:
    """Largest RSS of any descendant process of the processes it is told about, sampled in a thread."""

    def __init__(self, period: float = 0.2) -> None:
        self.period, self.peak, self.roots = period, 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def watch(self, pid: int) -> None:
        self.roots.append(pid)

    def _watch(self) -> None:
        while not self._stop.wait(self.period):
            for pid in list(self.roots):
                try:
                    kids = psutil.Process(pid).children(recursive=True)
                except psutil.Error:
                    continue
                for k in kids:
                    try:
                        self.peak = max(self.peak, k.memory_info().rss)
                    except psutil.Error:
                        pass

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def run(cmd: list, env: dict, memory: PeakWorkerMemory | None = None, cwd: Path = ROOT) -> float:
    t0 = time.perf_counter()
    proc = subprocess.Popen([str(c) for c in cmd], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if memory is not None:
        memory.watch(proc.pid)
    _, err = proc.communicate()
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{err[-2000:]}")
    return time.perf_counter() - t0


def incident(*args: object) -> list:
    return [sys.executable, "-m", "engine.cli", *args]


def demo(out: Path, compiledir: Path, run_id: str, memory: PeakWorkerMemory, *, separate: bool = False) -> float:
    """``make demo``'s commands (``incident validate``, ``incident run --report``), run in ``out``'s parent
    (the PDF goes to its reports/); their wall time. ``separate``: the report in its own process
    (``incident report``), as ``make demo`` did before the run wrote it."""
    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={compiledir}"}
    t = run(incident("validate", *SEEDS), env)
    cmd = incident("run", SEEDS[0], "--seed", DEMO_SEED, "--run-id", run_id, "--out", out)
    t += run(cmd if separate else [*cmd, "--report"], env, memory, cwd=out.parent)
    if separate:
        t += run(incident("report", out / "azal8243-2024" / run_id, "--output", out / f"{run_id}.pdf"), env)
    if not (out.parent / "reports" / f"azal8243-2024-{run_id}.pdf").exists() and not (out / f"{run_id}.pdf").exists():
        raise SystemExit(f"benchmark step failed: no PDF for run {run_id}")
    return t


def pinned_variants(path: Path, n: int) -> None:
    from scipy import stats

    from engine.results.sensitivity import K_CONCENTRATION
    from engine.spec.case import load_case

    args = load_case(SEEDS[0]).sources[PINNED_SOURCE].reliability.args
    qs = [(i + 0.5) / (n - 1) for i in range(n - 1)]
    path.write_text("".join(f"pin{q:.3f}: {json.dumps({f'hp__reliability__{PINNED_SOURCE}': [v * K_CONCENTRATION, (1 - v) * K_CONCENTRATION]})}\n"
                            for q in qs for v in [float(stats.beta.ppf(q, *args))]))


def per_attribution(report: str) -> None:
    """Role: in this fresh process, attribute the oracle case twice (compile, then timed) and time the closed form."""
    import warnings

    warnings.simplefilter("ignore")
    from engine.inference.closedform import exact_log_evidence
    from engine.run.lifecycle import run_case
    from engine.run.settings import ExecutionOptions, Settings
    from engine.spec.case import load_case

    case = load_case(ORACLE)
    out = Path(tempfile.mkdtemp(prefix="incident-speed-"))
    here = ExecutionOptions(workers=0)
    run_case(case, settings=Settings(seed=1), options=here, out=out, run_id="compile")
    t0 = time.perf_counter()
    run_case(case, settings=Settings(seed=2), options=here, out=out, run_id="timed")
    engine = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(200):
        [exact_log_evidence(case, h) for h in case.hypotheses]
    exact = (time.perf_counter() - t0) / 200
    Path(report).write_text(json.dumps({"engine": engine, "exact": exact}))
    shutil.rmtree(out, ignore_errors=True)


def test_suite() -> tuple[float, str]:
    d = Path(tempfile.mkdtemp(prefix="incident-speed-clone-"))
    try:
        subprocess.run(["git", "clone", "-q", str(ROOT), str(d / "repo")], check=True)
        t0 = time.perf_counter()
        p = subprocess.run(["make", "test"], cwd=d / "repo", capture_output=True, text=True)
        wall = time.perf_counter() - t0
        tail = [ln for ln in p.stdout.splitlines() if re.search(r"\d+ passed", ln)]
        return wall, (tail[-1].strip("= ") if tail else f"make test exited {p.returncode}")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--variants", type=int, default=20, help="the sweep's variants, the case itself included")
    ap.add_argument("--skip-sweep", action="store_true")
    ap.add_argument("--test-suite", action="store_true", help="also time make test on a fresh clone (~20 min)")
    ap.add_argument("--role", nargs=2, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role:
        per_attribution(a.role[1])
        return
    tmp = Path(tempfile.mkdtemp(prefix="incident-speed-"))
    memory = PeakWorkerMemory()
    rows: list[tuple[str, str, str, bool]] = []
    res: dict = {}

    cold = demo(tmp / "runs", tmp / "pytensor", "cold", memory)
    warm = demo(tmp / "runs", tmp / "pytensor", "warm", memory)
    separate = demo(tmp / "runs", tmp / "pytensor", "warm-separate", memory, separate=True)
    print(f"seed case to PDF: cold {cold:.1f} s, warm {warm:.1f} s (report in its own process: {separate:.1f} s)", flush=True)
    res.update(demo_cold=cold, demo_warm=warm, demo_warm_separate_report=separate)
    rows += [("seed case to PDF, cold (make demo after install)", f"{cold:.1f} s", "<= 90 s", cold <= 90),
             ("seed case to PDF, warm", f"{warm:.1f} s", "<= 30 s", warm <= 30),
             ("  the same, the report in its own process (incident report)", f"{separate:.1f} s", "-", True)]

    env = {**os.environ, "PYTENSOR_FLAGS": f"base_compiledir={tmp / 'pytensor'}"}
    if not a.skip_sweep:
        spec = tmp / "pinned.yaml"
        pinned_variants(spec, a.variants)
        base = run(incident("run", SEEDS[0], "--run-id", "one", "--out", tmp / "runs"), env, memory)
        swept = run(incident("run", SEEDS[0], "--run-id", "sweep", "--out", tmp / "runs", "--variants", spec), env, memory)
        ratio = swept / base
        print(f"sweep: one variant {base:.1f} s, {a.variants} variants {swept:.1f} s", flush=True)
        res.update(sweep_one=base, sweep_all=swept, sweep_ratio=ratio)
        rows.append((f"{a.variants}-variant reliability sweep / one variant (AZAL, defaults)", f"{ratio:.2f}x", "<= 3x", ratio <= 3))

    report = tmp / "attribution.json"
    subprocess.run([sys.executable, __file__, "--role", "attribution", str(report)], cwd=ROOT, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    pa = json.loads(report.read_text())
    ratio = pa["engine"] / pa["exact"]
    print(f"oracle case: engine {pa['engine']:.2f} s per attribution after compile, closed form {1e3 * pa['exact']:.3f} ms", flush=True)
    res.update(attribution_engine=pa["engine"], attribution_exact=pa["exact"], attribution_ratio=ratio)
    rows.append(("per-attribution cost after compile / numpy closed form (oracle case)", f"{ratio:,.0f}x", "<= 10x", ratio <= 10))

    peak = memory.stop() / 2**30
    res["worker_peak_gb"] = peak
    rows.append(("largest worker resident memory (demo and sweep runs)", f"{peak:.2f} GB", "< 1.5 GB", peak < 1.5))

    if a.test_suite:
        wall, summary = test_suite()
        res.update(test_suite_wall=wall, test_suite=summary)
        rows.append((f"make test on a fresh clone ({summary})", f"{wall / 60:.1f} min", "<= 15 min", wall <= 900))

    print()
    w = max(len(r[0]) for r in rows)
    print(f"{'target':{w}s}  {'measured':>12s}  {'goal':>9s}")
    for name, got, goal, ok in rows:
        print(f"{name:{w}s}  {got:>12s}  {goal:>9s}  {'OK' if ok else 'MISSED'}")
    print(json.dumps(res))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
