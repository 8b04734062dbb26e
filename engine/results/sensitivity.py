"""Sensitivity and Monte Carlo hypothesis tests that need no extra sampling (pure numpy).

* ``break_even_priors``: prior robustness is analytic once log Z is known. For the leader L
  and an alternative j, give j the prior p and rescale every other prior proportionally;
  the ranking of L and j flips where p Z_j = pi_L (1 - p) / (1 - pi_j) Z_L, i.e. at
  p* = c B / (1 + c B) with B = Z_L / Z_j and c = pi_L / (1 - pi_j).
* ``coincidence_test``: is the damage time's closeness to the activity window explainable by
  chance? Under chance the true time is uniform over the observation period; the report adds
  the item's clock error, then its rounding. The statistic is the distance from the reported time
  to the window (0 inside); p = (1 + #{d_rep <= d_obs}) / (N + 1).
"""

from __future__ import annotations

import numpy as np

from engine.results.records import SCHEMA_VERSION, Sensitivity
from engine.results.records import tornado_of as tornado  # the reliability sweep as tornado bars


def break_even_priors(prior: dict[str, float], log_z: dict[str, float], leader: str) -> dict[str, dict]:
    """For each alternative: its Bayes factor against the leader and the prior that flips the ranking."""
    out = {}
    for alt in prior:
        if alt == leader:
            continue
        log_bf = log_z[leader] - log_z[alt]  # natural log of Z_L / Z_j
        c = prior[leader] / (1.0 - prior[alt])
        x = np.log(c) + log_bf  # log(c B)
        p_star = float(np.exp(x - np.logaddexp(0.0, x)))
        out[alt] = {"log10_bf_leader_vs_alt": float(log_bf / np.log(10)), "prior": prior[alt], "break_even_prior": p_star}
    return out


def coincidence_test(time: float, window: tuple[float, float], period: tuple[float, float], clock_sd: float,
                     rounding: float = 0.0, *, n: int = 20000, seed: int | np.random.SeedSequence = 0) -> dict:
    """Monte Carlo p-value of a damage time at least this close to the window under pure chance."""
    rng = np.random.default_rng(seed)
    lo, hi = window

    def distance(t: np.ndarray) -> np.ndarray:
        return np.maximum(0.0, np.maximum(lo - t, t - hi))

    rep = rng.uniform(*period, size=n) + clock_sd * rng.standard_normal(n)
    if rounding > 0:  # the reading rounded like the report (to the multiples of `rounding` through `time`)
        rep = time + rounding * np.round((rep - time) / rounding)
    d_obs = float(distance(np.asarray(time)))
    p = (1 + int(np.sum(distance(rep) <= d_obs))) / (n + 1)
    exact_inside = (hi - lo) / (period[1] - period[0])  # chance of landing in the window with no clock error
    return {"distance": d_obs, "p_value": p, "window_share_of_period": exact_inside, "n": n}


# ------------------------------------------------------------------ variants: ablation, reliability, waterfall
K_CONCENTRATION = 2000.0  # a Beta(q K, (1 - q) K) pins a reliability at q without changing the model's shape
ALARM_SHIFT = 0.3
TIE_SE = 2.0  # a leader change by less than this many MC standard errors of the margin is inconclusive


def margin_se(hypotheses: dict, a: str, b: str) -> float:
    """Monte Carlo s.e. of P(a) - P(b), by the delta method over the joint log evidences.

    With p_k = pi_k Z_k / sum_j pi_j Z_j and independent errors s_j of the log evidences,
    d(p_a - p_b)/d log Z_j = p_a [j = a] - p_b [j = b] - (p_a - p_b) p_j. The posteriors share
    their normaliser, so their errors are anticorrelated: with two hypotheses the margin is
    2 p_a - 1 and its error twice P(a)'s, not sqrt(2) times. Without stated log-evidence errors
    (an old record) the posteriors' own errors are combined as if independent."""
    names = list(hypotheses)
    post = np.array([hypotheses[h]["posterior"] for h in names], dtype=float)
    se = np.array([hypotheses[h].get("log_evidence_se", np.nan) for h in names], dtype=float)
    if not np.all(np.isfinite(se)):
        return float(np.hypot(hypotheses[a]["posterior_mcse"], hypotheses[b]["posterior_mcse"]))
    grad = -(post[names.index(a)] - post[names.index(b)]) * post
    grad[names.index(a)] += post[names.index(a)]
    grad[names.index(b)] -= post[names.index(b)]
    return float(np.sqrt(np.sum(grad**2 * se**2)))


