"""The report as a document: PDF/A markers, embedded fonts, metadata, hashes, outline, links,
the appendix of quoted sources, and every number of the summary against attribution.json.

The PDF is read back with pypdf and poppler (``pdfcheck``); the expected values are derived here
from the run folder's JSON files, not from ``engine.report.content``.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import pytest
from pdfcheck import (
    ICD_203,
    flat,
    fonts,
    layout_problems,
    links,
    named_destinations,
    outline_titles,
    pdf_pages,
    summary_problems,
    xmp_values,
)
from pypdf import PdfReader
from test_report import SEED_CASES, WHEN, _il20_sensitivity, _manifest, make_run

from engine.report import APPENDIX, SECTIONS, write_report
from engine.run.store import write_json


@pytest.fixture()
def hand_pdf(tmp_path: Path) -> tuple[Path, Path]:
    """The hand-made oracle run with a manifest that records its inputs, and its report."""
    root = make_run(tmp_path / "runs" / "oracle" / "hand")
    manifest = _manifest()
    manifest["inputs"] = {"case.yaml": hashlib.sha256((root / "case.yaml").read_bytes()).hexdigest()}
    manifest["case_sha256"] = json.loads((root / "case.json").read_text(encoding="utf-8"))["digest"]
    write_json(root / "manifest.json", manifest)
    return root, write_report(root, tmp_path / "report.pdf", generated=WHEN)


def test_summary_numbers_match_attribution_json(hand_pdf: tuple[Path, Path]) -> None:
    root, pdf = hand_pdf
    attribution = json.loads((root / "attribution.json").read_text(encoding="utf-8"))
    assert summary_problems(pdf_pages(pdf)[0], attribution) == []
    edited = json.loads(json.dumps(attribution))  # the check fails on a number the PDF does not show
    edited["hypotheses"]["internal"]["posterior"] = 0.2501  # 0.250 where the PDF says 0.246
    assert any("internal" in p for p in summary_problems(pdf_pages(pdf)[0], edited))


def test_archival_pdf_a_with_embedded_fonts_and_output_intent(hand_pdf: tuple[Path, Path], tmp_path: Path) -> None:
    root, pdf = hand_pdf
    reader = PdfReader(str(pdf))
    xmp = xmp_values(reader)
    assert xmp.get("pdfaid:part") == "2" and xmp.get("pdfaid:conformance") in ("B", "U", "A")
    (intent,) = reader.root_object["/OutputIntents"]
    intent = intent.get_object()
    assert intent["/S"] == "/GTS_PDFA1" and intent["/DestOutputProfile"].get_object().get_data()  # an ICC profile
    used = fonts(reader)
    assert used and all(embedded for _, embedded in used), used
    assert {"DejaVuSans", "DejaVuSans-Bold"} <= {name.split("+")[-1] for name, _ in used}
    # without the standard there are no PDF/A markers: they come from the typesetter's conformance mode
    plain = PdfReader(str(write_report(root, tmp_path / "plain.pdf", generated=WHEN, standard=None)))
    assert "pdfaid:part" not in xmp_values(plain) and "/OutputIntents" not in plain.root_object


def test_metadata_and_title_page_tie_the_pdf_to_its_run_folder(hand_pdf: tuple[Path, Path]) -> None:
    root, pdf = hand_pdf
    reader = PdfReader(str(pdf))
    info = reader.metadata
    manifest_hash = hashlib.sha256((root / "manifest.json").read_bytes()).hexdigest()
    assert info.title == "Attribution report: oracle, run hand"
    assert info.author.startswith("incident-engine ") and info.subject == "Conjugate oracle case"
    assert {"case oracle", "run hand", "engine 0.1.0", f"manifest sha256 {manifest_hash}"} <= set(info["/Keywords"].split(", "))
    assert xmp_values(reader).get("pdf:Keywords") == info["/Keywords"]  # XMP and Info agree (PDF/A)
    page1 = flat(pdf_pages(pdf)[0])
    case_yaml = hashlib.sha256((root / "case.yaml").read_bytes()).hexdigest()
    case_digest = json.loads((root / "case.json").read_text(encoding="utf-8"))["digest"]
    assert f"manifest.json sha256 {manifest_hash}" in page1
    assert f"case file sha256 (case.yaml) {case_yaml}" in page1
    assert f"case and priors sha256 {case_digest}" in page1
    assert "generated 2026-01-02 03:04 UTC" in page1 and reader.metadata.creation_date.year == 2026


def test_outline_and_linked_contents(hand_pdf: tuple[Path, Path]) -> None:
    root, pdf = hand_pdf
    reader = PdfReader(str(pdf))
    case = json.loads((root / "case.json").read_text(encoding="utf-8"))
    outline = outline_titles(reader)
    assert [t for d, t in outline if d == 0] == [*SECTIONS, APPENDIX]
    assert [t for d, t in outline if d == 2][:3] == [h["id"] for h in case["hypotheses"]]  # under 2. / Hypotheses
    section_a = [t for _, t in outline[outline.index((0, APPENDIX)) + 1:]]
    assert section_a == [e["id"] for e in case["evidence"]]
    pages, dests = pdf_pages(pdf), named_destinations(reader)
    contents = {lk.target for lk in links(pdf) if lk.page == 0 and str(lk.target).startswith("sec-")}
    assert contents == {f"sec-{i}" for i in range(1, 9)} | {"sec-A"}
    for i, title in enumerate([*SECTIONS, APPENDIX]):
        name = f"sec-{i + 1}" if i < len(SECTIONS) else "sec-A"
        assert title in pages[dests[name]], title  # each contents entry leads to the page of its section
        assert f"{title} " in flat(pages[0])  # and is listed on page 1 with its page number


def test_summary_rows_link_to_hypotheses_and_evidence_rows_to_their_sources(hand_pdf: tuple[Path, Path]) -> None:
    root, pdf = hand_pdf
    case = json.loads((root / "case.json").read_text(encoding="utf-8"))
    pages, dests, all_links = pdf_pages(pdf), named_destinations(PdfReader(str(pdf))), links(pdf)
    for h in case["hypotheses"]:
        (page,) = {lk.page for lk in all_links if lk.target == f"hyp-{h['id']}" and lk.page == 0}
        target = flat(pages[dests[f"hyp-{h['id']}"]])
        assert h["id"] in target and flat(h["description"]) in target
    table_page = next(i for i, t in enumerate(pages) if "At most: the largest factor" in flat(t))
    for item in case["evidence"]:
        linked = [lk for lk in all_links if lk.target == f"ev-{item['id']}"]
        assert any(lk.page in (table_page, table_page - 1) for lk in linked), item["id"]  # from the evidence table
        assert any(item["id"].split("-")[0] in lk.text for lk in linked), item["id"]  # over the item's id
        assert flat(item["observation"]) in flat(" ".join(pages[dests[f"ev-{item['id']}"]:]))  # the appendix entry
    # the contributions table links each unit to its items, and each appendix entry links back to its unit
    units = json.loads((root / "diagnostics.json").read_text(encoding="utf-8"))["contributions"]["units"]
    table = next(i for i, t in enumerate(pages) if "evidence unit log10 BF" in flat(t))
    for unit, value in units.items():
        assert any(lk.target == f"ev-{unit}" and lk.page == table and unit in lk.text for lk in all_links), unit
        assert any(lk.page >= dests["sec-A"] and lk.target == table and lk.text == f"{value:+.2f}" for lk in all_links), unit


def test_appendix_quotes_every_citation_of_the_case(tmp_path: Path) -> None:
    att, sens = _il20_sensitivity()
    root = make_run(tmp_path / "runs" / "il20-2018" / "hand", case_text=(SEED_CASES / "il20-2018.yaml").read_text(encoding="utf-8"),
                    attribution=att, diagnostics={})
    pdf = write_report(root, tmp_path / "il20.pdf", generated=WHEN)
    case = json.loads((root / "case.json").read_text(encoding="utf-8"))
    pages = pdf_pages(pdf)
    start = next(i for i, t in enumerate(pages) if APPENDIX in t and "..." not in t)
    appendix = flat(" ".join(pages[start:]))
    cites = [(e["id"], c) for e in case["evidence"] for c in e["cites"]]
    assert len(cites) >= 5
    for item, c in cites:
        assert flat(c["quote"]) in appendix, (item, c["quote"][:40])
        assert c["file"] in appendix
    sources = {s["id"]: s for s in case["sources"]}
    for e in case["evidence"]:  # each entry names its source's title
        assert flat(sources[e["source"]]["title"]) in appendix
    assert layout_problems(pdf) == []


def test_probability_scale_legend_names_its_source(hand_pdf: tuple[Path, Path]) -> None:
    _, pdf = hand_pdf
    page1 = flat(pdf_pages(pdf)[0])
    assert "Intelligence Community Directive 203" in page1
    for lower, (upper, term) in zip((0.0, *[u for u, _ in ICD_203[:-1]]), ICD_203, strict=True):
        span = f"below {upper:.0%}" if lower == 0 else f"{lower:.0%} or more" if math.isinf(upper) else f"{lower:.0%} to {upper:.0%}"
        assert term in page1 and span in page1, (term, span)


def test_report_text_is_extractable_and_figures_are_vector(hand_pdf: tuple[Path, Path]) -> None:
    """Plot labels are text in the PDF (SVG with text kept), and no page carries a raster image."""
    _, pdf = hand_pdf
    text = flat(" ".join(pdf_pages(pdf)))
    assert "favours external →" in text and "log10 Bayes factor, external vs internal" in text
    assert "rank (all chains)" in text
    reader = PdfReader(str(pdf))

    def images(res: object, depth: int = 0) -> int:
        res = res.get_object() if res is not None else None
        if res is None or depth > 8:
            return 0
        n = 0
        for ref in (res.get("/XObject") or {}).values():
            x = ref.get_object()
            n += 1 if x.get("/Subtype") == "/Image" else images(x.get("/Resources"), depth + 1)
        return n

    assert sum(images(p.get("/Resources")) for p in reader.pages) == 0
    assert re.search(r"\d+\.\d+", text)


def test_a_typesetting_failure_is_a_run_error_naming_the_template() -> None:
    from engine.errors import RunError
    from engine.report.document import typeset

    with pytest.raises(RunError, match=r"could not be typeset by report.typ \(dictionary does not contain key \"meta\"\)"):
        typeset("report.typ", "{}", timestamp=0)


def test_inconclusive_change_of_leader_is_printed_and_is_no_calm(tmp_path: Path) -> None:
    att, sens = _il20_sensitivity()
    sens["alarms"] = []
    sens["ties"] = ["inconclusive: dropping x puts b level with a within Monte Carlo error (P 0.390 vs 0.385)"]
    root = make_run(tmp_path / "run", case_text=(SEED_CASES / "il20-2018.yaml").read_text(encoding="utf-8"), attribution=att,
                    diagnostics={})
    write_json(root / "sensitivity.json", sens)
    text = flat(" ".join(pdf_pages(write_report(root, tmp_path / "r.pdf", generated=WHEN))))
    assert "• Inconclusive: dropping x puts b level with a within Monte Carlo error (P 0.390 vs 0.385)." in text
    assert "No single-leg alarm" not in text
