"""Task planning, per-task seeds, execution (in-process or on dask), and collection.

A run is a set of tasks: ``nuts`` and ``smc`` tasks per hypothesis and chain, and one
``bridge`` task per hypothesis that depends on its NUTS chains. Each task derives its seed
from the run seed and its own key only, so a result never depends on which worker ran it or
how many workers there were. Workers write their results into the run folder atomically and
return small summaries; a task whose result file is already complete is skipped (resume).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import sys
import time
import warnings
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.case import Case
from engine.errors import RunError
from engine.store import RunFolder, read_json, safe_name, write_idata, write_json

ENGINE_VERSION = "0.1.0"


@dataclass(frozen=True)
class Settings:
    seed: int = 20181017
    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    smc_draws: int = 1000
    smc_chains: int = 4
    target_accept: float = 0.9


@dataclass(frozen=True)
class Task:
    kind: str  # "nuts" | "smc" | "bridge"
    hid: str
    chain: int = 0

    @property
    def key(self) -> str:
        return f"{self.kind}-{self.hid}-{self.chain}"

    @property
    def ext(self) -> str:
        return "nc" if self.kind == "nuts" else "json"


def plan(case: Case, settings: Settings) -> list[Task]:
    tasks = []
    for hid in case.hypotheses:
        tasks += [Task("nuts", hid, c) for c in range(settings.chains)]
        tasks += [Task("smc", hid, c) for c in range(settings.smc_chains)]
        tasks.append(Task("bridge", hid))
    return tasks


def task_seed(run_seed: int, key: str) -> np.random.SeedSequence:
    """Seed of one task: a function of the run seed and the task key only."""
    return np.random.SeedSequence(run_seed, spawn_key=(zlib.crc32(key.encode()),))


def _int_seed(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, dtype=np.uint32)[0])


# ------------------------------------------------------------------ worker side
_MODELS: dict[tuple, Any] = {}  # per-process cache of built models, keyed by structure


def _quiet() -> None:
    for name in ("pymc", "pymc.sampling", "pymc.smc", "pytensor"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="pymc")
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="pymc")


def model_for(case: Case, hid: str):  # noqa: ANN201
    """The model of ``hid``, reusing a model of the same structure built earlier in this process."""
    import pymc as pm

    from engine.model import build_model, hypothesis_data, structure_key

    key = structure_key(case, hid)
    model = _MODELS.get(key)
    if model is None:
        model = _MODELS[key] = build_model(case, hid)
    with model:
        pm.set_data(hypothesis_data(case, hid))
    return model


def task_done(path: Path) -> bool:
    """A task result is complete when it parses and says it finished."""
    if not path.exists():
        return False
    if path.suffix == ".json":
        try:
            return bool(read_json(path).get("ok"))
        except RunError:
            return False
    try:
        import arviz as az

        idata = az.from_netcdf(str(path))
        return "posterior" in idata.groups() and idata.posterior.sizes.get("draw", 0) > 0
    except Exception:  # noqa: BLE001 - any unreadable file is an incomplete result
        return False


def run_task(case: Case, task: Task, run_dir: str, settings: Settings, *deps: Any) -> dict:
    """Run one task (NUTS chain, SMC chain or bridge sampling); write its result; return a summary."""
    _quiet()
    folder = RunFolder(Path(run_dir))
    out = folder.task(task.key, task.ext)
    if task_done(out):
        return {"key": task.key, "skipped": True}
    t0 = time.perf_counter()
    seed = task_seed(settings.seed, task.key)
    if task.kind == "nuts":
        summary = _run_nuts(case, task, settings, seed, out)
    elif task.kind == "smc":
        summary = _run_smc(case, task, settings, seed, out)
    else:
        summary = _run_bridge(case, task, settings, seed, folder, out)
    summary.update(key=task.key, skipped=False, seconds=round(time.perf_counter() - t0, 3), pid=os.getpid())
    return summary


def _run_nuts(case: Case, task: Task, settings: Settings, seed, out: Path) -> dict:  # noqa: ANN001
    import pymc as pm

    model = model_for(case, task.hid)
    with model:
        idata = pm.sample(
            draws=settings.draws, tune=settings.tune, chains=1, cores=1, random_seed=_int_seed(seed),
            target_accept=settings.target_accept, progressbar=False, compute_convergence_checks=False,
            idata_kwargs={"include_transformed": True},
        )
    import xarray as xr

    from engine.model import pointwise_log_likelihood

    loglik = pointwise_log_likelihood(model, idata.posterior)
    idata.add_groups(log_likelihood=xr.Dataset(
        {"unit_loglik": (("chain", "draw", "unit"), np.stack(list(loglik.values()), axis=-1))},
        coords={"chain": idata.posterior.chain, "draw": idata.posterior.draw, "unit": list(loglik)}))
    idata = idata.assign_coords(chain=[task.chain], groups=["posterior", "sample_stats", "log_likelihood"])
    write_idata(out, idata)
    return {"divergences": int(idata.sample_stats["diverging"].sum())}


def _run_smc(case: Case, task: Task, settings: Settings, seed, out: Path) -> dict:  # noqa: ANN001
    import pymc as pm

    model = model_for(case, task.hid)
    with model:
        trace = pm.sample_smc(
            draws=settings.smc_draws, chains=1, cores=1, random_seed=_int_seed(seed), progressbar=False,
            compute_convergence_checks=False, return_inferencedata=True,
        )
    stages = np.array([float(v) for v in np.ravel(trace.sample_stats["log_marginal_likelihood"].values) if v is not None])
    finite = stages[np.isfinite(stages)]
    if finite.size == 0:
        raise RunError(f"SMC for hypothesis {task.hid} returned no finite log marginal likelihood")
    result = {"ok": True, "log_marginal_likelihood": float(finite[-1]), "stages": int(np.ravel(trace.sample_stats["beta"].values).size)}
    write_json(out, result)
    return result


def unconstrained_draws(model, idata) -> np.ndarray:  # noqa: ANN001
    """(chain, draw, d) matrix of the model's value variables, in ``model.value_vars`` order."""
    post = idata.posterior
    cols = [post[v.name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1) for v in model.value_vars]
    return np.concatenate(cols, axis=-1)


