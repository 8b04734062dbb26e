"""The PDF attribution report (engine.report).

Most tests build a run folder by hand (test data, no sampler): the oracle case file and its
case.json record, an attribution, diagnostics with every key the report knows (including the
verdict, predictive checks, unexplained units and contributions, written here as test data), a
manifest and small synthetic posterior draws. The slow test reports on the session's real oracle run.
The PDF is read back with ``pdfcheck`` (text, word boxes, page images); test_document.py checks
its structure (PDF/A, outline, links, metadata).
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from pdfcheck import colour_share, ink, layout_problems, pdf_pages, render, summary_problems
from pypdf import PdfReader

from engine.errors import RunError
from engine.report import APPENDIX, SECTIONS, build_report, load_run, write_report
from engine.report import content as C
from engine.results.records import Sensitivity
from engine.run.collect import ensure_case_record, write_case_record
from engine.run.store import RunFolder, write_idata, write_json
from engine.spec.case import load_case

CASES = Path(__file__).resolve().parents[1] / "cases"
HIDS = ("external", "internal", "engine")
WHEN = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)


# ---------------------------------------------------------------- test data
def _attribution() -> dict:
    post = {"external": 0.6543, "internal": 0.2456, "engine": 0.1001}
    return {
        "case": "oracle", "run": "hand", "leader": "external", "converged": True, "warnings": [],
        "hypotheses": {h: {"prior": pr, "posterior": post[h], "posterior_mcse": 0.0123,
                           "log_evidence": {"smc": lz + 0.01, "bridge": lz - 0.01, "pooled": lz}, "log_evidence_se": 0.03}
                       for h, pr, lz in zip(HIDS, (0.5, 0.3, 0.2), (-35.0, -35.5, -35.8), strict=True)},
    }


def _diagnostics() -> dict:
    """diagnostics.json with every key the report reads (verdict, predictive, ... written by hand)."""
    per = {h: {"rhat_max": 1.004, "ess_bulk_min": 812.4, "ess_tail_min": 655.0, "divergences": 0, "bfmi_min": 0.93,
               "n_chains": 2, "n_draws": 100, "problems": [],
               "estimators": {"smc": -35.0, "smc_se": 0.04, "bridge": -35.02, "bridge_se": 0.03, "spread": 0.02, "z": 0.4,
                              "agree": True}} for h in HIDS}
    units = ("tail-holes", "frags", "time", "gap")
    return {
        "case": "oracle", "run": "hand", "verdict": "pass", "reasons": [], "hypotheses": per,
        "posterior_mcse": {h: 0.0123 for h in HIDS},
        "predictive": {u: {"family": f, "items": [u], "p_values": {h: 0.41 for h in HIDS}}
                       for u, f in zip(units, ("perforations", "fragments", "timing", "interval"), strict=True)},
        "unexplained": [],
        "contributions": {"leader": "external", "runner_up": "internal",
                          "units": dict(zip(units, (0.31, -0.12, 0.05, -0.02), strict=True)),
                          "pareto_k": dict(zip(units, (0.1, 0.2, 0.0, 0.3), strict=True))},
    }


def _manifest() -> dict:
    return {"engine_version": "0.1.0", "python": "3.11.7", "packages": {"pymc": "5.28.5", "arviz": "0.23.4"},
            "case": "oracle", "case_file": "tests/cases/oracle.yaml", "case_sha256": "ab" * 32, "run": "hand",
            "settings": {"seed": 7, "draws": 100, "tune": 100, "chains": 2}, "command": ["incident", "run", "oracle.yaml"],
            "started": "2026-01-01T00:00:00+00:00", "finished": "2026-01-01T00:01:00+00:00"}


def _posterior(seed: int):  # noqa: ANN202
    import arviz as az

    rng = np.random.default_rng(seed)
    return az.from_dict(posterior={"tail-holes__hole_rate": rng.gamma(5.0, 1.0, (2, 100)),
                                   "tail-holes__hole_rate_log__": rng.normal(size=(2, 100)),
                                   "frags__alpha": rng.dirichlet([2, 1, 1], (2, 100))},
                        sample_stats={"diverging": np.zeros((2, 100), dtype=bool)})


def make_run(root: Path, *, case_text: str | None = None, attribution: dict | None = None, diagnostics: dict | None = None,
             manifest: dict | None = None, case_record: bool = True) -> Path:
    """A hand-made run folder of the oracle case (no sampling); ``diagnostics={}``: no diagnostics.json,
    ``case_record=False``: no case.json (a folder collected before it existed)."""
    root.mkdir(parents=True)
    (root / "case.yaml").write_text(case_text or (CASES / "oracle.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    if case_record:
        write_case_record(RunFolder(root), load_case(root / "case.yaml"))
    write_json(root / "attribution.json", attribution or _attribution())
    if diagnostics != {}:
        write_json(root / "diagnostics.json", _diagnostics() if diagnostics is None else diagnostics)
    write_json(root / "manifest.json", _manifest() if manifest is None else manifest)
    for i, h in enumerate(HIDS):
        write_idata(root / "posterior" / f"{h}.nc", _posterior(i))
    return root


def report_text(run_dir: Path, tmp_path: Path) -> list[str]:
    return pdf_pages(write_report(run_dir, tmp_path / "out" / "report.pdf", generated=WHEN))


@pytest.fixture()
def hand_run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "runs" / "oracle" / "hand")


# ---------------------------------------------------------------- content (no PDF)
def test_summary_interval_is_two_mcse_clipped_to_unit_interval() -> None:
    att = _attribution()
    att["hypotheses"]["engine"].update(posterior=0.01, posterior_mcse=0.02)
    att["hypotheses"]["external"].update(posterior=0.99, posterior_mcse=0.02)
    rows = {r.hid: r for r in C.summary_rows(att)}
    assert (rows["engine"].low, rows["engine"].high) == (0.0, pytest.approx(0.05))
    assert (rows["external"].low, rows["external"].high) == (pytest.approx(0.95), 1.0)
    assert rows["external"].term == "almost certain" and rows["external"].leader


def test_bayes_factor_is_exp_of_pooled_log_evidence_difference() -> None:
    c = C.compare_leader(_attribution())
    assert (c.leader, c.runner_up) == ("external", "internal")
    assert c.bf == pytest.approx(math.exp(0.5))
    assert c.posterior_odds == pytest.approx(0.6543 / 0.2456)
    assert c.prior_odds == pytest.approx(0.5 / 0.3)


def test_leader_that_leads_on_its_prior_alone_is_called_out() -> None:
    att = _attribution()
    att["hypotheses"]["external"]["log_evidence"]["pooled"] = -36.0  # below internal's -35.5
    sentences = " ".join(C.comparison_sentences(C.compare_leader(att)))
    assert "The evidence alone favours internal (Bayes factor 1.65); external leads because of its prior." in sentences


def test_missing_log_evidence_leaves_the_bayes_factor_not_available() -> None:
    att = _attribution()
    del att["hypotheses"]["internal"]["log_evidence"]
    assert "Bayes factor external vs internal: not available" in C.comparison_sentences(C.compare_leader(att))[0]


def test_unreliable_when_not_converged_or_verdict_fail() -> None:
    att, diag = _attribution(), _diagnostics()
    assert not C.verdict(att, diag).unreliable
    att["converged"], att["warnings"] = False, ["internal: r-hat 1.2 above 1.01"]
    assert C.verdict(att, diag).unreliable and C.verdict(att, diag).reasons == ("internal: r-hat 1.2 above 1.01",)
    diag.update(verdict="fail", reasons=["estimators disagree"])
    assert C.verdict(_attribution(), diag).unreliable and C.verdict(_attribution(), diag).reasons == ("estimators disagree",)


# ---------------------------------------------------------------- the PDF
def test_report_has_every_section_heading(hand_run: Path, tmp_path: Path) -> None:
    text = "\n".join(report_text(hand_run, tmp_path))
    for heading in ("Attribution report", *SECTIONS, APPENDIX, "Hypotheses", "Evidence", "Rank plots: external"):
        assert heading in text, heading


def test_page_one_shows_each_posterior_to_three_decimals_with_its_term(hand_run: Path, tmp_path: Path) -> None:
    page1 = report_text(hand_run, tmp_path)[0]
    assert "Conjugate oracle case" in page1 and "2024-01-01" in page1 and "run hand" in page1
    for h, v in _attribution()["hypotheses"].items():
        assert h in page1 and f"{v['posterior']:.3f}" in page1
    assert "0.630 – 0.679" in page1  # 0.6543 ± 2 × 0.0123
    assert "likely" in page1 and "Bayes factor external vs internal: 1.65" in page1
    assert "Diagnostic verdict: PASS" in page1 and "UNRELIABLE" not in page1


def test_unreliable_run_says_so_on_page_one_with_reasons(tmp_path: Path) -> None:
    att = _attribution()
    att.update(converged=False, warnings=["internal: r-hat 1.230 above 1.01", "engine: 3 divergent transitions"])
    pages = report_text(make_run(tmp_path / "run", attribution=att), tmp_path)
    assert "UNRELIABLE" in pages[0]
    assert "r-hat 1.230 above 1.01" in pages[0] and "3 divergent transitions" in pages[0]


def test_failed_diagnostics_verdict_makes_the_run_unreliable(tmp_path: Path) -> None:
    diag = _diagnostics()
    diag.update(verdict="fail", reasons=["SMC and bridge disagree for internal"])
    page1 = report_text(make_run(tmp_path / "run", diagnostics=diag), tmp_path)[0]
    assert "UNRELIABLE" in page1 and "SMC and bridge disagree for internal" in page1


def test_unexplained_unit_is_named(tmp_path: Path) -> None:
    diag = _diagnostics()
    diag["unexplained"] = ["frags"]
    diag["predictive"]["frags"]["p_values"] = {h: 0.001 for h in HIDS}
    text = "\n".join(report_text(make_run(tmp_path / "run", diagnostics=diag), tmp_path))
    assert "none of the hypotheses explains frags" in text
    assert "unexplained" in text


def test_claims_without_replicates_and_unreliable_contributions_are_marked(tmp_path: Path) -> None:
    diag = _diagnostics()
    diag["predictive"]["gap"]["p_values"]["internal"] = None
    diag["contributions"]["pareto_k"]["frags"] = 0.93
    text = "\n".join(report_text(make_run(tmp_path / "run", diagnostics=diag), tmp_path))
    assert "n/a" in text
    assert "Hatched bars are unreliable estimates (Pareto k above 0.7): frags (k = 0.93)" in " ".join(text.split())


def test_sections_missing_from_diagnostics_say_not_available(tmp_path: Path) -> None:
    diag = _diagnostics()
    for key in ("verdict", "reasons", "predictive", "unexplained", "contributions"):
        del diag[key]
    text = "\n".join(report_text(make_run(tmp_path / "run", diagnostics=diag), tmp_path))
    assert "Diagnostic verdict: not available" in text
    assert text.count("not available") >= 3
    assert "none of the hypotheses explains" not in text


def test_run_folder_with_only_attribution_still_reports(tmp_path: Path) -> None:
    root = make_run(tmp_path / "run")
    for name in ("diagnostics.json", "manifest.json"):
        (root / name).unlink()
    shutil.rmtree(root / "posterior")
    text = "\n".join(report_text(root, tmp_path))
    assert all(h in text for h in SECTIONS)
    assert "0.654" in text and "not available" in text


def test_report_reads_the_case_from_case_json_not_the_yaml(hand_run: Path, tmp_path: Path) -> None:
    (hand_run / "case.yaml").unlink()
    pages = report_text(hand_run, tmp_path)
    text = " ".join("\n".join(pages).split())
    assert "Conjugate oracle case" in pages[0] and "2024-01-01" in pages[0]
    assert "6 holes, 4 of 6 assessed bent inward, sizes 30–60 mm" in text  # the family's words for tail-holes
    assert "internal_explosion" in text and "engine failure" in text  # mechanism and description of a hypothesis
    assert "fixed 1.00" in text  # the lab's reliability


def test_an_item_that_restates_another_is_labelled_in_the_evidence_table(tmp_path: Path) -> None:
    relay = ("  - id: statement-relay\n    family: claim\n    source: lab\n    restates: statement\n"
             "    observed: {statement: the tail was hit by fragments from outside, interest: neutral}\n"
             "    under: {external: {holds: 0.9}, internal: {holds: 0.2}, engine: {holds: 0.3}}\n")
    root = make_run(tmp_path / "run", case_text=(CASES / "oracle.yaml").read_text(encoding="utf-8") + relay)
    (root / "case.yaml").unlink()  # the label comes from case.json
    assert json.loads((root / "case.json").read_text(encoding="utf-8"))["evidence"][-1]["restates"] == "statement"
    pages = report_text(root, tmp_path)
    flat = " ".join("\n".join(pages).split()).replace("- ", "-")
    assert "statement-relay (restates statement)" in flat
    assert flat.count("(restates ") == 1  # only the restating item is labelled


def test_report_modules_read_records_and_never_the_case_or_computations() -> None:
    import ast

    allowed = ("engine.results.records", "engine.run.store", "engine.errors", "engine.terms", "engine.report")
    for path in sorted((Path(__file__).resolve().parents[2] / "engine" / "report").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else [])
            bad = [n for n in names if n.startswith("engine.") and not n.startswith(allowed)]
            assert not bad, f"{path.name} imports {bad}"


def test_old_run_folder_without_case_json_reports_and_says_how_to_add_it(tmp_path: Path) -> None:
    root = make_run(tmp_path / "old", case_record=False)
    run = load_run(root)
    assert run.case is None and run.meta == {}
    text = " ".join("\n".join(report_text(root, tmp_path)).split())
    assert all(h in text for h in SECTIONS) and "0.654" in text
    assert "case.json not found" in text and "incident report RUN" in text
    assert "Evidence items: not available" in text


def test_case_json_of_an_old_folder_is_written_from_its_frozen_case_and_priors(tmp_path: Path) -> None:
    text = (CASES / "oracle.yaml").read_text(encoding="utf-8") + "priors: ../no-such-priors\n"
    root = make_run(tmp_path / "run", case_text=text, case_record=False)
    assert "could not be resolved" in ensure_case_record(root) and not (root / "case.json").exists()
    shutil.copytree(Path(__file__).resolve().parents[2] / "priors", root / "priors")
    assert ensure_case_record(root) == ""
    run = load_run(root)
    assert run.case is not None and run.case.id == "oracle" and run.meta["title"] == "Conjugate oracle case"


def test_report_command_completes_an_old_run_folder(tmp_path: Path) -> None:
    import sys

    root = make_run(tmp_path / "runs" / "oracle" / "old", case_record=False)
    out = subprocess.run([sys.executable, "-m", "engine.cli", "report", str(root), "-o", str(tmp_path / "old.pdf")],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert (root / "case.json").exists()
    assert "Conjugate oracle case" in pdf_pages(tmp_path / "old.pdf")[0]


def test_case_differing_from_the_one_run_is_noted(hand_run: Path, tmp_path: Path) -> None:
    assert "case sha256 mismatch" in "\n".join(report_text(hand_run, tmp_path))  # the hand manifest's hash is made up
    manifest = _manifest()
    manifest["case_sha256"] = load_run(hand_run).case.digest
    write_json(hand_run / "manifest.json", manifest)
    assert "case sha256 mismatch" not in "\n".join(report_text(hand_run, tmp_path))


def test_folder_without_attribution_is_a_run_error(tmp_path: Path) -> None:
    root = make_run(tmp_path / "run")
    (root / "attribution.json").unlink()
    with pytest.raises(RunError, match="attribution.json"):
        write_report(root, tmp_path / "x.pdf")
    att = _attribution()
    del att["hypotheses"]["internal"]["posterior"]
    write_json(root / "attribution.json", att)
    with pytest.raises(RunError, match=r"attribution.json: hypotheses.internal.posterior: Field required"):
        write_report(root, tmp_path / "x.pdf")
    assert not (tmp_path / "x.pdf").exists()


def test_malformed_or_other_version_record_is_a_run_error_naming_file_and_field(hand_run: Path, tmp_path: Path) -> None:
    diag = _diagnostics()
    diag["hypotheses"]["engine"]["divergences"] = "none"
    write_json(hand_run / "diagnostics.json", diag)
    with pytest.raises(RunError, match=r"diagnostics.json: hypotheses.engine.divergences: Input should be a valid integer"):
        write_report(hand_run, tmp_path / "x.pdf")
    write_json(hand_run / "diagnostics.json", _diagnostics())
    case = json.loads((hand_run / "case.json").read_text(encoding="utf-8"))
    write_json(hand_run / "case.json", {**case, "schema_version": 99})
    with pytest.raises(RunError, match=r"case.json: schema_version: 99 is not the version this engine reads \(1\)"):
        write_report(hand_run, tmp_path / "x.pdf")


def test_default_output_is_reports_case_run_pdf_under_cwd(hand_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    path = write_report(hand_run)
    assert path == Path("reports") / "oracle-hand.pdf"
    assert (tmp_path / "reports" / "oracle-hand.pdf").read_bytes().startswith(b"%PDF")


def test_report_replaces_the_output_atomically(hand_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "rep" / "r.pdf"
    out.parent.mkdir()
    out.write_text("old")
    assert write_report(hand_run, out) == out
    assert out.read_bytes().startswith(b"%PDF")
    assert [p.name for p in out.parent.iterdir()] == ["r.pdf"]  # no temporary file left behind


# ---------------------------------------------------------------- layout
def _long_case(n_items: int = 24) -> str:
    """The oracle case with long titles and descriptions and many evidence items (layout stress)."""
    words = "The damage pattern near the empennage is consistent with a proximity-fused warhead detonating " * 3
    lines = (CASES / "oracle.yaml").read_text(encoding="utf-8").split("evidence:")[0]
    lines = lines.replace("title: Conjugate oracle case", f"title: {words[:180]}")
    lines = lines.replace("description: external burst", f"description: {words}")
    items = "".join(
        f"  - id: extraordinarily-long-evidence-identifier-{i:02d}\n    family: fragments\n    source: lab\n"
        f"    description: {words}\n    observed: {{counts: {{natural: {i}, blade: 1, cube: 1}}}}\n" for i in range(n_items))
    return lines + "evidence:\n" + items


def test_long_text_and_many_items_fit_the_pages(tmp_path: Path) -> None:
    diag = _diagnostics()
    long_units = {f"extraordinarily-long-evidence-identifier-{i:02d}": (-1) ** i * 0.1 * i for i in range(24)}
    diag["contributions"].update(units=long_units, pareto_k={u: 0.9 for u in list(long_units)[::5]})
    diag["predictive"] = {u: {"family": "fragments", "items": [u], "p_values": {h: 0.5 for h in HIDS}} for u in long_units}
    diag["unexplained"] = list(long_units)[:2]
    att = _attribution()
    att.update(converged=False, warnings=[f"warning number {i}: " + "tail ESS below 400 " * 4 for i in range(20)])
    root = make_run(tmp_path / "run", case_text=_long_case(), attribution=att, diagnostics=diag)
    run = load_run(root)
    assert run.case is not None
    pdf = write_report(root, tmp_path / "long.pdf", generated=WHEN)
    assert layout_problems(pdf) == []
    text = pdf_pages(pdf)
    assert len(text) >= 5
    assert "UNRELIABLE" in text[0] and "more (see section 4)" in text[0]
    flat = " ".join("\n".join(text).split())
    for i in range(24):  # every long identifier in full somewhere (evidence table, contributions, appendix)
        assert f"extraordinarily-long-evidence-identifier-{i:02d}" in flat.replace("- ", "-")


def test_layout_check_finds_overlaps_and_text_off_the_page(tmp_path: Path) -> None:
    """The word-box check of pdfcheck flags what the template must never produce."""
    import matplotlib
    import typst

    fonts = str(Path(matplotlib.get_data_path()) / "fonts" / "ttf")
    src = tmp_path / "bad.typ"
    src.write_text('#set page(paper: "a4", margin: (x: 0.75in, top: 0.7in, bottom: 0.85in))\n'
                   '#set text(font: "DejaVu Sans")\n'
                   '#place(top + left, dx: 1in, dy: 2in)[first text, quite long]\n'
                   '#place(top + left, dx: 1.2in, dy: 2in)[second text over it]\n'
                   '#place(top + left, dx: 5.5in, dy: 4in)[this runs off the right edge of the page]\n', encoding="utf-8")
    typst.compile(str(src), output=str(tmp_path / "bad.pdf"), font_paths=[fonts], ignore_system_fonts=True)
    problems = "\n".join(layout_problems(tmp_path / "bad.pdf"))
    assert "'second' and 'text,' overlap" in problems and "'edge' outside the text area" in problems


def test_hand_made_report_layout_has_no_problems(hand_run: Path, tmp_path: Path) -> None:
    assert layout_problems(write_report(hand_run, tmp_path / "r.pdf", generated=WHEN)) == []


def test_every_page_renders_and_is_not_blank(hand_run: Path, tmp_path: Path) -> None:
    pdf = write_report(hand_run, tmp_path / "r.pdf", generated=WHEN)
    pngs = render(pdf, tmp_path / "png")
    assert len(pngs) == len(PdfReader(str(pdf)).pages) >= 3
    for png in pngs:
        assert ink(png) > 0.01, png.name


# ---------------------------------------------------------------- a real run
@pytest.fixture(scope="session")
def real_report(oracle_run, tmp_path_factory):  # noqa: ANN001, ANN201
    run_dir, attribution = oracle_run
    out = tmp_path_factory.mktemp("report")
    return run_dir, attribution, write_report(run_dir, out / "oracle.pdf", generated=WHEN), out


@pytest.mark.slow
def test_report_of_a_real_run(real_report) -> None:  # noqa: ANN001
    run_dir, attribution, pdf, out = real_report
    pages = pdf_pages(pdf)
    text = "\n".join(pages)
    for heading in SECTIONS:
        assert heading in text
    for h, v in attribution["hypotheses"].items():
        assert f"{v['posterior']:.3f}" in pages[0], h
    assert ("UNRELIABLE" in pages[0]) == (not attribution["converged"])
    assert summary_problems(pages[0], attribution) == []
    assert layout_problems(pdf) == []
    for png in render(pdf, out / "png"):
        assert ink(png) > 0.01, png.name


@pytest.mark.slow
def test_real_run_marked_not_converged_is_unreliable_on_page_one(real_report, tmp_path: Path) -> None:  # noqa: ANN001
    run_dir, attribution, _, _ = real_report
    copy_dir = tmp_path / "oracle" / "edited"
    shutil.copytree(run_dir, copy_dir)
    edited = copy.deepcopy(attribution)
    edited.update(converged=False, warnings=["external: log-evidence estimators disagree by 0.90 nat (6.0 s.e.)"])
    (copy_dir / "attribution.json").write_text(json.dumps(edited), encoding="utf-8")
    page1 = report_text(copy_dir, tmp_path)[0]
    assert "UNRELIABLE" in page1 and "estimators disagree by 0.90 nat" in page1


# ---------------------------------------------------------------- sensitivity: tornado and break-even plots
SEED_CASES = Path(__file__).resolve().parents[2] / "cases"
TORNADO_COLOURS = ((0xE6, 0x9F, 0x00), (0x00, 0x9E, 0x73))  # figures.LOW_REL, figures.HIGH_REL
BASE_P = 0.62


def _il20_sensitivity(swing: dict[str, float] | None = None) -> tuple[dict, dict]:
    """An Il-20 attribution and its sensitivity.json, made by ``engine.sensitivity.summarize`` from
    hand-written variant attributions (test data, no sampler): source i's reliability sweep moves
    P(leader) by -0.6 s_i (low) and +0.4 s_i (high), so its swing is s_i; dropping the first unit
    makes the runner-up the leader."""
    from engine.results.sensitivity import plan_variants, summarize
    from engine.spec.case import load_case

    case = load_case(SEED_CASES / "il20-2018.yaml")
    hids = list(case.hypotheses)
    prior = {h: case.hypotheses[h].prior for h in hids}

    def attribution(p_leader: float) -> dict:
        rest = {hids[1]: 0.65 * (1 - p_leader), hids[2]: 0.35 * (1 - p_leader)}
        post = {hids[0]: p_leader, **rest}
        return {"case": case.id, "run": "hand", "leader": max(post, key=post.get), "converged": True, "warnings": [],
                "hypotheses": {h: {"prior": prior[h], "posterior": post[h], "posterior_mcse": 0.004,
                                   "log_evidence": {"smc": math.log(post[h] / prior[h]), "bridge": math.log(post[h] / prior[h]),
                                                    "pooled": math.log(post[h] / prior[h])}, "log_evidence_se": 0.02}
                               for h in hids}}

    variants = plan_variants(case)
    sources = sorted({v["label"] for v in variants.values() if v["kind"] == "reliability"})
    swing = swing or {s: 0.015 * (i + 1) for i, s in enumerate(sources)}
    first_unit = next(n for n, v in variants.items() if v["kind"] == "ablation")
    results = {}
    for name, v in variants.items():
        if v["kind"] == "reliability":
            results[name] = attribution(BASE_P + (-0.6 if name.endswith("-lo") else 0.4) * swing[v["label"]])
        else:
            results[name] = attribution(0.2 if name == first_unit else 0.6)
    base = attribution(BASE_P)
    return base, summarize(case, base, variants, results)


def _axes(report, label: str) -> list[tuple[str, object]]:  # noqa: ANN001
    """(figure name, axes) of every plot labelled ``label`` among the report's figures."""
    return [(name, ax) for name, fig in report.figures.items() for ax in fig.axes if ax.get_label() == label]


