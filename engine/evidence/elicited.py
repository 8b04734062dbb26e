r"""Elicited: an observation whose probability under each hypothesis is elicited directly,
:math:`P(E \mid H) = p_H` with :math:`p_H \sim \mathrm{Beta}(a_H, b_H)` or a fixed number
(the approach of likelihood-ratio tools, but with the elicitation's uncertainty kept).

:math:`p_H` enters the likelihood once and linearly, so it is integrated out exactly:
:math:`P(E \mid H) = \mathbb E[p_H] = a_H / (a_H + b_H)`. The background an unfaithful
report follows is the average of the hypotheses' :math:`\mathbb E[p_H]`, passed in by the
model builder (it cannot come from the generic mechanism, which knows nothing of the item).
"""

from __future__ import annotations

import math

import pytensor.tensor as pt

SAMPLED = ()


def loglik(items, theta):  # noqa: ANN001, ANN201
    return pt.log(theta["p"])


def closed_form(items, spec) -> float:  # noqa: ANN001
    return math.log(spec["p"].mean())


def background(items, generic, theta) -> float:  # noqa: ANN001
    return math.log(generic["p"].mean())
