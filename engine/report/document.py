"""The attribution report: sections assembled into pages, and the PDF written atomically."""

from __future__ import annotations

import datetime as dt
import logging
import math
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from engine.report import content as C
from engine.report.figures import contributions_height, draw_contributions, draw_rank, draw_tornado, rank_height, tornado_height
from engine.report.fmt import NA, num
from engine.report.layout import ALERT, MUTED, Column, Flow, layout_problems, report_style
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
MAX_REASONS_PAGE1 = 8
RANK_PANELS = 6


# ---------------------------------------------------------------- sections
def _title(flow: Flow, run: RunData, generated: dt.datetime) -> None:
    meta = run.meta
    flow.paragraph(TITLE, size=20, weight="bold", after=0.04)
    flow.paragraph(meta.get("title") or run.case_id, size=12, max_lines=3, after=0.06)
    engine_version = run.manifest.get("engine_version", NA)
    flow.paragraph(f"case {run.case_id}  ·  incident date {meta.get('date', NA)}  ·  run {run.run_id}", size=9, color=MUTED, after=0.0)
    flow.paragraph(f"engine version {engine_version}  ·  generated {generated:%Y-%m-%d %H:%M} UTC", size=9, color=MUTED, after=0.1)


def _capped(reasons: list[str] | tuple[str, ...]) -> list[str]:
    """At most ``MAX_REASONS_PAGE1`` bullets for page 1; the full list is in section 4."""
    out = [f"• {r}" for r in reasons[:MAX_REASONS_PAGE1]]
    if len(reasons) > MAX_REASONS_PAGE1:
        out.append(f"… and {len(reasons) - MAX_REASONS_PAGE1} more (see section 4)")
    return out


def _summary(flow: Flow, run: RunData) -> None:
    att, verdict = run.attribution, C.verdict(run.attribution, run.diagnostics)
    unexplained = C.unexplained_sentences(run.diagnostics)
    flow.heading(SECTIONS[0])
    if verdict.unreliable:
        flow.banner("UNRELIABLE: these probabilities are not trustworthy", ["Reasons:", *_capped(verdict.reasons)])
    rows = C.summary_rows(att)
    flow.table([Column("hypothesis", 2.2), Column("prior", 0.8, "right"), Column("posterior", 0.9, "right"),
                Column("interval (± 2 MCSE)", 1.7, "right"), Column("probability term", 1.8)],
               [[r.hid, num(r.prior), num(r.posterior), f"{num(r.low)} – {num(r.high)}", r.term] for r in rows],
               styles=["bold" if r.leader else "normal" for r in rows], size=9)
    leader = next((r for r in rows if r.leader), rows[0])
    flow.paragraph(f"Leader: {leader.hid}, posterior {num(leader.posterior)} ({leader.term}).", weight="bold")
    comparison = C.compare_leader(att)
    for sentence in C.comparison_sentences(comparison) if comparison else ["Only one hypothesis: no Bayes factor."]:
        flow.paragraph(sentence)
    flow.paragraph(C.verdict_sentence(verdict), weight="bold", color=ALERT if verdict.unreliable else "#111111")
    if not verdict.unreliable:
        # unexplained units get their own caution line below
        for line in _capped([r for r in verdict.reasons if not r.startswith("none of the hypotheses explains")]):
            flow.paragraph(line, size=8.5, indent=0.15, after=0.0)
        flow.skip(0.06)
    for sentence in unexplained:
        flow.paragraph(f"Caution: {sentence}", weight="bold", color=ALERT)


