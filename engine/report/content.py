"""What the report says, computed from the run folder's data: rows and sentences, no drawing.

Every function takes the records' JSON (``attribution.json``, ``diagnostics.json``,
``sensitivity.json``), ``manifest.json`` or the ``CaseRecord`` (case.json) and returns strings,
numbers or small records, so the numbers printed in the PDF can be tested without reading the PDF.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from engine.report.fmt import NA, clean, count, flag, is_number, num, ratio, unit_label
from engine.results.records import CaseRecord, CaseSource
from engine.terms import SCALE, probability_term

SCALE_SOURCE = ("Office of the Director of National Intelligence (US), Intelligence Community Directive 203, "
                "Analytic Standards (2015), expressions of likelihood")


# ---------------------------------------------------------------- summary
@dataclass(frozen=True)
class SummaryRow:
    hid: str
    prior: float
    posterior: float
    low: float
    high: float
    term: str
    leader: bool


def summary_rows(attribution: dict) -> list[SummaryRow]:
    """One row per hypothesis, by decreasing posterior; interval = posterior ± 2 MCSE clipped to [0, 1]."""
    rows = []
    for hid, h in attribution["hypotheses"].items():
        p, m = float(h["posterior"]), float(h.get("posterior_mcse") or 0.0)
        rows.append(SummaryRow(hid, float(h.get("prior", math.nan)), p, max(0.0, p - 2 * m), min(1.0, p + 2 * m),
                               probability_term(p), hid == attribution.get("leader")))
    return sorted(rows, key=lambda r: -r.posterior)


def scale_legend() -> list[tuple[str, str]]:
    """The verbal probability scale next to every posterior: (range of P, term), lowest first."""
    rows, lower = [], 0.0
    for upper, term in SCALE:
        rng = f"below {upper:.0%}" if lower == 0 else f"{lower:.0%} or more" if upper > 1 else f"{lower:.0%} to {upper:.0%}"
        rows.append((rng, term))
        lower = upper
    return rows


@dataclass(frozen=True)
class Comparison:
    """The leader against the runner-up: Bayes factor (pooled log evidence) and odds."""

    leader: str
    runner_up: str
    log_bf: float  # natural log
    log_bf_se: float
    posterior_odds: float
    prior_odds: float

    @property
    def bf(self) -> float:
        return _exp(self.log_bf)

    @property
    def bf_range(self) -> tuple[float, float]:
        """Bayes factor at log BF ± 2 s.e. (Monte Carlo error of the two log-evidence estimates)."""
        return _exp(self.log_bf - 2 * self.log_bf_se), _exp(self.log_bf + 2 * self.log_bf_se)


def _exp(x: float) -> float:
    return math.nan if math.isnan(x) else math.exp(x) if x < 709 else math.inf


def _float(x: Any) -> float:
    return float(x) if is_number(x) else math.nan


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.inf


def compare_leader(attribution: dict) -> Comparison | None:
    """Leader vs runner-up (the next most probable hypothesis); None with fewer than two hypotheses."""
    hyps = attribution["hypotheses"]
    leader = attribution.get("leader") or max(hyps, key=lambda h: hyps[h]["posterior"])
    others = [h for h in hyps if h != leader]
    if leader not in hyps or not others:
        return None
    runner = max(others, key=lambda h: hyps[h]["posterior"])
    a, b = hyps[leader], hyps[runner]
    log_bf = _float((a.get("log_evidence") or {}).get("pooled")) - _float((b.get("log_evidence") or {}).get("pooled"))
    se = math.hypot(_float(a.get("log_evidence_se")), _float(b.get("log_evidence_se")))
    return Comparison(leader, runner, log_bf, se, _ratio(a["posterior"], b["posterior"]), _ratio(a.get("prior", 0), b.get("prior", 0)))


def comparison_sentences(c: Comparison) -> list[str]:
    low, high = c.bf_range
    if math.isnan(c.log_bf):
        return [f"Bayes factor {c.leader} vs {c.runner_up}: {NA} (pooled log evidence missing from attribution.json).",
                f"Posterior odds {c.leader} : {c.runner_up} = {ratio(c.posterior_odds)} (prior odds {ratio(c.prior_odds)})."]
    return [
        f"Bayes factor {c.leader} vs {c.runner_up}: {ratio(c.bf)} (log10 {num(c.log_bf / math.log(10), 2)}; "
        f"Monte Carlo range {ratio(low)} to {ratio(high)}), from the pooled log evidence.",
        f"Posterior odds {c.leader} : {c.runner_up} = {ratio(c.posterior_odds)} (prior odds {ratio(c.prior_odds)}).",
    ] + ([f"The evidence alone favours {c.runner_up} (Bayes factor {ratio(1 / c.bf)}); {c.leader} leads because of its prior."]
         if c.bf < 1 else [])


@dataclass(frozen=True)
class Verdict:
    """Whether the run can be trusted: the diagnostics verdict and the reasons it is doubtful."""

    verdict: str | None  # "pass" | "warn" | "fail" | None (not in diagnostics.json)
    converged: bool | None
    unreliable: bool
    reasons: tuple[str, ...]


def verdict(attribution: dict, diagnostics: dict) -> Verdict:
    """Unreliable when attribution.json says not converged or diagnostics.json's verdict is "fail"."""
    v = diagnostics.get("verdict")
    converged = attribution.get("converged")
    reasons: list[str] = []
    for r in [*(attribution.get("warnings") or []), *(diagnostics.get("reasons") or [])]:
        if clean(r) and clean(r) not in reasons:
            reasons.append(clean(r))
    unreliable = converged is False or v == "fail"
    if unreliable and not reasons:
        reasons.append("attribution.json marks the run as not converged" if converged is False else "diagnostics verdict is fail")
    return Verdict(v if isinstance(v, str) else None, converged if isinstance(converged, bool) else None, unreliable, tuple(reasons))


