"""The attribution report: the run's content as data, typeset by a Typst template, written as PDF/A.

``build_report(run)`` computes everything the report says (``engine.report.content``: every
number and sentence) and draws its plots (``engine.report.figures``); the page layout lives in
the template ``report.typ`` beside this module (package data). ``Report.pdf()`` hands the data
(JSON, plots as SVG) to the Typst compiler, which sets it in DejaVu Sans (shipped with
matplotlib, so the output does not depend on the machine's fonts) and writes an archival PDF
(PDF/A-2u by default: fonts embedded, every glyph mapped to Unicode, XMP metadata, sRGB output
intent) with an outline, a linked contents list and links between summary rows, hypotheses,
evidence items and their appendix entries.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from engine.errors import RunError
from engine.report import content as C
from engine.report import damage as D
from engine.report.figures import (
    CLOUD_POINTS,
    burst_cloud_figure,
    contributions_figure,
    damage_panels_figure,
    rank_figure,
    svg,
    tornado_figure,
)
from engine.report.fmt import NA, is_number, num
from engine.report.rundata import RunData, load_posterior, load_run
from engine.run.store import atomic_write, safe_name

log = logging.getLogger(__name__)

TITLE = "Attribution report"
SECTIONS = (
    "1. Summary",
    "2. Hypotheses and evidence",
    "3. Evidence contributions",
    "4. Convergence diagnostics",
    "5. Predictive checks",
    "6. Estimator agreement",
    "7. Sensitivity",
    "8. Reproducibility",
)
# then one section per damage-map unit of the case ("9. Damage map: <item>", ``_damage_maps``), then the appendix
APPENDIX = "A. Evidence items and their sources"
MAX_REASONS_PAGE1 = 8
RANK_PANELS = 6
PDF_STANDARD = "a-2u"  # PDF/A-2 level U: level B plus Unicode text (the typesetter's conformance mode checks it)
TEMPLATE = "report.typ"


@dataclass
class Report:
    """What the report prints (``data``: strings, numbers and flags, JSON) and its plots."""

    data: dict
    figures: dict[str, Figure] = field(default_factory=dict)

    def source(self) -> str:
        """The JSON the template reads (plots included as SVG text)."""
        return json.dumps({**self.data, "figures": {k: svg(f) for k, f in self.figures.items()}}, ensure_ascii=False)

    def pdf(self, *, standard: str | None = PDF_STANDARD) -> bytes:
        """Typeset the report; ``standard`` is a Typst PDF standard ("a-2u", "a-2b", ...) or None for plain PDF."""
        return typeset(TEMPLATE, self.source(), timestamp=int(self.data["timestamp"]), standard=standard)


def typeset(template: str, data: str, *, timestamp: int, standard: str | None = PDF_STANDARD) -> bytes:
    """Compile the template ``template`` (a .typ file of this package) with ``data`` (JSON text, read by
    the template from ``sys.inputs.data``) to PDF; ``timestamp`` (Unix seconds) dates the document.
    The compiler refuses (``typst.TypstError``) anything the PDF standard forbids."""
    import typst

    with resources.as_file(resources.files("engine.report") / template) as path:
        try:
            pdf, warnings = typst.compile_with_warnings(str(path), root=str(path.parent), font_paths=[font_dir()],
                                                        ignore_system_fonts=True, sys_inputs={"data": data},
                                                        pdf_standards=[standard] if standard else [], timestamp=timestamp)
        except typst.TypstError as exc:
            raise RunError(f"the report could not be typeset by {template} ({' '.join(str(exc).split())}); "
                           "this is a bug of engine/report, please report it with the run folder") from None
    for w in warnings:
        log.warning("%s: %s", template, " ".join(str(w).split()))
    return pdf


def font_dir() -> str:
    """matplotlib's bundled fonts (DejaVu Sans and Mono, and a last-resort font for any other glyph)."""
    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf")


# ---------------------------------------------------------------- sections as data
def _capped(reasons: list[str] | tuple[str, ...]) -> list[str]:
    """At most ``MAX_REASONS_PAGE1`` reasons for page 1; the full list is in section 4."""
    out = list(reasons[:MAX_REASONS_PAGE1])
    if len(reasons) > MAX_REASONS_PAGE1:
        out.append(f"… and {len(reasons) - MAX_REASONS_PAGE1} more (see section 4)")
    return out


