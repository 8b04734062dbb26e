"""Text measured as the PDF sets it: widths from the font's unhinted advances, word wrap, cut-off.

Pure functions of strings and font sizes (inches); ``engine.report.layout`` places the lines.
"""

from __future__ import annotations

from functools import lru_cache

from matplotlib.font_manager import FontProperties, findfont
from matplotlib.ft2font import FT2Font, LoadFlags

LEADING = 1.35  # line height / font size
SANS, MONO = "DejaVu Sans", "DejaVu Sans Mono"


@lru_cache(maxsize=8)
def _font(family: str, weight: str) -> FT2Font:
    return FT2Font(findfont(FontProperties(family=family, weight=weight)))


@lru_cache(maxsize=4)
def _charset(family: str) -> frozenset[int]:
    return frozenset(FT2Font(findfont(FontProperties(family=family))).get_charmap())


def printable(text: str, mono: bool = False) -> str:
    """``text`` with characters the report's font cannot draw replaced by '?' (avoids missing-glyph warnings)."""
    chars = _charset(MONO if mono else SANS)
    return "".join(c if ord(c) in chars or c in " \n" else "?" for c in text)


@lru_cache(maxsize=20000)
def text_width(text: str, size: float, weight: str = "normal", mono: bool = False) -> float:
    """Width of one line of text in inches, from the font's unhinted advances (as the PDF sets it)."""
    if not text:
        return 0.0
    font = _font(MONO if mono else SANS, weight)
    font.set_size(size, 72)
    font.set_text(text, 0.0, flags=LoadFlags.NO_HINTING)
    return font.get_width_height()[0] / 64.0 / 72.0


BREAK_AFTER = "-_/.,:;=&"


def _split_word(word: str, width: float, size: float, weight: str, mono: bool) -> list[str]:
    """Break a word too long for a line, after '-', '_', '/' ... where possible, else anywhere."""
    parts, cur, last_break = [], "", -1
    for ch in word:
        if cur and text_width(cur + ch, size, weight, mono) > width:
            if last_break > 0:
                parts.append(cur[:last_break])
                cur = cur[last_break:]
            else:
                parts.append(cur)
                cur = ""
            last_break = -1
        cur += ch
        if ch in BREAK_AFTER:
            last_break = len(cur)
    return [*parts, cur] if cur else parts


def wrap(text: str, width: float, size: float, weight: str = "normal", mono: bool = False) -> list[str]:
    """Greedy word wrap to ``width`` inches; words longer than a line are broken."""
    width *= 0.99  # headroom for rounding
    lines: list[str] = []
    for para in printable(str(text), mono).split("\n"):
        cur = ""
        for word in para.split():
            pieces = [word] if text_width(word, size, weight, mono) <= width else _split_word(word, width, size, weight, mono)
            for piece in pieces:
                trial = f"{cur} {piece}" if cur else piece
                if text_width(trial, size, weight, mono) <= width:
                    cur = trial
                else:
                    lines.append(cur)
                    cur = piece
        lines.append(cur)
    return lines or [""]


def truncate(lines: list[str], max_lines: int, width: float, size: float, weight: str = "normal", mono: bool = False) -> list[str]:
    """At most ``max_lines`` lines; the last one ends with '…' when something was cut."""
    if len(lines) <= max_lines:
        return lines
    last = lines[max_lines - 1]
    while last and text_width(last + " …", size, weight, mono) > width * 0.99:
        last = last[:-1]
    return [*lines[: max_lines - 1], last.rstrip() + " …"]


def line_height(size: float) -> float:
    return size * LEADING / 72.0
