"""Speed-up of a 16-task sweep on 2 dask workers over 1, side by side with the speed-up that the
same work gets as two plain independent processes (the hardware's own limit on this machine).

    python benchmarks/speedup.py [--draws 1000] [--smc-draws 1000] [--repeat 1]

The sweep: the oracle case's hypothesis "external" under 4 variants (reliability of its only
source 1.0, 0.9, 0.8, 0.7) x (2 NUTS + 2 SMC chains) = 16 tasks, each run by
``engine.run.task.run_task`` exactly as in a real run. Every configuration starts from nothing
(a fresh interpreter; for dask a fresh LocalCluster), with PyTensor's on-disk compile cache
warmed beforehand, so each pays the same import and per-process compile costs:

* plain x1: one process runs the 16 tasks; plain x2: two processes run 8 each, at once;
* dask x1 / x2: ``engine.run.executor.execute`` on a LocalCluster with 1 / 2 workers.

Each is also measured *warm*: the processes (or dask workers) first import the engine and
compile the model on a task of their own, and only the 16 tasks that follow are timed; this
isolates the parallel sweep from start-up, which on a loaded machine varies a lot.

Target: the dask speed-up reaches at least 90% of the plain-process speed-up.
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
RELIABILITIES = (1.0, 0.9, 0.8, 0.7)


def sweep(args_draws: int, args_smc: int):  # noqa: ANN201
    from engine.run.plan import Task
    from engine.run.settings import Settings, Variant
    from engine.spec.case import load_case

    case = load_case(CASE)
    settings = Settings(seed=5, draws=args_draws, tune=args_draws, chains=2, smc_draws=args_smc, smc_chains=2)
    tasks = [Task(kind, "external", c, Variant.of(f"rel{r}", {"hp__reliability__lab": r}))
             for r in RELIABILITIES for kind in ("nuts", "smc") for c in (0, 1)]
    return case, settings, tasks


def plain(out: str, part: int, parts: int, draws: int, smc: int) -> None:
    """A plain process: run every ``parts``-th task of the sweep, starting at ``part``."""
    from engine.run.compiled import ensure_compiledir
    from engine.run.task import run_task

    ensure_compiledir()
    case, settings, tasks = sweep(draws, smc)
    for t in tasks[part::parts]:
        run_task(case, t, out, settings)


def _warm_tasks(draws: int, smc: int):  # noqa: ANN202
    from engine.run.plan import Task
    from engine.run.settings import Variant

    v = Variant.of("warm", {"hp__reliability__lab": 0.95})
    return [Task("nuts", "external", 0, v), Task("smc", "external", 0, v)]


def plain_warm(out: str, part: int, parts: int, draws: int, smc: int, sync: str) -> None:
    """Like ``plain``, but compile on a task of its own first, then wait for the others and time the sweep."""
    from engine.run.compiled import ensure_compiledir
    from engine.run.task import run_task

    ensure_compiledir()
    case, settings, tasks = sweep(draws, smc)
    for t in _warm_tasks(draws, smc):
        run_task(case, t, f"{out}/warm-{part}", settings)
    Path(sync, f"ready-{part}").write_text("")
    while not Path(sync, "go").exists():
        time.sleep(0.01)
    for t in tasks[part::parts]:
        run_task(case, t, out, settings)
    Path(sync, f"done-{part}").write_text(repr(time.time()))


def dask_warm(out: str, workers: int, draws: int, smc: int) -> None:
    """A LocalCluster whose workers compiled on a task of their own; time ``execute`` of the sweep on it."""
    import logging

    from distributed import Client, LocalCluster

    from engine.run.compiled import ensure_compiledir
    from engine.run.executor import Executor, execute
    from engine.run.settings import ExecutionOptions
    from engine.run.store import RunFolder
    from engine.run.task import run_task

    ensure_compiledir()
    case, settings, tasks = sweep(draws, smc)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None,
                      silence_logs=logging.CRITICAL) as cluster, Client(cluster) as client:
        warm = [client.submit(run_task, case, t, f"{out}/warm-{i}", settings, workers=[w], allow_other_workers=False, pure=False)
                for i, w in enumerate(client.scheduler_info()["workers"]) for t in _warm_tasks(draws, smc)]
        client.gather(warm)
        t0 = time.time()
        execute(case, tasks, RunFolder(Path(out)), settings, Executor(ExecutionOptions(scheduler=cluster.scheduler_address)))
        print(json.dumps({"seconds": time.time() - t0}))


def dask(out: str, workers: int, draws: int, smc: int) -> None:
    from engine.run.compiled import ensure_compiledir
    from engine.run.executor import Executor, execute
    from engine.run.settings import ExecutionOptions
    from engine.run.store import RunFolder

    ensure_compiledir()
    case, settings, tasks = sweep(draws, smc)
    execute(case, tasks, RunFolder(Path(out)), settings, Executor(ExecutionOptions(workers=workers)))


def timed_plain_warm(me: list[str], out: str, parts: int) -> float:
    sync = tempfile.mkdtemp(dir=out)
    procs = [subprocess.Popen([*me, "plain-warm", out, str(i), str(parts), sync], cwd=ROOT) for i in range(parts)]
    try:
        while len(list(Path(sync).glob("ready-*"))) < parts:
            if any(p.poll() not in (None, 0) for p in procs):
                raise SystemExit("benchmark step failed (plain-warm)")
            time.sleep(0.05)
        t0 = time.time()
        Path(sync, "go").write_text("")
        for p in procs:
            if p.wait() != 0:
                raise SystemExit("benchmark step failed (plain-warm)")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return max(float(Path(sync, f"done-{i}").read_text()) for i in range(parts)) - t0


def timed_dask_warm(me: list[str], out: str, workers: int) -> float:
    res = subprocess.run([*me, "dask-warm", out, str(workers)], cwd=ROOT, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"benchmark step failed (dask-warm): {res.stderr[-2000:]}")
    return float(json.loads(res.stdout.strip().splitlines()[-1])["seconds"])


def timed(cmds: list[list[str]]) -> float:
    t0 = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT) for c in cmds]
    try:
        for p in procs:
            if p.wait() != 0:
                raise SystemExit(f"benchmark step failed: {' '.join(p.args)}")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000, help="NUTS draws (and tuning steps) per chain")
    ap.add_argument("--smc-draws", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=1, help="repeat each measurement, keep the fastest")
    ap.add_argument("--compiledir", default=str(Path(tempfile.gettempdir()) / "incident-bench-pytensor"),
                    help="PyTensor compile directory of the benchmark (warmed on first use)")
    ap.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role:
        kind, out, *rest = a.role
        if kind == "plain":
            plain(out, int(rest[0]), int(rest[1]), a.draws, a.smc_draws)
        elif kind == "plain-warm":
            plain_warm(out, int(rest[0]), int(rest[1]), a.draws, a.smc_draws, rest[2])
        elif kind == "dask-warm":
            dask_warm(out, int(rest[0]), a.draws, a.smc_draws)
        else:
            dask(out, int(rest[0]), a.draws, a.smc_draws)
        return

    import os

    from engine.run.compiled import ensure_compiledir

    # A compile directory of the benchmark's own: other processes compiling into a shared one hold
    # its lock, which would be measured as (serialised) start-up time.
    os.environ["PYTENSOR_FLAGS"] = ",".join([f"base_compiledir={a.compiledir}", *(
        f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("base_compiledir"))])
    ensure_compiledir()
    me = [sys.executable, str(Path(__file__).resolve()), "--draws", str(a.draws), "--smc-draws", str(a.smc_draws), "--role"]
    with tempfile.TemporaryDirectory(prefix="incident-bench-") as tmp:
        def fresh() -> str:
            return tempfile.mkdtemp(dir=tmp)

        print("warming the PyTensor compile cache ...", flush=True)
        timed([[*me, "plain", fresh(), "0", "3"]])
        best: dict[str, float] = {}
        for _ in range(a.repeat):
            runs = {
                "plain x1": lambda: timed([[*me, "plain", fresh(), "0", "1"]]),
                "plain x2": lambda: (lambda d: timed([[*me, "plain", d, "0", "2"], [*me, "plain", d, "1", "2"]]))(fresh()),
                "dask x1": lambda: timed([[*me, "dask", fresh(), "1"]]),
                "dask x2": lambda: timed([[*me, "dask", fresh(), "2"]]),
                "warm plain x1": lambda: timed_plain_warm(me, fresh(), 1),
                "warm plain x2": lambda: timed_plain_warm(me, fresh(), 2),
                "warm dask x1": lambda: timed_dask_warm(me, fresh(), 1),
                "warm dask x2": lambda: timed_dask_warm(me, fresh(), 2),
            }
            for name, run in runs.items():
                t = run()
                best[name] = min(best.get(name, t), t)
                print(f"  {name:13s} {t:7.1f} s", flush=True)
    print()
    print(f"16-task sweep ({a.draws} NUTS draws + {a.draws} tune, {a.smc_draws} SMC particles), best of {a.repeat}:")
    summary = {}
    for label, pre in (("from start-up", ""), ("warm (after start-up and compile)", "warm ")):
        s_plain = best[f"{pre}plain x1"] / best[f"{pre}plain x2"]
        s_dask = best[f"{pre}dask x1"] / best[f"{pre}dask x2"]
        share = s_dask / s_plain
        print(f" {label}:")
        print(f"  two plain processes:  {best[pre + 'plain x1']:6.1f} s -> {best[pre + 'plain x2']:6.1f} s   "
              f"speed-up {s_plain:.2f}x  (hardware limit)")
        print(f"  dask, 1 -> 2 workers: {best[pre + 'dask x1']:6.1f} s -> {best[pre + 'dask x2']:6.1f} s   speed-up {s_dask:.2f}x")
        print(f"  dask reaches {share:.0%} of the plain-process speed-up (target >= 90%): {'OK' if share >= 0.9 else 'MISSED'}")
        summary[pre.strip() or "cold"] = {"speedup_plain": s_plain, "speedup_dask": s_dask, "share": share}
    print(json.dumps({"seconds": best, **summary}))


if __name__ == "__main__":
    main()
