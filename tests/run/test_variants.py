"""Variants by importance reweighting of the base run's draws, against closed forms; fallback to sampling."""

from __future__ import annotations

import json
import shutil

import exact
import pytest
import runhelp
from inference.test_oracle import oracle_truth

from engine.run.lifecycle import read_attribution
from engine.run.settings import ExecutionOptions, Settings

VARIANTS = {
    "gap-shift": {"hp__gap__log_median": [3.3, 0.5]},  # the interval's prior moved: every hypothesis reweights
    "gap-sharp": {"hp__gap__log_median": [3.7, 0.3]},  # ... moved and narrowed
    # every item explained by the background: the posterior is the prior; and the one sampled parameter
    # (the claim's assertion rate) gets a far-away prior, so reweighting the base draws cannot work
    "no-lab": {"hp__reliability__lab": 0.0, "hp__reliability__press": 0.0, "hp__assertion_rate__neutral": [80.0, 20.0]},
}


def variant_truth(hid: str, mu: float, tau: float) -> float:
    old = (3.0, 0.5) if hid == "external" else (4.1, 2.0)
    return (oracle_truth()[hid] - exact.interval(40.0, mu=old[0], tau=old[1], sd=1.0)
            + exact.interval(40.0, mu=mu, tau=tau, sd=1.0))


@pytest.fixture(scope="module")
def swept(oracle_run, tmp_path_factory):
    """The oracle run copied, the variants added to its manifest and the run resumed (as `incident sensitivity` does)."""
    from engine.run.lifecycle import resume_run
    from engine.run.store import RunFolder, read_json, write_json

    root = tmp_path_factory.mktemp("variants") / "oracle"
    shutil.copytree(oracle_run[0], root)
    folder = RunFolder(root)
    man = read_json(folder.manifest)
    man["variants"] = VARIANTS
    write_json(folder.manifest, man)
    resume_run(root, options=ExecutionOptions(workers=0), command=["pytest"])
    return root


@pytest.mark.slow
def test_reweighted_variants_match_their_closed_form_evidence_and_posterior(swept, oracle_run):
    settings = Settings(**runhelp.manifest(swept)["settings"])
    assert settings.variant_method == "reweight"
    for name in ("gap-shift", "gap-sharp"):
        mu, tau = VARIANTS[name]["hp__gap__log_median"]
        got = read_attribution(swept / "variants" / name)
        truth = {h: variant_truth(h, mu, tau) for h in got["hypotheses"]}
        exact_post = exact.posterior([h["prior"] for h in got["hypotheses"].values()], list(truth.values()))
        for (hid, h), p in zip(got["hypotheses"].items(), exact_post, strict=True):
            assert h["method"] == "reweighted", (name, hid)
            err = h["log_evidence"]["pooled"] - truth[hid]
            assert abs(err) <= 3 * h["log_evidence_se"] + 0.01, (name, hid, err, h["log_evidence_se"])
            assert abs(h["posterior"] - p) <= max(3 * h["posterior_mcse"], 0.01), (name, hid, h["posterior"], p)
        assert got["converged"], got["warnings"]
        # agreement is not applicable (both estimates are the base run's, moved alike); the check shown is the reweighting's
        diag = json.loads((swept / "variants" / name / "diagnostics.json").read_text())["hypotheses"]
        for hid, d in diag.items():
            assert d["estimators"]["agree"] is None and d["reweighted"]["ess"] > 0, (name, hid, d["estimators"])
        # the variant really moved the evidence away from the base run's
        base = runhelp.numbers(oracle_run[0])["hypotheses"]
        assert max(abs(h["log_evidence"]["pooled"] - base[k]["log_evidence"]["pooled"]) for k, h in got["hypotheses"].items()) > 0.1


@pytest.mark.slow
def test_an_unreliable_reweighting_falls_back_to_sampling_the_variant(swept):
    from engine.run.store import read_json

    variant = swept / "variants" / "no-lab"
    got = runhelp.numbers(variant)
    for hid, h in got["hypotheses"].items():
        rw = read_json(variant / "tasks" / f"reweight-{hid}-0.json")
        assert not rw["reliable"] and (rw["pareto_k"] > rw["k_max"] or rw["ess"] < 1000), rw
        assert h["method"] == "sampled"
        assert (variant / "tasks" / f"nuts-{hid}-0.nc").exists() and (variant / "tasks" / f"bridge-{hid}-0.json").exists()
        # with no reliable source the evidence carries no information: posterior = prior
        assert abs(h["posterior"] - h["prior"]) <= max(4 * h["posterior_mcse"], 0.02), (hid, h)
    ex = runhelp.manifest(swept)["executions"][-1]
    n_hyp = len(got["hypotheses"])
    # base tasks all skipped; a reweighting per variant and hypothesis; sampling only for no-lab
    assert len(ex["computed"]) == 3 * n_hyp + n_hyp * (4 + 4 + 1), ex["computed"]
    assert {c.split("/")[0] for c in ex["computed"] if "/reweight-" not in c} == {"no-lab"}