def draws_factor(margin: float, se: float, cap: float = 100.0) -> float:
    """How many times the draws would bring the margin to TIE_SE standard errors (errors fall as
    1/sqrt(draws)), at most ``cap``."""
    return float(min(cap, max(1.0, np.ceil((TIE_SE * se / max(abs(margin), 1e-12)) ** 2))))


def plan_variants(case, *, quantiles: tuple[float, float] = (0.1, 0.9)) -> dict[str, dict]:  # noqa: ANN001
    """Sensitivity variants of a case: name -> {"kind", "label", "overrides"} (pm.Data values).

    * ``drop-<unit>``: leave one item or dependency group out (``use__<unit>`` = 0);
    * ``drop-<item>`` for each report inside a group: remove that report's source from the
      group (``inc__<unit>__<source>`` = 0) unless another report of the group has the same
      source, in which case nothing changes and the variant has no overrides;
    * ``rel-<source>-lo`` / ``-hi``: the source's reliability pinned at its prior's quantiles;
    * ``first-<k>``: only the first k units in case order (the evidence waterfall).
    """
    from scipy import stats

    from engine.model.build import unit_id

    units = case.units()
    out: dict[str, dict] = {}
    for _, items in units:
        uid = unit_id(items)
        out[f"drop-{uid}"] = {"kind": "ablation", "label": uid, "overrides": {f"use__{uid}": 0.0}}
        if len(items) > 1:
            for it in items:
                others = {o.source for o in items if o.id != it.id}
                ov = {} if it.source in others else {f"inc__{uid}__{it.source}": 0.0}
                out[f"drop-{it.id}"] = {"kind": "ablation-item", "label": f"{it.id} (in {uid})", "overrides": ov}
    used = sorted({it.source for it in case.items})
    for s in used:
        rel = case.sources[s].reliability
        if rel.kind != "beta":
            continue
        for tag, q in zip(("lo", "hi"), quantiles, strict=True):
            value = float(stats.beta.ppf(q, *rel.args))
            out[f"rel-{s}-{tag}"] = {"kind": "reliability", "label": s, "value": value,
                                      "overrides": {f"hp__reliability__{s}": [value * K_CONCENTRATION, (1 - value) * K_CONCENTRATION]}}
    ids = [unit_id(items) for _, items in units]
    for k in range(len(ids)):
        out[f"first-{k}"] = {"kind": "waterfall", "label": ", ".join(ids[:k]) or "(priors only)",
                             "overrides": {f"use__{u}": 0.0 for u in ids[k:]}}
    return out


