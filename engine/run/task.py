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
from engine.run.compiled import CACHE_SIZE, Compiled, WarmStart, compiled_for, ensure_compiledir, quiet, unconstrained_draws
from engine.run.plan import Task, dependencies, fingerprint
from engine.run.seeds import int_seed, task_seed
from engine.run.settings import Settings
from engine.run.store import RunFolder, file_identity, open_netcdf, task_done, write_idata, write_json
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
        compiles, loaded = cm.compiles, cm.loaded
        if task.kind == "nuts":
            summary = _run_nuts(cm, task, settings, seed, RunFolder(Path(run_dir)), out, fp)
        elif task.kind == "smc":
            summary = _run_smc(cm, task, settings, seed, out, fp)
        elif task.kind == "reweight":
            summary = _run_reweight(cm, case, task, settings, RunFolder(Path(run_dir)), out, fp)
        else:
            summary = _run_bridge(cm, task, settings, seed, RunFolder(Path(run_dir)), out, fp)
        # compiled: this task obtained a function set for this process; compiles: how many (NUTS set, pointwise
        # log-likelihood, SMC kernel, bridge log density), compiled or loaded from the disk store; loaded: how
        # many of those were loaded (engine.run.compiled.StructureStore); structure: which cached model it used
        summary.update(key=task.id, skipped=False, seconds=round(time.perf_counter() - t0, 3), compiled=cm.compiles > compiles,
                       process=f"{socket.gethostname()}:{os.getpid()}", kind=task.kind, compiles=cm.compiles - compiles,
                       loaded=cm.loaded - loaded, structure=cm.structure)
        return summary


def _run_nuts(cm: Compiled, task: Task, settings: Settings, seed, root: RunFolder, out: Path, fp: str) -> dict:  # noqa: ANN001
    import xarray as xr

    warm = None
    if task.variant is not None and cm.model.value_vars:  # a variant's chain starts from the base run's
        warm = WarmStart.of(cm.model, nuts_chains(root, task, settings, "a variant's NUTS chain"), task.chain)
    idata = cm.sample_nuts(draws=settings.draws, tune=settings.tune_for(task.variant), seed=int_seed(seed),
                           target_accept=settings.target_accept, warm=warm)
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


_CHAINS: OrderedDict[tuple, object] = OrderedDict()


def nuts_chains(root: RunFolder, task: Task, settings: Settings, what: str):  # noqa: ANN201
    """The NUTS chains ``task`` depends on (``root`` is the run's folder), concatenated, as InferenceData.

    Kept per worker process for the next task that reads the same chains (a sweep's variants of one
    hypothesis read them again and again), keyed by the files' identity, so a rewritten chain is read
    again. Callers only read it."""
    import arviz as az

    paths = [d.path(root) for d in dependencies(task, settings)]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise RunError(f"{what} for {task.id} needs NUTS results that are missing: {', '.join(missing)}")
    key = tuple((str(p), *file_identity(p)) for p in paths)
    if key not in _CHAINS:
        chains = [open_netcdf(p) for p in paths]
        _CHAINS[key] = az.concat(chains, dim="chain") if len(chains) > 1 else chains[0]
        while len(_CHAINS) > CACHE_SIZE:
            _CHAINS.popitem(last=False)
    _CHAINS.move_to_end(key)
    return _CHAINS[key]


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
    key = (task.hid, tuple((str(p), *file_identity(p)) for p in paths))
    if key not in _BASE_DRAWS:
        x = unconstrained_draws(cm.model, nuts_chains(root, task, settings, "importance reweighting"))
        cm.use(case, task.hid)
        _BASE_DRAWS[key] = (x, cm.log_density()(x.reshape(-1, x.shape[-1])))
        while len(_BASE_DRAWS) > CACHE_SIZE:
            _BASE_DRAWS.popitem(last=False)
    _BASE_DRAWS.move_to_end(key)
    return _BASE_DRAWS[key]


