r"""Presence: a diagnostic thing looked for, and found or not found (bow-tie fragments, explosive
residue, bird remains, an engine disc fragment, parts of a missile).

The observation is the thing's label ``thing``, ``found`` (true or false) and the detection
probability of the search, ``detection`` :math:`d` = P(the search finds the thing | it is
there): a number in (0, 1] or a Beta. Under hypothesis H the thing is present with probability
:math:`\pi_H` (``present``; a number or a Beta). The story: present ~ Bernoulli(:math:`\pi_H`),
detected ~ Bernoulli(:math:`d`) if present, found = present and detected, so

.. math::
    P(\text{found} \mid H) = \bar d\, \bar\pi_H,\qquad
    P(\text{not found} \mid H) = 1 - \bar d\, \bar\pi_H .

Both are linear in :math:`d` and in :math:`\pi_H`, and so is the unit's whole likelihood
:math:`r\,p(y \mid H) + (1 - r)\,p_{bg}(y)` (the background below is linear in :math:`d` too):
their means (:math:`\bar d`, :math:`\bar\pi_H`) integrate them out exactly when each is
independent of everything else in the case, i.e. :math:`d` is this search's own and the thing
is looked for in no other unit (its presence is one fact of the incident: two searches for it
share :math:`\pi_H`, and then :math:`P(\text{both miss}) = \pi_H(1 - d_1)(1 - d_2) + 1 - \pi_H`,
not the product of the two units' terms). Write every search for one thing as one item, with
detection :math:`1 - \prod_i (1 - d_i)` when none found it; ``exact_problem`` names a case that
does not. Nothing is sampled; ``closed_form`` is exact. "Not found" is evidence: a thorough
search (:math:`d = 0.9`) that finds no explosive residue divides the odds of a mechanism with
:math:`\pi = 0.8` against one with :math:`\pi = 0.02` by :math:`(1 - 0.018)/(1 - 0.72) = 3.5`.

**Parameters.** A mechanism's ``presence`` table in priors/mechanisms.yaml maps things to
:math:`\pi` (``{explosive-residue: {beta: [8, 2]}, other: 0.02}``); a thing it does not list
takes its ``other`` entry. Cases override ``present`` per item (``under``) or per hypothesis
(``overrides.presence.present``). **Detection** defaults to Beta(1, 1) (mean 0.5): a search
whose thoroughness the record does not state is taken as likely to miss the thing as to find
it, so its "not found" moves the odds between a mechanism that always leaves the thing and one
that never does by at most a factor 2. Guides: a forensic laboratory's trace analysis of swabs
Beta(9, 1); a search of the recovered wreckage for visible parts Beta(4, 2); a field look Beta(2, 3).

**Background** (an unfaithful report): the thing is reported found with probability
:math:`\bar d\,\pi_{bg}`, :math:`\pi_{bg} = (1 - w)\,\pi_g + w/2`, the ``generic`` mechanism's
:math:`\pi_g` mixed with weight :math:`w` = ``VAGUE_WEIGHT`` with a vague component that is
found with probability :math:`\bar d/2`. By linearity this is ``robust_background`` of the two
components, and :math:`\pi_{bg} \in [w/2, 1 - w/2]`. **Bound**: for found,
:math:`p(y \mid H)/p_{bg}(y) = \bar\pi_H / \pi_{bg} \le 2/w`; for not found,
:math:`(1 - \bar d\bar\pi_H)/(1 - \bar d\pi_{bg}) \le 1/(1 - \bar d(1 - w/2)) \le 2/w` as
:math:`\bar d \le 1`. So :math:`\log K = \log(2/w)` (= log 4) for every hypothesis, design and
observation.
"""

from __future__ import annotations

import math
from typing import Annotated

import numpy as np
from pydantic import Field, StrictBool

from engine.dists import Dist
from engine.evidence.base import VAGUE_WEIGHT, Family, ParamSpec, Strict, observed_tensors

Label = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
DEFAULT_DETECTION = Dist("beta", (1.0, 1.0))
GENERIC_PRESENT = 0.5  # the generic mechanism's pi when its table gives none
LOW_DETECTION = 0.1


class PresenceObs(Strict):
    """A diagnostic thing looked for: found or not, and how likely the search was to find it."""

    thing: Label
    found: StrictBool
    detection: ParamSpec = DEFAULT_DETECTION
    searched: str = ""


def _detection(items) -> float:  # noqa: ANN001 - the reports of one search share it (group_conflict)
    return items[0].observed.detection.mean()


def _log_p(found: bool, p: float) -> float:
    """log P(found) or log P(not found) when the thing is found with probability p."""
    q = p if found else 1.0 - p
    return math.log(q) if q > 0 else -math.inf


