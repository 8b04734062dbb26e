"""Wall time of a 20-variant sweep over a single variant: compile once, then each variant costs
a fraction of a second where the base run's draws can be reweighted.

    python benchmarks/variants.py [--draws 1000] [--smc-draws 1000] [--engine-draws 500] [--fresh] [--skip-engine]

Two sweeps of the oracle case (tests/cases/oracle.yaml), each the base plus 19 variants:

* ``prior``: the prior median of the interval item's log gap moved in steps of 0.04 around the
  case's value (a hyper-parameter sensitivity sweep);
* ``reliability``: the reliability of the case's only source from 1.0 down to 0.62.

Two levels, each measured from a fresh interpreter with PyTensor's on-disk compile cache warm:

1. one worker process, one model (hypothesis "external"): the single variant is one NUTS
   chain and one SMC chain through ``engine.run.compiled.Compiled`` (compile once, ``pm.Data`` per
   variant). A sweep either samples every variant the same way (``sample``), or estimates
   each variant by Pareto-smoothed importance reweighting of the base chain
   (``engine.estimate.importance_ratio``) and samples only the variants whose weights are
   unreliable (``reweight``, the engine's default). ``--fresh`` adds plain ``pm.sample`` /
   ``pm.sample_smc`` per variant, which recompile on every call.
2. the whole engine: ``incident run`` of the oracle case (3 hypotheses x (2 NUTS + 2 SMC +
   bridge), diagnostics and attribution) on 2 local workers with ``--variants`` (19 variants)
   against the base run alone.

3. the sensitivity sweep's reliability form on the AZAL seed case (5 hypotheses): ``incident run``
   with 19 variants, each pinning the source ``kremlin``'s Beta reliability at one quantile of its
   prior (``Beta(q K, (1 - q) K)``, as ``incident sensitivity`` does), against the base run alone.
   The pinned reliability is integrated out on a grid at the base draws (issue 17's target: <= 3x).

Target: 20 variants cost at most 1.5x one variant (the oracle sweeps), 3x (the pinned sweep).
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
SWEEPS = ("prior", "reliability")
SEED_CASE = ROOT / "cases" / "azal8243-2024.yaml"
PINNED_SOURCE = "kremlin"  # a source with a Beta reliability in the seed case


def sweep(kind: str, n: int) -> dict[str, dict]:
    """n variants: the case itself first, then n - 1 changes of it."""
    if kind == "reliability":
        return {f"rel{1 - 0.02 * i:.2f}": {"hp__reliability__lab": round(1.0 - 0.02 * i, 2)} for i in range(n)}
    steps = [0] + [k for j in range(1, n) for k in (j, -j)][: n - 1]
    return {f"median{3.0 + 0.04 * k:.2f}": {"hp__gap__log_median": [round(3.0 + 0.04 * k, 2), 0.5]} for k in steps}


def one_model(n: int, draws: int, smc: int, mode: str, kind: str, report: str) -> None:
    """Sample (or reweight) n variants of one model in this (fresh) process; write what happened to ``report``."""
    import warnings

    from engine.run.compiled import ensure_compiledir
    from engine.run.compiled import quiet as _quiet

    ensure_compiledir()
    _quiet()
    warnings.simplefilter("ignore")

    from engine.inference.estimate import importance_ratio
    from engine.run.compiled import compiled_for, unconstrained_draws
    from engine.run.settings import Variant
    from engine.spec.case import load_case

    case = load_case(CASE)
    variants = [Variant.of(name, data) for name, data in sweep(kind, n).items()]
    out = {"sampled": 0, "reweighted": 0, "pareto_k": [], "ess_share": []}
    base = flat = lb = None
    for i, variant in enumerate(variants):
        cm = compiled_for(case, "external", variant)
        if mode == "reweight" and i > 0:
            est = importance_ratio((cm.log_density()(flat) - lb).reshape(base.shape[:2]))
            out["pareto_k"].append(est["pareto_k"])
            out["ess_share"].append(est["ess"] / flat.shape[0])
            if est["reliable"]:
                out["reweighted"] += 1
                continue
        if mode == "fresh":  # what pm.sample / pm.sample_smc do: recompile their functions on every call
            import pymc as pm

            with cm.model:
                pm.sample(draws=draws, tune=draws, chains=1, cores=1, random_seed=i, progressbar=False,
                          compute_convergence_checks=False)
                pm.sample_smc(draws=smc, chains=1, cores=1, random_seed=i, progressbar=False, compute_convergence_checks=False)
        else:
            idata = cm.sample_nuts(draws=draws, tune=draws, seed=i, target_accept=0.9)
            cm.sample_smc(draws=smc, seed=i)
            if i == 0 and mode == "reweight":
                base = unconstrained_draws(cm.model, idata)
                flat = base.reshape(-1, base.shape[-1])
                lb = cm.log_density()(flat)
        out["sampled"] += 1
    Path(report).write_text(json.dumps(out))


def timed(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    if subprocess.run(cmd, cwd=ROOT, stdout=subprocess.DEVNULL).returncode != 0:
        raise SystemExit(f"benchmark step failed: {' '.join(cmd)}")
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--draws", type=int, default=1000, help="level 1: NUTS draws (and tuning steps)")
    ap.add_argument("--smc-draws", type=int, default=1000, help="level 1: SMC particles")
    ap.add_argument("--engine-draws", type=int, default=500, help="level 2: --draws/--tune of incident run (--smc-draws 500)")
    ap.add_argument("--variants", type=int, default=20)
    ap.add_argument("--fresh", action="store_true", help="level 1 also with plain pm.sample / pm.sample_smc per variant")
    ap.add_argument("--skip-engine", action="store_true", help="measure level 1 only")
    ap.add_argument("--skip-model", action="store_true", help="measure level 2 only")
    ap.add_argument("--compiledir", default=str(Path(tempfile.gettempdir()) / "incident-bench-pytensor"),
                    help="PyTensor compile directory of the benchmark (warmed on first use)")
    ap.add_argument("--role", nargs="+", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.role:
        one_model(int(a.role[0]), a.draws, a.smc_draws, a.role[1], a.role[2], a.role[3])
        return

    import os

    from engine.run.compiled import ensure_compiledir

    # A compile directory of the benchmark's own: other processes compiling into a shared one hold
    # its lock, which would be measured as (serialised) start-up time.
    os.environ["PYTENSOR_FLAGS"] = ",".join([f"base_compiledir={a.compiledir}", *(
        f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("base_compiledir"))])
    ensure_compiledir()
    n = a.variants
    tmp = Path(tempfile.mkdtemp(prefix="incident-bench-"))
    me = [sys.executable, str(Path(__file__).resolve()), "--draws", str(a.draws), "--smc-draws", str(a.smc_draws), "--role"]

    def level1(k: int, mode: str, kind: str) -> tuple[float, dict]:
        report = tmp / f"{mode}-{kind}-{k}.json"
        t = timed([*me, str(k), mode, kind, str(report)])
        return t, json.loads(report.read_text())

    print("warming the PyTensor compile cache ...", flush=True)
    rows: dict[str, tuple[float, dict]] = {}
    if not a.skip_model:
        level1(2, "reweight", "prior")
        if a.fresh:
            level1(1, "fresh", "prior")
        rows["single"] = level1(1, "sample", "prior")
        print(f"  one model, a single variant (NUTS {a.draws}+{a.draws}, SMC {a.smc_draws}): {rows['single'][0]:6.1f} s", flush=True)
    modes = ["reweight", "sample"] + (["fresh"] if a.fresh else [])
    for kind in SWEEPS if not a.skip_model else ():
        for mode in modes:
            if mode != "reweight" and kind == "prior":
                continue  # sampling costs the same whatever the variants change
            rows[f"{mode}-{kind}"] = level1(n, mode, kind)
            t, info = rows[f"{mode}-{kind}"]
            print(f"  one model, {kind:11s} sweep, {mode:8s}: {n} variants {t:6.1f} s  (sampled {info['sampled']}, "
                  f"reweighted {info['reweighted']})", flush=True)
    result = {"level1": {k: {"seconds": t, **info} for k, (t, info) in rows.items()}}

    if not a.skip_engine:
        small = ["--draws", str(a.engine_draws), "--tune", str(a.engine_draws), "--chains", "2", "--smc-chains", "2",
                 "--smc-draws", "500", "--workers", "2", "--out", str(tmp)]
        cli = [sys.executable, "-m", "engine.cli", "run", str(CASE), *small]
        timed([*cli, "--run-id", "warm"])
        level2 = {"single": timed([*cli, "--run-id", "one"])}
        print(f"  incident run, a single variant: {level2['single']:6.1f} s", flush=True)
        for kind in SWEEPS:
            spec = tmp / f"{kind}.yaml"
            spec.write_text("".join(f"{name}: {json.dumps(data)}\n" for name, data in list(sweep(kind, n).items())[1:]))
            level2[kind] = timed([*cli, "--run-id", kind, "--variants", str(spec)])
            methods = [json.loads((tmp / "oracle" / kind / "variants" / v / "attribution.json").read_text())["hypotheses"]
                       for v in list(sweep(kind, n))[1:]]
            sampled = sum(h["method"] == "sampled" for m in methods for h in m.values())
            print(f"  incident run, {kind:11s} sweep: {n} variants {level2[kind]:6.1f} s  (hypothesis x variant sampled: "
                  f"{sampled} of {3 * (n - 1)})", flush=True)
        result["level2"] = level2
        # the sensitivity sweep's form on a real seed case: a Beta reliability pinned at n - 1 quantiles of its prior
        from scipy import stats

        from engine.results.sensitivity import K_CONCENTRATION
        from engine.spec.case import load_case

        seed_case = load_case(SEED_CASE)
        args = seed_case.sources[PINNED_SOURCE].reliability.args
        spec = tmp / "pinned.yaml"
        qs = [(i + 0.5) / (n - 1) for i in range(n - 1)]
        spec.write_text("".join(f"pin{q:.3f}: {json.dumps({f'hp__reliability__{PINNED_SOURCE}': [v * K_CONCENTRATION, (1 - v) * K_CONCENTRATION]})}\n"
                                for q in qs for v in [float(stats.beta.ppf(q, *args))]))
        seed_cli = [sys.executable, "-m", "engine.cli", "run", str(SEED_CASE), *small]
        timed([*seed_cli, "--run-id", "warm"])
        level2["seed_single"] = timed([*seed_cli, "--run-id", "one"])
        level2["seed_pinned"] = timed([*seed_cli, "--run-id", "pinned", "--variants", str(spec)])
        methods = [json.loads(p.read_text())["hypotheses"] for p in sorted((tmp / seed_case.id / "pinned" / "variants").glob("*/attribution.json"))]
        sampled = sum(h["method"] == "sampled" for m in methods for h in m.values())
        print(f"  incident run {SEED_CASE.name}, a single variant: {level2['seed_single']:6.1f} s; {PINNED_SOURCE}'s reliability "
              f"pinned at {n - 1} quantiles: {level2['seed_pinned']:6.1f} s  (hypothesis x variant sampled: {sampled} of "
              f"{len(seed_case.hypotheses) * (n - 1)})", flush=True)

    print()
    if rows:
        print(f"one model, NUTS {a.draws}+{a.draws} and SMC {a.smc_draws} per sampled variant; {n} variants / 1:")
    for key, (t, info) in rows.items():
        single = rows["single"][0]
        if key == "single":
            continue
        mode, kind = key.split("-")
        r = t / single
        result[f"ratio_{key}"] = r
        print(f"  {kind:11s} sweep, {mode:8s}: {r:5.2f}x  ({(t - single) / (n - 1):.2f} s per extra variant; "
              f"{info['reweighted']} reweighted, {info['sampled'] - 1} sampled)"
              + (f"   target <= 1.5x: {'OK' if r <= 1.5 else 'MISSED'}" if mode == "reweight" else ""))
    if not a.skip_engine:
        print("whole engine (incident run, 3 hypotheses, 2 workers):")
        for kind in SWEEPS:
            r = level2[kind] / level2["single"]
            result[f"ratio_engine_{kind}"] = r
            print(f"  {kind:11s} sweep: {r:5.2f}x  ({(level2[kind] - level2['single']) / (n - 1):.2f} s per extra variant)")
        r = level2["seed_pinned"] / level2["seed_single"]
        result["ratio_engine_seed_pinned"] = r
        print(f"whole engine, {SEED_CASE.name} (5 hypotheses, 2 workers), a Beta reliability pinned at {n - 1} quantiles: "
              f"{r:5.2f}x   target <= 3x: {'OK' if r <= 3 else 'MISSED'}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
