"""How often the engine's verdicts are wrong: false alarms where nothing is wrong, detections where something is.

    PYTHONPATH=. python benchmarks/verdicts.py            # full run (about 10 min of CPU)
    PYTHONPATH=. python benchmarks/verdicts.py --quick    # fewer replicates, no sampler (about 1 min)

Every verdict is decided by the engine's own function, fed with inputs whose truth is known and
generated here in plain numpy (the truth never comes from engine code):

* **sensitivity** (``engine.results.sensitivity.summarize``: the single-leg alarm and the
  "inconclusive" rows): two or three hypotheses whose per-unit log likelihoods are fixed numbers,
  so every ablation's exact posterior is known; each run's log evidences are the exact ones plus
  normal Monte Carlo noise of the stated error (the posteriors and their errors follow by
  ``engine.inference.estimate.attribute``, as in a run). Nothing wrong: no unit's removal changes
  the leader or moves it by more than 0.3. Something wrong: a removal flips the leader (clearly,
  or by a margin within Monte Carlo error) or moves P(leader) from 0.90 to 0.47 (the issue's case).
* **estimator agreement** (``engine.inference.estimate.combine`` with the engine's defaults: agree
  when the spread is <= 0.25 nat or <= 4 errors, SMC's error scaled for its chain count):
  (a) simulated: each SMC chain's Z estimate unbiased and log-normal (log Z_c ~ N(-s^2/2, s)),
  pooled by ``smc_log_evidence``, a bridge estimate N(0, 0.05) stating its error exactly;
  (b) the real samplers (``engine.calibration.incident.fixed_case_estimates``: NUTS, SMC and bridge
  sampling at the run defaults) on tests/cases/oracle.yaml, whose exact log evidence is
  tests/inference/test_oracle.py's scipy closed form. Something wrong: SMC's chains all shifted by
  -1 or -3 nat (the direction SMC errs on informative models).
* **calibration gate** (``engine.calibration.calibrate.summarize`` + ``verdict``): a 4-hypothesis
  conjugate model (three normal readings per incident), truth drawn from the prior, exact posterior
  in closed form. Nothing wrong: the forecaster states the exact posterior (also with 0.05 nat of
  log-evidence noise). Something wrong: overconfident tempering (likelihood squared) and a sign
  error (one reading's log likelihood with the wrong sign). At N = 200 the CLI's gate
  (`incident calibrate` defaults), at N = 16 the quick test's criteria
  (tests/calibration/test_calibrate.py ``quick_criteria``) and the ECE gate alone.
* **convergence** (``engine.results.diagnostics.nuts_diagnostics`` + ``verdict``): 4 chains x
  1000 draws of 3 parameters from AR(1) chains with a N(0, 1) stationary law (nothing wrong) or
  with one chain in the wrong place (shifted by 1 or 3 s.d.) or stuck (autocorrelation 0.999).

Rates come with the replicate count and a Clopper-Pearson 95 % interval. Seeds are fixed
(``--seed``); each scenario has its own stream, so a scenario's numbers do not depend on the others.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Row:
    verdict: str  # what the engine says when it fires
    scenario: str
    wrong: bool  # something is wrong in the simulated truth (the verdict should fire)
    fired: int
    n: int
    bound: float | None = None  # nothing wrong: false-alarm rate at most this; something wrong: detection at least this

    @property
    def rate(self) -> float:
        return self.fired / self.n

    def interval(self) -> tuple[float, float]:
        ci = stats.binomtest(self.fired, self.n).proportion_ci(0.95, method="exact")
        return float(ci.low), float(ci.high)


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=key))


def _softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# ------------------------------------------------------------------ sensitivity
# name, per-unit log likelihoods (units x hypotheses), priors, log-evidence s.e. of each run, something wrong?
SENSITIVITY = [
    ("robust leader: P(a) 0.90, every drop keeps it in 0.80-0.87", [[0.8, 0], [0.6, 0], [0.5, 0], [0.3, 0]], None, 0.085, False),
    ("three hypotheses: P(a) 0.58, drops move it by <= 0.13, no flip",
     [[0.2537, -0.2776, -0.2578], [0.1, 0, 0.05], [0, 0.1, 0], [0.6657, 0.3555, 0]], None, 0.085, False),
    ("near tie kept: P(a) 0.70 -> 0.52 vs 0.48 when one unit is dropped", [[0.767, 0], [0.05, 0], [0.03, 0]], None, 0.085, False),
    ("clear flip: dropping a unit takes P(a) 0.90 -> 0.25", [[3.3, 0], [-0.5, 0], [-0.3, 0], [-0.3, 0]], None, 0.085, True),
    ("the issue's case: P(a) 0.90 -> 0.47 (MC error 0.03)", [[2.317, 0], [-0.04, 0], [-0.04, 0], [-0.04, 0]], None, 0.085, True),
    ("flip within MC error: 0.50/0.30/0.20 -> 0.36/0.44/0.20 (log Z s.e. 0.085)",
     [[0.3285, -0.3830, 0], [0.5878, 0.7885, 0]], None, 0.085, True),
    ("the same flip with 18x the draws (log Z s.e. 0.02)", [[0.3285, -0.3830, 0], [0.5878, 0.7885, 0]], None, 0.02, True),
]


def _sensitivity_truth(loglik: np.ndarray, prior: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact posteriors of the base (all units) and of each single-unit removal (plain numpy)."""
    base = _softmax(np.log(prior) + loglik.sum(axis=0))
    drops = np.array([_softmax(np.log(prior) + loglik.sum(axis=0) - loglik[u]) for u in range(len(loglik))])
    return base, drops