def verdict_sentence(v: Verdict) -> str:
    text = f"Diagnostic verdict: {v.verdict.upper()}." if v.verdict else "Diagnostic verdict: not available."
    if v.converged is False:
        text += " The run is marked as not converged."
    return text


# ---------------------------------------------------------------- case tables
def hypothesis_rows(attribution: dict, case: CaseRecord | None) -> list[list[str]]:
    """id, prior (normalised, from the run), mechanism, description (from case.json)."""
    known = {h.id: h for h in case.hypotheses} if case is not None else {}
    rows = []
    for hid, h in attribution["hypotheses"].items():
        c = known.get(hid)
        mech, desc = (c.mechanism, c.description) if c is not None else (NA, NA)
        rows.append([hid, num(h.get("prior")), clean(mech), clean(desc)])
    return rows


def _reliability(src: CaseSource) -> str:
    """"profile, mean 0.70"; for a source's own reliability, "Beta(9, 1), mean 0.90" or "fixed 0.80"."""
    if src.reliability_fixed:
        return f"{src.profile}, fixed {src.reliability_mean:.2f}" if src.profile != "custom" else f"fixed {src.reliability_mean:.2f}"
    name = src.profile if src.profile != "custom" else src.reliability
    return f"{name}, mean {src.reliability_mean:.2f}"


def evidence_rows(case: CaseRecord | None) -> list[list[str]]:
    """id (group, or the item it restates), family, observation, source, reliability (profile, mean); none
    without case.json."""
    if case is None:
        return []
    sources = {s.id: s for s in case.sources}
    rows = []
    for it in case.evidence:
        src = sources.get(it.source)
        ident = it.id + (f" (group {it.group})" if it.group else "") + (f" (restates {it.restates})" if it.restates else "")
        text = f"{it.observation} — {clean(it.description)}" if it.description else it.observation
        rows.append([ident, it.family, text, it.source, _reliability(src) if src else NA, odds_cap(it.influence_bound)])
    return rows


def odds_cap(bound: float | None) -> str:
    """The most an item can move the odds, as a factor ("×12"); "no bound" where none is stated."""
    if bound is None:
        return "no bound"
    factor = math.exp(min(bound, 700.0))
    return f"×{factor:.2g}" if factor < 1e4 else f"×1e{math.log10(factor):.0f}"


