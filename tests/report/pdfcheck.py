"""Reading a PDF back for the report tests: text, outline, links, metadata, fonts, PDF/A markers,
word boxes and page images. Written against the PDF alone (pypdf, poppler's pdftotext and
pdftoppm), nothing from ``engine``.
"""

from __future__ import annotations

import html
import math
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from pypdf import PdfReader
from pypdf.generic import IndirectObject

A4 = (595.2756, 841.8898)  # points
MARGIN_X, MARGIN_TOP = 54.0, 50.4  # 0.75 in, 0.7 in: the template's margins
FOOTER_ROOM = 0.45 * 72  # the footer sits in the bottom margin, above this much paper


def pdf_pages(path: Path) -> list[str]:
    return [p.extract_text() for p in PdfReader(str(path)).pages]


def flat(text: str) -> str:
    """Whitespace collapsed (line breaks and wrapping removed)."""
    return " ".join(text.split())


# ---------------------------------------------------------------- the summary against attribution.json
# The verbal scale of ICD 203 (US Office of the Director of National Intelligence, 2015), upper bounds.
ICD_203 = ((0.05, "almost no chance"), (0.20, "very unlikely"), (0.45, "unlikely"), (0.55, "roughly even chance"),
           (0.80, "likely"), (0.95, "very likely"), (math.inf, "almost certain"))


def icd_term(p: float) -> str:
    return next(term for upper, term in ICD_203 if p < upper)


def sig3(x: float) -> str:
    return f"{x:.3g}"


def summary_problems(page1: str, attribution: dict) -> list[str]:
    """Every number of page 1's summary checked against attribution.json: one table row per
    hypothesis (prior, posterior, posterior ± 2 MCSE clipped to [0, 1], term), by decreasing
    posterior; the leader line; the Bayes factor of the leader against the runner-up from the
    pooled log evidence (and its log10 and ± 2 s.e. range); the posterior and prior odds."""
    text = flat(page1)
    hyps = attribution["hypotheses"]
    order = sorted(hyps, key=lambda h: -hyps[h]["posterior"])
    problems, at = [], []
    for hid in order:
        h = hyps[hid]
        p, m = h["posterior"], h["posterior_mcse"]
        row = (f"{hid} {h['prior']:.3f} {p:.3f} {max(0.0, p - 2 * m):.3f} – {min(1.0, p + 2 * m):.3f} {icd_term(p)}")
        at.append(text.find(row))
        if row not in text:
            problems.append(f"summary row missing: {row!r}")
    if all(i >= 0 for i in at) and at != sorted(at):
        problems.append("summary rows are not by decreasing posterior")
    leader = attribution["leader"]
    if f"Leader: {leader}, posterior {hyps[leader]['posterior']:.3f} ({icd_term(hyps[leader]['posterior'])})." not in text:
        problems.append("leader line")
    runner = max((h for h in hyps if h != leader), key=lambda h: hyps[h]["posterior"])
    a, b = hyps[leader], hyps[runner]
    log_bf = a["log_evidence"]["pooled"] - b["log_evidence"]["pooled"]
    se = math.hypot(a["log_evidence_se"], b["log_evidence_se"])
    bf = (f"Bayes factor {leader} vs {runner}: {sig3(math.exp(log_bf))} (log10 {log_bf / math.log(10):.2f}; Monte Carlo "
          f"range {sig3(math.exp(log_bf - 2 * se))} to {sig3(math.exp(log_bf + 2 * se))}), from the pooled log evidence.")
    if bf not in text:
        problems.append(f"Bayes factor sentence missing: {bf!r}")
    odds = (f"Posterior odds {leader} : {runner} = {sig3(a['posterior'] / b['posterior'])} "
            f"(prior odds {sig3(a['prior'] / b['prior'])}).")
    if odds not in text:
        problems.append(f"odds sentence missing: {odds!r}")
    return problems


# ---------------------------------------------------------------- structure
def outline_titles(reader: PdfReader) -> list[tuple[int, str]]:
    """(depth, title) of every bookmark, in order."""
    out: list[tuple[int, str]] = []

    def walk(items: list, depth: int) -> None:
        for it in items:
            if isinstance(it, list):
                walk(it, depth + 1)
            else:
                out.append((depth, str(it.title)))

    walk(reader.outline, 0)
    return out


def named_destinations(reader: PdfReader) -> dict[str, int]:
    """Named destination -> page index (0-based)."""
    return {str(name): reader.get_destination_page_number(dest) for name, dest in reader.named_destinations.items()}


@dataclass(frozen=True)
class Link:
    page: int  # 0-based
    rect: tuple[float, float, float, float]  # x0, y0, x1, y1 in points, origin bottom left
    target: str | int  # a named destination, or the page index of an explicit one
    text: str  # the words under the link


