r"""Independent oracle for elicited items, from the generative story alone (numpy only; no engine import).

The story: an analyst states, per hypothesis H, how likely the observed fact E is if H is true:
:math:`p_H`, a number or a Beta(a, b) distribution (uncertain elicitation). Nature draws
:math:`p_H` and then sees E with that probability, so by the tower rule
:math:`P(E \mid H) = \bar p_H` (the number, or a / (a + b)). A report that does not carry the fact
(probability 1 - r, r the source's reliability) says E anyway with the probability an analyst who
ignores the hypotheses would give: the average of the hypotheses' :math:`\bar p_H`. So, for one
item from a source of reliability r (a number or a Beta draw; the item is linear in it),

.. math::
    P(E \mid H) = \bar r\, \bar p_H + (1 - \bar r)\, \tfrac1K \textstyle\sum_k \bar p_k .

Items sharing a source with claims are integrated jointly by ``tests/oracles/claims.py``.
"""

from __future__ import annotations

import math

import numpy as np

Spec = float | tuple[float, float]


def _mean(spec: Spec) -> float:
    return spec if isinstance(spec, float) else spec[0] / (spec[0] + spec[1])


def seen_probability(p: dict[str, Spec]) -> tuple[dict[str, float], float]:
    """(P(E | H, faithful) per hypothesis, P(E | unfaithful))."""
    seen = {h: _mean(s) for h, s in p.items()}
    return seen, float(np.mean(list(seen.values())))


def elicited_alone(p: dict[str, Spec], reliability: Spec) -> dict[str, float]:
    """log P(E | H) of one elicited item evaluated alone, per hypothesis."""
    seen, bg = seen_probability(p)
    r = _mean(reliability)
    return {h: math.log(r * v + (1 - r) * bg) for h, v in seen.items()}
