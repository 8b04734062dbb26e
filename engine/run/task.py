"""The worker side of a run: one task (a NUTS chain, an SMC chain, bridge sampling of one
hypothesis, or the importance reweighting of a variant), its result written into the run
folder atomically, a small summary returned.

``run_task`` is what the task loop (``engine.run.loop``) runs, through :class:`TaskWork`. A task
whose result is already complete and valid (same fingerprint) is skipped, which is how
``--resume`` works. Tasks in one process run one at a time: PyTensor compilation and the
compiled-model cache (``engine.run.compiled``) are not thread-safe.

**Reweighting.** A variant changes data, never the parameter space, so a ``reweight`` task
evaluates the variant's and the base's log density at the base run's NUTS draws (the compiled
log density, a fraction of a second) and estimates log(Z_variant / Z_base) by Pareto-smoothed
importance sampling (``engine.inference.estimate.importance_ratio``). Where the weights are
unreliable (Pareto k or importance ESS), the result says so and the run samples that
hypothesis in the variant (``engine.run.plan.followups``).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.errors import RunError
from engine.run.compiled import CACHE_SIZE, Compiled, compiled_for, ensure_compiledir, quiet, unconstrained_draws
from engine.run.plan import Task, dependencies, fingerprint
from engine.run.seeds import int_seed, task_seed
from engine.run.settings import Settings
from engine.run.store import RunFolder, open_netcdf, task_done, write_idata, write_json
from engine.spec.case import Case

_TASK_LOCK = threading.Lock()  # PyTensor compilation and the model cache are not thread-safe


@dataclass(frozen=True)
class TaskWork:
    """``run_task`` for one run's tasks: what the task loop submits (picklable: the case, folder and settings)."""

    case: Case
    run_dir: str
    settings: Settings

    def __call__(self, task: Task) -> dict:
        return run_task(self.case, task, self.run_dir, self.settings)


def run_task(case: Case, task: Task, run_dir: str, settings: Settings) -> dict:
    """Run one task (NUTS chain, SMC chain, bridge sampling or reweighting); write its result; return a summary."""
    ensure_compiledir()
    quiet()
    with _TASK_LOCK:
        folder = task.folder(RunFolder(Path(run_dir)))
        out = folder.task(task.key, task.ext)
        fp = fingerprint(case, settings, task)
        if task_done(out, fp, draws=settings.draws if task.kind == "nuts" else None):
            return {"key": task.id, "skipped": True, "process": f"{socket.gethostname()}:{os.getpid()}"}
        t0 = time.perf_counter()
        seed = task_seed(settings.seed, task.key)
        cm = compiled_for(case, task.hid, task.variant)
        compiles = cm.compiles
        if task.kind == "nuts":
            summary = _run_nuts(cm, task, settings, seed, out, fp)
        elif task.kind == "smc":
            summary = _run_smc(cm, task, settings, seed, out, fp)
        elif task.kind == "reweight":
            summary = _run_reweight(cm, case, task, settings, RunFolder(Path(run_dir)), out, fp)
        else:
            summary = _run_bridge(cm, task, settings, seed, RunFolder(Path(run_dir)), out, fp)
        # compiled: this task compiled something; compiles: how many function sets (NUTS set, pointwise
        # log-likelihood, SMC kernel, bridge log density) it compiled; structure: which cached model it used
        summary.update(key=task.id, skipped=False, seconds=round(time.perf_counter() - t0, 3), compiled=cm.compiles > compiles,
                       process=f"{socket.gethostname()}:{os.getpid()}", kind=task.kind, compiles=cm.compiles - compiles,
                       structure=cm.structure)
        return summary


def _run_nuts(cm: Compiled, task: Task, settings: Settings, seed, out: Path, fp: str) -> dict:  # noqa: ANN001
    import xarray as xr

    idata = cm.sample_nuts(draws=settings.draws, tune=settings.tune, seed=int_seed(seed), target_accept=settings.target_accept)
    loglik = cm.pointwise_log_likelihood(idata.posterior)
    idata.add_groups(log_likelihood=xr.Dataset(
        {"unit_loglik": (("chain", "draw", "unit"), np.stack(list(loglik.values()), axis=-1))},
        coords={"chain": idata.posterior.chain, "draw": idata.posterior.draw, "unit": list(loglik)}))
    idata = idata.assign_coords(chain=[task.chain], groups=["posterior", "sample_stats", "log_likelihood"])
    idata.posterior.attrs["incident_fingerprint"] = fp
    idata.posterior.attrs["incident_task"] = task.id
    write_idata(out, idata)
    return {"divergences": int(idata.sample_stats["diverging"].sum())}


