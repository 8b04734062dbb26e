"""The intelligence-community probability scale used next to every number we print."""

from __future__ import annotations

SCALE = (
    (0.05, "almost no chance"),
    (0.20, "very unlikely"),
    (0.45, "unlikely"),
    (0.55, "roughly even chance"),
    (0.80, "likely"),
    (0.95, "very likely"),
    (1.01, "almost certain"),
)


def probability_term(p: float) -> str:
    """'almost no chance' (<5%) ... 'almost certain' (>=95%)."""
    for upper, term in SCALE:
        if p < upper:
            return term
    return SCALE[-1][1]