def log_density(model):  # noqa: ANN001, ANN201
    """Vectorised log p(y, theta) on the unconstrained space (Jacobians included)."""
    fn = model.compile_logp(jacobian=True)
    point = model.initial_point()
    names = [v.name for v in model.value_vars]
    shapes = [np.shape(point[n]) for n in names]
    sizes = [int(np.prod(s)) for s in shapes]
    splits = np.cumsum(sizes)[:-1]

    def f(x: np.ndarray) -> np.ndarray:
        res = np.empty(x.shape[0])
        for i, row in enumerate(x):
            parts = np.split(row, splits)
            res[i] = fn({n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)})
        return res

    return f


def _run_bridge(case: Case, task: Task, settings: Settings, seed, folder: RunFolder, out: Path) -> dict:  # noqa: ANN001
    import arviz as az

    from engine.estimate import bridge_log_evidence

    model = model_for(case, task.hid)
    chains = [az.from_netcdf(str(folder.task(Task("nuts", task.hid, c).key, "nc"))) for c in range(settings.chains)]
    idata = az.concat(chains, dim="chain") if len(chains) > 1 else chains[0]
    if not model.value_vars:
        raise RunError(f"hypothesis {task.hid}'s model has no free parameters; bridge sampling needs some")
    est = bridge_log_evidence(unconstrained_draws(model, idata), log_density(model), seed=seed)
    result = {"ok": True, **est.to_dict()}
    write_json(out, result)
    return result


# ------------------------------------------------------------------ client side
def new_run_folder(case: Case, out: Path, run_id: str | None, settings: Settings) -> RunFolder:
    rid = run_id or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-s{settings.seed}"
    root = Path(out) / safe_name(case.id, "case id") / safe_name(rid, "run id")
    if root.exists() and any(root.iterdir()):
        raise RunError(f"run folder {root} already exists; pick another --run-id or use --resume")
    return RunFolder(root)


