"""Damage maps: reading simulated bursts back for their burst point (issue 13), and timings.

Every map is drawn by the reference simulator (tests/oracles/burst_sim.py: fragments thrown one by
one, independent of the engine) onto seven inspected panels of a forward fuselage (x 0-6 m, a
3 m x 3 m section: two left, two top, two right panels and the nose), from parameters drawn from
the large-SAM hypothesis's prior (the ``proximity_fragmentation`` warhead class; burst point and
course as in ``case_doc``), kept when the burst stands 1-10 m off the panels and leaves 100-1,000
holes. Each map is read by the engine's per-hypothesis model (``Compiled.sample_nuts``: the
family's starting points, a Laplace full mass matrix) and the script prints

* coverage of the 90 % credible region of the burst point (the ellipsoid of the draws' Mahalanobis
  distance; target 85-95 %) and the median location error (posterior mean, target <= 0.5 m);
* SBC ranks of the burst coordinates and the log fragment count among 100 thinned draws (a histogram
  of 10 bins and a chi-square test of uniformity). Keeping a burst by its standoff truncates the prior a
  little; bursts are kept by the map alone otherwise (which leaves ranks uniform);
* the time of one log-density-and-gradient evaluation of a 500-hole map and of one NUTS chain.

Weapon class from recovered shaped fragments: the damage-map family does not take recovered fragments
(a ``fragments`` item does, separately), so that figure is not computed here.

    python benchmarks/damage_map.py --n 100 --workers 2       # the benchmark
    python benchmarks/damage_map.py --write-case tests/cases/damage-map-4h.yaml
    python benchmarks/damage_map.py --time                   # evaluation timing only
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp
import sys
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from oracles.burst_sim import holes  # noqa: E402

W = 1.5
PANELS = [  # (id, corner, edge1, edge2), edge1 x edge2 outward; body frame x forward, y left, z up
    ("left-fwd", (3, W, -W), (0, 0, 2 * W), (3, 0, 0)), ("left-aft", (0, W, -W), (0, 0, 2 * W), (3, 0, 0)),
    ("top-fwd", (3, -W, W), (3, 0, 0), (0, 2 * W, 0)), ("top-aft", (0, -W, W), (3, 0, 0), (0, 2 * W, 0)),
    ("right-fwd", (3, -W, -W), (3, 0, 0), (0, 0, 2 * W)), ("right-aft", (0, -W, -W), (3, 0, 0), (0, 0, 2 * W)),
    ("nose", (6, -W, -W), (0, 2 * W, 0), (0, 0, 2 * W)),
]
BOX = [tuple(np.array(v, float) for v in p[1:]) for p in PANELS]
AIRCRAFT_SPEED = 230.0
V50, V_SPREAD, ELONGATION_SD, MISREAD = 200.0, 60.0, 0.15, 0.05  # proximity_fragmentation's fixed values

OUTSIDE = {"burst_x": {"normal": [3.0, 4.0]}, "burst_y": {"normal": [0.0, 4.0]}, "burst_z": {"normal": [0.0, 4.0]},
           "axis_x": 1.0, "axis_y": 0.0, "axis_z": 0.0,
           "course_heading": {"normal": [180.0, 60.0]}, "course_climb": {"normal": [0.0, 30.0]}}
INSIDE = {"burst_x": {"normal": [3.0, 1.5]}, "burst_y": {"normal": [0.0, 0.7]}, "burst_z": {"normal": [0.0, 0.7]},
          "axis_x": 1.0, "axis_y": 0.0, "axis_z": 0.0, "weapon_speed": AIRCRAFT_SPEED}
# the large-SAM prior (priors/mechanisms.yaml, proximity_fragmentation) with the burst and course above
PRIOR = {"burst_x": (3.0, 4.0), "burst_y": (0.0, 4.0), "burst_z": (0.0, 4.0), "course_heading": (180.0, 60.0),
         "course_climb": (0.0, 30.0), "weapon_speed": (800.0, 250.0), "log_fragments": (9.3, 0.8), "spray_angle": (82.0, 6.0),
         "fragment_speed": (2000.0, 300.0)}
WIDTH_GAMMA = (4.0, 0.5)  # shape, rate


def course(heading: float, climb: float) -> np.ndarray:
    h, c = math.radians(heading), math.radians(climb)
    return np.array([math.cos(c) * math.cos(h), math.cos(c) * math.sin(h), math.sin(c)])


def standoff(burst: np.ndarray) -> float:
    """Distance from the burst to the nearest inspected panel (0 inside the box)."""
    lo, hi = np.array([0.0, -W, -W]), np.array([6.0, W, W])
    return float(np.linalg.norm(np.maximum(0.0, np.maximum(lo - burst, burst - hi))))


def simulate_map(rng: np.random.Generator, t: dict) -> dict:
    """The reference simulator's map for parameters ``t`` (a damage_map observation)."""
    axis = course(t["course_heading"], t["course_climb"])
    burst = np.array([t["burst_x"], t["burst_y"], t["burst_z"]])
    rel = t["weapon_speed"] * axis - np.array([AIRCRAFT_SPEED, 0.0, 0.0])
    pan, pts, cos = holes(rng, int(round(math.exp(t["log_fragments"]))), BOX, burst, axis, rel, t["fragment_speed"],
                          math.radians(t["spray_angle"]), math.radians(t["spray_width"]), V50, V_SPREAD, with_cosine=True)
    elong = np.exp(-np.log(cos) + ELONGATION_SD * rng.standard_normal(len(cos)))
    bend = np.where(rng.uniform(size=len(cos)) < 1 - MISREAD, "in", "out")
    return {"aircraft_speed": AIRCRAFT_SPEED,
            "panels": [{"id": p[0], "corner": list(map(float, p[1])), "edge1": list(map(float, p[2])), "edge2": list(map(float, p[3]))}
                       for p in PANELS],
            "holes": [{"panel": PANELS[k][0], "at": [round(float(v), 4) for v in x], "bend": str(b), "elongation": round(max(1.0, float(e)), 4)}
                      for k, x, b, e in zip(pan, pts, bend, elong, strict=True)]}


