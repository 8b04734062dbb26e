"""Run folder → records: combine task results into posterior files and the records of
``engine.results.records`` (``attribution.json``, ``diagnostics.json``, ``case.json``); the
client-side end of a run, no sampling, no dask. Also the typed readers of those records.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from engine.errors import EngineError, RunError
from engine.results.records import SCHEMA_VERSION, Attribution, CaseRecord, Diagnostics
from engine.run.plan import Task
from engine.run.settings import Settings
from engine.run.store import RunFolder, open_netcdf, read_json, write_idata, write_json
from engine.spec.case import Case


def case_of_run(run_dir) -> Case:  # noqa: ANN001
    """The case as frozen in a run folder (its case.yaml read against its own priors/)."""
    from engine.spec.case import load_case

    folder = RunFolder(Path(run_dir))
    return load_case(folder.case, priors_dir=folder.priors if folder.priors.is_dir() else None)


def _merge_chains(folder: RunFolder, hid: str, settings: Settings):  # noqa: ANN202
    import arviz as az

    chains = [open_netcdf(folder.task(Task("nuts", hid, c).key, "nc")) for c in range(settings.chains)]
    return az.concat(chains, dim="chain") if len(chains) > 1 else chains[0]


def _estimates(folder: RunFolder, hid: str, settings: Settings):  # noqa: ANN202
    """The independent estimator's and bridge sampling's log evidences of ``hid`` from its task results in
    ``folder``: SMC, or importance sampling at the Laplace fits where a family proposes starting points
    (``Compiled.sample_smc``; the "smc" tasks then hold its batches)."""
    from engine.inference.estimate import LogEvidence, is_log_evidence, smc_log_evidence

    batches = [read_json(folder.task(Task("smc", hid, c).key, "json")) for c in range(settings.smc_chains)]
    if all(b.get("estimator") == "laplace_is" for b in batches):
        smc = is_log_evidence(batches)
    else:
        smc = smc_log_evidence(np.array([b["log_marginal_likelihood"] for b in batches]))
    b = read_json(folder.task(Task("bridge", hid).key, "json"))
    return smc, LogEvidence("bridge", b["value"], b["se"], {})


def reweighting(folder: RunFolder, hid: str) -> dict | None:
    """The reliable importance reweighting of ``hid`` in a variant's folder, if that is how it was estimated."""
    path = folder.task(Task("reweight", hid).key, "json")
    if not path.exists():
        return None
    result = read_json(path)
    return result if result.get("reliable") else None


def resampled(idata, log_weights, seed):  # noqa: ANN001, ANN201
    """The posterior of ``idata`` resampled (systematic resampling) by normalised log weights,
    keeping its (chain, draw) shape: the variant's posterior draws for the checks that need draws."""
    import arviz as az
    import xarray as xr

    from engine.inference.estimate import systematic_resample

    post = idata.posterior
    s = post.sizes["chain"] * post.sizes["draw"]
    idx = systematic_resample(log_weights, s, np.random.default_rng(seed))
    data = {name: (da.dims, da.values.reshape(s, *da.shape[2:])[idx].reshape(da.shape)) for name, da in post.data_vars.items()}
    return az.InferenceData(posterior=xr.Dataset(data, coords=post.coords, attrs={**post.attrs, "incident_resampled": 1}))


def _shifted(est, rw: dict):  # noqa: ANN001, ANN202
    """A base-run log evidence moved by a variant's log ratio, with both errors."""
    from engine.inference.estimate import LogEvidence

    return LogEvidence(est.estimator, est.value + rw["log_ratio"], float(np.hypot(est.se, rw["se"])), {})