def links(path: Path) -> list[Link]:
    """Every internal link annotation with its target and the words it covers."""
    reader = PdfReader(str(path))
    pages = {p.indirect_reference.idnum: i for i, p in enumerate(reader.pages)}
    words = word_boxes(path)
    out = []
    for i, page in enumerate(reader.pages):
        height = float(page.mediabox.height)
        for ref in page.get("/Annots") or []:
            a = ref.get_object()
            if a.get("/Subtype") != "/Link":
                continue
            dest = a.get("/Dest")
            if dest is None and a.get("/A") is not None and a["/A"].get("/S") == "/GoTo":
                dest = a["/A"]["/D"]
            if dest is None:
                continue
            dest = dest.get_object() if isinstance(dest, IndirectObject) else dest
            if isinstance(dest, str):
                target: str | int = str(dest)
            else:
                first = dest[0]
                target = pages.get(first.idnum if isinstance(first, IndirectObject) else -1, -1)
            x0, y0, x1, y1 = (float(v) for v in a["/Rect"])
            covered = [w.text for w in words[i] if x0 - 1 <= (w.x0 + w.x1) / 2 <= x1 + 1
                       and y0 - 1 <= height - (w.y0 + w.y1) / 2 <= y1 + 1]
            out.append(Link(i, (x0, y0, x1, y1), target, " ".join(covered)))
    return out


def xmp_values(reader: PdfReader) -> dict[str, str]:
    """The XMP packet's simple properties (prefix:name -> text), e.g. pdfaid:part."""
    meta = reader.root_object.get("/Metadata")
    if meta is None:
        return {}
    xml = meta.get_object().get_data().decode("utf-8")
    return {m[0]: html.unescape(m[1].strip()) for m in re.findall(r"<(\w+:\w+)>([^<]*)</\1>", xml)}


def fonts(reader: PdfReader) -> list[tuple[str, bool]]:
    """(base font name, embedded?) of every font the pages and their forms use."""
    seen: dict[str, bool] = {}

    def font_file(desc: object) -> bool:
        return desc is not None and any(k in desc for k in ("/FontFile", "/FontFile2", "/FontFile3"))

    def visit(resources: object, depth: int = 0) -> None:
        if resources is None or depth > 8:
            return
        resources = resources.get_object()
        for ref in (resources.get("/Font") or {}).values():
            f = ref.get_object()
            name = str(f.get("/BaseFont", "?"))
            if f.get("/Subtype") == "/Type0":
                desc = f["/DescendantFonts"][0].get_object().get("/FontDescriptor")
            else:
                desc = f.get("/FontDescriptor")
            seen[name] = font_file(desc.get_object() if desc is not None else None) or f.get("/Subtype") == "/Type3"
        for ref in (resources.get("/XObject") or {}).values():
            x = ref.get_object()
            if x.get("/Subtype") == "/Form":
                visit(x.get("/Resources"), depth + 1)

    for page in reader.pages:
        visit(page.get("/Resources"))
    return sorted(seen.items())


# ---------------------------------------------------------------- where the words are
@dataclass(frozen=True)
class Word:
    text: str
    x0: float
    y0: float  # from the top of the page
    x1: float
    y1: float


def word_boxes(path: Path) -> list[list[Word]]:
    """Every word's box per page (poppler's ``pdftotext -bbox``)."""
    if shutil.which("pdftotext") is None:
        pytest.skip("pdftotext (poppler-utils) is not installed")
    out = subprocess.run(["pdftotext", "-bbox", str(path), "-"], capture_output=True, text=True, check=True, timeout=120).stdout
    pages = []
    for page in out.split("<page ")[1:]:
        pages.append([Word(html.unescape(m[4]), *(float(v) for v in m[:4])) for m in re.findall(
            r'<word xMin="([\d.]+)" yMin="([\d.]+)" xMax="([\d.]+)" yMax="([\d.]+)">([^<]*)</word>', page)])
    return pages


def layout_problems(path: Path, *, tol: float = 0.75) -> list[str]:
    """Words outside the text area (left and right margins, top margin; the footer in the bottom
    margin) or overlapping another word by more than ``tol`` points both ways, as "page N: ..."."""
    problems = []
    width, height = A4
    for n, words in enumerate(word_boxes(path), start=1):
        for w in words:
            if w.x0 < MARGIN_X - tol or w.x1 > width - MARGIN_X + tol or w.y0 < MARGIN_TOP - tol or w.y1 > height - FOOTER_ROOM:
                problems.append(f"page {n}: {w.text!r} outside the text area ({w.x0:.0f}, {w.y0:.0f}, {w.x1:.0f}, {w.y1:.0f})")
        if len(words) > 1:
            b = np.array([(w.x0, w.y0, w.x1, w.y1) for w in words])
            dx = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
            dy = np.minimum(b[:, None, 3], b[None, :, 3]) - np.maximum(b[:, None, 1], b[None, :, 1])
            for i, j in zip(*np.nonzero(np.triu((dx > tol) & (dy > tol), 1)), strict=True):
                problems.append(f"page {n}: {words[i].text!r} and {words[j].text!r} overlap")
    return problems


# ---------------------------------------------------------------- page images
def render(pdf: Path, out: Path, dpi: int = 40) -> list[Path]:
    if shutil.which("pdftoppm") is None:
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    out.mkdir()
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", str(pdf), str(out / "page")], check=True, timeout=120)
    return sorted(out.glob("page-*.png"))


def ink(png: Path) -> float:
    """Fraction of pixels that are not white."""
    from matplotlib.image import imread

    img = imread(str(png))[..., :3]
    return float((img.min(axis=-1) < 0.9).mean())


def colour_share(png: Path, rgb: tuple[int, int, int], tol: int = 12) -> float:
    """Fraction of the page's pixels within ``tol`` (0-255 per channel) of ``rgb``."""
    from matplotlib.image import imread

    img = imread(str(png))[..., :3] * 255.0
    return float((np.abs(img - np.array(rgb)).max(axis=-1) <= tol).mean())
