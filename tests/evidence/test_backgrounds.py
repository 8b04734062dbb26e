"""What calibration simulates for an unfaithful report is the background the model scores it by:
the frequency of an observation under ``simulate_background`` (generic parameters drawn from their
priors) against exp(``background``), for the families whose background has a vague component."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import CASES
from scipy import stats

from engine.calibration.simulate import _unit_theta
from engine.evidence import family_of, generic_spec
from engine.spec.case import load_case

N = 40_000


def _unit(case, family):  # noqa: ANN001, ANN202
    return next(items for _, items in case.units() if items[0].family == family)


def _frequency(case, items, key, rng) -> float:  # noqa: ANN001
    fam, generic = family_of(items), generic_spec(case, items)
    want = getattr(items[0].observed, key)
    hits = sum(fam.simulate_background(items, _unit_theta(items, generic, {}, rng), rng)[0][key] == want for _ in range(N))
    return hits / N


@pytest.mark.parametrize("item", ["bowties", "residue", "snarge"])
def test_presence_background_is_simulated_as_scored(item):
    case = load_case(CASES / "presence.yaml")
    items = next(i for _, i in case.units() if i[0].id == item)
    p = math.exp(family_of(items).background(items, generic_spec(case, items), {}))
    f = _frequency(case, items, "found", np.random.default_rng(3))
    assert abs(f - p) < 4 * math.sqrt(p * (1 - p) / N) + 1e-3, (f, p)


def test_fragments_background_is_simulated_as_scored(tmp_path):
    text = (CASES / "oracle.yaml").read_text().replace("{counts: {natural: 2, blade: 1, cube: 1}}", "{counts: {natural: 1, cube: 1}}")
    (tmp_path / "c.yaml").write_text(text)
    case = load_case(tmp_path / "c.yaml")
    items = _unit(case, "fragments")
    p = math.exp(family_of(items).background(items, generic_spec(case, items), {}))
    f = _frequency(case, items, "counts", np.random.default_rng(4))
    assert stats.binomtest(round(f * N), N, p).pvalue > 1e-4, (f, p)