def _title(run: RunData, generated: dt.datetime) -> dict:
    meta, version = run.meta, str(run.manifest.get("engine_version", NA))
    return {"case_title": meta.get("title") or run.case_id,
            "line1": f"case {run.case_id}  ·  incident date {meta.get('date', NA)}  ·  run {run.run_id}",
            "line2": f"engine version {version}  ·  generated {generated:%Y-%m-%d %H:%M} UTC",
            "hashes": C.title_hashes(run.manifest, run.manifest_sha256, run.case)}


def _summary(run: RunData) -> dict:
    att, verdict = run.attribution, C.verdict(run.attribution, run.diagnostics)
    rows = C.summary_rows(att)
    leader = next((r for r in rows if r.leader), rows[0])
    comparison = C.compare_leader(att)
    return {
        "banner": {"title": "UNRELIABLE: these probabilities are not trustworthy", "reasons": _capped(verdict.reasons)}
        if verdict.unreliable else None,
        "rows": [{"hid": r.hid, "cells": [r.hid, num(r.prior), num(r.posterior), f"{num(r.low)} – {num(r.high)}", r.term],
                  "leader": r.leader} for r in rows],
        "scale": [list(r) for r in C.scale_legend()], "scale_source": C.SCALE_SOURCE,
        "leader": f"Leader: {leader.hid}, posterior {num(leader.posterior)} ({leader.term}).",
        "comparison": C.comparison_sentences(comparison) if comparison else ["Only one hypothesis: no Bayes factor."],
        "verdict": {"text": C.verdict_sentence(verdict), "alert": verdict.unreliable},
        # unexplained units get their own caution line
        "reasons": [] if verdict.unreliable else _capped([r for r in verdict.reasons if not r.startswith("none of the hypotheses explains")]),
        "cautions": [f"Caution: {s}" for s in C.unexplained_sentences(run.diagnostics)],
    }


def _case(run: RunData) -> dict:
    known = {h.id: h for h in run.case.hypotheses} if run.case is not None else {}
    hyps = [{"id": row[0], "cells": row, "reasoning": " ".join((known[row[0]].reasoning or "").split()) if row[0] in known else ""}
            for row in C.hypothesis_rows(run.attribution, run.case)]
    ev = [{"id": it.id, "cells": row} for it, row in zip(run.case.evidence, C.evidence_rows(run.case), strict=True)] if run.case else []
    return {"note": f"Note: {run.case_note}." if run.case_note else "", "hypotheses": hyps, "evidence": ev,
            "evidence_missing": f"Evidence items: {NA}.",
            "evidence_note": "At most: the largest factor by which the item (with its dependency group) can move the odds between "
                             "any two hypotheses, given its source's reliability r: 1 + K r/(1 - r), where K bounds how much "
                             "better a hypothesis can explain the report than the background an unfaithful report follows "
                             "(README, 'Bounded influence')."}


def _contributions(run: RunData, figures: dict[str, Figure]) -> dict:
    c = C.contributions(run.diagnostics)
    if c is None:
        return {"missing": f"Per-item contributions (log10 Bayes factors of each evidence item or group): {NA} in diagnostics.json."}
    figures["contributions"] = contributions_figure(c)
    units = (run.diagnostics.get("contributions") or {}).get("units") or {}
    by_label = {C.unit_label(u): u for u in units}
    doubtful = dict(c.doubtful)
    rows = [{"unit": label, "value": f"{v:+.2f}", "k": f"{doubtful[label]:.2f}" if label in doubtful else "",
             "items": C.unit_items(run.case, by_label.get(label, label))} for label, v in c.units]
    return {"note": C.contributions_note(c, C.compare_leader(run.attribution)), "figure": "contributions", "rows": rows,
            "alt": f"Bar chart of the log10 Bayes factor of each evidence unit, {c.leader} vs {c.runner_up}."}


def _diagnostics(run: RunData, figures: dict[str, Figure]) -> dict:
    verdict = C.verdict(run.attribution, run.diagnostics)
    comparison = C.compare_leader(run.attribution)
    shown = [comparison.leader, comparison.runner_up] if comparison else list(run.attribution["hypotheses"])[:1]
    return {"missing": "" if run.diagnostics.get("hypotheses") else f"Convergence diagnostics: {NA} (diagnostics.json missing or empty).",
            "verdict": {"text": C.verdict_sentence(verdict), "alert": verdict.unreliable}, "reasons": list(verdict.reasons),
            "rows": C.diagnostic_rows(run.attribution, run.diagnostics), "rank": [_rank(run, hid, figures) for hid in shown]}