def _page_with(pdf_text: list[str], needle: str) -> int:
    hits = [i for i, t in enumerate(pdf_text, start=1) if needle in " ".join(t.split())]
    assert hits, needle
    return hits[0]


def test_tornado_data_is_the_reliability_sweep_sorted_by_swing() -> None:
    _, sens = _il20_sensitivity()
    torn = sens["tornado"]
    assert torn["base"] == BASE_P
    sources = [b["source"] for b in torn["bars"]]
    assert sorted(sources) == sorted(sens["reliability"]) and len(sources) == 6
    swings = [b["swing"] for b in torn["bars"]]
    assert swings == sorted(swings, reverse=True)
    for b in torn["bars"]:
        sweep = sens["reliability"][b["source"]]
        assert (b["low"], b["high"]) == (sweep["lo"]["leader_posterior"], sweep["hi"]["leader_posterior"])
        assert b["low_reliability"] < b["high_reliability"]
        assert b["swing"] == pytest.approx(abs(b["high"] - b["low"]))
        assert (b["low_leader"], b["high_leader"]) == (sweep["lo"]["leader"], sweep["hi"]["leader"])
    # the report reads the same bars; an older sensitivity.json without "tornado", or without the
    # leaders in it, gets them built from its sweep when it is read
    assert C.tornado(sens) == torn
    assert Sensitivity.from_json({k: v for k, v in sens.items() if k != "tornado"}).to_json()["tornado"] == torn
    older = copy.deepcopy(sens)
    for b in older["tornado"]["bars"]:
        del b["low_leader"], b["high_leader"]
    assert C.tornado(Sensitivity.from_json(older).to_json()) == torn