class Presence(Family):
    name = "presence"
    Obs = PresenceObs
    params = {"present": (("beta", "fixed"), (0.0, 1.0))}
    simulable = True
    replicable = True

    # ---------------------------------------------------------------- validation
    def mechanism_params(self, obs, table) -> dict[str, Dist]:  # noqa: ANN001
        """A mechanism's ``presence`` table is thing -> pi: this thing's entry, else its ``other``."""
        for key in (obs.thing, "other"):
            if key in table:
                return {"present": table[key]}
        return {}

    def check_observed(self, obs) -> list[tuple[str, str]]:  # noqa: ANN001
        d = obs.detection
        if d.kind not in ("fixed", "beta") or (d.kind == "fixed" and not 0 < d.args[0] <= 1):
            shown = d.describe() if d.kind != "fixed" else f"{d.args[0]:g}"
            return [("detection", f"detection must be a number in (0, 1] or {{beta: [a, b]}} (the chance that the "
                     f"search finds the thing if it is there), got {shown}")]
        return []

    def suspicious(self, obs) -> list[tuple[str, str]]:  # noqa: ANN001
        d = obs.detection.mean()
        if d < LOW_DETECTION:
            return [("detection", f"detection {d:.3g} is below {LOW_DETECTION:g}: a search this unlikely to find "
                     f"{obs.thing} carries almost no evidence; check the value or describe the search under searched")]
        return []

    def group_conflict(self, group, first, other) -> str | None:  # noqa: ANN001
        if (other.thing, other.found, other.detection) != (first.thing, first.found, first.detection):
            return (f"presence reports in group {group!r} disagree on thing, found or detection; reports of one "
                    "search share them (a different search is its own item)")
        return None

    def describe(self, obs) -> str:  # noqa: ANN001
        d = obs.detection
        det = d.describe() if d.kind == "fixed" else f"{d.describe()}, mean {d.mean():.2g}"
        where = f"; {' '.join(obs.searched.split())}" if obs.searched else ""
        return f"{obs.thing} {'found' if obs.found else 'not found'} (detection {det}{where})"

    # ---------------------------------------------------------------- model
    def data(self, items) -> dict[str, np.ndarray]:  # noqa: ANN001
        return {"found": np.asarray(float(items[0].observed.found))}

    def loglik(self, items, theta):  # noqa: ANN001, ANN201
        import pytensor.tensor as pt

        found = observed_tensors(theta, self.data(items))["found"]
        p = _detection(items) * theta["present"]
        return pt.switch(pt.gt(found, 0.5), pt.log(p), pt.log1p(-p))

    def generic(self, items, library, hypotheses) -> dict[str, Dist]:  # noqa: ANN001
        """pi_bg = (1 - w) pi_g + w / 2: the generic mechanism's pi mixed with the vague component."""
        g = self.mechanism_params(items[0].observed, library)
        pi_g = g["present"].mean() if g else GENERIC_PRESENT
        return {"present": Dist("fixed", ((1 - VAGUE_WEIGHT) * pi_g + VAGUE_WEIGHT * 0.5,))}

    # ---------------------------------------------------------------- closed forms
    def closed_form(self, items, spec) -> float:  # noqa: ANN001
        return _log_p(items[0].observed.found, _detection(items) * spec["present"].mean())

    def exact_problem(self, case) -> str | None:  # noqa: ANN001
        seen: dict[str, str] = {}
        for _, items in case.units():
            if items[0].family == self.name:
                thing, uid = items[0].observed.thing, items[0].group or items[0].id
                if thing in seen:
                    return (f"presence units {seen[thing]} and {uid} both look for {thing}: its presence is one fact, "
                            "so their terms are not independent; make them one item")
                seen[thing] = uid
        return None

    def log_ratio_cap(self, items, shared=None) -> float:  # noqa: ANN001
        return math.log(2.0 / VAGUE_WEIGHT)

    # ---------------------------------------------------------------- simulation
    def simulate_observed(self, items, theta, rng):  # noqa: ANN001, ANN201
        pi = float(np.asarray(theta["present"]).reshape(-1)[0])
        d = items[0].observed.detection
        d_draw = d.args[0] if d.kind == "fixed" else rng.beta(*d.args)
        found = bool(rng.random() < pi) and bool(rng.random() < d_draw)
        return [{"found": found}] * len(items)

    def simulate_background(self, items, theta, rng):  # noqa: ANN001, ANN201
        """An unfaithful report from the whole background: with probability w the vague component
        (the thing present with probability 1/2), else the generic mechanism's."""
        if rng.random() >= VAGUE_WEIGHT:
            return self.simulate_observed(items, theta, rng)
        return self.simulate_observed(items, {**theta, "present": np.asarray([0.5])}, rng)

    # ---- numpy side: replicated data for predictive checks
    def simulate(self, items, theta, rng):  # noqa: ANN001, ANN201
        p = _detection(items) * np.asarray(theta["present"], dtype=float)
        return {"found": (rng.random(p.shape) < p).astype(float)[:, None]}

    def observed(self, items):  # noqa: ANN001, ANN201
        return {"found": np.asarray([[float(items[0].observed.found)]])}

    def logp_np(self, items, y, theta):  # noqa: ANN001, ANN201
        p = _detection(items) * np.asarray(theta["present"], dtype=float)
        found = np.asarray(y["found"], dtype=float)[..., 0] > 0.5
        with np.errstate(divide="ignore"):
            return np.where(found, np.log(p), np.log1p(-p))