@dataclass(frozen=True)
class EvidenceEntry:
    """One evidence item as the appendix shows it: what was observed, by whom, and the quoted sources."""

    id: str
    family: str
    group: str
    observation: str
    description: str
    source: str  # "id: title (citation)"
    reliability: str
    cap: str
    cites: tuple[tuple[str, str], ...]  # (file, quoted text)


def evidence_entries(case: CaseRecord | None) -> list[EvidenceEntry]:
    """Every evidence item of case.json with its source and citations; none without case.json."""
    if case is None:
        return []
    sources = {s.id: s for s in case.sources}
    out = []
    for it in case.evidence:
        src = sources.get(it.source)
        where = f"{it.source}: {clean(src.title)}" + (f" ({clean(src.citation)})" if src.citation else "") if src else it.source
        out.append(EvidenceEntry(it.id, it.family, it.group or "", clean(it.observation), clean(it.description), where,
                                 _reliability(src) if src else NA, odds_cap(it.influence_bound),
                                 tuple((clean(c.file), clean(c.quote)) for c in it.cites)))
    return out


def unit_items(case: CaseRecord | None, unit: str) -> list[str]:
    """The evidence items of a likelihood unit (``item:<id>`` or a dependency group's name)."""
    if unit.startswith("item:"):
        return [unit.removeprefix("item:")]
    items = [it.id for it in case.evidence if it.group == unit] if case is not None else []
    return items or ([unit] if case is not None and any(it.id == unit for it in case.evidence) else [])


# ---------------------------------------------------------------- contributions
PARETO_K_MAX = 0.7  # above this, a PSIS-LOO contribution is unreliable


@dataclass(frozen=True)
class Contributions:
    leader: str
    runner_up: str
    units: tuple[tuple[str, float], ...]  # (label, log10 BF), largest first
    doubtful: tuple[tuple[str, float], ...] = ()  # (label, Pareto k) of terms whose estimate is unreliable


def contributions(diagnostics: dict) -> Contributions | None:
    """diagnostics.json "contributions" as sorted bars; None when absent or empty."""
    c = diagnostics.get("contributions")
    if not isinstance(c, dict) or not isinstance(c.get("units"), dict) or not c["units"]:
        return None
    units = [(unit_label(u), float(v)) for u, v in c["units"].items() if is_number(v) and math.isfinite(v)]
    if not units:
        return None
    ks = c.get("pareto_k") if isinstance(c.get("pareto_k"), dict) else {}
    doubtful = tuple((unit_label(u), float(k)) for u, k in ks.items() if is_number(k) and k > PARETO_K_MAX)
    return Contributions(str(c.get("leader", "leader")), str(c.get("runner_up", "runner-up")),
                         tuple(sorted(units, key=lambda kv: -kv[1])), doubtful)


def contributions_note(c: Contributions, comparison: Comparison | None) -> str:
    total = sum(v for _, v in c.units)
    text = (f"log10 Bayes factor contributed by each evidence item or group, {c.leader} vs {c.runner_up}: bars to the right "
            f"favour {c.leader}, to the left {c.runner_up}. Each bar weighs one unit given the rest of the evidence, so the "
            f"bars need not add up to the overall Bayes factor. Sum of the bars: {num(total, 2)}")
    if comparison is not None and {comparison.leader, comparison.runner_up} == {c.leader, c.runner_up}:
        sign = 1 if comparison.leader == c.leader else -1
        text += f"; overall log10 Bayes factor from the pooled log evidence: {num(sign * comparison.log_bf / math.log(10), 2)}"
    text += "."
    if c.doubtful:
        listed = ", ".join(f"{u} (k = {k:.2f})" for u, k in c.doubtful)
        text += f" Hatched bars are unreliable estimates (Pareto k above {PARETO_K_MAX}): {listed}."
    return text