def manifest(case: Case, settings: Settings, folder: RunFolder, command: list[str]) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    pkgs = {}
    for p in ("pymc", "pytensor", "arviz", "numpy", "scipy", "xarray", "dask", "distributed", "pydantic"):
        try:
            pkgs[p] = version(p)
        except PackageNotFoundError:
            pkgs[p] = None
    return {
        "engine_version": ENGINE_VERSION,
        "python": sys.version.split()[0],
        "packages": pkgs,
        "case": case.id,
        "case_file": case.path,
        "case_sha256": case.digest,
        "run": folder.root.name,
        "settings": asdict(settings),
        "command": command,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "finished": None,
    }


def execute(
    case: Case,
    tasks: list[Task],
    folder: RunFolder,
    settings: Settings,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    on_done: Callable[[dict, int, int], None] | None = None,
    on_start: Callable[[str | None], None] | None = None,
) -> list[dict]:
    """Run the tasks: in this process when ``workers == 0``, else on dask."""
    total = len(tasks)
    results: list[dict] = []
    if workers == 0 and scheduler is None:
        if on_start:
            on_start(None)
        for t in tasks:
            results.append(run_task(case, t, str(folder.root), settings))
            if on_done:
                on_done(results[-1], len(results), total)
        return results

    from distributed import Client, LocalCluster, as_completed

    cluster = None
    if scheduler is None:
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
            dashboard_address="127.0.0.1:0", silence_logs=logging.ERROR,
        )
    client = Client(cluster if cluster is not None else scheduler, timeout="30s")
    try:
        if on_start:
            on_start(client.dashboard_link if cluster is not None else scheduler)
        futures = {}
        for t in tasks:
            if t.kind == "bridge":
                continue
            futures[t.key] = client.submit(run_task, case, t, str(folder.root), settings, key=f"{t.key}-{case.digest[:8]}", pure=False, retries=2)
        for t in tasks:
            if t.kind == "bridge":
                deps = [futures[Task("nuts", t.hid, c).key] for c in range(settings.chains)]
                futures[t.key] = client.submit(run_task, case, t, str(folder.root), settings, *deps, key=f"{t.key}-{case.digest[:8]}", pure=False, retries=2)
        for fut in as_completed(list(futures.values())):
            results.append(fut.result())
            if on_done:
                on_done(results[-1], len(results), total)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return results


def run_case(
    case: Case,
    *,
    settings: Settings = Settings(),
    out: str | Path = "runs",
    run_id: str | None = None,
    workers: int = 2,
    scheduler: str | None = None,
    command: list[str] | None = None,
    on_done: Callable[[dict, int, int], None] | None = None,
    on_start: Callable[[str | None], None] | None = None,
) -> Path:
    """Run a case end to end; return the run folder (which holds ``attribution.json``)."""
    ensure_compiledir()
    folder = new_run_folder(case, Path(out), run_id, settings)
    from engine.priors import load_priors
    from engine.store import freeze_inputs

    freeze_inputs(folder, case.text, load_priors(case.priors_dir).texts)
    man = manifest(case, settings, folder, command or sys.argv)
    write_json(folder.manifest, man)
    execute(case, plan(case, settings), folder, settings, workers=workers, scheduler=scheduler, on_done=on_done, on_start=on_start)
    from engine.combine import collect

    collect(case, folder, settings)
    man["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json(folder.manifest, man)
    return folder.root


def read_attribution(run_dir: str | Path) -> dict:
    """The ``attribution.json`` of a finished run."""
    return read_json(RunFolder(Path(run_dir)).attribution)


def ensure_compiledir() -> None:
    """Point PyTensor at a stable compile cache (shared by this process and its workers).

    Also sets ``blas__ldflags`` to empty unless given: the models are scalar-sized, and
    PyTensor's BLAS probe on pip installs only warns that it found none.
    """
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f]
    if not any(f.startswith("base_compiledir") for f in flags):
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "incident-engine" / "pytensor"
        flags.append(f"base_compiledir={cache}")
    if not any(f.startswith("blas__ldflags") for f in flags):
        flags.append("blas__ldflags=")
    os.environ["PYTENSOR_FLAGS"] = ",".join(flags)