def _attribution(names: list[str], prior: np.ndarray, log_z: np.ndarray, se: float) -> dict:
    from engine.inference.estimate import attribute

    post, mcse = attribute(prior, log_z, np.full(len(names), se))
    return {"leader": names[int(np.argmax(post))],
            "hypotheses": {h: {"prior": float(prior[i]), "posterior": float(post[i]), "posterior_mcse": float(mcse[i]),
                               "log_evidence": {"pooled": float(log_z[i])}, "log_evidence_se": se}
                           for i, h in enumerate(names)}}


def sensitivity_rows(reps: int, seed: int) -> list[Row]:
    from engine.results.sensitivity import ALARM_SHIFT, summarize

    rows = []
    for s, (name, units, prior, se, wrong) in enumerate(SENSITIVITY):
        loglik = np.asarray(units, dtype=float)
        k = loglik.shape[1]
        prior = np.full(k, 1.0 / k) if prior is None else np.asarray(prior, float)
        names = [chr(ord("a") + j) for j in range(k)]
        base, drops = _sensitivity_truth(loglik, prior)
        lead = int(np.argmax(base))
        flips = drops.argmax(axis=1) != lead
        far = np.abs(drops[:, lead] - base[lead]) > ALARM_SHIFT
        assert wrong == bool(np.any(flips | far)), (name, base, drops)  # the design says what it claims
        rng = _rng(seed, 1, s)
        alarm = tie = either = 0
        variants = {f"drop-u{u}": {"kind": "ablation", "label": f"u{u}"} for u in range(len(loglik))}
        exact_base = loglik.sum(axis=0)
        used = 0
        for _ in range(reps):
            b = _attribution(names, prior, exact_base + se * rng.standard_normal(k), se)
            results = {f"drop-u{u}": _attribution(names, prior, exact_base - loglik[u] + se * rng.standard_normal(k), se)
                       for u in range(len(loglik))}
            if b["leader"] != names[lead]:  # the base run itself misranked: a different question; counted as not fired
                continue
            used += 1
            out = summarize(SimpleNamespace(items=[]), {**b, "case": "sim", "run": "sim"}, variants, results)
            alarm += bool(out["alarms"])
            tie += bool(out["ties"])
            either += bool(out["alarms"] or out["ties"])
        if wrong:
            rows += [Row("single-leg alarm", name, True, alarm, used),
                     Row("alarm or inconclusive", name, True, either, used, 0.9)]
        else:
            rows += [Row("single-leg alarm", name, False, alarm, used, 0.05),
                     Row("inconclusive (rerun)", name, False, tie, used)]
    return rows


# ------------------------------------------------------------------ estimator agreement
def agreement_rows(reps: int, seed: int) -> list[Row]:
    """Unbiased estimators with known error laws; then SMC shifted by a known bias."""
    from engine.inference.estimate import LogEvidence, combine, smc_log_evidence

    rows = []
    for i, (chains, s) in enumerate(((2, 0.3), (4, 0.3), (2, 1.0), (4, 1.0))):
        rng = _rng(seed, 2, i)
        fired = {0.0: 0, 1.0: 0, 3.0: 0}
        for _ in range(reps):
            lz = rng.normal(-s * s / 2, s, chains)  # exp(lz) has mean 1: each chain's Z estimate is unbiased (log Z = 0)
            bridge = LogEvidence("bridge", float(rng.normal(0.0, 0.05)), 0.05, {})
            for bias in fired:
                fired[bias] += not combine([smc_log_evidence(lz - bias), bridge]).agree
        label = f"simulated: {chains} SMC chains (chain log-Z s.d. {s}), bridge s.e. 0.05"
        rows.append(Row("estimators disagree", label, False, fired[0.0], reps, 0.05))
        for bias in (1.0, 3.0):
            want = {(2, 0.3): (None, 0.3), (4, 0.3): (0.4, 0.9), (2, 1.0): (None, None), (4, 1.0): (None, 0.5)}[(chains, s)]
            rows.append(Row("estimators disagree", f"{label}; SMC biased by -{bias:g} nat", True, fired[bias], reps,
                            want[0] if bias == 1.0 else want[1]))
    return rows


