"""Run folder → attribution: combine task results into posterior files, diagnostics.json and
``attribution.json`` (the client-side end of a run; no sampling, no dask)."""

from __future__ import annotations

import numpy as np

from engine.case import Case
from engine.runner import Settings, Task
from engine.store import RunFolder, read_json, write_idata, write_json


def case_of_run(run_dir) -> Case:  # noqa: ANN001
    """The case as frozen in a run folder (its case.yaml read against its own priors/)."""
    from pathlib import Path

    from engine.case import load_case

    folder = RunFolder(Path(run_dir))
    return load_case(folder.case, priors_dir=folder.priors if folder.priors.is_dir() else None)


def _merge_chains(folder: RunFolder, hid: str, settings: Settings):  # noqa: ANN202
    import arviz as az

    chains = [az.from_netcdf(str(folder.task(Task("nuts", hid, c).key, "nc"))) for c in range(settings.chains)]
    return az.concat(chains, dim="chain") if len(chains) > 1 else chains[0]


def collect(case: Case, folder: RunFolder, settings: Settings) -> dict:
    """Combine task results into posterior/<h>.nc, diagnostics.json and attribution.json."""
    from engine.diagnostics import contributions, nuts_diagnostics, predictive_checks, verdict
    from engine.estimate import LogEvidence, attribute, combine, smc_log_evidence

    hids = list(case.hypotheses)
    posteriors, per, diag = {}, {}, {}
    for hid in hids:
        idata = posteriors[hid] = _merge_chains(folder, hid, settings)
        write_idata(folder.posterior(hid), idata)
        diag[hid] = nuts_diagnostics(idata)
        smc = smc_log_evidence(np.array([read_json(folder.task(Task("smc", hid, c).key, "json"))["log_marginal_likelihood"]
                                         for c in range(settings.smc_chains)]))
        b = read_json(folder.task(Task("bridge", hid).key, "json"))
        bridge = LogEvidence("bridge", b["value"], b["se"], {})
        pooled = per[hid] = combine([smc, bridge])
        per[hid] = {"smc": smc, "bridge": bridge, "pooled": pooled}
        diag[hid]["estimators"] = {"smc": smc.value, "smc_se": smc.se, "bridge": bridge.value, "bridge_se": bridge.se,
                                   "spread": pooled.spread, "z": pooled.z, "agree": pooled.agree}

    prior = np.array([case.hypotheses[h].prior for h in hids])
    log_z = np.array([per[h]["pooled"].value for h in hids])
    se = np.array([per[h]["pooled"].se for h in hids])
    post, mcse = attribute(prior, log_z, se)
    order = np.argsort(-post)
    leader, runner_up = hids[order[0]], hids[order[1]]

    predictive, unexplained = predictive_checks(case, posteriors, seed=settings.seed)
    contrib = contributions(case, posteriors, leader, runner_up)
    mcse_by = {h: float(mcse[i]) for i, h in enumerate(hids)}
    status, fail, warn = verdict(diag, mcse_by, unexplained)

    result = {
        "case": case.id,
        "run": folder.root.name,
        "leader": leader,
        "converged": not fail,
        "warnings": fail + warn,
        "hypotheses": {
            h: {
                "prior": float(prior[i]),
                "posterior": float(post[i]),
                "posterior_mcse": float(mcse[i]),
                "log_evidence": {"smc": per[h]["smc"].value, "bridge": per[h]["bridge"].value, "pooled": per[h]["pooled"].value},
                "log_evidence_se": float(se[i]),
            }
            for i, h in enumerate(hids)
        },
    }
    write_json(folder.diagnostics, {
        "case": case.id, "run": folder.root.name, "verdict": status, "reasons": fail + warn,
        "hypotheses": diag, "posterior_mcse": mcse_by, "predictive": predictive, "unexplained": unexplained,
        "contributions": contrib,
    })
    write_json(folder.attribution, result)
    return result


def read_diagnostics(run_dir) -> dict:  # noqa: ANN001
    """diagnostics.json of a run, recomputed from the task results if it is missing."""
    from pathlib import Path

    from engine.errors import RunError

    folder = RunFolder(Path(run_dir))
    if not folder.diagnostics.exists():
        if not folder.manifest.exists():
            raise RunError(f"{folder.root} is not a run folder (no manifest.json); give runs/<case>/<run>")
        settings = Settings(**read_json(folder.manifest)["settings"])
        collect(case_of_run(folder.root), folder, settings)
    return read_json(folder.diagnostics)