def _run_smc(cm: Compiled, task: Task, settings: Settings, seed, out: Path, fp: str) -> dict:  # noqa: ANN001
    res = cm.sample_smc(draws=settings.smc_draws, seed=int_seed(seed))
    if not np.isfinite(res["log_marginal_likelihood"]):
        raise RunError(f"SMC for hypothesis {task.hid} returned no finite log marginal likelihood")
    result = {"ok": True, **res, "task": task.id, "fingerprint": fp}
    write_json(out, result)
    return dict(res)


def nuts_chains(root: RunFolder, task: Task, settings: Settings, what: str):  # noqa: ANN201
    """The NUTS chains ``task`` depends on (``root`` is the run's folder), concatenated, as InferenceData."""
    import arviz as az

    paths = [d.path(root) for d in dependencies(task, settings)]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise RunError(f"{what} for {task.id} needs NUTS results that are missing: {', '.join(missing)}")
    chains = [open_netcdf(p) for p in paths]
    return az.concat(chains, dim="chain") if len(chains) > 1 else chains[0]


def _run_bridge(cm: Compiled, task: Task, settings: Settings, seed, root: RunFolder, out: Path, fp: str) -> dict:  # noqa: ANN001
    from engine.inference.estimate import bridge_log_evidence

    idata = nuts_chains(root, task, settings, "bridge sampling")
    est = bridge_log_evidence(unconstrained_draws(cm.model, idata), cm.log_density(), seed=seed)
    result = {"ok": True, **est.to_dict(), "task": task.id, "fingerprint": fp}
    write_json(out, result)
    return {"value": est.value, "se": est.se}


_BASE_DRAWS: OrderedDict[tuple, tuple[np.ndarray, np.ndarray]] = OrderedDict()


def _base_draws(cm: Compiled, case: Case, task: Task, settings: Settings, root: RunFolder) -> tuple[np.ndarray, np.ndarray]:
    """The base run's unconstrained NUTS draws of ``task.hid`` (chain, draw, d) and the base log
    density at them, kept per worker process for the next variant (keyed by the chain files'
    identity, so a recomputed chain is read again)."""
    paths = [d.path(root) for d in dependencies(task, settings)]
    key = (task.hid, tuple((str(p), *_identity(p)) for p in paths))
    if key not in _BASE_DRAWS:
        x = unconstrained_draws(cm.model, nuts_chains(root, task, settings, "importance reweighting"))
        cm.use(case, task.hid)
        _BASE_DRAWS[key] = (x, cm.log_density()(x.reshape(-1, x.shape[-1])))
        while len(_BASE_DRAWS) > CACHE_SIZE:
            _BASE_DRAWS.popitem(last=False)
    _BASE_DRAWS.move_to_end(key)
    return _BASE_DRAWS[key]


def _identity(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except OSError:
        return (0, 0)
    return (st.st_mtime_ns, st.st_size)


def _run_reweight(cm: Compiled, case: Case, task: Task, settings: Settings, root: RunFolder, out: Path, fp: str) -> dict:
    """log(Z_variant / Z_base) of one hypothesis from the base run's NUTS draws (PSIS)."""
    from engine.inference.estimate import importance_ratio

    x, base = _base_draws(cm, case, task, settings, root)
    cm.use(case, task.hid, task.variant)
    est = importance_ratio((cm.log_density()(x.reshape(-1, x.shape[-1])) - base).reshape(x.shape[:2]))
    lw = est.pop("log_weights")
    result = {"ok": True, **est, "log_weights": None if lw is None else [float(f"{v:.9g}") for v in lw],
              "task": task.id, "fingerprint": fp}
    write_json(out, result)
    return {"reliable": est["reliable"], "pareto_k": est["pareto_k"], "ess": est["ess"]}