def test_sensitivity_section_draws_the_tornado_next_to_its_table(tmp_path: Path) -> None:
    att, sens = _il20_sensitivity()
    root = make_run(tmp_path / "runs" / "il20-2018" / "hand", case_text=(SEED_CASES / "il20-2018.yaml").read_text(encoding="utf-8"),
                    attribution=att, diagnostics={})
    write_json(root / "sensitivity.json", sens)
    report = build_report(load_run(root), generated=WHEN)
    (_, ax), = _axes(report, "tornado")
    assert len(_axes(report, "break-even")) == 1
    # bars top to bottom in decreasing swing; each source has two bars starting at the base value
    order = [b["source"] for b in sens["tornado"]["bars"]]
    ticks = sorted(((t.get_position()[1], t.get_text()) for t in ax.get_yticklabels()), reverse=True)
    assert [text.split(" (r ")[0] for _, text in ticks] == order
    bars = sorted(ax.patches, key=lambda p: -p.get_y())
    assert len(bars) == 2 * len(order)
    for k, b in enumerate(sens["tornado"]["bars"]):
        low, high = bars[2 * k], bars[2 * k + 1]
        for patch, value in ((low, b["low"]), (high, b["high"])):
            assert patch.get_x() == pytest.approx(BASE_P)
            assert patch.get_x() + patch.get_width() == pytest.approx(value)
    lo_x, hi_x = ax.get_xlim()
    assert lo_x < min(min(b["low"], b["high"]) for b in sens["tornado"]["bars"]) and hi_x > BASE_P + 0.4 * 0.09
    # in the PDF: the tornado's labels, on the page of the sweep's table or the next one, in its colours
    pdf = write_report(root, tmp_path / "il20.pdf", generated=WHEN)
    assert layout_problems(pdf) == []
    text = pdf_pages(pdf)
    table_page = _page_with(text, "Source-reliability sweep")
    plot_page = _page_with(text, "reliability at its 10% quantile")  # the plot's title, set as text in the PDF
    assert plot_page - table_page in (0, 1)
    for b in sens["tornado"]["bars"]:
        assert b["source"] in " ".join(text[plot_page - 1].split())
    assert f"{att['leader']} / {att['leader']}" in " ".join(text[table_page - 1].split())  # who leads at low / high r
    pngs = render(pdf, tmp_path / "png")
    for rgb in TORNADO_COLOURS:  # the bars are on that page, in the tornado's two colours, and on no other page
        share = colour_share(pngs[plot_page - 1], rgb)
        assert share > 0.001, rgb
        assert all(colour_share(png, rgb) < share / 20 for i, png in enumerate(pngs, start=1) if i != plot_page), rgb