def collect(case: Case, folder: RunFolder, settings: Settings, base: RunFolder | None = None,
            base_cache: dict | None = None) -> dict:
    """Combine task results into posterior/<h>.nc, diagnostics.json and attribution.json.

    For a variant's folder, ``base`` is the base run's folder (already collected): a hypothesis
    the variant estimated by importance reweighting takes the base run's log evidences moved by
    the log ratio, the base run's convergence diagnostics with its ESS scaled by the importance
    ESS share, and the base posterior resampled by the weights. ``base_cache`` keeps what is read
    of the base run (per hypothesis: draws, diagnostics, log evidences) across the variants of one run.
    """
    from engine.inference.estimate import attribute, combine
    from engine.results.diagnostics import contributions, numerical_problems, nuts_diagnostics, predictive_checks, verdict
    from engine.run.seeds import predictive_seed, resample_seed

    hids = list(case.hypotheses)
    posteriors, per, diag = {}, {}, {}
    for hid in hids:
        rw = reweighting(folder, hid) if base is not None else None
        if rw is None:
            idata = _merge_chains(folder, hid, settings)
            diag[hid] = nuts_diagnostics(idata)
            smc, bridge = _estimates(folder, hid, settings)
        else:
            cache = base_cache if base_cache is not None else {}
            if hid not in cache:
                diagnostics = cache.setdefault("diagnostics", read_json(base.diagnostics)["hypotheses"])
                cache[hid] = (_merge_chains(base, hid, settings), diagnostics[hid], _estimates(base, hid, settings))
            base_idata, d, estimates = cache[hid]
            if rw.get("method") == "conditional":  # its own posterior draws, written by the task
                idata = open_netcdf(folder.task(Task("reweight", hid).key, "nc"))
            else:
                idata = resampled(base_idata, rw["log_weights"], resample_seed(settings.seed, hid))
            share = rw["ess"] / (settings.chains * settings.draws)
            diag[hid] = {**d, "ess_bulk_min": d["ess_bulk_min"] * share, "ess_tail_min": d["ess_tail_min"] * share,
                         "reweighted": {k: rw[k] for k in ("log_ratio", "se", "pareto_k", "k_max", "ess")}}
            smc, bridge = (_shifted(e, rw) for e in estimates)
        posteriors[hid] = idata
        write_idata(folder.posterior(hid), idata)
        pooled = combine([smc, bridge])
        per[hid] = {"smc": smc, "bridge": bridge, "pooled": pooled}
        # a reweighted hypothesis's two estimates are the base run's moved by one importance ratio: their
        # agreement would repeat the base run's, so it is not applicable; its own check is "reweighted"
        diag[hid]["estimators"] = {"smc": smc.value, "smc_se": smc.se, "bridge": bridge.value, "bridge_se": bridge.se,
                                   "spread": pooled.spread, "z": pooled.z, "agree": None if rw is not None else pooled.agree,
                                   "independent": smc.estimator}
        if "pareto_k" in smc.detail:
            diag[hid]["estimators"]["pareto_k"] = smc.detail["pareto_k"]

    prior = np.array([case.hypotheses[h].prior for h in hids])
    log_z = np.array([per[h]["pooled"].value for h in hids])
    se = np.array([per[h]["pooled"].se for h in hids])
    post, mcse = attribute(prior, log_z, se)
    order = np.argsort(-post)
    leader, runner_up = hids[order[0]], hids[order[1]]

    predictive, unexplained = predictive_checks(case, posteriors, seeds=lambda k, j: predictive_seed(settings.seed, k, j))
    for hid, problems in numerical_problems(case, posteriors).items():  # kept apart from convergence's "problems"
        diag[hid]["numerical"] = problems
    contrib = contributions(case, posteriors, leader, runner_up)
    mcse_by = {h: float(mcse[i]) for i, h in enumerate(hids)}
    status, fail, warn = verdict(diag, mcse_by, unexplained)

    attribution = Attribution(
        schema_version=SCHEMA_VERSION, case=case.id, run=folder.root.name, leader=leader, converged=not fail, warnings=fail + warn,
        hypotheses={
            h: {
                "prior": float(prior[i]),
                "posterior": float(post[i]),
                "posterior_mcse": float(mcse[i]),
                "log_evidence": {"smc": per[h]["smc"].value, "bridge": per[h]["bridge"].value, "pooled": per[h]["pooled"].value},
                "log_evidence_se": float(se[i]),
                "method": "reweighted" if "reweighted" in diag[h] else "exact" if diag[h].get("exact") else "sampled",
            }
            for i, h in enumerate(hids)
        },
    )
    diagnostics = Diagnostics(
        schema_version=SCHEMA_VERSION, case=case.id, run=folder.root.name, verdict=status, reasons=fail + warn,
        hypotheses=diag, posterior_mcse=mcse_by, predictive=predictive, unexplained=unexplained, contributions=contrib)
    write_json(folder.diagnostics, diagnostics.to_json())
    if base is None:
        write_case_record(folder, case)
    result = attribution.to_json()
    write_json(folder.attribution, result)
    return result


def write_case_record(folder: RunFolder, case: Case) -> CaseRecord:
    """case.json: the case as the report shows it (the report reads no YAML)."""
    from engine.results.casesummary import case_record

    record = case_record(case)
    write_json(folder.root / CaseRecord.FILE, record.to_json())
    return record


def read_attribution_record(run_dir) -> Attribution:  # noqa: ANN001
    """The validated attribution.json of a run (``RunError`` naming the field when it is malformed)."""
    folder = RunFolder(Path(run_dir))
    return Attribution.from_json(read_json(folder.attribution), source=str(folder.attribution))


def read_diagnostics(run_dir) -> dict:  # noqa: ANN001
    """diagnostics.json of a run, validated. Reading never writes: a folder without it (an older
    run, or one whose collection was interrupted) is a ``RunError`` saying how to recompute it."""
    folder = RunFolder(Path(run_dir))
    if not os.path.lexists(folder.diagnostics):
        if not os.path.lexists(folder.manifest):
            raise RunError(f"{folder.root} is not a run folder (no manifest.json); give runs/<case>/<run>")
        raise RunError(f"{folder.diagnostics} not found; recompute it with `incident run --resume {folder.root}`")
    return Diagnostics.from_json(read_json(folder.diagnostics), source=str(folder.diagnostics)).to_json()


def ensure_case_record(run_dir) -> str:  # noqa: ANN001
    """Write case.json into a run folder collected before it existed, from the folder's frozen
    case.yaml and priors/; return "" when the folder has it (or now has it), else why not."""
    folder = RunFolder(Path(run_dir))
    if (folder.root / CaseRecord.FILE).exists() or not folder.attribution.exists():
        return ""
    if not folder.case.exists():
        return "case.yaml not found in the run folder"
    try:
        write_case_record(folder, case_of_run(folder.root))
    except EngineError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return f"the run's case.yaml could not be resolved ({first})"
    return ""


def prepare_report(run_dir) -> None:  # noqa: ANN001
    """Complete an older run folder with the record the report reads and it lacks: case.json
    (from the frozen case.yaml), only in a folder whose manifest records no result hashes
    (a newer folder has it, or is refused as changed). Results are never recomputed here."""
    folder = RunFolder(Path(run_dir))
    man = read_json(folder.manifest) if os.path.lexists(folder.manifest) else {}
    if not (isinstance(man, dict) and "outputs" in man):
        ensure_case_record(run_dir)