def _rank(run: RunData, hid: str, figures: dict[str, Figure]) -> dict:
    role = "leader" if hid == run.attribution.get("leader") else "runner-up"
    out = {"hid": hid, "heading": f"Rank plots: {hid} ({role})", "figure": None}
    idata = load_posterior(run.posterior_path(hid))
    if idata is None or "posterior" not in idata.groups():
        return {**out, "text": f"Posterior draws of {hid}: {NA} (posterior/{hid}.nc missing or unreadable)."}
    panels, total = C.rank_panels(idata, max_panels=RANK_PANELS)
    n = len(panels.data_vars)
    if not n:
        return {**out, "text": f"{hid}'s model has no parameters to plot."}
    name = f"rank-{hid}"
    figures[name] = rank_figure(panels)
    which = f"all {total} parameters" if n == total else f"the {n} of {total} parameters with the highest r-hat"
    return {**out, "figure": name, "alt": f"Rank plots of {which} of {hid}, one histogram per chain.",
            "text": f"Showing {which}. Each chain's ranks should look uniform; bars far from the dashed line mean poor mixing."}


def _predictive(run: RunData) -> dict:
    pred = C.predictive(run.attribution, run.diagnostics)
    if pred is None:
        return {"missing": f"Posterior predictive p-values per evidence unit: {NA} in diagnostics.json."}
    sentences = C.unexplained_sentences(run.diagnostics)
    return {"hids": list(pred.hids), "rows": [{"cells": list(r), "alert": bool(r[-1])} for r in pred.rows],
            "caption": "Monte Carlo p-value (1 + #{T_rep ≥ T_obs}) / (N + 1) of each evidence unit under each hypothesis's "
                       "posterior predictive distribution; n/a: nothing to replicate (claims, elicited probabilities).",
            "unexplained": sentences, "all_ok": "" if sentences else "Every evidence unit is reproduced by at least one hypothesis."}


def _estimators(run: RunData) -> dict:
    return {"rows": C.estimator_rows(run.attribution, run.diagnostics),
            "caption": "Log evidence (log Z, nats) of each hypothesis from sequential Monte Carlo and from bridge sampling on "
                       "the NUTS draws, the engine's value (bridge, error widened by half the spread), and their spread in nats "
                       "and in standard errors. \"IS\": a hypothesis whose model has a damage map is checked by importance "
                       "sampling from Student-t approximations at its posterior modes instead of SMC; k is the Pareto shape of "
                       "its weights (above 0.7 unreliable)."}


def _sensitivity(run: RunData, figures: dict[str, Figure]) -> dict:
    sens = run.sensitivity
    if not sens:
        return {"missing": "Not run for this report: `incident sensitivity RUN` adds break-even priors, evidence ablation "
                           "with the single-leg alarm, a source-reliability sweep and the evidence waterfall."}
    leader = sens["leader"]
    out: dict = {"leader": leader, "alarms": list(sens.get("alarms", [])), "ties": [f"{t[0].upper()}{t[1:]}." for t in sens.get("ties", [])],
                 "no_alarm": "" if sens.get("alarms") or sens.get("ties") else (
                     f"No single-leg alarm: dropping any one item or group leaves {leader} the leader "
                     "and moves its probability by at most 0.3.")}
    be = sens.get("break_even", {})
    if be:
        c = C.Contributions(leader, "the alternative", tuple(sorted(((alt, r["log10_bf_leader_vs_alt"]) for alt, r in be.items()),
                                                         key=lambda t: -t[1])))
        figures["break-even"] = contributions_figure(
            c, xlabel=f"log10 Bayes factor of {leader} against each alternative (the prior odds needed to reverse it)", name="break-even")
        out["break_even"] = {"rows": [[alt, num(r["prior"], 3), num(r["break_even_prior"], 3), num(r["log10_bf_leader_vs_alt"], 2)]
                                      for alt, r in be.items()],
                             "caption": f"Prior robustness: the prior an alternative would need (other priors rescaled) to draw "
                                        f"level with {leader}.", "figure": "break-even",
                             "alt": f"Bar chart of the log10 Bayes factor of {leader} against each alternative."}
    out["ablation"] = [[r["label"], num(r["leader_posterior"], 3), f"{r['shift']:+.3f}", r["leader"]] for r in sens.get("ablation", [])]
    torn = C.tornado(sens)
    if torn["bars"] and math.isfinite(torn["base"]):
        figures["tornado"] = tornado_figure(torn, leader)
        out["tornado"] = {
            "rows": [[b["source"], num(b["low_reliability"], 2), num(b["low"], 3), num(b["high_reliability"], 2), num(b["high"], 3),
                      num(b["swing"], 3), f"{b.get('low_leader', NA)} / {b.get('high_leader', NA)}"] for b in torn["bars"]],
            "caption": "Source-reliability sweep: each source's reliability r pinned at the 10% and 90% quantiles of its prior; "
                       f"P is P({leader}) then, and swing its change; largest swing first.",
            "note": f"Tornado of the sweep: P({leader}) with each source's reliability at its low (upper bar) and high (lower bar) "
                    f"quantile, around the base run's {num(torn['base'], 3)} (vertical line).",
            "figure": "tornado", "alt": f"Tornado chart of P({leader}) over each source's reliability sweep."}
    out["waterfall"] = {"rows": [[str(w["step"]), w["label"], num(w["leader_posterior"], 3), str(w.get("leader", NA))]
                                 for w in sens.get("waterfall", [])],
                        "caption": f"Evidence waterfall: the posterior of {leader} (the leader on all evidence) as units are added "
                                   "in case order, and which hypothesis leads at each step."}
    out["coincidence"] = [f"Coincidence test for {item}: a damage time this close to the activity window arises by chance with "
                          f"probability {num(t['p_value'], 3)} (Monte Carlo, {t['n']} draws)." for item, t in sens.get("coincidence", {}).items()]
    return out