def test_tornado_with_no_swing_or_a_single_source_still_fits(tmp_path: Path) -> None:
    from engine.spec.case import load_case

    sources = sorted(s for s in load_case(SEED_CASES / "il20-2018.yaml").sources)
    att, sens = _il20_sensitivity({s: 0.0 for s in sources})
    root = make_run(tmp_path / "flat", case_text=(SEED_CASES / "il20-2018.yaml").read_text(encoding="utf-8"),
                    attribution=att, diagnostics={})
    write_json(root / "sensitivity.json", sens)
    assert layout_problems(write_report(root, tmp_path / "flat.pdf", generated=WHEN)) == []
    (_, ax), = _axes(build_report(load_run(root), generated=WHEN), "tornado")
    lo_x, hi_x = ax.get_xlim()
    assert lo_x < BASE_P < hi_x and hi_x - lo_x >= 0.01  # a visible axis around the base even with zero swing
    one = sens["tornado"]["bars"][0]["source"]
    sens["reliability"] = {one: sens["reliability"][one]}
    sens["tornado"]["bars"] = sens["tornado"]["bars"][:1]  # the report draws the tornado sensitivity.json holds
    write_json(root / "sensitivity.json", sens)
    assert layout_problems(write_report(root, tmp_path / "one.pdf", generated=WHEN)) == []
    (_, ax), = _axes(build_report(load_run(root), generated=WHEN), "tornado")
    assert len(ax.patches) == 2


def test_a_long_unbroken_command_line_and_case_path_wrap_inside_the_page(tmp_path: Path) -> None:
    """A command line with no space to wrap at (a pytest node id, a deep path) ran off page 7."""
    from report.pdfcheck import layout_problems

    long_id = "tests/run/test_sensitivity_runs.py::test_seed_case_sweep_runs_on_two_workers_compiling_each_structure_once_per_worker[azal8243-2024.yaml]"
    manifest = {**_manifest(), "command": ["pytest", long_id], "case_file": "/very/deep/" + "folder_name_" * 12 + "case.yaml"}
    run = make_run(tmp_path / "runs" / "oracle" / "hand", manifest=manifest)
    pdf = write_report(run, tmp_path / "out" / "report.pdf", generated=WHEN)
    assert layout_problems(pdf) == []
    text = " ".join(pdf_pages(pdf)).replace("\u200b", "")
    assert "compiling_each_structure" in text
