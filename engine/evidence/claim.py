r"""Claim: a source asserted a statement.

Under hypothesis H the statement holds with probability :math:`h_H` (``holds``, a number
or a Beta whose mean is used: it enters linearly once). A source of reliability :math:`r`
reports the truth with probability :math:`r`; otherwise it asserts the statement with its
background assertion rate :math:`b_c`, which depends on whether asserting it serves the
source's interest (``serves``, ``neutral``, ``against``; priors/sources.yaml):

.. math::
    P(\text{assert} \mid H) = r\,h_H + (1 - r)\,b_c .

A self-serving assertion (:math:`b_c \approx 0.8`) has a likelihood ratio of at most about
:math:`(r + (1-r)0.8)/((1-r)0.8)`, close to 1 for a party to the conflict; an admission
against interest (:math:`b_c \approx 0.03`) one of about :math:`r / ((1-r)0.03)`. The
rates :math:`b_c` are model parameters shared by all claims of the same interest class
(``assertion_rate__<class>``), so the background is a tensor of them. ``holds`` is clipped
to [1e-9, 1] in the model (a statement that cannot hold keeps a finite log likelihood).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np

from engine.dists import Dist
from engine.evidence.base import Family, Strict, Text

HOLDS_MIN = 1e-9


class ClaimObs(Strict):
    """A statement asserted by the item's source."""

    statement: Text
    interest: Literal["serves", "neutral", "against"]


def _rate(items) -> str:  # noqa: ANN001
    return f"assertion_rate__{items[0].observed.interest}"


class Claim(Family):
    name = "claim"
    Obs = ClaimObs
    params = {"holds": (("beta", "fixed"), (0.0, 1.0))}
    background_is_tensor = True

    def group_conflict(self, group, first, other) -> str | None:  # noqa: ANN001
        if other.interest != first.interest:
            return f"reports in group {group!r} disagree on interest; reports of one statement share it"
        return None

    def describe(self, obs) -> str:  # noqa: ANN001
        return f"“{' '.join(obs.statement.split())}” (interest: {obs.interest})"

    def shared_parameters(self, case) -> dict[str, Dist]:  # noqa: ANN001
        interests = sorted({it.observed.interest for it in case.items if it.family == self.name})
        return {f"assertion_rate__{c}": case.assertion_rates[c] for c in interests}

    def bind(self, items, theta, params):  # noqa: ANN001, ANN201
        return {**theta, "assertion_rate": params[_rate(items)]}

    def loglik(self, items, theta):  # noqa: ANN001, ANN201
        import pytensor.tensor as pt

        return pt.log(pt.clip(theta["holds"], HOLDS_MIN, 1.0))

    def background(self, items, generic, theta):  # noqa: ANN001, ANN201
        import pytensor.tensor as pt

        return pt.log(theta["assertion_rate"])

    def generic(self, items, library, hypotheses) -> dict[str, Dist]:  # noqa: ANN001
        return {"holds": Dist("fixed", (float(np.mean([items[0].params[h]["holds"].mean() for h in hypotheses])),))}

    def closed_form(self, items, spec) -> float:  # noqa: ANN001
        h = spec["holds"].mean()
        return math.log(h) if h > 0 else -math.inf

    def exact_problem(self, case) -> str | None:  # noqa: ANN001
        """A claim is linear in its class's assertion rate: exact with the rate's mean if no other claim shares it."""
        units: dict[str, int] = {}
        for _, items in case.units():
            if items[0].family == self.name:
                units[items[0].observed.interest] = units.get(items[0].observed.interest, 0) + 1
        for interest, n in units.items():
            if case.assertion_rates[interest].kind != "fixed" and n > 1:
                return f"claims of interest {interest!r} share an uncertain assertion rate"
        return None

    def unit_log_evidence(self, items, spec, generic, params, n):  # noqa: ANN001, ANN201
        with np.errstate(divide="ignore"):
            lz = np.full(n, np.log(max(spec["holds"].mean(), HOLDS_MIN)))
        return lz, np.log(params[_rate(items)])
