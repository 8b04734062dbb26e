"""Calibration on simulated incidents: does the engine's "80 %" come true 80 % of the time?

``run_calibration(template, settings)`` simulates ``n`` incidents from a case template's prior
predictive (``engine.calibration.simulate``), attributes each one with the engine's own estimators
(SMC and bridge sampling per hypothesis, pooled as in ``engine.inference.estimate``) as one task
per incident (``engine.calibration.incident``), and ``summarize`` scores the stated probabilities against the simulated truth
(``engine.calibration.metrics``): reliability table, ECE and Brier (each with its noise floor: what a
calibrated forecaster stating the same probabilities scores at this N), log scores; next to them the
exact posterior's scores where it exists (``engine.inference.closedform``, or the quadrature over
shared reliabilities and assertion rates of ``engine.calibration.reference``),
SBC ranks of the true hypothesis's parameters, the estimators' errors against the exact log
evidence and the rate at which the two estimators disagree beyond their stated errors.

Seeds (``engine.run.seeds``): incident ``i`` simulates with ``SeedSequence(seed, spawn_key=(i,))``
and its samplers use ``spawn_key=(i, 1 + hypothesis index, estimator, chain)``, so results do not
depend on the number of workers or on which worker ran what. Each worker compiles the template's
model once (``engine.run.compiled.Compiled``, the same samplers as a case run) and resets its
``pm.Data`` per incident and hypothesis. Incidents run as tasks of the same executor as case runs
(``engine.run.executor.Executor``, from ``ExecutionOptions``).

``estimator`` selects what is scored: ``engine`` (the real thing) or a negative control that
must fail the test (``engine.calibration.controls``): ``sign-error`` (one unit's log likelihood enters with
the wrong sign) or ``mixture`` (the marginalised mixture of all hypotheses sampled by NUTS).
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.calibration.incident import (  # noqa: F401 - CalibrationSettings and the worker side, as before the split
    ESTIMATORS,
    CalibrationSettings,
    IncidentWork,
    fixed_case_estimates,
    hypothesis_estimates,
    run_incident,
)
from engine.errors import RunError
from engine.run.seeds import ece_null_seed
from engine.run.settings import ExecutionOptions
from engine.spec.case import Case


# ------------------------------------------------------------------ many incidents (client side)
@dataclass
class CalibrationRun:
    template: str
    settings: CalibrationSettings
    records: list[dict]
    seconds: float  # wall time of this invocation
    backend: str
    folder: str | None = None
    computed: int = 0  # incidents computed by this invocation (the others were read back from ``folder``)


def _record_path(folder: Path, index: int) -> Path:
    return folder / "incidents" / f"{index:05d}.json"


def _settings_key(template: Case, settings: CalibrationSettings) -> str:
    import hashlib

    blob = json.dumps({"template": template.digest, **asdict(settings), "n": None}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run_calibration(
    template: Case,
    settings: CalibrationSettings,
    *,
    options: ExecutionOptions | None = None,
    out: str | Path | None = None,
    on_done: Callable[[dict, int, int], None] | None = None,
) -> CalibrationRun:
    """Simulate and attribute ``settings.n`` incidents, one task each, where ``options`` say
    (default: a local cluster of 2 worker processes; ``ExecutionOptions(workers=0)``: in this process).

    With ``out``, each incident's record is written to ``out/incidents/<i>.json`` as it
    finishes, and records already there (same template and settings) are reused: an
    interrupted calibration continues where it stopped.
    """
    from engine.calibration.simulate import check_design
    from engine.run.cluster import finish_closing
    from engine.run.compiled import ensure_compiledir
    from engine.run.executor import Execution, Executor
    from engine.run.store import read_json, write_json

    check_design(template)
    executor = Executor(options)
    ensure_compiledir()
    folder = Path(out) if out is not None else None
    key = _settings_key(template, settings)
    records: dict[int, dict] = {}
    if folder is not None:
        write_json(folder / "settings.json", {"template": template.path, "template_sha256": template.digest, "key": key,
                                              **asdict(settings), "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds")})
        for i in range(settings.n):
            p = _record_path(folder, i)
            if p.exists():
                try:
                    rec = read_json(p)
                except RunError:
                    continue
                if rec.get("key") == key:
                    records[i] = rec
    todo = [i for i in range(settings.n) if i not in records]
    t0 = time.perf_counter()

    def finished(rec: dict, done: int, total: int) -> None:
        if rec.get("skipped"):  # the task loop's notice of the incidents already complete (read back above)
            return
        rec["key"] = key
        records[rec["index"]] = rec
        if folder is not None:
            write_json(_record_path(folder, rec["index"]), rec)
        if on_done:
            on_done(rec, len(records), settings.n)

    if todo:
        hint = f"continue with the same incident calibrate command (--run-id {folder.name})" if folder is not None else ""
        executor.run(todo, work=IncidentWork(template, settings), name=lambda i: f"incident-{key}-{i}", execution=Execution(),
                     on_done=finished, offset=len(records), total=settings.n, resume_hint=hint)
    finish_closing()  # the local cluster shut down while the records were ordered
    ordered = [records[i] for i in range(settings.n)]
    return CalibrationRun(template.path, settings, ordered, time.perf_counter() - t0, executor.describe(),
                          str(folder) if folder is not None else None, len(todo))


# ------------------------------------------------------------------ scores
def _arrays(records: list[dict], forecaster: str) -> tuple[np.ndarray, np.ndarray]:
    hids = records[0]["hypotheses"]
    truth = np.array([hids.index(r["truth"]) for r in records])
    if forecaster == "exact":
        prob = np.array([r["exact"]["posterior"] for r in records])
    else:
        prob = np.array([r["estimated"][forecaster]["posterior"] for r in records])
    return prob, truth


def score(prob: np.ndarray, truth: np.ndarray, *, n_bins: int = 10) -> dict:
    """ECE (class-wise equal-width, equal-mass; top-label), Brier and log score, and the reliability table."""
    from engine.calibration.metrics import brier, ece, log_score, reliability_table

    table = reliability_table(prob, truth, n_bins=n_bins)
    return {
        "ece": ece(prob, truth, n_bins=n_bins),
        "ece_equal_mass": ece(prob, truth, n_bins=n_bins, binning="equal-mass"),
        "ece_top_label": ece(prob, truth, n_bins=n_bins, kind="top-label"),
        "brier": brier(prob, truth),
        "log_score": log_score(prob, truth),
        "accuracy": float(np.mean(prob.argmax(axis=1) == truth)),
        "reliability": {k: np.asarray(v).tolist() for k, v in table.items()},
    }


def summarize(run: CalibrationRun | list[dict], *, n_bins: int = 10, seed: int | None = None) -> dict:
    """Every number the calibration reports, as JSON-able data (see the module docstring).

    The ECE noise floor simulates calibrated forecasts seeded by ``engine.run.seeds.ece_null_seed``
    of ``seed`` (default: the calibration's own seed; 0 for bare records)."""
    from engine.calibration.metrics import brier_each, brier_excess, calibrated_null, ece, sbc_uniformity

    records = run.records if isinstance(run, CalibrationRun) else run
    hids = records[0]["hypotheses"]
    forecasters = [f for f in ("engine", "smc", "bridge", "mixture") if f in records[0]["estimated"]]
    out: dict[str, Any] = {"n": len(records), "hypotheses": hids,
                           "truth_counts": {h: sum(r["truth"] == h for r in records) for h in hids}}
    if isinstance(run, CalibrationRun):
        out.update(template=run.template, settings=asdict(run.settings), seconds=round(run.seconds, 1), backend=run.backend,
                   computed=run.computed)
    out["scores"] = {f: score(*_arrays(records, f), n_bins=n_bins) for f in forecasters}
    main = "engine" if "engine" in forecasters else forecasters[0]
    prob, truth = _arrays(records, main)
    if seed is None:
        seed = run.settings.seed if isinstance(run, CalibrationRun) else 0
    null = calibrated_null(prob, rng=np.random.default_rng(ece_null_seed(seed)), reps=1000, n_bins=n_bins)
    out["ece_noise_floor"] = {"mean": float(null["ece"].mean()), "q95": float(np.quantile(null["ece"], 0.95))}
    out["brier_noise_floor"] = {"mean": float(null["brier"].mean()), "q025": float(np.quantile(null["brier"], 0.025)),
                                "q975": float(np.quantile(null["brier"], 0.975))}
    attempts = [r.get("attempts", 1) for r in records]
    if max(attempts) > 1:
        out["acceptance"] = len(records) / float(np.sum(attempts))  # incidents whose designed events all happened
    if all("exact" in r for r in records):
        ex, _ = _arrays(records, "exact")
        out["scores"]["exact"] = score(ex, truth, n_bins=n_bins)
        out["exact_method"] = sorted({r["exact"].get("method", "closed form") for r in records})
        diff = brier_each(prob, truth) - brier_each(ex, truth)
        err = np.abs(prob - ex)
        out["versus_exact"] = {
            "forecaster": main,
            "brier_difference": float(diff.mean()), "brier_difference_se": float(diff.std(ddof=1) / np.sqrt(len(diff))),
            "brier_excess_expected": brier_excess(prob, ex),
            "ece_expected": ece(prob, ex, n_bins=n_bins),
            "posterior_abs_error_mean": float(err.mean()), "posterior_abs_error_max": float(err.max()),
        }
        if main == "engine":
            out["log_evidence_errors"] = _log_z_errors(records)
    if main == "engine":
        out["disagreement"] = _disagreement(records)
        out["sbc"] = _sbc(records, sbc_uniformity)
    out["seconds_per_incident"] = float(np.mean([r["seconds"] for r in records]))
    return out


def _log_z_errors(records: list[dict]) -> dict:
    """Each estimator's error against the exact log evidence, over every incident and hypothesis."""
    out = {}
    for est in ("smc", "bridge", "pooled"):
        errs, zs = [], []
        for r in records:
            for j, h in enumerate(r["hypotheses"]):
                e = r["estimated"]["log_z"][h]
                errs.append(e[est] - r["exact"]["log_z"][j])
                se = e[f"{est}_se"]
                zs.append(abs(errs[-1]) / se if se and np.isfinite(se) and se > 0 else np.inf)
        a = np.abs(errs)
        out[est] = {"n": len(errs), "median_abs": float(np.median(a)), "q90_abs": float(np.quantile(a, 0.9)),
                    "max_abs": float(a.max()), "mean": float(np.mean(errs)),
                    "beyond_2se_rate": float(np.mean(np.asarray(zs) > 2))}
    return out


def _disagreement(records: list[dict]) -> dict:
    """How often SMC and bridge sampling disagree beyond their stated errors."""
    z = np.array([r["estimated"]["log_z"][h]["z"] for r in records for h in r["hypotheses"]])
    agree = np.array([r["estimated"]["log_z"][h]["agree"] for r in records for h in r["hypotheses"]])
    return {"n": int(z.size), "beyond_2se_rate": float(np.mean(z > 2)), "beyond_4se_rate": float(np.mean(z > 4)),
            "engine_flag_rate": float(np.mean(~agree))}


def _sbc(records: list[dict], uniformity) -> dict:  # noqa: ANN001
    """Rank histograms and uniformity tests per (true hypothesis, parameter)."""
    ranks: dict[str, list[int]] = {}
    n_draws = 0
    for r in records:
        n_draws = r["estimated"].get("sbc_draws", n_draws)
        for name, vals in r["estimated"].get("sbc", {}).items():
            ranks.setdefault(f"{r['truth']}:{name}", []).extend(vals)
    return {name: {**uniformity(np.array(vals), n_draws, n_bins=5), "ranks": vals} for name, vals in sorted(ranks.items())}


def format_summary(summary: dict) -> str:
    """A plain-text report of ``summarize``'s numbers."""
    lines = [f"calibration: {summary['n']} simulated incidents"
             + (f" from {summary['template']}" if "template" in summary else "")]
    if "seconds" in summary:
        lines.append(f"wall time {summary['seconds']:.0f} s ({summary['backend']}) for {summary['computed']} incidents computed now "
                     f"({summary['n'] - summary['computed']} read back); {summary['seconds_per_incident']:.1f} s per incident per worker")
    lines.append("truth: " + ", ".join(f"{h} {n}" for h, n in summary["truth_counts"].items()))
    lines.append(f"{'forecaster':<10} {'ECE':>7} {'ECE(mass)':>9} {'ECE(top)':>9} {'Brier':>7} {'log score':>9} {'accuracy':>8}")
    for f, s in summary["scores"].items():
        lines.append(f"{f:<10} {s['ece']:7.4f} {s['ece_equal_mass']:9.4f} {s['ece_top_label']:9.4f} {s['brier']:7.4f} "
                     f"{s['log_score']:9.4f} {s['accuracy']:8.3f}")
    if "acceptance" in summary:
        lines.append(f"incidents drawn until every designed claim was asserted and elicited fact seen: acceptance {summary['acceptance']:.4f}")
    if "exact_method" in summary:
        lines.append(f"exact posterior by {' and '.join(summary['exact_method'])}")
    nf = summary["ece_noise_floor"]
    lines.append(f"ECE noise floor of a calibrated forecaster at this N: mean {nf['mean']:.4f}, 95% {nf['q95']:.4f}")
    if "brier_noise_floor" in summary:
        bf = summary["brier_noise_floor"]
        lines.append(f"Brier of a calibrated forecaster stating these probabilities at this N: mean {bf['mean']:.4f}, "
                     f"95% range [{bf['q025']:.4f}, {bf['q975']:.4f}]")
    if "versus_exact" in summary:
        v = summary["versus_exact"]
        lines.append(f"{v['forecaster']} - exact: Brier {v['brier_difference']:+.4f} ± {v['brier_difference_se']:.4f} "
                     f"(expected excess E|P - P_exact|^2 {v['brier_excess_expected']:.5f}), "
                     f"|P - P_exact| mean {v['posterior_abs_error_mean']:.4f}, max {v['posterior_abs_error_max']:.4f}")
        lines.append(f"expected ECE (outcomes replaced by their exact probabilities; 0 for the exact posterior): "
                     f"{v['ece_expected']:.4f}")
    if "log_evidence_errors" in summary:
        for est, e in summary["log_evidence_errors"].items():
            lines.append(f"log Z error {est:<7} median {e['median_abs']:.4f}  90% {e['q90_abs']:.4f}  max {e['max_abs']:.4f} nat  "
                         f"(mean {e['mean']:+.4f}; beyond 2 s.e.: {e['beyond_2se_rate']:.1%})")
    if "disagreement" in summary:
        d = summary["disagreement"]
        lines.append(f"SMC vs bridge beyond 2 s.e.: {d['beyond_2se_rate']:.1%}, beyond 4 s.e.: {d['beyond_4se_rate']:.1%}, "
                     f"flagged by the engine (> 0.25 nat and > 4 s.e.): {d['engine_flag_rate']:.1%} of {d['n']}")
    if summary.get("sbc"):
        lines.append("SBC rank uniformity (chi-square p-value, n):")
        for name, s in summary["sbc"].items():
            lines.append(f"  {name:<40} p = {s['p_value']:.3f}  n = {s['n']}  counts {s['counts']}")
    return "\n".join(lines)


# ------------------------------------------------------------------ output folder
def calibration_folder(out: str | Path, template: Case, settings: CalibrationSettings, run_id: str | None = None) -> Path:
    """``<out>/calibration/<template id>/<run id>``; the default run id names seed, N and estimator."""
    from engine.run.store import safe_name

    rid = run_id or f"s{settings.seed}-n{settings.n}-{settings.estimator}"
    return Path(out) / "calibration" / safe_name(template.id, "template id") / safe_name(rid, "run id")


def write_report(run: CalibrationRun, folder: str | Path) -> dict:
    """Write ``summary.json`` and ``summary.txt`` into ``folder``; return the summary. (The
    reliability diagram is drawn from the summary by ``engine.report.calibration_plot``.)"""
    from engine.run.store import write_json, write_text

    folder = Path(folder)
    summary = summarize(run)
    write_json(folder / "summary.json", summary)
    write_text(folder / "summary.txt", format_summary(summary) + "\n")
    return summary


ECE_FALSE_FAIL = 0.05  # the default ECE gate: a calibrated forecaster fails it this often (the noise floor's 95 % point)


def verdict(summary: dict, *, ece_max: float | None = None, brier_gap_max: float = 0.01, brier_excess_max: float | None = None,
            ece_expected_max: float | None = None) -> list[str]:
    """Problems found by the calibration criteria (empty: passed).

    The main forecaster's class-wise ECE must be at most ``ece_max``; by default that is the
    noise floor at this N (``ece_noise_floor.q95``: the ECE a perfectly calibrated forecaster
    stating the same probabilities exceeds 5 % of the time, ``ECE_FALSE_FAIL``), so the gate's
    false-fail rate is stated rather than a fixed 0.03 that a calibrated engine fails about one
    time in five at N = 200. Where the exact
    posterior exists, its Brier score at most ``brier_gap_max`` above the exact posterior's on
    the same incidents. The noise-free versions (for small N): the expected Brier excess
    E||p - p_exact||^2 at most ``brier_excess_max`` and the expected ECE at most ``ece_expected_max``.
    """
    main = "engine" if "engine" in summary["scores"] else next(iter(summary["scores"]))
    problems = []
    ece_value = summary["scores"][main]["ece"]
    if ece_max is None:
        ece_max = summary["ece_noise_floor"]["q95"]
        if not ece_value <= ece_max:
            problems.append(f"{main} ECE {ece_value:.4f} above the 95 % noise floor {ece_max:.4f} at N = {summary['n']} "
                            f"(a calibrated forecaster exceeds it {ECE_FALSE_FAIL:.0%} of the time)")
    elif not ece_value <= ece_max:
        problems.append(f"{main} ECE {ece_value:.4f} above {ece_max}")
    v = summary.get("versus_exact")
    if v is not None:
        if not v["brier_difference"] <= brier_gap_max:
            problems.append(f"{main} Brier {v['brier_difference']:+.4f} above the exact posterior's (allowed {brier_gap_max})")
        if brier_excess_max is not None and not v["brier_excess_expected"] <= brier_excess_max:
            problems.append(f"{main} expected Brier excess {v['brier_excess_expected']:.4f} above {brier_excess_max}")
        if ece_expected_max is not None and not v["ece_expected"] <= ece_expected_max:
            problems.append(f"{main} expected ECE {v['ece_expected']:.4f} above {ece_expected_max}")
    elif brier_excess_max is not None or ece_expected_max is not None:
        problems.append("no exact posterior: the expected criteria cannot be checked")
    return problems