def sampler_agreement_rows(reps: int, seed: int) -> tuple[list[Row], dict]:
    """The engine's samplers on the oracle case (exact log evidence known): 4 SMC chains, judged on 2 and on 4."""
    import logging
    import warnings

    sys.path.insert(0, str(ROOT / "tests"))
    from inference.test_oracle import oracle_truth

    from engine.calibration.incident import CalibrationSettings, fixed_case_estimates
    from engine.inference.estimate import LogEvidence, combine, smc_log_evidence
    from engine.spec.case import load_case

    logging.getLogger("pymc").setLevel(logging.ERROR)
    case = load_case(ROOT / "tests" / "cases" / "oracle.yaml")
    truth = oracle_truth()
    settings = CalibrationSettings(seed=seed, n=1, draws=1000, tune=1000, chains=4, smc_draws=1000, smc_chains=4)
    fired = {(c, b): 0 for c in (2, 4) for b in (0.0, 1.0, 3.0)}
    errors = {"smc": [], "bridge": []}
    n = 0
    t0 = time.perf_counter()
    for r in range(reps):
        for hid in case.hypotheses:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                est = fixed_case_estimates(case, hid, r, settings)
            n += 1
            bridge = LogEvidence("bridge", est["bridge"], est["bridge_se"], {})
            errors["bridge"].append((est["bridge"] - truth[hid]) / est["bridge_se"])
            errors["smc"].append(est["smc"] - truth[hid])
            for c, b in fired:
                fired[(c, b)] += not combine([smc_log_evidence(np.asarray(est["smc_chains"][:c]) - b), bridge]).agree
    rows = []
    for c in (2, 4):
        label = f"engine samplers on oracle.yaml ({reps} runs x 3 hypotheses), {c} SMC chains"
        rows.append(Row("estimators disagree", label, False, fired[(c, 0.0)], n, 0.05))
        rows += [Row("estimators disagree", f"{label}; SMC biased by -{b:g} nat", True, fired[(c, b)], n, 0.9) for b in (1.0, 3.0)]
    info = {"smc_abs_error_max": float(np.max(np.abs(errors["smc"]))), "bridge_beyond_2se": float(np.mean(np.abs(errors["bridge"]) > 2)),
            "seconds": round(time.perf_counter() - t0, 1)}
    return rows, info


# ------------------------------------------------------------------ calibration gate
HIDS = ["h1", "h2", "h3", "h4"]
PRIOR = np.array([0.4, 0.3, 0.2, 0.1])
MEANS = np.array([[0.0, 0.0, 0.0], [1.0, 0.5, 0.0], [0.0, 1.5, 1.0], [2.0, 1.0, 2.0]])  # hypothesis x reading
QUICK_CRITERIA = dict(brier_gap_max=0.02, brier_excess_max=0.002, ece_expected_max=0.02)  # + ece_max: the noise floor's q95
FORECASTERS = {  # name -> (log likelihood of each reading (incidents, readings, hypotheses) -> stated log posterior), wrong?
    "exact posterior": (lambda ll, rng: ll.sum(axis=1), False),
    "exact + 0.05 nat MC noise": (lambda ll, rng: ll.sum(axis=1) + rng.normal(0, 0.05, ll[:, 0].shape), False),
    "overconfident (likelihood squared)": (lambda ll, rng: 2 * ll.sum(axis=1), True),
    "sign error in one reading": (lambda ll, rng: ll.sum(axis=1) - 2 * ll[:, 0], True),
}


