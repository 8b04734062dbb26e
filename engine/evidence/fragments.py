r"""Fragments: counts of recovered fragment types (rods, cubes, balls, bow-ties, natural, ...).

**One category set.** Every unit and every hypothesis is scored over the same K categories:
the standard types ``KNOWN`` (the union of the types priors/mechanisms.yaml's ``fragments.alpha``
tables name; a test keeps them equal) and one residual ``other`` (a type outside the list),
last. An observation is the vector :math:`c \in \mathbb{N}^K`: a type it does not write counts
0, so writing ``cube: 0`` or not changes nothing. A type outside the list is refused at
validation, in an observation (``check_observed``) or in a table (``check_params``): the set
never depends on the case's hypotheses, and a typo never falls silently into ``other``.

**Concentrations.** A table lists :math:`\alpha_t` for some types; its ``other`` entry
:math:`\alpha_o` is the total concentration of every type it does not list, shared equally
among the :math:`m` categories it does not list (the residual included):
:math:`\alpha_t = \alpha_o / m` (``Dist.alpha_for``). Its total :math:`A = \sum_t \alpha_t`
and, by Dirichlet aggregation, the law of the unlisted share do not depend on the category set.

.. math::
    p \sim \mathrm{Dirichlet}(\alpha),\qquad c \sim \mathrm{Multinomial}(C, p),\qquad
    C = \textstyle\sum_t c_t \ \text{(the design)},

    p(c \mid H) = \frac{C!}{\prod_t c_t!}\,\frac{\Gamma(A)}{\Gamma(A + C)}
                  \prod_t \frac{\Gamma(\alpha_t + c_t)}{\Gamma(\alpha_t)}

(a zero count's factor is 1). Background: the ``generic`` mechanism's Dirichlet-multinomial
mixed with a vague component, the Dirichlet-multinomial with every :math:`\alpha_t = 1`,
which is uniform over the :math:`\binom{C + K - 1}{K - 1}` compositions of C into K types:

.. math::
    p_{bg}(c) = (1 - w)\, \mathrm{DM}(c; \alpha_{generic}) + w\, q(c),\qquad
    q(c) = \binom{C + K - 1}{K - 1}^{-1},\quad w = \texttt{VAGUE\_WEIGHT}.

**Bounded influence.** :math:`\mathrm{Mult}(c; C, p) \le 1` for every p (and so is its
average, the Dirichlet-multinomial), and :math:`p_{bg}(c) \ge w\, q(c)` with q the same for every
composition, so :math:`\log p(c \mid H, p) - \log p_{bg}(c) \le \log K_u =
\log\binom{C + K - 1}{K - 1} - \log w` for every hypothesis, p and count vector of total C.
The bound is reached when the hypothesis puts all its mass on one composition that the
generic background misses.

**Collapsed.** The unit's p is its own and conjugate: the model uses :math:`p(c \mid H)` above,
and ``own_posterior`` draws :math:`p \mid c \sim \mathrm{Dirichlet}(\alpha + c)` where the
report is faithful, :math:`\mathrm{Dirichlet}(\alpha)` elsewhere.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from engine.evidence.base import VAGUE_WEIGHT, Family, NonNegativeInt, Strict, observed_tensors, robust_background

# The fragment types every hypothesis is scored over (with the residual ``other``): the union of the
# types named by priors/mechanisms.yaml's fragments tables (tests/evidence/test_fragments.py checks it).
KNOWN = ("ball", "bird_remains", "blade", "bowtie", "cube", "cylinder", "diamond", "disc", "natural", "none",
         "projectile", "rod", "unclassified")
RESIDUAL = "other"
CATEGORIES = (*KNOWN, RESIDUAL)


class FragmentsObs(Strict):
    """Counts of recovered fragment types."""

    counts: dict[Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")], NonNegativeInt]

    @model_validator(mode="after")
    def _nonempty(self) -> FragmentsObs:
        if not self.counts:
            raise ValueError("counts is empty; list at least one fragment type with its count")
        return self


def _counts(items) -> np.ndarray:  # noqa: ANN001
    counts = items[0].observed.counts
    if unknown := set(counts) - set(CATEGORIES):
        raise ValueError(f"unknown fragment types {sorted(unknown)} (validation refuses them)")
    return np.asarray([counts.get(k, 0) for k in CATEGORIES], dtype=int)


def log_dm(counts: np.ndarray, alpha: np.ndarray) -> float:
    """log Dirichlet-multinomial pmf of ``counts`` (0 for no counts)."""
    from scipy.special import gammaln

    n, a = counts.sum(), alpha.sum()
    return float(gammaln(n + 1) - gammaln(counts + 1).sum() + gammaln(a) - gammaln(a + n)
                 + (gammaln(alpha + counts) - gammaln(alpha)).sum())


def log_compositions(total: int, k: int) -> float:
    """log binom(total + k - 1, k - 1): the number of count vectors of ``total`` over k types."""
    from scipy.special import gammaln

    return float(gammaln(total + k) - gammaln(total + 1) - gammaln(k))


class Fragments(Family):
    name = "fragments"
    Obs = FragmentsObs
    params = {"alpha": (("dirichlet",), (0.0, 0.0))}
    sampled = ("alpha",)
    simulable = True
    replicable = True
    collapsible = True

    def check_observed(self, obs) -> list[tuple[str, str]]:  # noqa: ANN001
        if unknown := [k for k in obs.counts if k not in CATEGORIES]:
            return [("counts", f"unknown fragment type{'s' * (len(unknown) > 1)} {', '.join(unknown)}; known types: "
                     f"{', '.join(CATEGORIES)} (count a type outside the list as other)")]
        return []

    def check_params(self, obs, spec) -> list[tuple[str, str]]:  # noqa: ANN001
        if "alpha" not in spec:
            return []
        table = spec["alpha"].labels
        if unknown := [k for k in table if k not in CATEGORIES]:
            return [("counts", f"the fragments alpha names unknown type{'s' * (len(unknown) > 1)} {', '.join(unknown)}; "
                     f"known types: {', '.join(KNOWN)}; fold its concentration into other")]
        if RESIDUAL not in table:
            return [("counts", "the fragments alpha has no 'other' entry; add one: the concentration shared by every "
                     "type it does not list")]
        return []

    def suspicious(self, obs) -> list[tuple[str, str]]:  # noqa: ANN001
        if not any(obs.counts.values()):
            return [("counts", "every count is 0: with no fragment recovered the item carries no evidence (the types' "
                     "shares are conditional on the total); leave it out or report what was found")]
        return []

    def describe(self, obs) -> str:  # noqa: ANN001
        return ", ".join(f"{k} {v}" for k, v in obs.counts.items())

    def labels(self, items) -> tuple[str, ...]:  # noqa: ANN001
        return CATEGORIES

    def data(self, items) -> dict[str, np.ndarray]:  # noqa: ANN001
        return {"counts": _counts(items)}

    def loglik(self, items, theta):  # noqa: ANN001, ANN201
        import pymc as pm

        counts = observed_tensors(theta, self.data(items))["counts"]
        return pm.logp(pm.Multinomial.dist(n=counts.sum(), p=theta["alpha"]), counts)

    def _alpha(self, items, spec) -> np.ndarray:  # noqa: ANN001
        return np.asarray(spec["alpha"].alpha_for(CATEGORIES), dtype=float)

    def closed_form(self, items, spec) -> float:  # noqa: ANN001
        return log_dm(_counts(items), self._alpha(items, spec))

    def background(self, items, generic, theta) -> float:  # noqa: ANN001
        counts = _counts(items)
        return robust_background(self.closed_form(items, generic), -log_compositions(int(counts.sum()), counts.size))

    def log_ratio_cap(self, items, shared=None) -> float:  # noqa: ANN001
        return log_compositions(int(_counts(items).sum()), len(CATEGORIES)) - float(np.log(VAGUE_WEIGHT))

    def own_posterior(self, items, spec, rng, faithful):  # noqa: ANN001, ANN201
        alpha, faithful = self._alpha(items, spec), np.asarray(faithful, dtype=bool)
        out = np.empty((faithful.size, alpha.size))
        out[faithful] = rng.dirichlet(alpha + _counts(items), size=int(faithful.sum()))
        out[~faithful] = rng.dirichlet(alpha, size=int((~faithful).sum()))
        return {"alpha": out}

    # ---- simulation: the design keeps the total (the multinomial is conditional on it)
    def simulate_observed(self, items, theta, rng):  # noqa: ANN001, ANN201
        counts = self.simulate(items, {"alpha": theta["alpha"]}, rng)["counts"][0]
        found = {k: int(c) for k, c in zip(CATEGORIES, counts, strict=True) if c}
        return [{"counts": found or dict(items[0].observed.counts)}] * len(items)

    def simulate_background(self, items, theta, rng):  # noqa: ANN001, ANN201
        """An unfaithful report from the whole background: with probability w every split of the
        total among the categories equally likely (p ~ Dirichlet(1, ..., 1)), else the generic's."""
        if rng.random() >= VAGUE_WEIGHT:
            return self.simulate_observed(items, theta, rng)
        return self.simulate_observed(items, {"alpha": rng.dirichlet(np.ones(len(CATEGORIES)))[None, :]}, rng)

    # ---- numpy side: replicated data for predictive checks
    def simulate(self, items, theta, rng):  # noqa: ANN001, ANN201
        p = np.asarray(theta["alpha"])
        total = int(_counts(items).sum())
        return {"counts": np.stack([rng.multinomial(total, row / row.sum()) for row in p])}

    def observed(self, items):  # noqa: ANN001, ANN201
        return {"counts": _counts(items)[None, :]}

    def logp_np(self, items, y, theta):  # noqa: ANN001, ANN201
        from scipy import stats

        p = np.asarray(theta["alpha"])
        total = int(_counts(items).sum())
        return stats.multinomial.logpmf(y["counts"], total, p / p.sum(axis=1, keepdims=True))