# ---------------------------------------------------------------- diagnostics
def diagnostic_rows(attribution: dict, diagnostics: dict) -> list[list[str]]:
    per = diagnostics.get("hypotheses") or {}
    rows = []
    for hid in attribution["hypotheses"]:
        d = per.get(hid) or {}
        shape = f"{d['n_chains']} × {d['n_draws']}" if is_number(d.get("n_chains")) and is_number(d.get("n_draws")) else NA
        problems = "; ".join(clean(p) for p in d.get("problems", [])) if "problems" in d else NA
        rows.append([hid, shape, num(d.get("rhat_max"), 3, nan="n/a (1 chain)"), count(d.get("ess_bulk_min")),
                     count(d.get("ess_tail_min")), count(d.get("divergences")), num(d.get("bfmi_min"), 2), problems or "none"])
    return rows


def estimator_rows(attribution: dict, diagnostics: dict) -> list[list[str]]:
    """SMC (or, marked "IS" with its Pareto k, importance sampling at the Laplace fits) and bridge log Z (± s.e.),
    the pooled value, their spread, z and agreement, per hypothesis."""
    per = diagnostics.get("hypotheses") or {}
    rows = []
    for hid, h in attribution["hypotheses"].items():
        e = (per.get(hid) or {}).get("estimators") or {}
        smc = e.get("smc", h.get("log_evidence", {}).get("smc"))
        bridge = e.get("bridge", h.get("log_evidence", {}).get("bridge"))
        independent = _pm(smc, e.get("smc_se")) + (f" (IS, k {num(e.get('pareto_k'), 2)})" if e.get("independent") == "laplace_is" else "")
        rows.append([hid, independent, _pm(bridge, e.get("bridge_se")),
                     _pm(h.get("log_evidence", {}).get("pooled"), h.get("log_evidence_se")),
                     num(e.get("spread"), 3), num(e.get("z"), 1), flag(e.get("agree"))])
    return rows


def _pm(value: Any, se: Any) -> str:
    if not is_number(value):
        return NA
    return f"{num(value, 2)} ± {num(se, 3)}" if is_number(se) else num(value, 2)


# ---------------------------------------------------------------- predictive checks
@dataclass(frozen=True)
class Predictive:
    hids: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]  # unit, family, p-value per hypothesis, status
    unexplained: tuple[str, ...]  # unit ids


def predictive(attribution: dict, diagnostics: dict) -> Predictive | None:
    """Predictive p-values per evidence unit and hypothesis; None when diagnostics.json has none."""
    pred = diagnostics.get("predictive")
    unexplained = tuple(str(u) for u in diagnostics.get("unexplained") or [])
    if not isinstance(pred, dict):
        return Predictive((), (), unexplained) if unexplained else None
    hids = tuple(attribution["hypotheses"])
    rows = []
    for uid, u in pred.items():
        p = (u.get("p_values") or {}) if isinstance(u, dict) else {}
        status = "unexplained" if uid in unexplained else ""
        rows.append((unit_label(uid), clean(u.get("family", NA)) if isinstance(u, dict) else NA,
                     *(_p_value(p, h) for h in hids), status))
    return Predictive(hids, tuple(rows), unexplained)


def _p_value(p: dict, hid: str) -> str:
    """A p-value; "n/a" when the hypothesis has nothing to replicate, "not available" when absent."""
    if hid not in p:
        return NA
    return "n/a" if p[hid] is None else num(p[hid], 3)


def unexplained_sentences(diagnostics: dict) -> list[str]:
    """"none of the hypotheses explains X" for every unit diagnostics.json lists as unexplained."""
    pred = diagnostics.get("predictive") if isinstance(diagnostics.get("predictive"), dict) else {}
    out = []
    for uid in diagnostics.get("unexplained") or []:
        label = unit_label(str(uid))
        items = [str(i) for i in (pred.get(uid) or {}).get("items", [])] if isinstance(pred.get(uid), dict) else []
        extra = f" (items {', '.join(items)})" if items and items != [label] else ""
        out.append(f"none of the hypotheses explains {label}{extra}.")
    return out


# ---------------------------------------------------------------- sensitivity
def tornado(sensitivity: dict) -> dict:
    """sensitivity.json's tornado (``{"base", "bars"}``, largest swing first; a file written before
    the tornado existed has it built from its sweep when it is read, ``engine.results.records``);
    bars with a missing or non-finite probability are left out."""
    t = sensitivity.get("tornado") if isinstance(sensitivity.get("tornado"), dict) else {}
    if not t:
        return {"base": math.nan, "bars": []}
    bars = [b for b in t.get("bars", []) if all(is_number(b.get(k)) and math.isfinite(b[k]) for k in ("low", "high"))]
    return {"base": _float(t.get("base")), "bars": bars}