def _calibration_records(n: int, rng: np.random.Generator, forecaster) -> list[dict]:  # noqa: ANN001
    """``n`` incidents of the conjugate model and a forecaster's stated posteriors, as calibration records."""
    truth = rng.choice(len(HIDS), size=n, p=PRIOR)
    y = MEANS[truth] + rng.standard_normal((n, MEANS.shape[1]))
    ll = -0.5 * (y[:, :, None] - MEANS.T[None]) ** 2 - 0.5 * np.log(2 * np.pi)  # (incidents, readings, hypotheses)
    exact_lz = ll.sum(axis=1)
    stated_lz = forecaster(ll, rng)
    exact_p, stated_p = _softmax(np.log(PRIOR) + exact_lz), _softmax(np.log(PRIOR) + stated_lz)
    recs = []
    for i in range(n):
        lz = {h: {"smc": float(stated_lz[i, j]), "smc_se": 0.05, "bridge": float(stated_lz[i, j]), "bridge_se": 0.05,
                  "pooled": float(stated_lz[i, j]), "pooled_se": 0.05, "agree": True, "z": 0.0} for j, h in enumerate(HIDS)}
        recs.append({"index": i, "hypotheses": HIDS, "truth": HIDS[truth[i]], "prior": PRIOR.tolist(), "seconds": 0.0,
                     "estimated": {"engine": {"posterior": stated_p[i].tolist()}, "log_z": lz, "sbc": {}, "sbc_draws": 99},
                     "exact": {"log_z": exact_lz[i].tolist(), "posterior": exact_p[i].tolist(), "method": "closed form"}})
    return recs


def calibration_rows(reps: int, seed: int, sizes: tuple[int, ...] = (200, 16), calm_reps: int | None = None) -> list[Row]:
    """``reps`` calibrations per forecaster and N; ``calm_reps`` (default ``reps``) for the forecasters
    with nothing wrong, whose false-fail rate near 5 % needs more replicates to be told from 5 %."""
    from engine.calibration.calibrate import summarize, verdict

    rows = []
    for n in sizes:
        for f, (name, (forecaster, wrong)) in enumerate(FORECASTERS.items()):
            rng = _rng(seed, 3, n, f)
            counts = {"gate": 0, "ece": 0, "fixed": 0}
            m = reps if wrong or calm_reps is None else calm_reps
            for _ in range(m):
                summary = summarize(_calibration_records(n, rng, forecaster), seed=int(rng.integers(2**31)))
                if n >= 100:  # `incident calibrate`'s defaults
                    counts["gate"] += bool(verdict(summary))
                    counts["fixed"] += bool(verdict(summary, ece_max=0.03))
                else:  # the quick test's criteria
                    counts["gate"] += bool(verdict(summary, ece_max=summary["ece_noise_floor"]["q95"], **QUICK_CRITERIA))
                counts["ece"] += not summary["scores"]["engine"]["ece"] <= summary["ece_noise_floor"]["q95"]
            label = f"N = {n}: {name}"
            gate = "calibration gate (incident calibrate defaults)" if n >= 100 else "calibration gate (quick test criteria)"
            if wrong:
                rows.append(Row(gate, label, True, counts["gate"], m, 0.9))
                rows.append(Row("ECE gate alone (noise floor q95)", label, True, counts["ece"], m))
            else:
                rows.append(Row(gate, label, False, counts["gate"], m, 0.05))
                if n >= 100:
                    rows.append(Row("old fixed gate ECE <= 0.03 (for comparison)", label, False, counts["fixed"], m))
    return rows


# ------------------------------------------------------------------ convergence
CONVERGENCE = [  # name, autocorrelation, shift of chain 0 (s.d.), autocorrelation of chain 0, something wrong?
    ("4 chains mixing well (AR 0.5)", 0.5, 0.0, 0.5, False),
    ("4 chains mixing slowly (AR 0.8)", 0.8, 0.0, 0.8, False),
    ("one chain of 4 shifted by 1 s.d. (another mode)", 0.5, 1.0, 0.5, True),
    ("one chain of 4 shifted by 3 s.d. (another mode)", 0.5, 3.0, 0.5, True),
    ("one chain of 4 stuck (AR 0.999)", 0.5, 0.0, 0.999, True),
]