def _run_reweight(cm: Compiled, case: Case, task: Task, settings: Settings, root: RunFolder, out: Path, fp: str) -> dict:
    """log(Z_variant / Z_base) of one hypothesis from the base run's NUTS draws: integrating a pinned
    parameter out on a grid (``_conditional_reweight``) where the variant changes one scalar
    parameter's prior, else Pareto-smoothed importance sampling of the draws."""
    from engine.inference.estimate import importance_ratio

    x, base = _base_draws(cm, case, task, settings, root)
    column = _pinned_column(cm, task.variant)
    if column is not None:
        result = _conditional_reweight(cm, case, task, settings, root, x, column, out, fp)
        if result is not None:
            return result
    cm.use(case, task.hid, task.variant)
    est = importance_ratio((cm.log_density()(x.reshape(-1, x.shape[-1])) - base).reshape(x.shape[:2]))
    lw = est.pop("log_weights")
    result = {"ok": True, **est, "method": "importance", "log_weights": None if lw is None else [float(f"{v:.9g}") for v in lw],
              "task": task.id, "fingerprint": fp}
    write_json(out, result)
    return {"reliable": est["reliable"], "pareto_k": est["pareto_k"], "ess": est["ess"]}


def _pinned_column(cm: Compiled, variant) -> tuple[int, str, str] | None:  # noqa: ANN001
    """(column, value variable, random variable) of the one scalar free parameter whose prior's
    hyper-parameters (``hp__<name>``) are all the variant changes; None for any other variant."""
    names = {k.removeprefix("hp__") for k, _, _ in variant.overrides} if variant is not None else set()
    if len(names) != 1 or not all(k.startswith("hp__") for k, _, _ in variant.overrides) or cm.model.deterministics:
        return None
    (name,) = names
    offset = 0
    sizes = cm.sizes()
    for rv in cm.model.free_RVs:
        value = cm.model.rvs_to_values[rv]
        size = sizes[value.name]
        if rv.name == name:
            return (offset, value.name, rv.name) if size == 1 else None
        offset += size
    return None


GRID_SCAN = (-30.0, 30.0, 12001)  # where to look for the variant's prior mass (unconstrained scale)
GRID_NODES = 96  # nodes across each integrand's region
MAX_REWEIGHT_DRAWS = 1000  # base draws the grid integrals average over (thinned evenly beyond)


