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
* SBC ranks of the burst coordinates and the log fragment count among 99 draws thinned from the chain
  (a histogram of 10 bins and a chi-square test of uniformity). Keeping a burst by its standoff truncates
  the prior a little; bursts are kept by the map alone otherwise (which leaves ranks uniform);
* the time of one log-density-and-gradient evaluation of a 500-hole map and of one NUTS chain;
* the weapon class: each burst's recovered fragments (2 + Poisson(1), drawn from the large-SAM class's shape
  weights and log-normal masses) and, where two or more are shaped (not natural), the posterior of the large
  SAM among the four classes of tests/cases/damage-map-4h.yaml with equal priors: log p(map | class) by
  Laplace (the large SAM and the bomb at the engine's own family start; the small SAM and MANPADS, which
  share the large SAM's model structure, climbed from its mode) plus the exact fragment term
  (``recovered_log_likelihood``). Printed also from the map alone and from the fragments alone, and, for
  fragment sets simulated by each class, from fragments alone.

    python benchmarks/damage_map.py --n 100 --workers 1 --tune 150 --draws 150   # the benchmark
    python benchmarks/damage_map.py --seeds 0:50 --json a.json ...; --combine a.json b.json   # in parts
    python benchmarks/damage_map.py --write-case tests/cases/damage-map-4h.yaml
    python benchmarks/damage_map.py --worked-case cases/damage-map-synthetic.yaml
    python benchmarks/damage_map.py --time                   # evaluation timing only
    python benchmarks/damage_map.py --quadrature 400         # quadrature error by standoff and cell size, and cost
    python benchmarks/damage_map.py --diagnose 1,3,4 --tune 500 --draws 500   # long chains on chosen bursts
"""

from __future__ import annotations

import argparse
import json
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


def weapon(t: dict) -> tuple:
    """Parameters ``t`` as (burst, axis, velocity relative to the aircraft, fragment speed, spray angle and width in rad)."""
    axis = course(t["course_heading"], t["course_climb"])
    return (np.array([t["burst_x"], t["burst_y"], t["burst_z"]]), axis, t["weapon_speed"] * axis - np.array([AIRCRAFT_SPEED, 0.0, 0.0]),
            t["fragment_speed"], math.radians(t["spray_angle"]), math.radians(t["spray_width"]))


def simulate_map(rng: np.random.Generator, t: dict) -> dict:
    """The reference simulator's map for parameters ``t`` (a damage_map observation)."""
    pan, pts, cos = holes(rng, int(round(math.exp(t["log_fragments"]))), BOX, *weapon(t), V50, V_SPREAD, with_cosine=True)
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


def write_worked_case(path: str) -> None:
    """cases/damage-map-synthetic.yaml: the 4-hypothesis case's map (same seed and truth) with three recovered
    fragments drawn from the large-SAM class's shapes and masses (seed 3), every number synthetic or assumed."""
    obs = simulate_map(np.random.default_rng(1), CASE_TRUTH)
    spec = _case(obs).items[0].params["large-sam"]
    rng = np.random.default_rng(3)
    rec = recovered_fragments(rng, spec)
    while sum(f["shape"] != "natural" for f in rec) < 2:
        rec = recovered_fragments(rng, spec)
    obs["recovered"] = [{"shape": f["shape"], "mass_g": round(f["mass_g"], 1)} for f in rec]
    doc = case_doc(obs)
    doc["case"].update(id="damage-map-synthetic", title="A synthetic hole map on a forward fuselage, with recovered fragments")
    doc["sources"][0]["title"] = "Wreckage inspection (synthetic: drawn by a simulator, not observed)"
    truth = ", ".join(f"{k} {v:.4g}" for k, v in CASE_TRUTH.items())
    head = ("# A worked damage-map case. EVERY NUMBER IN THIS FILE IS SYNTHETIC OR ASSUMED: no real incident.\n#\n"
            f"# Generated by `python benchmarks/damage_map.py --worked-case {path}`: {len(obs['holes'])} holes thrown onto seven\n"
            "# assumed panels of a forward fuselage (x 0-6 m, a 3 m x 3 m section) by tests/oracles/burst_sim.py (fragments one\n"
            "# by one, independent of the engine), seed 1, and the same map as tests/cases/damage-map-4h.yaml. Truth: the\n"
            f"# large-SAM class; {truth}\n# (fragments {round(math.exp(CASE_TRUTH['log_fragments']))}); v50 {V50}, v50 spread {V_SPREAD}, "
            f"elongation s.d. {ELONGATION_SD}, misread {MISREAD}; aircraft {AIRCRAFT_SPEED} m/s.\n"
            f"# The {len(rec)} recovered fragments are drawn (seed 3) from the large-SAM class's shape weights and log-normal\n"
            "# masses in priors/mechanisms.yaml (proximity_fragmentation.damage_map). The burst priors under `under:` are\n"
            "# assumed: a missile bursts within a few metres outside; the bomb inside the forward fuselage.\n")
    Path(path).write_text(head + yaml.safe_dump(doc, sort_keys=False, width=200, default_flow_style=None))
    print(f"wrote {path}: {len(obs['holes'])} holes, recovered {obs['recovered']}")


# ---------------------------------------------------------------- reading maps back
NAMES = ("burst_x", "burst_y", "burst_z", "log_fragments")



def kept_burst(seed: int):  # noqa: ANN201
    """Burst ``seed``: (its generator, the truth, the map), redrawn until the map has 100-1,000 holes."""
    rng = np.random.default_rng([seed, 13])
    while True:
        truth = draw_truth(rng)
        obs = simulate_map(rng, truth)
        if 100 <= len(obs["holes"]) <= 1000:
            return rng, truth, obs

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


HYPOTHESES = ("large-sam", "small-sam", "manpads", "bomb")
RECOVERED_EXTRA = 1.0  # fragments recovered per burst: 2 + Poisson(1) (assumed)


def recovered_fragments(rng: np.random.Generator, spec: dict) -> list[dict]:
    """Fragments recovered from one burst, drawn from a class's shape weights (with the engine's floor) and
    log-normal masses (its ``shape_<s>``, ``log_mass_<s>`` and s.d. of ln mass): 2 + Poisson(1) of them."""
    from engine.evidence.damage_map import MASS_LOG_SD, SHAPE_FLOOR, SHAPES

    w = np.array([spec[f"shape_{s}"].mean() + SHAPE_FLOOR for s in SHAPES])
    picks = rng.choice(len(SHAPES), size=2 + rng.poisson(RECOVERED_EXTRA), p=w / w.sum())
    return [{"shape": SHAPES[i], "mass_g": float(np.exp(rng.normal(spec[f"log_mass_{SHAPES[i]}"].mean(), MASS_LOG_SD[SHAPES[i]])))}
            for i in picks]


def fragment_terms(case, recovered: list[dict]) -> dict[str, float]:  # noqa: ANN001
    """The exact recovered-fragment term log p(fragments | class) per hypothesis (the family's own function)."""
    from engine.evidence.damage_map import Recovered, recovered_log_likelihood

    frags = [Recovered(**f) for f in recovered]
    return {h: float(recovered_log_likelihood(np, frags, case.items[0].params[h])) for h in HYPOTHESES}


def _data_key(cm) -> tuple:  # noqa: ANN001
    """The key under which ``Compiled.sample_nuts`` keeps a hypothesis's starting point and mass matrix."""
    import hashlib

    return (cm.hid, hashlib.sha256(b"".join(np.asarray(v.get_value()).tobytes() for v in cm.model.data_vars)).hexdigest())


def _laplace(cm, start: tuple) -> float:  # noqa: ANN001
    """log Z = log p(y, q*) + d/2 log 2 pi + 1/2 log det S at a start (q0, mode q*, covariance S)."""
    mode, cov = start[1], start[2]
    lp = float(cm._nuts_parts()[0]([mode], extra_vars={})[0])
    return lp + 0.5 * len(mode) * math.log(2 * math.pi) + 0.5 * np.linalg.slogdet(cov)[1]


def laplace_log_evidence(cm, case, hid: str, from_mode: np.ndarray | None = None) -> tuple[float, tuple]:  # noqa: ANN001
    """Laplace's log p(map | H) and the (template, mode, covariance) it used, which NUTS then reuses.

    Without ``from_mode``: the engine's own family start (``engine.run.compiled._family_start``: L-BFGS from the
    family's candidates on the model's unconstrained log density, the negative Hessian by central differences of
    the gradient, eigenvalues floored). With it (a mode of another hypothesis of the same model structure, same
    unconstrained layout): one L-BFGS climb from there (400 iterations) and the same Hessian."""
    from pymc.blocking import DictToArrayBijection
    from scipy.optimize import minimize

    from engine.run.compiled import _family_start, _jittered_start, _negative

    cm.use(case, hid, observed=case)
    logp_dlogp, ipfn = cm._nuts_parts()[:2]
    point = _jittered_start(cm.model, ipfn, logp_dlogp, 1, 10)
    if from_mode is None:
        start = _family_start(cm.model, case, hid, logp_dlogp, point)
    else:
        neg = _negative(logp_dlogp)
        mode = minimize(neg, from_mode, jac=True, method="L-BFGS-B", options={"maxiter": 400}).x
        h = 1e-5 * np.maximum(1.0, np.abs(mode))
        hess = np.array([(neg(mode + e * h[i])[1] - neg(mode - e * h[i])[1]) / (2 * h[i]) for i, e in enumerate(np.eye(mode.size))])
        w, v = np.linalg.eigh((hess + hess.T) / 2)
        cov = (v / np.clip(w, 1e-8, None)) @ v.T
        start = (DictToArrayBijection.map(point), mode, (cov + cov.T) / 2)
    cm._starts[_data_key(cm)] = start
    return _laplace(cm, start), start


def read_back(args: tuple) -> list[dict]:
    """Worker: simulate and read back bursts ``seeds`` (each structure compiled once, its hole map swapped)."""
    seeds, draws, tune, deadline, partial = args
    import warnings

    warnings.filterwarnings("ignore")
    from engine.run.compiled import quiet

    quiet()
    out, compiled = [], {}
    for seed in seeds:
        if time.time() > deadline:
            print(f"time budget spent: stopping before burst {seed}", flush=True)
            break
        for attempt in range(3):  # a shared machine's compile lock can time out (pytensor's filelock): try the burst again
            try:
                out.append(_read_one(seed, draws, tune, compiled))
                if partial:  # one line per burst as it is read, so an interrupted run keeps what it did
                    with open(partial, "a") as f:
                        f.write(json.dumps(out[-1]) + "\n")
                break
            except Exception as exc:  # noqa: BLE001
                print(f"burst {seed}: attempt {attempt + 1} failed: {str(exc).splitlines()[0][:200]}", flush=True)
    return out


def _read_one(seed: int, draws: int, tune: int, compiled: dict) -> dict:
    """One burst: simulate, the four Laplace fits, one NUTS chain of the large SAM's model."""
    from engine.evidence import REGISTRY
    from engine.evidence.damage_map import DamageMapObs, hole_map
    from engine.model.build import structure_key
    from engine.run.compiled import Compiled

    rng, truth, obs = kept_burst(seed)
    case = _case(obs)
    recovered = recovered_fragments(rng, case.items[0].params["large-sam"])
    hm = hole_map(DamageMapObs.model_validate(obs), REGISTRY["damage_map"].cells(case.items))  # the cells a run of this case uses
    cms = {}
    for h in HYPOTHESES:
        key = structure_key(case, h)
        if key not in compiled:
            compiled[key] = Compiled(case, h)
        cms[h] = compiled[key]
    for cm in {id(c): c for c in cms.values()}.values():
        for op in _map_ops(cm):
            op.hole_map = hm
        cm._starts.clear()
    t0 = time.time()
    log_map, starts = {}, {}
    for h in HYPOTHESES:  # the missiles of the large SAM's structure climb from its mode
        shared = next((starts[g] for g in starts if cms[g] is cms[h]), None)
        log_map[h], start = laplace_log_evidence(cms[h], case, h, None if shared is None else shared[1])
        starts.setdefault(h, start)
    t_laplace = time.time() - t0
    frag = fragment_terms(case, recovered)
    cm = cms["large-sam"]
    cm.use(case, "large-sam", observed=case)
    t0 = time.time()
    idata = cm.sample_nuts(draws=draws, tune=tune, seed=seed, target_accept=0.9)
    post = idata.posterior
    x = np.stack([post[f"hole-map__{k}"].values.ravel() for k in NAMES], axis=1)
    b, tb = x[:, :3], np.array([truth[k] for k in NAMES[:3]])
    mean, cov = b.mean(0), np.cov(b.T)
    prec = np.linalg.inv(cov)
    d2 = np.einsum("ij,jk,ik->i", b - mean, prec, b - mean)
    thin = x[np.linspace(0, len(x) - 1, 99).astype(int)]
    r = {"seed": seed, "holes": len(obs["holes"]), "standoff": standoff(tb), "error": float(np.linalg.norm(mean - tb)),
                "covered": bool((tb - mean) @ prec @ (tb - mean) <= np.quantile(d2, 0.9)),
                "ranks": [int(np.sum(thin[:, j] < truth[k])) for j, k in enumerate(NAMES)],
                "divergences": int(idata.sample_stats["diverging"].sum()), "seconds": time.time() - t0, "laplace_seconds": t_laplace,
                "truth": tb.round(2).tolist(), "mean": mean.round(2).tolist(),
                "log_map": log_map, "log_fragments": frag, "shapes": [f["shape"] for f in recovered]}
    share = class_shares(r)
    print(f"burst {seed}: {r['holes']} holes, standoff {r['standoff']:.1f} m, error {r['error']:.2f} m, covered {r['covered']}, "
          f"{r['divergences']} divergences, NUTS {r['seconds']:.0f} s, Laplace x4 {t_laplace:.0f} s; fragments {r['shapes']}; "
          f"P(large-sam) map+fragments {share['both']:.3f}, map {share['map']:.3f}, fragments {share['fragments']:.3f}", flush=True)
    return r


def class_shares(r: dict) -> dict[str, float]:
    """Posterior of the simulating class (large SAM) among the four, equal priors: from the map's Laplace log
    evidence plus the exact fragment term, from the map alone, from the fragments alone."""
    def share(terms: dict[str, float]) -> float:
        v = np.array([terms[h] for h in HYPOTHESES])
        return float(np.exp(v[0] - np.logaddexp.reduce(v)))

    return {"both": share({h: r["log_map"][h] + r["log_fragments"][h] for h in HYPOTHESES}), "map": share(r["log_map"]),
            "fragments": share(r["log_fragments"])}


def fragments_only(n: int = 2000, seed: int = 7) -> None:
    """Per simulating class, the posterior of that class among the four from >= 2 shaped fragments alone
    (no map): exact terms, equal priors; shaped = any shape but natural."""
    obs = simulate_map(np.random.default_rng(1), CASE_TRUTH)
    case = _case(obs)
    rng = np.random.default_rng(seed)
    for h in HYPOTHESES:
        shares = []
        for _ in range(n):
            rec = recovered_fragments(rng, case.items[0].params[h])
            if sum(f["shape"] != "natural" for f in rec) < 2:
                continue
            t = fragment_terms(case, rec)
            v = np.array([t[k] for k in HYPOTHESES])
            shares.append(float(np.exp(t[h] - np.logaddexp.reduce(v))))
        if shares:
            print(f"  fragments alone, simulated by {h:9s}: {len(shares):4d} of {n} sets with >= 2 shaped fragments; "
                  f"posterior of {h} >= 0.95 in {np.mean(np.array(shares) >= 0.95):.0%} (median {np.median(shares):.3f})")
        else:
            print(f"  fragments alone, simulated by {h:9s}: no set of {n} has >= 2 shaped fragments (the class makes natural ones)")


def diagnose(seeds: list[int], draws: int, tune: int, chains: int = 2) -> None:
    """Long chains on chosen bursts (the large SAM's model only): is a burst point left outside its 90 % region
    by the sampler (chains disagree, R-hat) or by the posterior itself (truth many posterior s.d. away)?"""
    import warnings

    import arviz as az

    warnings.filterwarnings("ignore")
    from engine.evidence import REGISTRY
    from engine.evidence.damage_map import DamageMapObs, hole_map
    from engine.run.compiled import Compiled, quiet

    quiet()
    cm = None
    for seed in seeds:
        rng, truth, obs = kept_burst(seed)
        case = _case(obs)
        cm = cm or Compiled(case, "large-sam")
        for op in _map_ops(cm):
            op.hole_map = hole_map(DamageMapObs.model_validate(obs), REGISTRY["damage_map"].cells(case.items))
        cm._starts.clear()
        cm.use(case, "large-sam", observed=case)
        t0 = time.time()
        post = az.concat([cm.sample_nuts(draws=draws, tune=tune, seed=seed * 10 + c, target_accept=0.9) for c in range(chains)], dim="chain")
        names = [f"hole-map__{k}" for k in NAMES[:3]]
        b = np.stack([post.posterior[n].values for n in names], axis=-1)  # chain, draw, 3
        tb = np.array([truth[k] for k in NAMES[:3]])
        flat = b.reshape(-1, 3)
        mean, sd = flat.mean(0), flat.std(0)
        prec = np.linalg.inv(np.cov(flat.T))
        d2 = np.einsum("ij,jk,ik->i", flat - mean, prec, flat - mean)
        rhat = float(az.rhat(post.posterior[names]).to_array().max())
        print(f"burst {seed}: {len(obs['holes'])} holes, standoff {standoff(tb):.1f} m; {chains} chains of {tune} + {draws}, {time.time() - t0:.0f} s, "
              f"R-hat max {rhat:.3f}, {int(post.sample_stats['diverging'].sum())} divergences; chain means "
              f"{[np.round(b[c].mean(0), 2).tolist() for c in range(chains)]}; truth {tb.round(2).tolist()}; posterior s.d. {sd.round(3).tolist()}; "
              f"truth - mean in s.d. {((tb - mean) / sd).round(1).tolist()}; error {np.linalg.norm(mean - tb):.2f} m; "
              f"covered {bool((tb - mean) @ prec @ (tb - mean) <= np.quantile(d2, 0.9))}", flush=True)


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


QUAD_CONFIGS = ((0.4, 4), (0.6, 4), (0.75, 4), (1.0, 4), (0.5, 3), (0.75, 5), (1.0, 5))  # (cell m, Gauss points per side)
STANDOFF_BINS = ((1, 2), (2, 3), (3, 5), (5, 10))


def quadrature_study(n: int) -> None:
    """The per-panel quadrature error of the model's expected holes against 0.05 m cells (order 4), for ``n`` bursts
    drawn as the benchmark draws them (the large-SAM prior, standoff 1-10 m, 100-1,000 expected holes), by standoff;
    panels with at least 10 expected holes. And what one gradient evaluation costs per setting (the 492-hole case's
    truth): the default 0.4 m cells are far finer than a burst a few metres off needs, but not finer than a close one."""
    from engine.evidence.damage_geometry import BAND_HALF_WIDTH, band_normaliser, fast_hole_intensity, panel_quadrature
    from engine.evidence.damage_kernels import panel_sums

    quads = {c: panel_quadrature(BOX, cell=c[0], order=c[1]) for c in QUAD_CONFIGS}
    ref = panel_quadrature(BOX, cell=0.05, order=4)

    def holes_per_panel(q, t: dict) -> np.ndarray:  # noqa: ANN001
        lam = fast_hole_intensity(q.points, q.normals, *weapon(t), math.exp(t["log_fragments"]), V50, V_SPREAD)
        return np.bincount(q.panel, weights=q.weights * lam, minlength=q.n_panels)

    rng = np.random.default_rng(20261203)
    rows: list[tuple[float, dict]] = []
    while len(rows) < n:
        t = draw_truth(rng)
        want = holes_per_panel(ref, t)
        if not 100 <= want.sum() <= 1000:
            continue
        big = want >= 10
        rows.append((standoff(weapon(t)[0]), {c: float(np.max(np.abs(holes_per_panel(q, t)[big] / want[big] - 1))) for c, q in quads.items()}))
    print(f"quadrature error per panel (panels with >= 10 expected holes) against 0.05 m cells, {n} bursts; "
          "max |relative error| per burst, then its median / 99th percentile / maximum over the bursts")
    print(f"{'cell, order':12s} {'points':>6s} {'ms/eval':>8s}  " + "  ".join(f"{f'standoff {lo}-{hi} m':>26s}" for lo, hi in STANDOFF_BINS))
    w = weapon(CASE_TRUTH)
    for c, q in quads.items():
        args = (q.points, q.normals, q.weights, q.panel, q.n_panels, *w, V50, V_SPREAD, 1.0, BAND_HALF_WIDTH)
        panel_sums(*args)
        t0 = time.perf_counter()
        for _ in range(200):
            panel_sums(*args)
        ms = (time.perf_counter() - t0) / 200 * 1000
        cells = []
        for lo, hi in STANDOFF_BINS:
            e = np.array([r[c] for s, r in rows if lo <= s < hi or (hi == 10 and s == 10)])
            cells.append(f"{len(e):3d}: {np.median(e):.0e} {np.percentile(e, 99):.0e} {e.max():.0e}" if len(e) else "-")
        print(f"{c[0]:4.2f} m, {c[1]}   {len(q.points):6d} {ms:8.3f}  " + "  ".join(f"{x:>26s}" for x in cells))
    print(f"(the normaliser Z is common to all rows: {band_normaliser(np, w[4], w[5]):.4f} at the case's truth)")


def full_run(draws: int | None, tune: int | None) -> None:
    """``incident run cases/damage-map-synthetic.yaml`` (4 hypotheses, a 492-hole map, 2 local workers) as a user runs
    it, timed from the command line, with its verdict, attribution and each estimator's log evidence."""
    import subprocess
    import tempfile

    case = Path(__file__).resolve().parent.parent / "cases" / "damage-map-synthetic.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "engine.cli", "run", str(case), "--out", tmp, "--run-id", "bench"]
        cmd += [*(["--draws", str(draws)] if draws else []), *(["--tune", str(tune)] if tune else [])]
        t0 = time.time()
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.time() - t0
        if proc.returncode not in (0, 4):
            print(proc.stdout[-2000:], proc.stderr[-2000:])
            raise SystemExit(f"incident run failed with exit {proc.returncode}")
        folder = Path(tmp) / "damage-map-synthetic" / "bench"
        att = json.loads((folder / "attribution.json").read_text())
        diag = json.loads((folder / "diagnostics.json").read_text())
    setting = f"--draws {draws or 'default'} --tune {tune or 'default'}"
    print(f"full run of the 4-hypothesis worked case ({setting}, 2 workers): {wall:.0f} s wall (target < 180 s); "
          f"verdict {diag['verdict']}; leader {att['leader']}")
    for hid, h in att["hypotheses"].items():
        e = diag["hypotheses"][hid]["estimators"]
        k = f", k {e['pareto_k']:.2f}" if "pareto_k" in e else ""
        print(f"  {hid:10s} posterior {h['posterior']:.4f}  log Z bridge {e['bridge']:.2f} ± {e['bridge_se']:.2f}, "
              f"{e.get('independent', 'smc')} {e['smc']:.2f} ± {e['smc_se']:.2f}{k}; r-hat {diag['hypotheses'][hid]['rhat_max']:.3f}, "
              f"ESS {diag['hypotheses'][hid]['ess_bulk_min']:.0f}, divergences {diag['hypotheses'][hid]['divergences']}")
    for r in diag["reasons"]:
        print(f"  - {r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--draws", type=int, default=150)
    ap.add_argument("--tune", type=int, default=150)
    ap.add_argument("--max-minutes", type=float, default=float("inf"), help="take no new burst after this many minutes")
    ap.add_argument("--write-case")
    ap.add_argument("--worked-case")
    ap.add_argument("--diagnose", help="comma-separated burst seeds: long chains on these bursts only (with --tune/--draws)")
    ap.add_argument("--time", action="store_true")
    ap.add_argument("--quadrature", type=int, metavar="N", help="the quadrature's per-panel error by standoff and cell, over N bursts")
    ap.add_argument("--full-run", action="store_true", help="time `incident run` of the worked 4-hypothesis case (with --run-draws/--run-tune)")
    ap.add_argument("--run-draws", type=int, help="--draws of the full run (default: the engine's)")
    ap.add_argument("--run-tune", type=int, help="--tune of the full run (default: the engine's)")
    ap.add_argument("--seeds", help="first:last (exclusive) bursts to read, e.g. 50:100 (default 0:n)")
    ap.add_argument("--json", help="write the bursts' results here (and each burst as it is read to <file>.partial)")
    ap.add_argument("--combine", nargs="+", help="print the figures over results written by --json (no sampling)")
    a = ap.parse_args()
    if a.combine:
        summarize([r for f in a.combine for r in _results(Path(f))], a.tune, a.draws)
        return
    if a.write_case:
        write_case(a.write_case)
        return
    if a.diagnose:
        diagnose([int(x) for x in a.diagnose.split(",")], a.draws, a.tune)
        return
    if a.worked_case:
        write_worked_case(a.worked_case)
        return
    if a.quadrature:
        quadrature_study(a.quadrature)
        return
    time_eval()
    if a.full_run:
        full_run(a.run_draws, a.run_tune)
    if a.time or a.full_run:
        return
    print("recovered fragments alone (exact terms, equal priors over the four classes):")
    fragments_only()
    deadline = time.time() + 60 * a.max_minutes
    first, last = (int(x) for x in a.seeds.split(":")) if a.seeds else (0, a.n)
    partial = f"{a.json}.partial" if a.json else None
    chunks = [(list(range(first + i, last, a.workers)), a.draws, a.tune, deadline, partial) for i in range(a.workers)]
    t0 = time.time()
    if a.workers > 1:
        with mp.get_context("spawn").Pool(a.workers) as pool:
            results = [r for chunk in pool.map(read_back, chunks) for r in chunk]
    else:
        results = read_back(chunks[0])
    print(f"\n{len(results)} of {last - first} bursts in {time.time() - t0:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(results))
    summarize(results, a.tune, a.draws)


def _results(path: Path) -> list[dict]:
    """Bursts written by ``--json``: the final list, or a ``.partial`` file's lines (an interrupted run)."""
    text = path.read_text()
    return json.loads(text) if path.suffix != ".partial" else [json.loads(line) for line in text.splitlines() if line.strip()]


def summarize(results: list[dict], tune: int, draws: int) -> None:
    """The benchmark's figures over the bursts read back."""
    from scipy import stats

    n = len(results)
    cover = np.mean([r["covered"] for r in results])
    ci = stats.binomtest(int(round(cover * n)), n).proportion_ci()
    print(f"{n} bursts: {np.mean([r['seconds'] for r in results]):.0f} s per NUTS chain of {tune} tuning + {draws} draws; "
          f"{np.mean([r['laplace_seconds'] for r in results]):.0f} s for the four Laplace fits")
    print(f"coverage of the 90% credible region of the burst point: {cover:.0%} (binomial 95% interval {ci.low:.0%}-{ci.high:.0%}; "
          "target 85-95%)")
    print(f"median location error: {np.median([r['error'] for r in results]):.3f} m (target <= 0.5 m)")
    print(f"divergences: {sum(r['divergences'] for r in results)} in {n} chains")
    ranks = np.array([r["ranks"] for r in results])
    for j, name in enumerate(NAMES):
        hist = np.bincount(np.minimum(ranks[:, j] // 10, 9), minlength=10)
        p = stats.chisquare(hist).pvalue
        print(f"SBC ranks of {name:14s} (0-99, 10 bins): {' '.join(f'{h:3d}' for h in hist)}   chi-square p = {p:.3f}")
    shaped = [r for r in results if sum(s != "natural" for s in r["shapes"]) >= 2]
    shares = np.array([[class_shares(r)[k] for k in ("both", "map", "fragments")] for r in shaped]).reshape(-1, 3)
    print(f"weapon class (simulating class: large SAM; 4 classes, equal priors; log p(map | class) by Laplace at the engine's "
          f"family start, plus the exact fragment term): {len(shaped)} of {n} bursts with >= 2 shaped fragments recovered")
    for j, what in enumerate(("map + fragments", "map alone", "fragments alone")):
        if len(shaped):
            print(f"  {what:16s}: posterior of large SAM >= 0.95 in {np.mean(shares[:, j] >= 0.95):.0%} "
                  f"(median {np.median(shares[:, j]):.3f}, min {shares[:, j].min():.3g}; target >= 90 %)")

if __name__ == "__main__":
    main()