def _ar1(rng: np.random.Generator, rho: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Stationary AR(1) chains with N(0, 1) marginals; ``rho`` per chain (axis 0)."""
    x = np.empty(shape)
    rho = rho.reshape(-1, *([1] * (len(shape) - 2)))
    x[:, 0] = rng.standard_normal((shape[0], *shape[2:]))
    noise = rng.standard_normal(shape) * np.sqrt(1 - rho**2)[:, None]
    for t in range(1, shape[1]):
        x[:, t] = rho * x[:, t - 1] + noise[:, t]
    return x


def convergence_rows(reps: int, seed: int, chains: int = 4, draws: int = 1000, dim: int = 3) -> list[Row]:
    import arviz as az

    from engine.results.diagnostics import nuts_diagnostics, verdict

    rows = []
    for s, (name, rho, shift, rho0, wrong) in enumerate(CONVERGENCE):
        rng = _rng(seed, 4, s)
        fail = flag = 0
        for _ in range(reps):
            x = _ar1(rng, np.array([rho0] + [rho] * (chains - 1)), (chains, draws, dim))
            x[0, :, 0] += shift  # the wrong chain is wrong in the first parameter only
            idata = az.from_dict(posterior={f"p{j}": x[:, :, j] for j in range(dim)},
                                 sample_stats={"diverging": np.zeros((chains, draws), dtype=bool)})
            d = nuts_diagnostics(idata)
            status, _, _ = verdict({"h": {**d, "estimators": {"agree": True, "spread": 0.0}}}, {"h": 0.0}, [])
            fail += status == "fail"
            flag += status != "pass"
        if wrong:
            rows += [Row("convergence: fail", name, True, fail, reps, 0.9 if shift != 1.0 else None),
                     Row("convergence: fail or warn", name, True, flag, reps, 0.9)]
        else:
            rows += [Row("convergence: fail", name, False, fail, reps, 0.05),
                     Row("convergence: fail or warn", name, False, flag, reps, 0.05 if rho <= 0.5 else None)]
    return rows


# ------------------------------------------------------------------ table
def table(rows: list[Row]) -> str:
    lines = ["| verdict | simulated truth | something wrong? | fired / replicates | rate | 95 % interval | bound |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r.interval()
        bound = "" if r.bound is None else (f"detection >= {r.bound:.2f}" if r.wrong else f"false alarm <= {r.bound:.2f}") + \
            ("" if meets(r) else " **beyond**")
        lines.append(f"| {r.verdict} | {r.scenario} | {'yes' if r.wrong else 'no'} | {r.fired} / {r.n} | {r.rate:.3f} | "
                     f"[{lo:.3f}, {hi:.3f}] | {bound} |")
    return "\n".join(lines)


def meets(r: Row) -> bool:
    """A row is consistent with its bound: its 95 % interval reaches the bound's side."""
    if r.bound is None:
        return True
    lo, hi = r.interval()
    return hi >= r.bound if r.wrong else lo <= r.bound


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="fewer replicates and no sampler runs")
    p.add_argument("--seed", type=int, default=19)
    p.add_argument("--sampler-reps", type=int, default=None, help="oracle-case sampler runs (default 20; 0 with --quick)")
    p.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    a = p.parse_args(argv)
    reps = dict(sensitivity=300, agreement=400, calibration=40, calibration_calm=40, convergence=60) if a.quick else \
        dict(sensitivity=2000, agreement=4000, calibration=250, calibration_calm=1000, convergence=300)
    sampler = a.sampler_reps if a.sampler_reps is not None else (0 if a.quick else 20)
    print(f"$ python benchmarks/verdicts.py {' '.join(sys.argv[1:] if argv is None else argv)}")
    print(f"replicates per scenario: {reps}, sampler runs of the oracle case: {sampler}, seed {a.seed}")
    rows, timing = [], {}
    for name, fn in (("sensitivity", lambda: sensitivity_rows(reps["sensitivity"], a.seed)),
                     ("agreement", lambda: agreement_rows(reps["agreement"], a.seed)),
                     ("calibration", lambda: calibration_rows(reps["calibration"], a.seed, calm_reps=reps["calibration_calm"])),
                     ("convergence", lambda: convergence_rows(reps["convergence"], a.seed))):
        t0 = time.perf_counter()
        rows += fn()
        timing[name] = round(time.perf_counter() - t0, 1)
        print(f"  {name}: {timing[name]} s", file=sys.stderr, flush=True)
    info = {}
    if sampler:
        t0 = time.perf_counter()
        more, info = sampler_agreement_rows(sampler, a.seed)
        rows += more
        timing["sampler agreement"] = round(time.perf_counter() - t0, 1)
    print(table(rows))
    if info:
        print(f"oracle-case samplers: SMC |error| at most {info['smc_abs_error_max']:.4f} nat; bridge beyond 2 stated s.e. "
              f"{info['bridge_beyond_2se']:.1%} (nominal 4.6 %)")
    bad = [r for r in rows if not meets(r)]
    print(f"seconds per part: {timing}")
    print("every bounded row's 95 % interval reaches its bound" if not bad else f"{len(bad)} row(s) beyond their bounds: "
          + "; ".join(f"{r.verdict} / {r.scenario}: {r.rate:.3f}" for r in bad))
    if a.json:
        a.json.write_text(json.dumps({"rows": [asdict(r) | {"rate": r.rate, "ci95": r.interval()} for r in rows],
                                      "replicates": reps, "sampler_runs": sampler, "seed": a.seed, "seconds": timing}, indent=1))
    return 0 if not bad else 1


if __name__ == "__main__":
    sys.exit(main())