def _conditional_reweight(cm: Compiled, case: Case, task: Task, settings: Settings, root: RunFolder, x: np.ndarray,
                          column: tuple[int, str, str], out: Path, fp: str) -> dict | None:
    """The variant's log ratio with its pinned parameter integrated out on a grid
    (``engine.inference.estimate.conditional_ratio``), and its posterior: the base draws of the
    other parameters resampled by their weights, the pinned parameter drawn from its conditional
    under the variant, and the collapsed units' parameters drawn again (written beside the result,
    ``<task>.nc``). None when the variant's change of density is not a function of that
    parameter alone (then the caller falls back to importance sampling)."""
    from engine.inference.estimate import conditional_ratio

    j, value_name, rv_name = column
    stride = max(1, int(np.ceil(x.shape[0] * x.shape[1] / MAX_REWEIGHT_DRAWS)))
    xs = x[:, ::stride]
    flat = xs.reshape(-1, xs.shape[-1])
    f_base = cm.use(case, task.hid).log_density()

    def at(rows: np.ndarray, z: np.ndarray) -> np.ndarray:
        pts = np.repeat(rows[:, None, :], len(z), axis=1)
        pts[..., j] = z
        return pts.reshape(-1, rows.shape[-1])

    scan = np.linspace(*GRID_SCAN)
    probe = flat[[0, len(flat) // 2, -1]]
    lb_probe = f_base(at(probe, scan)).reshape(len(probe), -1)
    cm.use(case, task.hid, task.variant)
    lv_probe = cm.log_density()(at(probe, scan)).reshape(len(probe), -1)
    with np.errstate(invalid="ignore"):
        diff = lv_probe - lb_probe
    ok = np.isfinite(diff[0])
    if not ok.any() or not np.allclose(diff[:, ok], diff[0, ok], rtol=0, atol=1e-8) or not np.array_equal(np.isfinite(diff), np.tile(ok, (3, 1))):
        return None  # the variant's change is not a function of z alone
    nodes = []
    for lp in (lb_probe, lv_probe):  # each integrand's region at the probe draws: within 40 nat of its peak
        for row in lp:
            keep = scan[np.isfinite(row) & (row >= np.nanmax(row) - 40.0)]
            if keep.size:
                nodes.append(np.linspace(keep[0] - 0.01, keep[-1] + 0.01, GRID_NODES))
    zj = flat[:, j]
    sd = float(np.std(zj)) or 0.1
    nodes.append(np.arange(zj.min() - 6 * sd, zj.max() + 6 * sd, sd / 8))
    grid = np.unique(np.clip(np.concatenate(nodes), GRID_SCAN[0], GRID_SCAN[1]))
    log_diff = np.interp(grid, scan[ok], diff[0, ok])
    cm.use(case, task.hid)
    log_base = f_base(at(flat, grid)).reshape(*xs.shape[:2], len(grid))
    seed = task_seed(settings.seed, task.key)
    est = conditional_ratio(log_base, log_diff, grid, np.random.default_rng([int_seed(seed), 20261202]))
    z = est.pop("z")
    lw = est.pop("log_weights")
    cm.use(case, task.hid, task.variant)
    if est["reliable"]:
        _write_conditional_posterior(cm, task, settings, root, stride, lw, z, value_name, rv_name, seed, out.with_suffix(".nc"))
    result = {"ok": True, **est, "method": "conditional", "parameter": rv_name, "grid_nodes": int(len(grid)),
              "draws_used": int(len(flat)), "log_weights": None, "task": task.id, "fingerprint": fp}
    write_json(out, result)
    return {"reliable": est["reliable"], "pareto_k": est["pareto_k"], "ess": est["ess"]}


def _write_conditional_posterior(cm: Compiled, task: Task, settings: Settings, root: RunFolder, stride: int, log_weights,  # noqa: ANN001
                                 z: np.ndarray, value_name: str, rv_name: str, seed, path: Path) -> None:  # noqa: ANN001
    """The variant's posterior draws (chains x draws, as a sampled run has): the thinned base draws
    resampled by their normalised weights (systematic resampling), the pinned parameter from its
    conditional draws ``z``, and the collapsed units' own parameters drawn again under the variant."""
    import arviz as az
    import pytensor
    import pytensor.tensor as pt
    import xarray as xr

    from engine.inference.estimate import systematic_resample

    post = nuts_chains(root, task, settings, "importance reweighting").posterior
    n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
    s = n_chain * n_draw
    pick = systematic_resample(log_weights, s, np.random.default_rng([int_seed(seed), 20261203]))
    kept = -(-n_draw // stride)  # thinned draws per chain
    full = (pick // kept) * n_draw + (pick % kept) * stride  # index into the (chain, draw) flattening
    data = {}
    for name, da in post.data_vars.items():
        if da.attrs.get("incident_exact_conditional"):
            continue  # drawn again below, under the variant
        data[name] = (da.dims, da.values.reshape(s, *da.shape[2:])[full].reshape(da.shape))
    z_new = np.asarray(z, dtype=float).reshape(-1)[pick]
    rv = next(r for r in cm.model.free_RVs if r.name == rv_name)
    transform = cm.model.rvs_to_transforms.get(rv)
    value = z_new if transform is None else pytensor.function(
        [], transform.backward(pt.as_tensor_variable(z_new), *rv.owner.inputs), mode="FAST_COMPILE")()
    for name, v in ((value_name, z_new), (rv_name, np.asarray(value, dtype=float))):
        data[name] = (post[name].dims, v.reshape(n_chain, n_draw))
    idata = az.InferenceData(posterior=xr.Dataset(data, coords={"chain": post.chain, "draw": post.draw},
                                                  attrs={"incident_conditional": rv_name}))
    write_idata(path, cm.with_own_draws(idata, int_seed(seed)))