def _appendix(run: RunData) -> list[dict]:
    units = (run.diagnostics.get("contributions") or {}).get("units") or {}
    value = {item: {"unit": C.unit_label(u), "value": f"{v:+.2f}"} for u, v in units.items() if is_number(v) and math.isfinite(v)
             for item in C.unit_items(run.case, u)}
    return [{"id": e.id, "family": e.family, "group": e.group, "observation": e.observation, "description": e.description,
             "source": e.source, "reliability": e.reliability, "cap": e.cap, "contribution": value.get(e.id, ""),
             "cites": [{"file": f, "quote": q} for f, q in e.cites]} for e in C.evidence_entries(run.case)]


def _damage_maps(run: RunData, figures: dict[str, Figure]) -> list[dict]:
    """One section per damage-map unit of case.json (``engine.report.damage``): its panels and holes,
    the burst-point draws and credible region of each hypothesis that samples a burst point, and
    the weapon's posterior; numbered after the fixed sections."""
    if run.case is None:
        return []
    hyps = run.attribution["hypotheses"]
    units: dict[str, list] = {}
    posts: list = []  # read only for a case.json written before it kept the maps

    def is_map(it: Any) -> bool:  # its record holds a map, or its hypotheses' posteriors sample its burst point
        if it.damage_map is not None:
            return True
        if not posts:
            posts.extend(load_posterior(run.posterior_path(h)) for h in hyps)
        return any(p is not None and "posterior" in p.groups() and f"{it.group or it.id}__burst_x" in p.posterior for p in posts)

    for it in run.case.evidence:
        if not it.restates and is_map(it):
            units.setdefault(it.group or it.id, []).append(it)
    out = []
    for i, (unit, items) in enumerate(units.items()):
        n = len(SECTIONS) + 1 + i
        key = f"dm{i}"
        title = f"{n}. Damage map: {', '.join(it.id for it in items)}"
        m = items[0].damage_map
        if m is None:
            out.append({"title": title, "id": key, "missing": f"The panels and holes of {items[0].id} are {NA} in case.json (written "
                        "by an earlier version): delete case.json and run `incident report RUN` to rewrite it from the run's case.yaml."})
            continue
        figures[f"{key}-panels"] = damage_panels_figure(m)
        draws = [D.hypothesis_draws(hid, float(h["posterior"]), load_posterior(run.posterior_path(hid)), unit) for hid, h in hyps.items()]
        shown = [h for h in draws if not h.note]
        section = {
            "title": title, "id": key, "summary": D.map_summary(m),
            "panels": {"figure": f"{key}-panels", "caption": (
                "The inspected panels by the side they face (outward normal closest to that body axis), each drawn in the body "
                "frame's coordinates in metres, seen along that axis (not mirrored). Dots: holes located on a panel, coloured by "
                "their bend; shaded panels: holes counted without positions, the shade growing with holes per m²."),
                       "alt": f"Inspected panels of {unit} with the holes found on them."},
            "skipped": [h.note for h in draws if h.note], "cloud": None, "weapon": None,
        }
        if shown:
            figures[f"{key}-cloud"] = burst_cloud_figure(m, shown)
            regions = [f"{h.hid}: 90 % region's semi-axes {', '.join(D.value(a) for a in r.semi_axes())} m, centre "
                       f"({', '.join(D.value(c) for c in r.mean)}) m" for h in shown if (r := h.region) is not None]
            section["cloud"] = {"figure": f"{key}-cloud", "regions": regions, "caption": (
                f"Posterior burst point ({unit}__burst_x, _y, _z) per hypothesis, by colour: dots are posterior draws (at most "
                f"{CLOUD_POINTS} per hypothesis), + their mean; the line is the outline (shadow) in each view of the 90 % "
                "credible ellipsoid of the draws' Mahalanobis distance: the points within the 90 % quantile of the draws' own "
                "squared distances from their mean (scaled by their covariance), which holds 90 % of the draws in 3-D (so its "
                "shadow holds more of them in a view). Grey: the inspected panels' outlines. Metres, body frame."),
                "alt": f"Posterior burst-point draws and 90 % credible regions of {unit} in the side and top views."}
            section["weapon"] = {"hids": [h.hid for h in shown], "rows": D.weapon_rows(shown), "caption": (
                "Weapon and burst point per hypothesis, from its stored posterior draws: mean (5 % – 95 % quantiles, the 90 % "
                "interval); \"fixed\" where the hypothesis fixes the parameter, \"–\" where its model has none.")}
        out.append(section)
    return out