def _case_tables(flow: Flow, run: RunData) -> None:
    flow.heading(SECTIONS[1])
    if run.case_note:
        flow.paragraph(f"Note: {run.case_note}.", size=8.5, color=MUTED)
    flow.heading("Hypotheses", level=2)
    flow.table([Column("id", 1.4), Column("prior", 0.6, "right"), Column("mechanism", 1.5), Column("description", 4.0)],
               C.hypothesis_rows(run.attribution, run.case))
    flow.heading("Evidence", level=2)
    rows = C.evidence_rows(run.case)
    if rows:
        flow.table([Column("id", 1.2), Column("family", 0.8), Column("observation", 3.1, max_lines=7), Column("source", 0.9),
                    Column("reliability", 1.2), Column("at most", 0.55, "right")], rows, size=7.5)
        flow.paragraph("At most: the largest factor by which the item (with its dependency group) can move the odds between "
                       "any two hypotheses, given its source's reliability r: 1 + K r/(1 - r), where K bounds how much "
                       "better a hypothesis can explain the report than the background an unfaithful report follows "
                       "(README, 'Bounded influence').", size=7.5, color=MUTED)
    else:
        flow.paragraph(f"Evidence items: {NA}.")


def _contributions(flow: Flow, run: RunData) -> None:
    flow.heading(SECTIONS[2])
    c = C.contributions(run.diagnostics)
    if c is None:
        flow.paragraph(f"Per-item contributions (log10 Bayes factors of each evidence item or group): {NA} in diagnostics.json.")
        return
    flow.paragraph(C.contributions_note(c, C.compare_leader(run.attribution)), size=8.5, keep=contributions_height(c))
    flow.block(contributions_height(c), lambda fig, rect: draw_contributions(fig, rect, c))


def _diagnostics(flow: Flow, run: RunData) -> None:
    flow.heading(SECTIONS[3])
    if not run.diagnostics.get("hypotheses"):
        flow.paragraph(f"Convergence diagnostics: {NA} (diagnostics.json missing or empty).")
    verdict = C.verdict(run.attribution, run.diagnostics)
    flow.paragraph(C.verdict_sentence(verdict), weight="bold", color=ALERT if verdict.unreliable else "#111111")
    for r in verdict.reasons:
        flow.paragraph(f"• {r}", size=8.5, indent=0.15, after=0.0)
    flow.skip(0.08)
    flow.table([Column("hypothesis", 1.4), Column("chains × draws", 0.9, "right"), Column("r-hat max", 0.75, "right"),
                Column("bulk ESS min", 0.75, "right"), Column("tail ESS min", 0.75, "right"), Column("divergent", 0.8, "right"),
                Column("BFMI min", 0.65, "right"), Column("problems", 2.0)],
               C.diagnostic_rows(run.attribution, run.diagnostics))
    comparison = C.compare_leader(run.attribution)
    shown = [comparison.leader, comparison.runner_up] if comparison else list(run.attribution["hypotheses"])[:1]
    for hid in shown:
        _rank_plots(flow, run, hid)


def _rank_plots(flow: Flow, run: RunData, hid: str) -> None:
    role = "leader" if hid == run.attribution.get("leader") else "runner-up"
    flow.heading(f"Rank plots: {hid} ({role})", level=2)
    idata = load_posterior(run.posterior_path(hid))
    if idata is None or "posterior" not in idata.groups():
        flow.paragraph(f"Posterior draws of {hid}: {NA} (posterior/{hid}.nc missing or unreadable).")
        return
    panels, total = C.rank_panels(idata, max_panels=RANK_PANELS)
    n = len(panels.data_vars)
    if not n:
        flow.paragraph(f"{hid}'s model has no parameters to plot.")
        return
    height = rank_height(n, idata.posterior.sizes["chain"])
    which = f"all {total} parameters" if n == total else f"the {n} of {total} parameters with the highest r-hat"
    flow.paragraph(f"Showing {which}. Each chain's ranks should look uniform; bars far from the dashed line mean poor mixing.",
                   size=8.5, color=MUTED, keep=height)
    flow.block(height, lambda fig, rect: draw_rank(fig, rect, panels))