def draw_truth(rng: np.random.Generator) -> dict:
    """Parameters from the large-SAM prior (the model's), kept for a standoff of 1-10 m."""
    while True:
        t = {k: float(rng.normal(*v)) for k, v in PRIOR.items()}
        t["spray_width"] = float(rng.gamma(WIDTH_GAMMA[0], 1 / WIDTH_GAMMA[1]))
        if 1.0 <= standoff(np.array([t["burst_x"], t["burst_y"], t["burst_z"]])) <= 10.0 and t["weapon_speed"] > 0:
            return t


def case_doc(observed: dict, reliability: float = 1.0) -> dict:
    return {"case": {"id": "damage-map-4h", "title": "A synthetic hole map on a forward fuselage", "date": "2024-01-01"},
            "sources": [{"id": "inspection", "title": "Wreckage inspection (synthetic)", "reliability": reliability}],
            "hypotheses": [{"id": h, "description": d, "prior": 0.25, "mechanism": m} for h, d, m in [
                ("large-sam", "a large surface-to-air missile's fragmentation warhead", "proximity_fragmentation"),
                ("small-sam", "a short-range surface-to-air missile", "short_range_sam_warhead"),
                ("manpads", "a shoulder-launched missile", "manpads_ir_warhead"),
                ("bomb", "a bomb inside the forward fuselage", "internal_explosion")]],
            "evidence": [{"id": "hole-map", "family": "damage_map", "source": "inspection", "observed": observed,
                          "under": {"default": OUTSIDE, "bomb": INSIDE}}]}


CASE_TRUTH = {"burst_x": 5.0, "burst_y": 4.5, "burst_z": 4.0, "course_heading": 201.8, "course_climb": 20.4, "weapon_speed": 750.0,
              "log_fragments": math.log(4500), "spray_angle": 82.0, "spray_width": 7.0, "fragment_speed": 2000.0}


def write_case(path: str) -> None:
    obs = simulate_map(np.random.default_rng(1), CASE_TRUTH)
    text = yaml.safe_dump(case_doc(obs), sort_keys=False, width=200)
    truth = ", ".join(f"{k} {v:.4g}" for k, v in CASE_TRUTH.items())
    head = (f"# Synthetic: {len(obs['holes'])} holes drawn by tests/oracles/burst_sim.py (benchmarks/damage_map.py --write-case).\n"
            f"# Truth: the large-SAM class; {truth} (fragments {round(math.exp(CASE_TRUTH['log_fragments']))}),\n"
            f"# v50 {V50}, v50 spread {V_SPREAD}, elongation s.d. {ELONGATION_SD}, misread {MISREAD}; aircraft {AIRCRAFT_SPEED} m/s.\n")
    Path(path).write_text(head + text)
    print(f"wrote {path}: {len(obs['holes'])} holes")


# ---------------------------------------------------------------- reading maps back
NAMES = ("burst_x", "burst_y", "burst_z", "log_fragments")


def _case(observed: dict):  # noqa: ANN202
    import tempfile

    from engine.spec.case import load_case

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "case.yaml"
        path.write_text(yaml.safe_dump(case_doc(observed), sort_keys=False))
        return load_case(path)


def _compiled(observed: dict):  # noqa: ANN202
    from engine.run.compiled import Compiled, quiet

    quiet()
    case = _case(observed)
    cm = Compiled(case, "large-sam")
    cm.use(case, "large-sam")
    cm._nuts_parts()
    return cm, case


def _map_ops(cm) -> list:  # noqa: ANN001
    """The damage map's operations in the compiled NUTS function (their hole map is swapped per burst)."""
    from engine.evidence.damage_map import MapLogLik

    fn = cm._nuts_parts()[0]._pytensor_function
    return [node.op for node in fn.maker.fgraph.apply_nodes if isinstance(node.op, MapLogLik)]


