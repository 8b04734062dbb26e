r"""Elicited: an observation whose probability under each hypothesis is elicited directly,
:math:`P(E \mid H) = p_H` with :math:`p_H \sim \mathrm{Beta}(a_H, b_H)` or a fixed number
(the approach of likelihood-ratio tools, but with the elicitation's uncertainty kept).

:math:`p_H` enters the likelihood once and linearly, so it is integrated out exactly:
:math:`P(E \mid H) = \mathbb E[p_H] = a_H / (a_H + b_H)`. The background an unfaithful
report follows is the average of the hypotheses' :math:`\mathbb E[p_H]` (``generic``: it
cannot come from the generic mechanism, which knows nothing of the item).

**Bounded influence** (``log_ratio_cap``): the ratio is :math:`\mathbb E[p_H] / \bar p` with
:math:`\bar p` that average, so :math:`\log K = \log \max_H \mathbb E[p_H] - \log \bar p
\le \log(\text{number of hypotheses})`, whatever the elicited numbers.

**Simulation** (``simulable``): the fact is seen with probability :math:`p_H` (a draw), or
:math:`\bar p` for an unfaithful report; when it is not seen ``simulate_observed`` returns None
and calibration redraws the incident.
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
    simulable = True

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

    def log_ratio_cap(self, items, shared=None) -> float:  # noqa: ANN001
        """log max_H E[p_H] - log mean_H E[p_H] (the background): at most log(number of hypotheses)."""
        means = [spec["p"].mean() for spec in items[0].params.values()]
        return math.log(max(means)) - math.log(float(np.mean(means)))

    def simulate_observed(self, items, theta, rng):  # noqa: ANN001, ANN201
        """Seen with probability ``p`` (the unit's draw): the observation as it is, else None."""
        return [{} for _ in items] if rng.random() < float(np.ravel(theta["p"])[0]) else None
