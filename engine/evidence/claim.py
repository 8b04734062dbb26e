r"""Claim: a source asserted a statement.

Under hypothesis H the statement holds with probability :math:`h_H` (``holds``, a number
or a Beta whose mean is used: it enters linearly once). A source of reliability :math:`r`
reports the truth with probability :math:`r`; otherwise it asserts the statement with its
background assertion rate :math:`b_c`, which depends on the source's interest in asserting it
(its class c; the rates are in priors/sources.yaml ``assertion_rate``, sources in priors/CHANGELOG.md):

* ``serves``: asserting it helps the source (a party's accusation of its enemy);
* ``neutral``: no stake either way;
* ``against``: an admission against interest, rare unless true;
* ``claims_responsibility``: a group claiming an attack it gains from claiming (prestige,
  coercion): asserted often whether true or not, rival claims included;
* ``settlement``: self-incriminating words made as part of a deal or settlement (Libya's 2003
  Lockerbie letter): the motive is the deal, not the truth, so the words are nearly as likely
  when false as when true, unlike an admission against interest.

.. math::
    P(\text{assert} \mid H) = r\,h_H + (1 - r)\,b_c .

A self-serving assertion (:math:`b_c \approx 0.8`) has a likelihood ratio of at most about
:math:`(r + (1-r)0.8)/((1-r)0.8)`, close to 1 for a party to the conflict; an admission
against interest (:math:`b_c \approx 0.03`) one of about :math:`r / ((1-r)0.03)`. The
rates :math:`b_c` are model parameters shared by all claims of the same interest class
(``assertion_rate__<class>``), so the background is a tensor of them. ``holds`` is clipped
to [1e-9, 1] in the model (a statement that cannot hold keeps a finite log likelihood).

**Bounded influence** (``log_ratio_cap``). The unit's ratio is :math:`h_H / b_c` with
:math:`h_H` at its mean (the model holds it there), so :math:`\log K = \log \max_H h_H -
\log b_c`: finite for a fixed rate. An uncertain rate reaches 0, so the pointwise ratio has no
bound; but the claim is linear in :math:`b_c`, and a claim evaluated alone has
:math:`P(\text{assert} \mid H) = \bar r h_H + (1 - \bar r)\,\mathbb E[b_c]`, so its odds move
by at most ``influence_bound(r̄, log max_H h_H - log E[b_c])`` (as the reliability enters by its
mean). The rate lives in the case (``assertion_rate__<class>`` of ``shared_parameters``), so
the cap needs it passed in; without it the cap is infinite.

**Simulation** (``simulable``). The observation is the event "the source asserted it": a
faithful report asserts with probability :math:`h_H` (a draw of ``holds``), an unfaithful one
with :math:`b_c`; when the statement is not asserted ``simulate_observed`` returns None and
calibration redraws the incident (the family cannot state "did not assert").
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import numpy as np

from engine.dists import Dist
from engine.evidence.base import Family, Strict, Text

HOLDS_MIN = 1e-9
INTERESTS = ("serves", "neutral", "against", "claims_responsibility", "settlement")  # interest classes


class ClaimObs(Strict):
    """A statement asserted by the item's source."""

    statement: Text
    interest: Literal[INTERESTS]  # type: ignore[valid-type]


def _rate(items) -> str:  # noqa: ANN001
    return f"assertion_rate__{items[0].observed.interest}"


class Claim(Family):
    name = "claim"
    Obs = ClaimObs
    params = {"holds": (("beta", "fixed"), (0.0, 1.0))}
    background_is_tensor = True
    simulable = True

    def group_conflict(self, group, first, other) -> str | None:  # noqa: ANN001
        if other.interest != first.interest:
            return f"reports in group {group!r} disagree on interest; reports of one statement share it"
        return None

    def describe(self, obs) -> str:  # noqa: ANN001
        return f"“{' '.join(obs.statement.split())}” (interest: {obs.interest})"

    def shared_parameters(self, case) -> dict[str, Dist]:  # noqa: ANN001
        interests = sorted({items[0].observed.interest for _, items in case.units() if items[0].family == self.name})
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

    def log_ratio_cap(self, items, shared: Mapping[str, Dist] | None = None) -> float:  # noqa: ANN001
        """log K = log max_H h_H - log b: b the class's fixed rate, or its mean when uncertain (the
        claim alone is linear in it); ``shared`` maps ``assertion_rate__<class>`` to its prior
        (``engine.evidence.shared_parameters(case)``). Infinite without it."""
        rate = (shared or {}).get(_rate(items))
        if rate is None:
            return math.inf
        h_max = max(min(max(spec["holds"].mean(), HOLDS_MIN), 1.0) for spec in items[0].params.values())
        return math.log(h_max) - math.log(rate.mean())

    def simulate_observed(self, items, theta, rng):  # noqa: ANN001, ANN201
        """Asserted with probability ``holds`` (the unit's draw): the observation as it is, else None."""
        return _asserted(items, theta["holds"], rng)

    def simulate_background(self, items, theta, rng):  # noqa: ANN001, ANN201
        """An unfaithful report asserts with its interest class's assertion rate."""
        return _asserted(items, theta["assertion_rate"], rng)


def _asserted(items, p, rng) -> list[dict] | None:  # noqa: ANN001
    return [{} for _ in items] if rng.random() < float(np.ravel(p)[0]) else None