def summarize(case, base: dict, variants: dict[str, dict], results: dict[str, dict], *,  # noqa: ANN001
              coincidence_seeds: dict | None = None) -> dict:
    """sensitivity.json: break-even priors, ablation with the single-leg alarm (and the
    inconclusive rows, ``ties``: leader changes within 2 MC standard errors of the margin
    (``margin_se``), which say to rerun with more draws; the shift alarm fires on them too), reliability
    sweep (by source, and as a tornado sorted by swing), waterfall and the timing coincidence
    tests, from the variants' attributions. ``coincidence_seeds``: per timing item, the seed of
    its coincidence test (``engine.run.seeds.coincidence_seed``; 0 for an item left out)."""
    leader = base["leader"]
    post = {h: v["posterior"] for h, v in base["hypotheses"].items()}
    prior = {h: v["prior"] for h, v in base["hypotheses"].items()}
    log_z = {h: v["log_evidence"]["pooled"] for h, v in base["hypotheses"].items()}

    def row(name: str) -> dict:
        res = results[name]
        p = res["hypotheses"][leader]["posterior"]
        return {"variant": name, "label": variants[name]["label"], "leader": res["leader"],
                "leader_posterior": p, "shift": p - post[leader], "mcse": res["hypotheses"][leader]["posterior_mcse"]}

    ablation = [row(n) for n, v in variants.items() if v["kind"].startswith("ablation")]
    alarms, ties = [], []
    for r in ablation:
        flipped = False
        if r["leader"] != leader:
            hyp = results[r["variant"]]["hypotheses"]
            new, old = hyp[r["leader"]], hyp[leader]
            margin, se = new["posterior"] - old["posterior"], margin_se(hyp, r["leader"], leader)
            r["margin"], r["margin_se"] = margin, se
            if margin <= TIE_SE * se:  # the flip is within Monte Carlo error: inconclusive, not calm
                more = draws_factor(margin, se)
                ties.append(f"inconclusive: dropping {r['label']} puts {r['leader']} level with {leader} within Monte Carlo "
                            f"error (P {new['posterior']:.3f} vs {old['posterior']:.3f}, margin {margin:.3f} ± {se:.3f}); "
                            f"rerun with about {more:.0f}x the draws to tell whether the leader changes")
            else:
                alarms.append(f"single-leg: dropping {r['label']} makes {r['leader']} the leader")
                flipped = True
        if not flipped and abs(r["shift"]) > ALARM_SHIFT:  # fires on inconclusive rows too
            alarms.append(f"single-leg: dropping {r['label']} moves P({leader}) by {r['shift']:+.2f}")
    sweep: dict[str, dict] = {}
    for n, v in variants.items():
        if v["kind"] == "reliability":
            sweep.setdefault(v["label"], {})[n.rsplit("-", 1)[1]] = {**row(n), "reliability": v["value"]}
    waterfall = [{"step": int(n.split("-")[1]), **row(n),
                  "posteriors": {h: results[n]["hypotheses"][h]["posterior"] for h in post}}
                 for n, v in variants.items() if v["kind"] == "waterfall"]
    waterfall.sort(key=lambda r: r["step"])
    waterfall.append({"step": len(waterfall), "variant": "base", "label": "all evidence", "leader": leader,
                      "leader_posterior": post[leader], "shift": 0.0, "posteriors": post})
    from engine.evidence import REGISTRY

    timing = {}
    for it in case.items:
        if (timed := REGISTRY[it.family].coincidence(it.observed)) is not None:  # a time against an activity window
            timing[it.id] = coincidence_test(*timed, seed=(coincidence_seeds or {}).get(it.id, 0))
    out = {"schema_version": SCHEMA_VERSION, "case": base["case"], "run": base["run"], "leader": leader,
           "break_even": break_even_priors(prior, log_z, leader), "ablation": ablation, "alarms": alarms, "ties": ties,
           "reliability": sweep, "tornado": tornado(sweep, post[leader]), "waterfall": waterfall, "coincidence": timing}
    return Sensitivity.from_json(out, source="sensitivity.json (as computed)").to_json()


FUNCTION_SET = {"bridge": "log density", "reweight": "log density"}  # task kinds that share one compiled function set


def compile_tally(summaries: list[dict]) -> dict:
    """What the tasks' summaries say about compiling: per worker process, the tasks it computed
    and, per model structure and function set (a task kind; bridge sampling and reweighting
    share the log density), how many of those tasks compiled and how many function sets they
    compiled (compile once per worker: at most one compiling task each)."""
    out: dict[str, dict] = {}
    for s in summaries:
        if s.get("skipped") or not s.get("process"):
            continue
        proc = out.setdefault(s["process"], {"tasks": 0, "structures": {}})
        proc["tasks"] += 1
        if "structure" not in s:
            continue
        kind = proc["structures"].setdefault(s["structure"], {}).setdefault(
            FUNCTION_SET.get(s["kind"], s["kind"]), {"tasks": 0, "compiling_tasks": 0, "function_sets": 0})
        kind["tasks"] += 1
        kind["compiling_tasks"] += int(bool(s.get("compiled")))
        kind["function_sets"] += int(s.get("compiles", 0))
    return out