def _predictive(flow: Flow, run: RunData) -> None:
    flow.heading(SECTIONS[4])
    pred = C.predictive(run.attribution, run.diagnostics)
    if pred is None:
        flow.paragraph(f"Posterior predictive p-values per evidence unit: {NA} in diagnostics.json.")
        return
    if pred.rows:
        share = 4.6 / max(len(pred.hids), 1)
        cols = [Column("unit", 1.5), Column("family", 0.9), *(Column(h, share, "right") for h in pred.hids), Column("status", 0.9)]
        flow.table(cols, [list(r) for r in pred.rows], styles=["alert" if r[-1] else "normal" for r in pred.rows],
                   caption="Monte Carlo p-value (1 + #{T_rep ≥ T_obs}) / (N + 1) of each evidence unit under each "
                           "hypothesis's posterior predictive distribution; n/a: nothing to replicate (claims, elicited "
                           "probabilities).")
    sentences = C.unexplained_sentences(run.diagnostics)
    for s in sentences:
        flow.paragraph(f"• {s}", weight="bold", color=ALERT)
    if not sentences:
        flow.paragraph("Every evidence unit is reproduced by at least one hypothesis.")


def _estimators(flow: Flow, run: RunData) -> None:
    flow.heading(SECTIONS[5])
    flow.table([Column("hypothesis", 1.5), Column("SMC log Z", 1.3, "right"), Column("bridge log Z", 1.3, "right"),
                Column("pooled log Z", 1.3, "right"), Column("spread", 0.7, "right"), Column("z", 0.5, "right"),
                Column("agree", 0.6, "right")], C.estimator_rows(run.attribution, run.diagnostics),
               caption="Log evidence (log Z, nats) of each hypothesis from sequential Monte Carlo and from bridge sampling "
                       "on the NUTS draws, the engine's value (bridge, error widened by half the spread), and their spread in nats and in standard errors.")


def _sensitivity(flow: Flow, run: RunData) -> None:
    flow.heading(SECTIONS[6])
    sens = run.sensitivity
    if not sens:
        flow.paragraph("Not run for this report: `incident sensitivity RUN` adds break-even priors, evidence ablation "
                       "with the single-leg alarm, a source-reliability sweep and the evidence waterfall.")
        return
    leader = sens["leader"]
    for alarm in sens.get("alarms", []):
        flow.paragraph(f"• {alarm}", weight="bold", color=ALERT)
    for tie in sens.get("ties", []):
        flow.paragraph(f"• {tie[0].upper()}{tie[1:]}.", weight="bold", color=ALERT)
    if not sens.get("alarms") and not sens.get("ties"):
        flow.paragraph(f"No single-leg alarm: dropping any one item or group leaves {leader} the leader "
                       "and moves its probability by at most 0.3.")
    be = sens.get("break_even", {})
    if be:
        c = C.Contributions(leader, "the alternative", tuple(sorted(((alt, r["log10_bf_leader_vs_alt"]) for alt, r in be.items()),
                                                     key=lambda t: -t[1])))
        flow.table([Column("alternative", 2.0), Column("prior now", 1.0, "right"), Column("break-even prior", 1.3, "right"),
                    Column(f"log10 BF {leader} vs it", 1.6, "right")],
                   [[alt, num(r["prior"], 3), num(r["break_even_prior"], 3), num(r["log10_bf_leader_vs_alt"], 2)]
                    for alt, r in be.items()],
                   caption=f"Prior robustness: the prior an alternative would need (other priors rescaled) to draw level with {leader}.")
        flow.block(contributions_height(c), lambda fig, rect: draw_contributions(
            fig, rect, c, xlabel=f"log10 Bayes factor of {leader} against each alternative (the prior odds needed to reverse it)",
            name="break-even"))
    rows = [[r["label"], num(r["leader_posterior"], 3), f"{r['shift']:+.3f}", r["leader"]] for r in sens.get("ablation", [])]
    if rows:
        flow.table([Column("left out", 3.0), Column(f"P({leader})", 1.4, "right"), Column("shift", 0.8, "right"),
                    Column("leader then", 1.6)], rows, caption="Evidence ablation: each item or dependency group left out in turn.")
    torn = C.tornado(sens)
    if torn["bars"] and math.isfinite(torn["base"]):
        rel = [[b["source"], num(b["low_reliability"], 2), num(b["low"], 3), num(b["high_reliability"], 2), num(b["high"], 3),
                num(b["swing"], 3), f"{b.get('low_leader', NA)} / {b.get('high_leader', NA)}"] for b in torn["bars"]]
        flow.table([Column("source", 1.4), Column("low r", 0.5, "right"), Column("P at low r", 0.85, "right"),
                    Column("high r", 0.5, "right"), Column("P at high r", 0.85, "right"), Column("swing", 0.55, "right"),
                    Column("leader at low / high r", 1.85)], rel,
                   caption=f"Source-reliability sweep: each source's reliability r pinned at the 10% and 90% quantiles of its "
                           f"prior; P is P({leader}) then, and swing its change; largest swing first.")
        height = tornado_height(len(torn["bars"]))
        flow.paragraph(f"Tornado of the sweep: P({leader}) with each source's reliability at its low (upper bar) and high "
                       f"(lower bar) quantile, around the base run's {num(torn['base'], 3)} (vertical line).",
                       size=8.5, color=MUTED, keep=height)
        flow.block(height, lambda fig, rect: draw_tornado(fig, rect, torn, leader))
    wf = [[str(w["step"]), w["label"], num(w["leader_posterior"], 3), str(w.get("leader", NA))] for w in sens.get("waterfall", [])]
    if wf:
        flow.table([Column("step", 0.45, "right"), Column("evidence included", 4.0), Column(f"P({leader})", 1.3, "right"),
                    Column("leader then", 1.4)], wf,
                   caption=f"Evidence waterfall: the posterior of {leader} (the leader on all evidence) as units are added in "
                           "case order, and which hypothesis leads at each step.")
    for item, t in sens.get("coincidence", {}).items():
        flow.paragraph(f"Coincidence test for {item}: a damage time this close to the activity window arises by chance "
                       f"with probability {num(t['p_value'], 3)} (Monte Carlo, {t['n']} draws).")


