"""Variants that pin one source's reliability (the sensitivity sweep's ``rel-<source>-lo/hi``) are
estimated by integrating that reliability out on a grid at the base run's draws
(``engine.inference.estimate.conditional_ratio``), not by sampling the variant again. Checked
against the independent claims oracle (tests/oracles/claims.py: exact polynomial expansion over Beta
moments), with the pinned prior written into the case itself."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import yaml
from evidence.test_claims_oracle import SHARED
from oracles import claims as oracle
from scipy import stats

K = 2000.0  # engine.results.sensitivity.K_CONCENTRATION, restated: the pin is Beta(q K, (1 - q) K)
PINS = {"lo": float(stats.beta.ppf(0.1, 3.0, 3.0)), "hi": float(stats.beta.ppf(0.9, 3.0, 3.0))}


@pytest.fixture(scope="module")
def pinned_run(tmp_path_factory):
    from engine.run.lifecycle import run_case
    from engine.run.settings import ExecutionOptions, Settings, Variant
    from engine.spec.case import load_case

    folder = tmp_path_factory.mktemp("pinned")
    path = folder / "shared.yaml"
    path.write_text(yaml.safe_dump(SHARED, sort_keys=False))
    variants = [Variant.of(f"party-{tag}", {"hp__reliability__party": [q * K, (1 - q) * K]}) for tag, q in PINS.items()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = run_case(load_case(path), settings=Settings(seed=11, draws=500, tune=500, chains=2, smc_draws=400, smc_chains=2),
                        options=ExecutionOptions(workers=0), out=folder / "runs", variants=variants)
    truth = {}
    for tag, q in PINS.items():
        doc = json.loads(json.dumps(SHARED))
        doc["sources"][0]["reliability"] = {"beta": [q * K, (1 - q) * K]}
        p = folder / f"pinned-{tag}.yaml"
        p.write_text(yaml.safe_dump(doc, sort_keys=False))
        truth[tag] = oracle.log_evidence_of(p)
    return root, truth


@pytest.mark.slow
def test_a_pinned_reliability_is_integrated_out_and_matches_the_oracle(pinned_run):
    from engine.run.lifecycle import read_attribution

    root, truth = pinned_run
    assert SHARED["sources"][0] == {"id": "party", "title": "party", "reliability": {"beta": [3.0, 3.0]}}
    for tag, q in PINS.items():
        variant = root / "variants" / f"party-{tag}"
        got = read_attribution(variant)
        for hid, h in got["hypotheses"].items():
            rw = json.loads((variant / "tasks" / f"reweight-{hid}-0.json").read_text())
            assert rw["method"] == "conditional" and rw["reliable"], (tag, hid, rw)
            assert h["method"] == "reweighted", (tag, hid)
            err = h["log_evidence"]["pooled"] - truth[tag][hid]
            assert abs(err) <= 3 * h["log_evidence_se"] + 0.05, (tag, hid, err, h["log_evidence_se"])
            assert not (variant / "tasks" / f"nuts-{hid}-0.nc").exists()  # nothing was sampled again
        # the variant's posterior holds the pinned reliability, not the base run's
        from engine.run.store import read_idata

        post = read_idata(variant / "posterior" / "sam.nc").posterior
        r = post["reliability__party"].values
        assert abs(r.mean() - q) < 0.01 and r.std() < 0.03, (tag, r.mean(), r.std(), q)
        # the pin moved the evidence (else the check above would be idle)
        base = read_attribution(root)["hypotheses"]
        assert max(abs(truth[tag][k] - base[k]["log_evidence"]["pooled"]) for k in truth[tag]) > 0.05


@pytest.mark.slow
def test_plain_importance_weights_of_a_pin_are_degenerate(pinned_run):
    """The control: the base draws' own importance weights for the same variant are unusable (Pareto k
    far above 0.7), which is why the pinned parameter is integrated out instead."""
    from engine.inference.estimate import importance_ratio
    from engine.run.compiled import compiled_for, unconstrained_draws
    from engine.run.settings import Variant
    from engine.run.store import open_netcdf
    from engine.spec.case import load_case

    root, _ = pinned_run
    case = load_case(root / "case.yaml")
    chains = [open_netcdf(root / "tasks" / f"nuts-sam-{c}.nc") for c in range(2)]
    cm = compiled_for(case, "sam", None)
    x = np.concatenate([unconstrained_draws(cm.model, c) for c in chains])
    flat = x.reshape(-1, x.shape[-1])
    base = cm.use(case, "sam").log_density()(flat)
    q = PINS["lo"]
    var = cm.use(case, "sam", Variant.of("v", {"hp__reliability__party": [q * K, (1 - q) * K]})).log_density()(flat)
    est = importance_ratio((var - base).reshape(x.shape[:2]))
    assert not est["reliable"] and est["pareto_k"] > 0.7, est
