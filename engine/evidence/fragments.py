r"""Fragments: counts of recovered fragment types (rods, cubes, bow-ties, natural, none, ...).

.. math::
    (c_1..c_K) \sim \mathrm{Multinomial}(C, p),\qquad p \sim \mathrm{Dirichlet}(\alpha)

with :math:`\alpha` from the mechanism's ``alpha`` table (types it does not list take its
``other`` entry). Background: the Dirichlet-multinomial under the ``generic`` mechanism.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import Field, model_validator

from engine.evidence.base import Family, NonNegativeInt, Strict, observed_tensors


class FragmentsObs(Strict):
    """Counts of recovered fragment types."""

    counts: dict[Annotated[str, Field(pattern=r"^[a-z0-9_-]+$")], NonNegativeInt]

    @model_validator(mode="after")
    def _nonempty(self) -> FragmentsObs:
        if not self.counts:
            raise ValueError("counts is empty; list at least one fragment type with its count")
        return self


def _counts(items) -> np.ndarray:  # noqa: ANN001
    return np.asarray(list(items[0].observed.counts.values()), dtype=int)


class Fragments(Family):
    name = "fragments"
    Obs = FragmentsObs
    params = {"alpha": (("dirichlet",), (0.0, 0.0))}
    sampled = ("alpha",)
    simulable = True
    replicable = True

    def check_params(self, obs, spec) -> list[tuple[str, str]]:  # noqa: ANN001
        if "alpha" in spec:
            try:
                spec["alpha"].alpha_for(tuple(obs.counts))
            except ValueError as exc:
                return [("counts", str(exc))]
        return []

    def suspicious(self, obs) -> list[tuple[str, str]]:  # noqa: ANN001
        if len(obs.counts) == 1:
            (kind,) = obs.counts
            return [("counts", f"only one fragment type ({kind}) is counted: a multinomial of one type has probability 1 "
                     "under every hypothesis, so the item carries no evidence; list the other types looked for, with 0 "
                     "where none were found")]
        return []

    def describe(self, obs) -> str:  # noqa: ANN001
        return ", ".join(f"{k} {v}" for k, v in obs.counts.items())

    def labels(self, items) -> tuple[str, ...]:  # noqa: ANN001
        return tuple(items[0].observed.counts)

    def data(self, items) -> dict[str, np.ndarray]:  # noqa: ANN001
        return {"counts": _counts(items)}

    def loglik(self, items, theta):  # noqa: ANN001, ANN201
        import pymc as pm

        counts = observed_tensors(theta, self.data(items))["counts"]
        return pm.logp(pm.Multinomial.dist(n=counts.sum(), p=theta["alpha"]), counts)

    def closed_form(self, items, spec) -> float:  # noqa: ANN001
        from scipy import stats

        counts = _counts(items)
        alpha = np.asarray(spec["alpha"].alpha_for(self.labels(items)))
        if counts.sum() == 0:
            return 0.0
        return float(stats.dirichlet_multinomial.logpmf(counts, alpha, int(counts.sum())))

    # ---- simulation: the design keeps the types and their total (the multinomial is conditional on it)
    def simulate_observed(self, items, theta, rng):  # noqa: ANN001, ANN201
        counts = self.simulate(items, {"alpha": theta["alpha"]}, rng)["counts"][0]
        return [{"counts": dict(zip(items[0].observed.counts, (int(c) for c in counts), strict=True))}] * len(items)

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
