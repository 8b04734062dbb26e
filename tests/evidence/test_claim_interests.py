"""The claim's interest classes ``claims_responsibility`` and ``settlement`` against the hand-derived
closed form P(assert | H) = r h_H + (1 - r) b_c (b_c the class's assertion rate, read here from
priors/sources.yaml with yaml, not through the engine), in the exact evidence and in the PyMC model."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import special

from engine.errors import CaseErrors
from engine.inference.closedform import exact_log_evidence
from engine.spec.case import load_case

ROOT = Path(__file__).resolve().parents[2]
LIB = yaml.safe_load((ROOT / "priors" / "sources.yaml").read_text())["assertion_rate"]
R = 0.6
HOLDS = {"did": 0.95, "not": 0.02}
NEW = ("claims_responsibility", "settlement")


def rate_mean(interest: str) -> float:
    a, b = LIB[interest]["beta"]
    return a / (a + b)


def write(tmp_path: Path, interest: str, priors: Path | None = None) -> Path:
    doc = {"case": {"id": "c", "title": "c", "date": "2024-01-01"},
           "sources": [{"id": "party", "title": "p", "reliability": R}],
           "hypotheses": [{"id": "did", "description": "the group did it", "prior": 0.5, "mechanism": "internal_explosion"},
                          {"id": "not", "description": "it did not", "prior": 0.5, "mechanism": "fuel_tank_explosion"}],
           "evidence": [{"id": "said", "family": "claim", "source": "party",
                         "observed": {"statement": "we did it", "interest": interest},
                         "under": {h: {"holds": v} for h, v in HOLDS.items()}}]}
    if priors is not None:
        doc["priors"] = str(priors)
    path = tmp_path / f"{interest}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_the_library_documents_the_new_classes():
    assert rate_mean("claims_responsibility") == pytest.approx(0.9)
    assert rate_mean("settlement") == pytest.approx(0.5)
    text = (ROOT / "priors" / "CHANGELOG.md").read_text()
    for interest in NEW:
        assert f"`{interest}" in text


@pytest.mark.parametrize("interest", NEW)
def test_exact_evidence_is_the_closed_form(tmp_path, interest):
    case = load_case(write(tmp_path, interest))
    b = rate_mean(interest)
    for h, holds in HOLDS.items():
        assert exact_log_evidence(case, h) == pytest.approx(math.log(R * holds + (1 - R) * b), abs=1e-12)


@pytest.mark.parametrize("interest", NEW)
def test_the_model_term_at_any_rate_is_the_closed_form(tmp_path, interest):
    from engine.model.build import build_model

    case = load_case(write(tmp_path, interest))
    for h, holds in HOLDS.items():
        model = build_model(case, h)
        assert [v.name for v in model.free_RVs] == [f"assertion_rate__{interest}"]
        fn = model.compile_fn(model.replace_rvs_by_values(model.potentials)[0], inputs=model.value_vars,
                              on_unused_input="ignore")
        for b in (0.05, 0.5, 0.93):
            got = float(fn({f"assertion_rate__{interest}_logodds__": np.asarray(special.logit(b))}))
            assert got == pytest.approx(math.log(R * holds + (1 - R) * b), abs=1e-10)


def test_the_classes_weigh_as_their_rates_say(tmp_path):
    """Likelihood ratio (r + (1 - r) b) / ((1 - r) b) of a statement true under one hypothesis only
    (holds 1 vs 0): an admission against interest weighs most, a settlement far less, a claim of
    responsibility least (it is made whether true or not)."""
    ratio = {}
    for interest in ("against", "neutral", "settlement", "serves", "claims_responsibility"):
        b = rate_mean(interest)
        ratio[interest] = (R + (1 - R) * b) / ((1 - R) * b)
    assert ratio["against"] > ratio["neutral"] > ratio["settlement"] > ratio["serves"] > ratio["claims_responsibility"]
    assert ratio["settlement"] == pytest.approx(4.0) and ratio["claims_responsibility"] == pytest.approx(1 + 0.6 / 0.36)


def test_an_unknown_interest_is_one_error_listing_the_classes(tmp_path):
    with pytest.raises(CaseErrors) as exc:
        load_case(write(tmp_path, "deal"))
    ((e),) = exc.value.errors
    assert e.path == "evidence[said].observed.interest"
    assert all(c in e.message for c in ("settlement", "claims_responsibility")), e.message


def test_a_library_without_the_class_is_one_error_naming_the_item(tmp_path):
    priors = tmp_path / "priors"
    shutil.copytree(ROOT / "priors", priors)
    src = yaml.safe_load((priors / "sources.yaml").read_text())
    del src["assertion_rate"]["settlement"]
    (priors / "sources.yaml").write_text(yaml.safe_dump(src))
    with pytest.raises(CaseErrors) as exc:
        load_case(write(tmp_path, "settlement", priors))
    ((e),) = exc.value.errors
    assert e.path == "evidence[said].observed.interest" and "no assertion rate in the priors library" in e.message