@pytest.mark.slow
def test_resuming_a_swept_run_recomputes_nothing(swept):
    from engine.run.lifecycle import resume_run

    before = {n: runhelp.numbers(swept / "variants" / n) for n in VARIANTS}
    resume_run(swept, options=ExecutionOptions(workers=0), command=["pytest"])
    ex = runhelp.manifest(swept)["executions"][-1]
    assert ex["computed"] == [] and ex["status"] == "complete"
    assert {n: runhelp.numbers(swept / "variants" / n) for n in VARIANTS} == before


@pytest.mark.slow
def test_a_resume_resolves_its_execution_options_to_one_cluster_once(swept, monkeypatch):
    from engine.run.cluster import ClusterSpec
    from engine.run.lifecycle import resume_run

    made = []
    real = ClusterSpec.of.__func__
    monkeypatch.setattr(ClusterSpec, "of", classmethod(lambda cls, options: made.append(options) or real(cls, options)))
    options = ExecutionOptions(workers=0, retries=0)
    resume_run(swept, options=options, command=["pytest"])
    assert made == [options]
    assert runhelp.manifest(swept)["executions"][-1]["backend"] == "in-process"


@pytest.mark.slow
def test_a_sampled_variant_starts_from_the_base_run_and_matches_its_closed_form(oracle_case, tmp_path):
    """A sampled variant's NUTS chains start from the base run's (draw, step size, scale) and tune for
    ``variant_tune`` steps instead of ``tune``; its evidence and attribution still match the closed form."""
    from engine.run.lifecycle import run_case
    from engine.run.settings import Variant
    from engine.run.store import read_idata

    settings = Settings(seed=11, variant_method="sample", variant_tune=200)
    mu, tau = VARIANTS["gap-sharp"]["hp__gap__log_median"]
    root = run_case(oracle_case, settings=settings, options=ExecutionOptions(workers=0), out=tmp_path, command=["pytest"],
                    variants=[Variant.of("gap-sharp", VARIANTS["gap-sharp"])])
    got = read_attribution(root / "variants" / "gap-sharp")
    truth = {h: variant_truth(h, mu, tau) for h in got["hypotheses"]}
    exact_post = exact.posterior([h["prior"] for h in got["hypotheses"].values()], list(truth.values()))
    for (hid, h), p in zip(got["hypotheses"].items(), exact_post, strict=True):
        assert h["method"] == "sampled", hid
        err = h["log_evidence"]["pooled"] - truth[hid]
        assert abs(err) <= 3 * h["log_evidence_se"] + 0.01, (hid, err, h["log_evidence_se"])
        assert abs(h["posterior"] - p) <= max(3 * h["posterior_mcse"], 0.01), (hid, h["posterior"], p)
        base, variant = (read_idata(r / "tasks" / f"nuts-{hid}-0.nc") for r in (root, root / "variants" / "gap-sharp"))
        assert base.posterior.attrs["tuning_steps"] == 1000 and variant.posterior.attrs["tuning_steps"] == 200, hid
    assert got["converged"], got["warnings"]
    diag = json.loads((root / "variants" / "gap-sharp" / "diagnostics.json").read_text())["hypotheses"]
    for hid, d in diag.items():
        assert d["rhat_max"] < 1.01 and d["ess_bulk_min"] > 1000 and d["estimators"]["agree"], (hid, d)


def test_the_warm_start_is_the_chains_last_draw_and_the_pooled_moments():
    import arviz as az
    import numpy as np
    import pymc as pm

    from engine.run.compiled import WarmStart

    with pm.Model() as model:
        pm.Normal("x", 0.0, 1.0, shape=2)
        pm.HalfNormal("s", 1.0)
    rng = np.random.default_rng(3)
    x, s_log = rng.normal(size=(3, 50, 2)), rng.normal(size=(3, 50))
    step = np.tile(np.array([[0.3], [0.5], [0.7]]), (1, 50))
    idata = az.from_dict(posterior={"x": x, "s_log__": s_log, "s": np.exp(s_log)}, sample_stats={"step_size": step})
    warm = WarmStart.of(model, idata, chain=4)  # chain 4 of a 3-chain run: chain 1
    flat = np.concatenate([x.reshape(-1, 2), s_log.reshape(-1, 1)], axis=1)
    np.testing.assert_array_equal(warm.start, [*x[1, -1], s_log[1, -1]])
    np.testing.assert_allclose(warm.mean, flat.mean(axis=0))
    np.testing.assert_allclose(warm.cov, np.cov(flat, rowvar=False), rtol=2e-6)
    assert warm.step_size == 0.5
