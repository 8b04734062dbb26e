"""Number and text formatting shared by the report's sections (pure, no plotting)."""

from __future__ import annotations

import math
from typing import Any

NA = "not available"


def is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def num(x: Any, digits: int = 3, *, nan: str = "n/a") -> str:
    """``x`` with ``digits`` decimals; "not available" when missing, ``nan`` when NaN."""
    if not is_number(x):
        return NA
    if math.isnan(x):
        return nan
    if math.isinf(x):
        return "∞" if x > 0 else "-∞"
    return f"{x:.{digits}f}"


def count(x: Any) -> str:
    """A whole number (ESS, divergences) without decimals."""
    if not is_number(x):
        return NA
    if math.isnan(x):
        return "n/a"
    return f"{x:.0f}"


def ratio(x: float) -> str:
    """A Bayes factor or odds: 3 significant figures, scientific beyond 10^4 or below 10^-3."""
    if not is_number(x) or math.isnan(x):
        return NA
    if x == 0:
        return "0"
    if math.isinf(x):
        return "∞"
    if 1e-3 <= abs(x) < 1e4:
        return f"{x:.3g}"
    mant, exp = f"{x:.2e}".split("e")
    return f"{mant}×10^{int(exp)}"


def flag(x: Any, *, yes: str = "yes", no: str = "NO") -> str:
    if x is None:
        return NA
    return yes if bool(x) else no


def unit_label(unit_id: str) -> str:
    """Display name of a likelihood unit: an item id, or a group name (``item:`` prefix dropped)."""
    return unit_id.removeprefix("item:")


def clean(text: Any) -> str:
    """One line of text: whitespace collapsed, never None."""
    return " ".join(str(text if text is not None else "").split())
