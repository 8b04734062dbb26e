"""Page layout: text (measured and wrapped by ``engine.report.text``) laid out top to bottom over A4 pages.

``Flow`` places headings, paragraphs, banners, tables and plot blocks on A4 portrait
figures, starting a new page when the next element does not fit; long table cells wrap
and are cut off (with "…") after a few lines; table headers repeat on each page.
``layout_problems`` checks the finished pages: every text and every plot inside the page,
no two texts overlapping, no text over a plot, no two plots overlapping.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle
from matplotlib.transforms import Bbox

from engine.report.text import BREAK_AFTER, MONO, SANS, line_height, printable, text_width, truncate, wrap

PAGE_W, PAGE_H = 8.27, 11.69  # A4 portrait, inches
MARGIN_X, MARGIN_TOP, MARGIN_BOTTOM = 0.75, 0.7, 0.85
TEXT_W = PAGE_W - 2 * MARGIN_X
INK, MUTED, ALERT, RULE, SHADE = "#111111", "#555555", "#b00020", "#9a9a9a", "#e9e9e9"
STYLE = {"pdf.fonttype": 42, "ps.fonttype": 42, "font.family": SANS, "axes.unicode_minus": True,
         "text.hinting": "no_hinting"}  # unhinted: the layout check measures what the PDF shows


@contextlib.contextmanager
def report_style() -> Iterator[None]:
    """Matplotlib settings of the report (TrueType fonts so the PDF's text can be extracted)."""
    with matplotlib.rc_context(STYLE):
        yield


# ---------------------------------------------------------------- tables
@dataclass(frozen=True)
class Column:
    header: str
    width: float  # share of the table width (shares are normalised)
    align: str = "left"  # left | right
    max_lines: int = 4
    mono: bool = False


ROW_STYLES = {"normal": ("normal", INK), "bold": ("bold", INK), "alert": ("bold", ALERT), "muted": ("normal", MUTED)}
PAD_X, PAD_Y = 0.05, 0.035
KEEP_TABLE = 4.0  # inches: shorter tables move to the next page whole rather than split
CAPTION = 8.5
MAX_MIN_WIDTH = 1.25  # a column never claims more than this for its longest word


def _pieces(text: str) -> list[str]:
    """The parts of ``text`` between spaces and after break characters ('-', '_', ...)."""
    return [p for w in text.split() for p in re.findall(rf"[^{re.escape(BREAK_AFTER)}]*[{re.escape(BREAK_AFTER)}]?", w) if p]


def column_widths(columns: list[Column], rows: list[list[str]], size: float, total: float = TEXT_W) -> list[float]:
    """Widths in inches: the columns' shares of ``total``, widened so that no header word (broken
    only after '-', '_', ...) and no cell word (up to ``MAX_MIN_WIDTH``) has to be broken; the
    room is taken from the other columns."""
    share = sum(c.width for c in columns)
    want = [total * c.width / share for c in columns]
    mins = []
    for j, c in enumerate(columns):
        head = max((text_width(w, size, "bold") for w in _pieces(c.header)), default=0.0)
        cells = max((text_width(w, size, "bold", c.mono) for r in rows for w in str(r[j]).split()), default=0.0)
        mins.append(max(head, min(cells, MAX_MIN_WIDTH)) / 0.99 + 2 * PAD_X + 0.01)
    if sum(mins) >= total:
        return [total * m / sum(mins) for m in mins]
    fixed: set[int] = set()
    widths = list(want)
    while True:
        short = [j for j in range(len(columns)) if j not in fixed and widths[j] < mins[j]]
        if not short:
            return widths
        fixed.update(short)
        free = total - sum(mins[j] for j in fixed)
        rest = sum(want[j] for j in range(len(columns)) if j not in fixed)
        widths = [mins[j] if j in fixed else want[j] * free / rest for j in range(len(columns))]


# ---------------------------------------------------------------- the flow of pages
class Flow:
    """Lays elements out top to bottom on A4 pages; ``finish()`` returns the figures.

    A heading is drawn only together with the start of what follows it, so a heading never
    ends a page; a table that fits on one page is not split; a paragraph can be kept with
    the element after it (``keep``, inches).
    """

    def __init__(self, footer: str = "") -> None:
        self.footer = footer
        self.pages: list[Figure] = []
        self.y = 0.0  # inches from the top of the current page
        self._pending: list[tuple[str, int]] = []  # headings waiting for their first content
        self.new_page()

    # -- geometry
    @property
    def fig(self) -> Figure:
        return self.pages[-1]

    @property
    def usable(self) -> float:
        return PAGE_H - MARGIN_TOP - MARGIN_BOTTOM

    def new_page(self) -> None:
        fig = Figure(figsize=(PAGE_W, PAGE_H))
        FigureCanvasAgg(fig)
        self.pages.append(fig)
        self.y = MARGIN_TOP

    def _at_top(self) -> bool:
        return self.y <= MARGIN_TOP + 1e-9

    def remaining(self) -> float:
        return PAGE_H - MARGIN_BOTTOM - self.y

    def ensure(self, height: float) -> None:
        """Make room for ``height`` inches (plus any pending headings), then draw those headings."""
        need = height + sum(self._heading_height(lv, first=i == 0) for i, (_, lv) in enumerate(self._pending))
        if need > self.remaining() and not self._at_top():
            self.new_page()
        pending, self._pending = self._pending, []
        for text, level in pending:
            self._draw_heading(text, level)

    def skip(self, height: float) -> None:
        self.y = min(self.y + height, PAGE_H - MARGIN_BOTTOM)

    @staticmethod
    def fx(x: float) -> float:
        return x / PAGE_W

    @staticmethod
    def fy(y: float) -> float:
        return 1.0 - y / PAGE_H

    # -- primitives
    def _text(self, x: float, y: float, s: str, size: float, *, weight: str = "normal", color: str = INK,
              mono: bool = False, ha: str = "left") -> None:
        self.fig.text(self.fx(x), self.fy(y), s, fontsize=size, fontweight=weight, color=color, va="top", ha=ha,
                      family=MONO if mono else SANS, parse_math=False)

    def _rect(self, x: float, y: float, w: float, h: float, color: str) -> None:
        self.fig.add_artist(Rectangle((self.fx(x), self.fy(y + h)), w / PAGE_W, h / PAGE_H, transform=self.fig.transFigure,
                                      facecolor=color, edgecolor="none", zorder=-1))

    def _rule(self, y: float, x0: float = MARGIN_X, x1: float = PAGE_W - MARGIN_X, *, color: str = RULE, lw: float = 0.5) -> None:
        self.fig.add_artist(Line2D([self.fx(x0), self.fx(x1)], [self.fy(y), self.fy(y)], transform=self.fig.transFigure,
                                   color=color, linewidth=lw, zorder=-1))

    # -- headings
    @staticmethod
    def _heading_size(level: int) -> tuple[float, float]:
        return (13.0, 0.2) if level == 1 else (10.5, 0.1)  # font size, gap above

    def _heading_height(self, level: int, *, first: bool) -> float:
        size, gap = self._heading_size(level)
        return (0.0 if first and self._at_top() else gap) + line_height(size) + 0.07

    def _draw_heading(self, text: str, level: int) -> None:
        size, gap = self._heading_size(level)
        if not self._at_top():
            self.skip(gap)
        self._text(MARGIN_X, self.y, printable(text), size, weight="bold")
        self.y += line_height(size)
        if level == 1:
            self._rule(self.y - 0.03, color=INK, lw=0.8)
        self.skip(0.07)

    def heading(self, text: str, *, level: int = 1) -> None:
        """A section (level 1) or sub-section (level 2) heading; drawn with the start of the next element."""
        self._pending.append((text, level))

    # -- elements
    def paragraph(self, text: str, *, size: float = 9.0, weight: str = "normal", color: str = INK, indent: float = 0.0,
                  max_lines: int | None = None, mono: bool = False, after: float = 0.06, keep: float = 0.0) -> None:
        """Wrapped text; breaks across pages line by line (two lines stay with a heading; with ``keep``,
        the whole paragraph stays with that many inches of what follows)."""
        width = TEXT_W - indent
        lines = wrap(text, width, size, weight, mono)
        if max_lines:
            lines = truncate(lines, max_lines, width, size, weight, mono)
        whole = len(lines) * line_height(size) + after + keep
        self.ensure(whole if keep and whole <= self.usable else min(len(lines), 2) * line_height(size))
        for line in lines:
            self.ensure(line_height(size))
            self._text(MARGIN_X + indent, self.y, line, size, weight=weight, color=color, mono=mono)
            self.y += line_height(size)
        self.skip(after)

    def banner(self, title: str, lines: list[str], *, color: str = ALERT, size: float = 9.0) -> None:
        """A coloured box with a bold white title and wrapped white lines (e.g. UNRELIABLE and its reasons)."""
        pad, tsize, indent = 0.1, 14.0, 0.15
        head = wrap(title, TEXT_W - 2 * pad, tsize, "bold")
        body = [ln for text in lines for ln in wrap(text, TEXT_W - 2 * pad - indent, size)]
        height = 2 * pad + len(head) * line_height(tsize) + len(body) * line_height(size)
        self.ensure(height)
        self._rect(MARGIN_X, self.y, TEXT_W, height, color)
        y = self.y + pad
        for ln in head:
            self._text(MARGIN_X + pad, y, ln, tsize, weight="bold", color="white")
            y += line_height(tsize)
        for ln in body:
            self._text(MARGIN_X + pad + indent, y, ln, size, color="white")
            y += line_height(size)
        self.y += height + 0.1

    def table(self, columns: list[Column], rows: list[list[str]], *, styles: list[str] | None = None, size: float = 8.0,
              caption: str = "") -> None:
        """A table over the text width, under an optional muted caption; rows wrap, long cells are cut
        off, the header repeats on new pages; a table shorter than ``KEEP_TABLE`` is not split."""
        widths = column_widths(columns, rows, size)
        head = [truncate(wrap(c.header, w - 2 * PAD_X, size, "bold"), 2, w - 2 * PAD_X, size, "bold")
                for c, w in zip(columns, widths, strict=True)]
        head_h = max(len(h) for h in head) * line_height(size) + 2 * PAD_Y
        body = []
        for i, row in enumerate(rows):
            weight, color = ROW_STYLES[styles[i] if styles and i < len(styles) else "normal"]
            cells = [truncate(wrap(str(v), w - 2 * PAD_X, size, weight, c.mono), c.max_lines, w - 2 * PAD_X, size, weight, c.mono)
                     for v, c, w in zip(row, columns, widths, strict=True)]
            body.append((cells, weight, color, max(len(c) for c in cells) * line_height(size) + 2 * PAD_Y))
        cap = wrap(caption, TEXT_W, CAPTION, "normal") if caption else []
        cap_h = len(cap) * line_height(CAPTION) + (0.06 if cap else 0.0)
        total = head_h + sum(b[-1] for b in body)
        first = total if total <= KEEP_TABLE else head_h + sum(b[-1] for b in body[:2])
        self.ensure(cap_h + first)
        for line in cap:
            self._text(MARGIN_X, self.y, line, CAPTION, color=MUTED)
            self.y += line_height(CAPTION)
        self.skip(0.06 if cap else 0.0)
        self._table_header(columns, widths, head, head_h, size)
        for cells, weight, color, h in body:
            if h > self.remaining():
                self.new_page()
                self._table_header(columns, widths, head, head_h, size)
            self._cells(columns, widths, cells, size, weight, color)
            self.y += h
            self._rule(self.y, lw=0.3)
        self.skip(0.12)

    def _table_header(self, columns: list[Column], widths: list[float], head: list[list[str]], head_h: float, size: float) -> None:
        self._rect(MARGIN_X, self.y, sum(widths), head_h, SHADE)
        self._cells(columns, widths, head, size, "bold", INK, header=True)
        self.y += head_h
        self._rule(self.y, MARGIN_X, MARGIN_X + sum(widths), color=INK, lw=0.6)

    def _cells(self, columns: list[Column], widths: list[float], cells: list[list[str]], size: float, weight: str, color: str,
               *, header: bool = False) -> None:
        x = MARGIN_X
        for col, w, lines in zip(columns, widths, cells, strict=True):
            right = col.align == "right"
            for k, line in enumerate(lines):
                self._text(x + w - PAD_X if right else x + PAD_X, self.y + PAD_Y + k * line_height(size), line, size,
                           weight=weight, color=color, mono=col.mono and not header, ha="right" if right else "left")
            x += w

    def block(self, height: float, draw: Callable[[Figure, tuple[float, float, float, float]], None]) -> None:
        """Reserve ``height`` inches over the text width and let ``draw(fig, rect)`` fill it.

        ``rect`` is (left, bottom, width, height) in figure fractions; ``draw`` must keep its
        axes, tick labels and titles inside it.
        """
        height = min(height, self.usable)
        self.ensure(height)
        rect = (self.fx(MARGIN_X), self.fy(self.y + height), TEXT_W / PAGE_W, height / PAGE_H)
        draw(self.fig, rect)
        self.y += height + 0.08

    def finish(self) -> list[Figure]:
        """Add the footer ("... page i of n") to every page and return the pages."""
        n = len(self.pages)
        for i, fig in enumerate(self.pages, start=1):
            fig.text(self.fx(MARGIN_X), self.fy(PAGE_H - 0.45), printable(self.footer), fontsize=7, color=MUTED, va="top",
                     ha="left", parse_math=False)
            fig.text(self.fx(PAGE_W - MARGIN_X), self.fy(PAGE_H - 0.45), f"page {i} of {n}", fontsize=7, color=MUTED,
                     va="top", ha="right", parse_math=False)
        return self.pages


# ---------------------------------------------------------------- checking the finished pages
def _inside(inner: Bbox, outer: Bbox, tol: float) -> bool:
    return (inner.x0 >= outer.x0 - tol and inner.y0 >= outer.y0 - tol and inner.x1 <= outer.x1 + tol
            and inner.y1 <= outer.y1 + tol)


def _overlap(a: Bbox, b: Bbox, tol: float) -> bool:
    return min(a.x1, b.x1) - max(a.x0, b.x0) > tol and min(a.y1, b.y1) - max(a.y0, b.y0) > tol


def _label(t: object) -> str:
    s = t.get_text() if hasattr(t, "get_text") else type(t).__name__
    return repr(s[:40] + ("…" if len(s) > 40 else ""))


def page_problems(fig: Figure, *, tol: float = 0.5) -> list[str]:
    """Layout problems of one page, in points: content outside the page or overlapping."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    fig.draw_without_rendering()  # lays out ticks and labels without painting pixels
    renderer = canvas.get_renderer()
    page = fig.bbox
    texts = [(t, t.get_window_extent(renderer)) for t in fig.texts if t.get_visible() and t.get_text().strip()]
    axes = [(ax, ax.get_tightbbox(renderer)) for ax in fig.axes if ax.get_visible()]
    problems = []
    for t, box in texts:
        if not _inside(box, page, tol):
            problems.append(f"text {_label(t)} runs off the page")
    for ax, box in axes:
        if box is not None and not _inside(box, page, tol):
            problems.append(f"plot {_label(ax.title) if ax.get_title() else ''} runs off the page")
        titles = [t for t in (ax.title, getattr(ax, "_left_title", None), getattr(ax, "_right_title", None))
                  if t is not None and t.get_visible() and t.get_text().strip()]
        boxes = [t.get_window_extent(renderer) for t in titles]
        problems += [f"titles {_label(t)} and {_label(u)} overlap" for i, t in enumerate(titles)
                     for u, b in zip(titles[i + 1:], boxes[i + 1:], strict=True) if _overlap(boxes[i], b, tol)]
        for t in ax.texts:
            if t.get_visible() and t.get_text().strip() and not _inside(t.get_window_extent(renderer), ax.bbox, tol):
                problems.append(f"label {_label(t)} sticks out of its plot")
    for i, (t, box) in enumerate(texts):
        problems += [f"texts {_label(t)} and {_label(u)} overlap" for u, other in texts[i + 1:] if _overlap(box, other, tol)]
        problems += [f"text {_label(t)} overlaps a plot" for _, abox in axes if abox is not None and _overlap(box, abox, tol)]
    for i, (_, a) in enumerate(axes):
        problems += ["two plots overlap" for _, b in axes[i + 1:] if a is not None and b is not None and _overlap(a, b, tol)]
    return problems


def layout_problems(figures: list[Figure]) -> list[str]:
    """Every layout problem of the report's pages, as "page N: ..." lines (empty when all is well)."""
    with report_style():
        return [f"page {i}: {p}" for i, fig in enumerate(figures, start=1) for p in page_problems(fig)]
