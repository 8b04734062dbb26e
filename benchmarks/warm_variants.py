"""A variant's NUTS chains started from the base run's, against chains started afresh (issue 17).

    python benchmarks/warm_variants.py [--case cases/azal8243-2024.yaml] [--hypothesis russian_sam]
                                       [--variant-tune 250] [--repeat 3] [VARIANT ...]

A VARIANT is ``pm.Data name=value[,value]`` (``use__tail-holes=0`` leaves an item out,
``hp__reliability__kremlin=45,5`` pins a source's reliability prior); the default set is two
items left out and a source's reliability pinned high and low. In one process with the compile
cache warm, on the engine's compiled model (``engine.run.compiled.Compiled``): four base chains
(1000 + 1000, afresh); then per variant and repetition four chains *afresh* (jittered start,
unit mass matrix, ``tune`` 1000, as a variant was sampled before) and four *warm* ones
(``WarmStart`` from the base chains: their last draws, step sizes and covariance; ``--variant-tune``
tuning steps). Printed per variant: seconds for four chains, the smallest bulk ESS over the
model's free variables (least of the repetitions), ESS per second, divergences, and the largest
difference of posterior means between the two, in units of its Monte Carlo standard error.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_VARIANTS = ["use__tail-holes=0", "use__ad-active-admission=0", "hp__reliability__kremlin=45,5",
                    "hp__reliability__kremlin=2,48"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="*", default=DEFAULT_VARIANTS)
    ap.add_argument("--case", default=str(ROOT / "cases" / "azal8243-2024.yaml"))
    ap.add_argument("--hypothesis", default="russian_sam")
    ap.add_argument("--variant-tune", type=int, default=250)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    import arviz as az

    from engine.run.compiled import WarmStart, compiled_for
    from engine.run.settings import Variant
    from engine.spec.case import load_case

    case = load_case(a.case)
    cm = compiled_for(case, a.hypothesis)
    names = [v.name for v in cm.model.value_vars]
    base = az.concat([cm.sample_nuts(draws=1000, tune=1000, seed=100 + c, target_accept=0.9) for c in range(4)], dim="chain")

    def chains(warm: bool, rep: int) -> tuple[float, object]:
        t0 = time.perf_counter()
        out = [cm.sample_nuts(draws=1000, tune=a.variant_tune if warm else 1000, seed=1000 * rep + c, target_accept=0.9,
                              warm=WarmStart.of(cm.model, base, c) if warm else None) for c in range(4)]
        return time.perf_counter() - t0, az.concat(out, dim="chain")

    print(f"{a.case} / {a.hypothesis}: {len(names)} free variables; 4 chains of 1000 draws; {a.repeat} repetitions")
    print(f"{'variant':34s} {'start':6s} {'seconds':>8s} {'min ESS':>8s} {'ESS/s':>7s} {'div':>4s}  {'max |mean diff| / MCSE':>22s}")
    ratios = []
    for spec in ["base", *a.variants]:
        if spec == "base":
            variant = None
        else:
            key, value = spec.split("=")
            vals = [float(x) for x in value.split(",")]
            variant = Variant.of("v", {key: vals if len(vals) > 1 else vals[0]})
        cm.use(case, a.hypothesis, variant)
        res = {}
        for warm in (False, True):
            runs = [chains(warm, rep) for rep in range(a.repeat)]
            secs = float(np.mean([t for t, _ in runs]))
            ess = min(float(az.ess(i.posterior[names]).to_array().min()) for _, i in runs)
            div = sum(int(i.sample_stats["diverging"].sum()) for _, i in runs)
            res[warm] = (secs, ess, div, az.concat([i for _, i in runs], dim="chain"))
        post = {w: res[w][3].posterior[names] for w in res}
        z = max(float(abs(post[True][v].mean() - post[False][v].mean())
                      / np.hypot(float(az.mcse(post[True][[v]])[v].max()), float(az.mcse(post[False][[v]])[v].max())))
                for v in names)
        for warm in (False, True):
            secs, ess, div, _ = res[warm]
            print(f"{spec:34s} {'warm' if warm else 'afresh':6s} {secs:8.2f} {ess:8.0f} {ess / secs:7.0f} {div:4d}"
                  + (f"  {z:22.2f}" if warm else ""), flush=True)
        ratios.append(res[False][0] / res[True][0])
    print(f"afresh / warm seconds: {min(ratios):.2f}-{max(ratios):.2f}x (median {np.median(ratios):.2f}x)")


if __name__ == "__main__":
    main()