# ---------------------------------------------------------------- reproducibility
BREAK_AFTER = "/:[]=,"
LONGEST_UNBROKEN = 40


def breakable(text: str) -> str:
    """``text`` with zero-width spaces where a long path or test id may wrap: after each of
    ``BREAK_AFTER`` and inside any run of more than ``LONGEST_UNBROKEN`` characters without one
    (a command line like ``pytest tests/run/x.py::test_a_very_long_name[case]`` has no space to
    wrap at and ran off the page)."""
    out, run = [], 0
    for ch in text:
        out.append(ch)
        run = 0 if ch.isspace() else run + 1
        if ch in BREAK_AFTER or run >= LONGEST_UNBROKEN:
            out.append("\u200b")
            run = 0
    return "".join(out)


def reproducibility_rows(manifest: dict, case_note: str = "") -> list[list[str]]:
    if not manifest:
        return [["manifest.json", NA]]
    settings = manifest.get("settings") or {}
    pkgs = manifest.get("packages") or {}
    rows = [
        ["engine version", str(manifest.get("engine_version", NA))],
        ["python", str(manifest.get("python", NA))],
        ["seed", str(settings.get("seed", NA))],
        ["settings", ", ".join(f"{k}={v}" for k, v in settings.items() if k != "seed") or NA],
        ["packages", ", ".join(f"{k} {v}" for k, v in pkgs.items()) or NA],
        ["case file", breakable(str(manifest.get("case_file", NA)))],
        ["case sha256", str(manifest.get("case_sha256", NA))],
        ["command line", breakable(" ".join(str(a) for a in manifest.get("command") or [])) or NA],
        ["started", str(manifest.get("started") or NA)],
        ["finished", str(manifest.get("finished") or "not finished")],
    ]
    if case_note:
        rows.append(["note", case_note])
    return rows


def title_hashes(manifest: dict, manifest_sha256: str, case: CaseRecord | None) -> list[list[str]]:
    """What a reader checks the PDF against the run folder with: the sha256 of manifest.json as the
    report read it, of the frozen case file (manifest "inputs"), of the case text with its priors
    (manifest "case_sha256", which case.json's digest must equal)."""
    inputs = manifest.get("inputs") if isinstance(manifest.get("inputs"), dict) else {}
    rows = [["manifest.json sha256", manifest_sha256 or NA],
            ["case file sha256 (case.yaml)", str(inputs.get("case.yaml") or NA)],
            ["case and priors sha256", str(manifest.get("case_sha256") or NA)]]
    if case is not None and case.digest and case.digest != manifest.get("case_sha256"):
        rows.append(["case.json digest (differs)", case.digest])
    return rows


# ---------------------------------------------------------------- posterior draws for rank plots
def rank_panels(idata: Any, *, max_panels: int = 6) -> tuple[Any, int]:
    """Scalar components of the model's parameters, worst r-hat first, at most ``max_panels``.

    Returns an ``xarray.Dataset`` of (chain, draw) variables named ``var`` or ``var[i]`` and
    the total number of components. Transformed (``...__``) variables are left out.
    """
    import warnings

    import numpy as np
    import xarray as xr

    post = idata.posterior
    comps: dict[str, Any] = {}
    for name in post.data_vars:
        if str(name).endswith("__"):
            continue
        a = post[name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1)
        for i in range(a.shape[-1]):
            comps[f"{name}[{i}]" if a.shape[-1] > 1 else str(name)] = (("chain", "draw"), a[..., i])
    ds = xr.Dataset(comps, coords={"chain": post["chain"].values, "draw": post["draw"].values})
    if post.sizes["chain"] > 1 and comps:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            import arviz as az

            rhat = az.rhat(ds)
        order = sorted(comps, key=lambda k: -np.nan_to_num(float(rhat[k]), nan=np.inf))
    else:
        order = list(comps)
    return ds[order[:max_panels]], len(comps)