def _reproducibility(flow: Flow, run: RunData) -> None:
    flow.heading(SECTIONS[7])
    flow.table([Column("item", 1.3), Column("value", 6.0, max_lines=8, mono=True)],
               C.reproducibility_rows(run.manifest, run.case_note), size=7.5)


# ---------------------------------------------------------------- assembly
def build_report(run: RunData, *, generated: dt.datetime | None = None) -> list[Figure]:
    """The report's pages (A4 portrait figures), in order. Call inside ``report_style()`` to save them."""
    generated = generated or dt.datetime.now(dt.UTC)
    flow = Flow(footer=f"{TITLE} · case {run.case_id} · run {run.run_id}")
    with report_style():
        _title(flow, run, generated)
        _summary(flow, run)
        for section in (_case_tables, _contributions, _diagnostics, _predictive, _estimators, _sensitivity, _reproducibility):
            section(flow, run)
    return flow.finish()


def default_output(run: RunData) -> Path:
    """``reports/<case>-<run>.pdf`` relative to the current working directory."""
    return Path("reports") / f"{safe_name(run.case_id, 'case id')}-{safe_name(run.run_id, 'run id')}.pdf"


def save_pdf(figures: list[Figure], path: Path, *, metadata: dict[str, str] | None = None) -> None:
    with report_style(), PdfPages(str(path), metadata=metadata or {}) as pdf:
        for fig in figures:
            pdf.savefig(fig)


def write_report(run_dir: str | Path, out: str | Path | None = None, *, generated: dt.datetime | None = None) -> Path:
    """Write the PDF attribution report of a finished run folder; return its path.

    Reads only the run folder. ``out`` defaults to ``reports/<case>-<run>.pdf`` under the
    current directory; the file is written atomically. Raises ``RunError`` when the folder
    has no usable ``attribution.json`` or the output cannot be written.
    """
    run = load_run(run_dir)
    path = Path(out) if out is not None else default_output(run)
    figures = build_report(run, generated=generated)
    for problem in layout_problems(figures):
        log.warning("report layout: %s", problem)
    from engine import __version__

    meta = {"Title": f"{TITLE}: {run.case_id}, run {run.run_id}", "Creator": f"incident-engine {__version__}",
            "Subject": str(run.meta.get("title", run.case_id))}
    return atomic_write(path, lambda tmp: save_pdf(figures, tmp, metadata=meta))


__all__ = ["SECTIONS", "build_report", "default_output", "load_run", "save_pdf", "write_report"]