def read_back(args: tuple) -> list[dict]:
    """Worker: simulate and read back bursts ``seeds`` (one model compiled, its hole map swapped)."""
    seeds, draws = args
    import warnings

    warnings.filterwarnings("ignore")
    from engine.evidence.damage_map import DamageMapObs, hole_map

    out, cm = [], None
    for seed in seeds:
        rng = np.random.default_rng([seed, 13])
        while True:
            truth = draw_truth(rng)
            obs = simulate_map(rng, truth)
            if 100 <= len(obs["holes"]) <= 1000:
                break
        if cm is None:
            cm, _ = _compiled(obs)
        hm = hole_map(DamageMapObs.model_validate(obs))
        for op in _map_ops(cm):
            op.hole_map = hm
        cm.case = _case(obs)  # the family's starting points read the map from the case
        cm._starts.clear()
        t0 = time.time()
        idata = cm.sample_nuts(draws=draws, tune=draws, seed=seed, target_accept=0.9)
        post = idata.posterior
        x = np.stack([post[f"hole-map__{k}"].values.ravel() for k in NAMES], axis=1)
        b, tb = x[:, :3], np.array([truth[k] for k in NAMES[:3]])
        mean, cov = b.mean(0), np.cov(b.T)
        prec = np.linalg.inv(cov)
        d2 = np.einsum("ij,jk,ik->i", b - mean, prec, b - mean)
        thin = x[np.linspace(0, len(x) - 1, 99).astype(int)]
        out.append({"seed": seed, "holes": len(obs["holes"]), "standoff": standoff(tb), "error": float(np.linalg.norm(mean - tb)),
                    "covered": bool((tb - mean) @ prec @ (tb - mean) <= np.quantile(d2, 0.9)),
                    "ranks": [int(np.sum(thin[:, j] < truth[k])) for j, k in enumerate(NAMES)],
                    "divergences": int(idata.sample_stats["diverging"].sum()), "seconds": time.time() - t0,
                    "truth": tb.round(2).tolist(), "mean": mean.round(2).tolist()})
        r = out[-1]
        print(f"  burst {seed}: {r['holes']} holes, standoff {r['standoff']:.1f} m, error {r['error']:.2f} m, "
              f"in 90% region {r['covered']}, {r['divergences']} divergences, {r['seconds']:.0f} s; truth {r['truth']}, "
              f"posterior mean {r['mean']}", flush=True)
    return out


def time_eval(n_holes_target: int = 500) -> None:
    """One log-density-and-gradient evaluation of a ~500-hole map (the engine's compiled function)."""
    from pymc.blocking import DictToArrayBijection

    obs = simulate_map(np.random.default_rng(1), CASE_TRUTH)
    print(f"map: {len(obs['holes'])} holes on {len(PANELS)} panels")
    t0 = time.time()
    cm, _ = _compiled(obs)
    print(f"model built and compiled in {time.time() - t0:.1f} s")
    f = cm._nuts_parts()[0]
    q = DictToArrayBijection.map(cm.model.initial_point()).data
    f([q], extra_vars={})
    t0, n = time.time(), 300
    for _ in range(n):
        f([q], extra_vars={})
    print(f"one log-density-and-gradient evaluation: {(time.time() - t0) / n * 1000:.2f} ms")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--draws", type=int, default=400)
    ap.add_argument("--write-case")
    ap.add_argument("--time", action="store_true")
    a = ap.parse_args()
    if a.write_case:
        write_case(a.write_case)
        return
    time_eval()
    if a.time:
        return
    from scipy import stats

    chunks = [(list(range(i, a.n, a.workers)), a.draws) for i in range(a.workers)]
    t0 = time.time()
    if a.workers > 1:
        with mp.get_context("spawn").Pool(a.workers) as pool:
            results = [r for chunk in pool.map(read_back, chunks) for r in chunk]
    else:
        results = read_back(chunks[0])
    n = len(results)
    cover = np.mean([r["covered"] for r in results])
    print(f"\n{n} bursts in {time.time() - t0:.0f} s ({np.mean([r['seconds'] for r in results]):.0f} s per NUTS chain of "
          f"{a.draws} + {a.draws} draws)")
    print(f"coverage of the 90% credible region of the burst point: {cover:.0%} "
          f"(binomial 95% interval {stats.binomtest(int(cover * n), n).proportion_ci().low:.0%}-"
          f"{stats.binomtest(int(cover * n), n).proportion_ci().high:.0%}; target 85-95%)")
    print(f"median location error: {np.median([r['error'] for r in results]):.3f} m (target <= 0.5 m)")
    print(f"divergences: {sum(r['divergences'] for r in results)} in {n} chains")
    ranks = np.array([r["ranks"] for r in results])
    for j, name in enumerate(NAMES):
        hist = np.bincount(np.minimum(ranks[:, j] // 10, 9), minlength=10)
        p = stats.chisquare(hist).pvalue
        print(f"SBC ranks of {name:14s} (0-99, 10 bins): {' '.join(f'{h:3d}' for h in hist)}   chi-square p = {p:.3f}")
    print("weapon class from >= 2 recovered shaped fragments: not computed (the damage-map family takes no recovered fragments)")


if __name__ == "__main__":
    main()
