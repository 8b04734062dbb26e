r"""Elicited: an observation whose probability under each hypothesis is elicited directly,
:math:`P(E \mid H) = p_H` with :math:`p_H \sim \mathrm{Beta}(a_H, b_H)` or a fixed number
(the approach of likelihood-ratio tools, but with the elicitation's uncertainty kept).

:math:`p_H` enters the likelihood once and linearly, so it is integrated out exactly:
:math:`P(E \mid H) = \mathbb E[p_H] = a_H / (a_H + b_H)`. The background an unfaithful
report follows is the average of the hypotheses' :math:`\mathbb E[p_H]` (``generic``: it
cannot come from the generic mechanism, which knows nothing of the item).
"""

from __future__ import annotations

import math

import numpy as np

from engine.dists import Dist
from engine.evidence.base import Family, Strict, Text


class ElicitedObs(Strict):
    """Any other observation, with P(observation | hypothesis) elicited per hypothesis."""

    statement: Text


class Elicited(Family):
    name = "elicited"
    Obs = ElicitedObs
    params = {"p": (("beta", "fixed"), (1e-12, 1.0))}

    def group_conflict(self, group, first, other) -> None:  # noqa: ANN001
        return None  # reports of one elicited fact may word it differently; their predictions must agree

    def describe(self, obs) -> str:  # noqa: ANN001
        return f"“{' '.join(obs.statement.split())}”"

    def loglik(self, items, theta):  # noqa: ANN001, ANN201
        import pytensor.tensor as pt

        return pt.log(theta["p"])

    def generic(self, items, library, hypotheses) -> dict[str, Dist]:  # noqa: ANN001
        return {"p": Dist("fixed", (float(np.mean([items[0].params[h]["p"].mean() for h in hypotheses])),))}

    def closed_form(self, items, spec) -> float:  # noqa: ANN001
        return math.log(spec["p"].mean())

    def background(self, items, generic, theta) -> float:  # noqa: ANN001
        return math.log(generic["p"].mean())