# ---------------------------------------------------------------- assembly
def build_report(run: RunData, *, generated: dt.datetime | None = None) -> Report:
    """Everything the report prints, as data, and its plots; ``.pdf()`` typesets it."""
    from engine import __version__

    generated = generated or dt.datetime.now(dt.UTC)
    figures: dict[str, Figure] = {}
    version = str(run.manifest.get("engine_version") or __version__)
    data = {
        "title": TITLE, "sections": list(SECTIONS), "appendix_title": APPENDIX,
        "timestamp": int(generated.timestamp()),
        "meta": {"title": f"{TITLE}: {run.case_id}, run {run.run_id}", "author": f"incident-engine {__version__}",
                 "description": str(run.meta.get("title") or run.case_id),
                 "keywords": [f"case {run.case_id}", f"run {run.run_id}", f"engine {version}",
                              f"manifest sha256 {run.manifest_sha256 or NA}"]},
        "footer": f"{TITLE} · case {run.case_id} · run {run.run_id}",
        "head": _title(run, generated), "summary": _summary(run), "case": _case(run),
        "contributions": _contributions(run, figures), "diagnostics": _diagnostics(run, figures),
        "predictive": _predictive(run), "estimators": _estimators(run), "sensitivity": _sensitivity(run, figures),
        "reproducibility": C.reproducibility_rows(run.manifest, run.case_note), "damage_maps": _damage_maps(run, figures),
        "appendix": _appendix(run),
    }
    return Report(data, figures)


def default_output(run: RunData) -> Path:
    """``reports/<case>-<run>.pdf`` relative to the current working directory."""
    return Path("reports") / f"{safe_name(run.case_id, 'case id')}-{safe_name(run.run_id, 'run id')}.pdf"


def write_report(run_dir: str | Path, out: str | Path | None = None, *, generated: dt.datetime | None = None,
                 standard: str | None = PDF_STANDARD) -> Path:
    """Write the PDF attribution report of a finished run folder; return its path.

    Reads only the run folder. ``out`` defaults to ``reports/<case>-<run>.pdf`` under the
    current directory; the file is written atomically. Raises ``RunError`` when the folder
    has no usable ``attribution.json`` or the output cannot be written.
    """
    run = load_run(run_dir)
    path = Path(out) if out is not None else default_output(run)
    pdf = build_report(run, generated=generated).pdf(standard=standard)
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(pdf))


__all__ = ["APPENDIX", "PDF_STANDARD", "SECTIONS", "Report", "build_report", "default_output", "load_run", "typeset", "write_report"]
