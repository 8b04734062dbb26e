r"""Fragments: counts of recovered fragment types (rods, cubes, bow-ties, natural, none, ...).

.. math::
    (c_1..c_K) \sim \mathrm{Multinomial}(C, p),\qquad p \sim \mathrm{Dirichlet}(\alpha)

with :math:`\alpha` from the mechanism's ``alpha`` table (types it does not list take its
``other`` entry). Background: the Dirichlet-multinomial under the ``generic`` mechanism.
"""

from __future__ import annotations

import numpy as np
import pymc as pm
from scipy import stats

from engine.evidence.common import observed_tensors

SAMPLED = ("alpha",)


def labels(items) -> tuple[str, ...]:  # noqa: ANN001
    return tuple(items[0].observed.counts)


def _counts(items) -> np.ndarray:  # noqa: ANN001
    return np.asarray(list(items[0].observed.counts.values()), dtype=int)


def data(items) -> dict[str, np.ndarray]:  # noqa: ANN001
    return {"counts": _counts(items)}


def loglik(items, theta):  # noqa: ANN001, ANN201
    counts = observed_tensors(theta, data(items))["counts"]
    return pm.logp(pm.Multinomial.dist(n=counts.sum(), p=theta["alpha"]), counts)


def closed_form(items, spec) -> float:  # noqa: ANN001
    counts = _counts(items)
    alpha = np.asarray(spec["alpha"].alpha_for(labels(items)))
    if counts.sum() == 0:
        return 0.0
    return float(stats.dirichlet_multinomial.logpmf(counts, alpha, int(counts.sum())))


def background(items, generic, theta) -> float:  # noqa: ANN001
    return closed_form(items, generic)


# ---- numpy side: replicated data for predictive checks
def simulate(items, theta, rng):  # noqa: ANN001, ANN201
    p = np.asarray(theta["alpha"])
    total = int(_counts(items).sum())
    return {"counts": np.stack([rng.multinomial(total, row / row.sum()) for row in p])}


def observed(items):  # noqa: ANN001, ANN201
    return {"counts": _counts(items)[None, :]}


def logp_np(items, y, theta):  # noqa: ANN001, ANN201
    p = np.asarray(theta["alpha"])
    total = int(_counts(items).sum())
    return stats.multinomial.logpmf(y["counts"], total, p / p.sum(axis=1, keepdims=True))
