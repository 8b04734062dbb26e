"""Task planning, per-task seeds, compile-once sampling on workers, execution and resume.

A run is a set of tasks (hypothesis x estimator x chain x variant): ``nuts`` and ``smc``
tasks per hypothesis and chain, and one ``bridge`` task per hypothesis that reads its NUTS
chains. Each task's seed is a function of the run seed and the task key only, so a result
never depends on which worker ran it, how many workers there were, or what else that worker
ran before. Workers write their results into the run folder atomically (``engine.run.store``)
and return small summaries; a task whose result is already complete and valid is skipped,
which is how ``--resume`` works.

**Variants.** A :class:`Variant` is a named dict of ``pm.Data`` overrides (names
``hp__...``, see ``engine.model.build``) applied after the hypothesis's own data: a
source-reliability sweep or an evidence ablation is a list of variants. The base run has no
variant and keeps the folder layout of ``engine.run.store``; variant ``v`` lives in
``variants/<v>/`` with the same layout (its own ``tasks/``, ``posterior/`` and
``attribution.json``). Tasks of a variant use the same seeds as the base run's tasks
(common random numbers), so differences between variants are not blurred by sampling noise.

A variant changes data, never the parameter space, so by default (``variant_method =
"reweight"``) a variant is first estimated by importance reweighting the base run's NUTS
draws: one ``reweight`` task per hypothesis evaluates the variant's and the base's log
density at those draws (the compiled log density, a fraction of a second) and estimates
log(Z_variant / Z_base) by Pareto-smoothed importance sampling
(``engine.estimate.importance_ratio``). Where the weights are unreliable (Pareto k or
importance ESS, e.g. a variant that drops decisive evidence and so widens the posterior), the
task's result asks for the variant to be sampled and the run adds that hypothesis's NUTS, SMC
and bridge tasks for the variant. ``variant_method = "sample"`` samples every variant.

**Compile once per worker.** ``pm.sample`` and ``pm.sample_smc`` recompile their functions on
every call (graph rewrites and a C-cache hit, seconds each). Each worker process instead
keeps one :class:`Compiled` per model *structure* (``engine.model.structure_key``): the
model, its NUTS log-density-and-gradient function, its jittered initial-point function, its
trace function, an SMC kernel, and the bridge sampler's log density. A task resets every
``pm.Data`` to the values of its hypothesis and variant and reruns PyMC's own NUTS / SMC
code paths with fresh step objects on those cached functions; the draws are bit-identical
to a fresh ``pm.sample`` / ``pm.sample_smc`` with the same seed (tests/test_dask.py).
PyTensor is not thread-safe: tasks in one process run one at a time.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import hashlib
import json
import logging
import os
import socket
import sys
import threading
import time
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.errors import RunError
from engine.run.store import RunFolder, read_json, safe_name, write_idata, write_json
from engine.spec.case import Case

if TYPE_CHECKING:
    from engine.run.cluster import TLSFiles

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
    variant_method: str = "reweight"  # "reweight" (importance reweighting, sampling where unreliable) | "sample"

    def __post_init__(self) -> None:
        if self.variant_method not in VARIANT_METHODS:
            raise RunError(f"variant method {self.variant_method!r} is not known; use one of {', '.join(VARIANT_METHODS)}")


VARIANT_METHODS = ("reweight", "sample")


@dataclass(frozen=True)
class Variant:
    """A named set of ``pm.Data`` overrides, applied after the hypothesis's own data.

    ``overrides`` is stored as a sorted tuple of (data name, flat values, shape) so that a
    variant is hashable and pickles small; build one with :meth:`of`.
    """

    name: str
    overrides: tuple[tuple[str, tuple[float, ...], tuple[int, ...]], ...] = ()

    @classmethod
    def of(cls, name: str, overrides: Mapping[str, Any]) -> Variant:
        safe_name(name, "variant name")
        items = []
        for key, value in sorted(overrides.items()):
            arr = np.asarray(value, dtype=float)
            if not np.all(np.isfinite(arr)):
                raise RunError(f"variant {name!r}: {key} = {value!r} is not finite; give finite numbers")
            items.append((str(key), tuple(float(x) for x in arr.ravel()), tuple(arr.shape)))
        return cls(name, tuple(items))

    def data(self) -> dict[str, np.ndarray]:
        return {k: np.asarray(v, dtype=float).reshape(s) for k, v, s in self.overrides}

    def to_json(self) -> dict[str, Any]:
        return {k: v.tolist() for k, v in self.data().items()}


@dataclass(frozen=True)
class Task:
    kind: str  # "nuts" | "smc" | "bridge" | "reweight"
    hid: str
    chain: int = 0
    variant: Variant | None = None

    @property
    def key(self) -> str:
        """File name stem inside the (variant's) run folder; also what the seed derives from."""
        return f"{self.kind}-{self.hid}-{self.chain}"

    @property
    def id(self) -> str:
        """Unique name of the task within a run (``<variant>/<key>`` for variants)."""
        return f"{self.variant.name}/{self.key}" if self.variant else self.key

    @property
    def ext(self) -> str:
        return "nc" if self.kind == "nuts" else "json"

    def folder(self, root: RunFolder) -> RunFolder:
        return variant_folder(root, self.variant.name) if self.variant else root

    def path(self, root: RunFolder) -> Path:
        return self.folder(root).task(self.key, self.ext)


def variant_folder(root: RunFolder, name: str) -> RunFolder:
    """The run folder of one variant: ``<run>/variants/<name>/`` with the base layout."""
    return RunFolder(root.root / "variants" / safe_name(name, "variant name"))


def plan(case: Case, settings: Settings, variants: tuple[Variant, ...] | list[Variant] = ()) -> list[Task]:
    """The tasks a run starts with: the base run, then per variant and hypothesis either a
    ``reweight`` task (whose result may add :func:`sampling_tasks`, see :func:`followups`) or,
    with ``variant_method = "sample"``, the sampling tasks themselves."""
    tasks = [t for hid in case.hypotheses for t in sampling_tasks(hid, None, settings)]
    for variant in variants:
        for hid in case.hypotheses:
            tasks += ([Task("reweight", hid, 0, variant)] if settings.variant_method == "reweight"
                      else sampling_tasks(hid, variant, settings))
    return tasks


def sampling_tasks(hid: str, variant: Variant | None, settings: Settings) -> list[Task]:
    """NUTS and SMC chains and bridge sampling of one hypothesis (in one variant)."""
    return ([Task("nuts", hid, c, variant) for c in range(settings.chains)]
            + [Task("smc", hid, c, variant) for c in range(settings.smc_chains)] + [Task("bridge", hid, 0, variant)])


def dependencies(task: Task, settings: Settings) -> list[Task]:
    """Tasks whose results ``task`` reads: bridge sampling its NUTS chains, reweighting the base run's."""
    if task.kind == "bridge":
        return [Task("nuts", task.hid, c, task.variant) for c in range(settings.chains)]
    if task.kind == "reweight":
        return [Task("nuts", task.hid, c) for c in range(settings.chains)]
    return []


def followups(task: Task, folder: RunFolder, settings: Settings) -> list[Task]:
    """Tasks a finished task asks for: a reweighting whose weights are unreliable asks for its
    hypothesis to be sampled in that variant."""
    if task.kind != "reweight":
        return []
    result = read_json(task.path(folder))
    return [] if result.get("reliable") else sampling_tasks(task.hid, task.variant, settings)


def task_seed(run_seed: int, key: str) -> np.random.SeedSequence:
    """Seed of one task: a function of the run seed and the task key only."""
    return np.random.SeedSequence(run_seed, spawn_key=(zlib.crc32(key.encode()),))


def _int_seed(ss: np.random.SeedSequence) -> int:
    return int(ss.generate_state(1, dtype=np.uint32)[0])


def fingerprint(case: Case, settings: Settings, task: Task) -> str:
    """What a task's result depends on; a stored result with another fingerprint is stale.

    That is the case and its priors, the settings and seed, the task and its variant, and the
    code that computes it (the model, evidence families, estimators and samplers, and the
    versions of PyMC, PyTensor and NumPy): results made by other code are recomputed on resume.
    """
    blob = json.dumps({"case": case.digest, "settings": asdict(settings), "task": task.key,
                       "variant": task.variant.to_json() if task.variant else None, "code": code_digest()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


@functools.lru_cache(maxsize=1)
def code_digest() -> str:
    """sha256 of the engine modules that determine a task's numbers, and of the numeric packages' versions."""
    from importlib.metadata import PackageNotFoundError, version

    pkg_root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256(ENGINE_VERSION.encode())
    # every module a task's numbers depend on: the model, the evidence families, the samplers and estimators
    files = [pkg_root / "dists.py"] + sorted(f for d in ("evidence", "spec", "model", "inference", "run") for f in (pkg_root / d).glob("*.py"))
    for f in files:
        h.update(str(f.relative_to(pkg_root)).encode() + b"\0" + f.read_bytes())
    for pkg in ("pymc", "pytensor", "numpy", "scipy"):
        try:
            h.update(f"{pkg}={version(pkg)}".encode())
        except PackageNotFoundError:
            pass
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ worker side
_TASK_LOCK = threading.Lock()  # PyTensor compilation and the model cache are not thread-safe
_CACHE_SIZE = 8


def _quiet() -> None:
    for name in ("pymc", "pymc.sampling", "pymc.smc", "pymc.stats", "pytensor"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="pymc")
    warnings.filterwarnings("ignore", category=RuntimeWarning, module="pymc")


class Compiled:
    """One model structure compiled once in this process; ``pm.Data`` is set per task.

    Every compiled function reads the model's shared ``pm.Data`` containers, so setting them
    (``use``) switches hypothesis and variant without recompiling. Each ``use`` resets *all*
    containers (to the values the model was built with, then the hypothesis's, then the
    variant's), so nothing a previous task set can leak into the next.
    """

    def __init__(self, case: Case | None, hid: str | None, *, model=None) -> None:  # noqa: ANN001 - a pm.Model
        from engine.model.build import build_model

        self.model = model if model is not None else build_model(case, hid)
        self.defaults = {v.name: np.array(v.get_value(borrow=False)) for v in self.model.data_vars}
        self._nuts: tuple | None = None
        self._smc: dict[int, Any] = {}
        self._logp: Callable | None = None
        self._pointwise: Callable | None = None
        self.compiles = 0  # how many function sets this object compiled (tests read it)
        self.structure = ""  # short id of engine.model.structure_key, set by compiled_for

    # -- data
    def check(self, data: Mapping[str, np.ndarray], what: str) -> None:
        for name, value in data.items():
            if name not in self.defaults:
                known = ", ".join(sorted(self.defaults))
                raise RunError(f"{what}: {name!r} is not a pm.Data of this case's models; known: {known}")
            if np.shape(value) != self.defaults[name].shape:
                raise RunError(f"{what}: {name} needs shape {self.defaults[name].shape}, got {np.shape(value)}")

    def use(self, case: Case, hid: str, variant: Variant | None = None, *, observed: Case | None = None) -> Compiled:
        """Set hypothesis ``hid``'s hyper-parameters, then ``observed``'s observations (a case of
        the same design, e.g. a simulated incident), then the variant's data."""
        from engine.model.build import hypothesis_data, observation_data

        data = {**self.defaults, **hypothesis_data(case, hid)}
        if observed is not None:
            obs = observation_data(observed)
            self.check(obs, f"case {observed.id!r}")
            data.update(obs)
        if variant is not None:
            self.check(variant.data(), f"variant {variant.name!r}")
            data.update(variant.data())
        for name, value in data.items():
            self.model.set_data(name, np.asarray(value, dtype=self.defaults[name].dtype))
        return self

    # -- NUTS: pm.sample(chains=1, cores=1, init="jitter+adapt_diag") on cached functions
    def _nuts_parts(self) -> tuple:
        if self._nuts is None:
            import pytensor
            from pymc.initial_point import make_initial_point_fns_per_chain
            from pymc.pytensorf import compile as pm_compile

            m = self.model
            logp_dlogp = m.logp_dlogp_function(ravel_inputs=True)
            logp_dlogp.trust_input = True
            ipfn = make_initial_point_fns_per_chain(model=m, overrides=None, jitter_rvs=set(m.free_RVs), chains=1)[0]
            trace_vars = m.unobserved_value_vars
            trace_fn = pm_compile(inputs=[pytensor.In(v, borrow=True) for v in m.value_vars],
                                  outputs=[pytensor.Out(v, borrow=True) for v in trace_vars], on_unused_input="ignore")
            trace_fn.trust_input = True
            values = trace_fn(**m.initial_point())
            shapes = {v.name: x.shape for v, x in zip(trace_vars, values, strict=True)}
            dtypes = {v.name: x.dtype for v, x in zip(trace_vars, values, strict=True)}
            self._nuts = (logp_dlogp, ipfn, trace_vars, trace_fn, shapes, dtypes)
            self.compiles += 1
        return self._nuts

    def sample_nuts(self, *, draws: int, tune: int, seed: int, target_accept: float, jitter_max_retries: int = 10):  # noqa: ANN201
        """One NUTS chain; the same InferenceData as ``pm.sample(..., chains=1, random_seed=seed)``."""
        import pymc as pm
        from pymc.backends.ndarray import NDArray
        from pymc.blocking import DictToArrayBijection
        from pymc.sampling.mcmc import _iter_sample, _sample_return
        from pymc.step_methods.hmc import quadpotential
        from pymc.util import get_random_generator

        logp_dlogp, ipfn, trace_vars, trace_fn, shapes, dtypes = self._nuts_parts()
        m = self.model
        rngs = get_random_generator(seed).spawn(1)
        seed0 = int(rngs[0].integers(2**30))
        point = _jittered_start(m, ipfn, logp_dlogp, seed0, jitter_max_retries)
        q = DictToArrayBijection.map(point).data
        potential = quadpotential.QuadPotentialDiagAdapt(q.size, np.mean([q], axis=0), np.ones_like(q), 10, rng=seed0)
        step = pm.NUTS(potential=potential, model=m, rng=seed0, initial_point=point, logp_dlogp_func=logp_dlogp,
                       target_accept=target_accept)
        start = {k: v for k, v in point.items() if k in {v.name for v in m.value_vars}}
        trace = NDArray(model=m, vars=trace_vars, fn=trace_fn, var_shapes=shapes, var_dtypes=dtypes)
        trace.setup(draws + tune, 0, step.stats_dtypes)
        t0 = time.time()
        for _ in _iter_sample(draws=draws + tune, step=step, start=start, trace=trace, chain=0, tune=tune, rng=rngs[0], model=m):
            pass
        return _sample_return(run=None, traces=[trace], tune=tune, t_sampling=time.time() - t0, discard_tuned_samples=True,
                              compute_convergence_checks=False, return_inferencedata=True, keep_warning_stat=False,
                              idata_kwargs={"include_transformed": True}, model=m, quiet=True)

    # -- SMC: pm.sample_smc(chains=1, cores=1, kernel=IMH) on a cached kernel
    def smc_kernel(self, draws: int):  # noqa: ANN201
        if draws not in self._smc:
            self._smc[draws] = _cached_imh_class()(draws=draws, start=None, model=self.model, random_seed=0)
            self.compiles += 1
        return self._smc[draws]

    def sample_smc(self, *, draws: int, seed: int) -> dict:
        """One SMC chain: its final log marginal likelihood and number of stages, as ``pm.sample_smc`` computes them."""
        from pymc.util import _get_seeds_per_chain

        (chain_seed,) = _get_seeds_per_chain(random_state=seed, chains=1)
        rng = np.random.default_rng(chain_seed)
        rng.integers(2**30)  # sample_smc draws the kernel's construction seed from the chain's generator first
        kernel = self.smc_kernel(draws)
        kernel.initialize(None, rng)
        stages = 0
        while kernel.beta < 1:
            kernel.update_beta_and_weights()
            kernel.step()
            stages += 1
        return {"log_marginal_likelihood": float(kernel.log_marginal_likelihood), "stages": stages}

    # -- bridge sampling and pointwise log-likelihood
    def log_density(self) -> Callable[[np.ndarray], np.ndarray]:
        """Vectorised log p(y, theta) on the unconstrained space (Jacobians included)."""
        if self._logp is None:
            self._logp = log_density(self.model)
            self.compiles += 1
        return self._logp

    def pointwise_log_likelihood(self, posterior) -> dict[str, np.ndarray]:  # noqa: ANN001
        """``engine.model.pointwise_log_likelihood`` with its function compiled once."""
        m = self.model
        if self._pointwise is None:
            self._pointwise = m.compile_fn(m.replace_rvs_by_values(m.potentials), inputs=m.value_vars, on_unused_input="ignore")
            self.compiles += 1
        pots = m.potentials
        n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
        values = {v.name: posterior[v.name].values for v in m.value_vars}
        out = np.empty((len(pots), n_chain, n_draw))
        for c in range(n_chain):
            for d in range(n_draw):
                out[:, c, d] = self._pointwise({k: v[c, d] for k, v in values.items()})
        return {p.name.removeprefix("ll__"): out[i] for i, p in enumerate(pots)}


def _jittered_start(model, ipfn, logp_dlogp, seed: int, max_retries: int) -> dict:  # noqa: ANN001
    """``pymc.sampling.mcmc._init_jitter`` for one chain, on a cached initial-point function."""
    from pymc.blocking import DictToArrayBijection

    rng = np.random.default_rng(seed)
    for i in range(max_retries + 1):
        point = ipfn(seed)
        q, _ = DictToArrayBijection.map(point)
        if np.isfinite(logp_dlogp([q], extra_vars={})[0]):
            break
        if i == max_retries:
            model.check_start_vals(point)
        seed = rng.integers(2**30, dtype=np.int64)
    return point


_IMH = None


def _cached_imh_class():  # noqa: ANN202
    """PyMC's IMH SMC kernel whose prior-draw function is compiled once and reseeded per chain."""
    global _IMH
    if _IMH is None:
        from pymc.pytensorf import collect_default_updates, reseed_rngs
        from pymc.pytensorf import compile as pm_compile
        from pymc.smc.kernels import IMH
        from pymc.util import _get_seeds_per_chain

        class CachedIMH(IMH):
            _draw_fn = None
            _draw_rngs: list = []

            def set_rng(self, rng: np.random.Generator) -> None:
                # IMH's logp functions hold no random generators; PyMC's set_rng only copies them.
                self.rng = rng

            def initialize_population(self) -> dict[str, np.ndarray]:
                # == pymc.draw(self._prior_expression, draws=self.draws, random_seed=self.rng)
                (seed,) = _get_seeds_per_chain(self.rng, 1)
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", category=UserWarning, message="The effect of Potentials")
                    if self._draw_fn is None:
                        self._draw_rngs = list(collect_default_updates(inputs=[], outputs=self._prior_expression))
                        self._draw_fn = pm_compile(inputs=[], outputs=self._prior_expression, random_seed=seed)
                    else:
                        reseed_rngs(self._draw_rngs, seed)
                    values = [np.stack(v) for v in zip(*(self._draw_fn() for _ in range(self.draws)), strict=True)]
                return dict(zip(self._prior_var_names, values, strict=True))

        _IMH = CachedIMH
    return _IMH


_COMPILED: OrderedDict[tuple, Compiled] = OrderedDict()


def compiled_for(case: Case, hid: str, variant: Variant | None = None) -> Compiled:
    """This process's compiled model for ``hid``'s structure, with ``hid``'s (and the variant's) data set."""
    from engine.model.build import structure_key

    key = structure_key(case, hid)
    cm = _COMPILED.get(key)
    if cm is None:
        cm = _COMPILED[key] = Compiled(case, hid)
        cm.structure = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
        while len(_COMPILED) > _CACHE_SIZE:
            _COMPILED.popitem(last=False)
    _COMPILED.move_to_end(key)
    return cm.use(case, hid, variant)


def model_for(case: Case, hid: str, variant: Variant | None = None):  # noqa: ANN201
    """The model of ``hid`` (shared by every hypothesis of the same structure in this process)."""
    return compiled_for(case, hid, variant).model


def task_done(path: Path, fp: str | None = None, *, draws: int | None = None) -> bool:
    """A task result is complete when it parses, says it finished, and (if given) matches ``fp``."""
    if not path.exists():
        return False
    if path.suffix == ".json":
        try:
            result = read_json(path)
        except RunError:
            return False
        return bool(isinstance(result, dict) and result.get("ok") and (fp is None or result.get("fingerprint") == fp))
    try:
        import arviz as az

        idata = az.from_netcdf(str(path))
        post = idata.posterior
        if fp is not None and post.attrs.get("incident_fingerprint") != fp:
            return False
        if draws is not None and post.sizes.get("draw", 0) != draws:
            return False
        return "sample_stats" in idata.groups() and post.sizes.get("draw", 0) > 0 and all(
            np.all(np.isfinite(post[v].values)) for v in post.data_vars)
    except Exception:  # noqa: BLE001 - any unreadable file is an incomplete result
        return False


def run_task(case: Case, task: Task, run_dir: str, settings: Settings, *deps: Any) -> dict:
    """Run one task (NUTS chain, SMC chain or bridge sampling); write its result; return a summary."""
    ensure_compiledir()
    _quiet()
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

    idata = cm.sample_nuts(draws=settings.draws, tune=settings.tune, seed=_int_seed(seed), target_accept=settings.target_accept)
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
    res = cm.sample_smc(draws=settings.smc_draws, seed=_int_seed(seed))
    if not np.isfinite(res["log_marginal_likelihood"]):
        raise RunError(f"SMC for hypothesis {task.hid} returned no finite log marginal likelihood")
    result = {"ok": True, **res, "task": task.id, "fingerprint": fp}
    write_json(out, result)
    return dict(res)


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


def nuts_chains(root: RunFolder, task: Task, settings: Settings, what: str):  # noqa: ANN201
    """The NUTS chains ``task`` depends on (``root`` is the run's folder), concatenated, as InferenceData."""
    import arviz as az

    paths = [d.path(root) for d in dependencies(task, settings)]
    missing = [p.name for p in paths if not p.exists()]
    if missing:
        raise RunError(f"{what} for {task.id} needs NUTS results that are missing: {', '.join(missing)}")
    chains = [az.from_netcdf(str(p)) for p in paths]
    return az.concat(chains, dim="chain") if len(chains) > 1 else chains[0]


def _run_bridge(cm: Compiled, task: Task, settings: Settings, seed, root: RunFolder, out: Path, fp: str) -> dict:  # noqa: ANN001
    from engine.inference.estimate import bridge_log_evidence

    idata = nuts_chains(root, task, settings, "bridge sampling")
    if not cm.model.value_vars:
        raise RunError(f"hypothesis {task.hid}'s model has no free parameters; bridge sampling needs some")
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
        while len(_BASE_DRAWS) > _CACHE_SIZE:
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


# ------------------------------------------------------------------ client side
@dataclass
class Execution:
    """What one execution of a run's tasks did (written to the manifest's ``executions``)."""

    backend: str = "in-process"
    code_digest: str = field(default_factory=lambda: code_digest())
    started: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    finished: str | None = None
    status: str = "running"
    total: int = 0
    already_complete: int = 0
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    tasks_by_process: dict[str, int] = field(default_factory=dict)  # "host:pid" -> tasks computed there
    error: str | None = None

    def to_dict(self) -> dict:
        return {**asdict(self), "n_computed": len(self.computed)}


def new_run_folder(case: Case, out: Path, run_id: str | None, settings: Settings) -> RunFolder:
    rid = run_id or f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%SZ}-s{settings.seed}"
    root = Path(out) / safe_name(case.id, "case id") / safe_name(rid, "run id")
    if root.exists() and any(root.iterdir()):
        raise RunError(f"run folder {root} already exists; pick another --run-id or continue it with --resume {root}")
    return RunFolder(root)


def manifest(case: Case, settings: Settings, folder: RunFolder, command: list[str], variants: tuple[Variant, ...] = ()) -> dict:
    """The run's manifest; ``inputs`` holds the sha256 of each input frozen in ``folder`` (write them first)."""
    from importlib.metadata import PackageNotFoundError, version

    from engine.run.store import input_hashes

    pkgs = {}
    for p in ("pymc", "pytensor", "arviz", "numpy", "scipy", "xarray", "dask", "distributed", "dask-jobqueue", "pydantic"):
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
        "inputs": input_hashes(folder),
        "priors_dir": str(Path(case.priors_dir).resolve()) if case.priors_dir else None,
        "run": folder.root.name,
        "settings": asdict(settings),
        "code_digest": code_digest(),
        "variants": {v.name: v.to_json() for v in variants},
        "command": command,
        "started": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "finished": None,
        "executions": [],
    }


@contextmanager
def lock_run_folder(folder: RunFolder) -> Iterator[None]:
    """Hold an exclusive lock on the run folder (released by the OS if this process dies)."""
    from engine.run.store import fs_error, make_folder

    make_folder(folder.root)
    path = folder.root / ".lock"
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise fs_error(exc, f"write {path}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "?"
            raise RunError(f"run folder {folder.root} is in use by another `incident run` (pid {holder}); wait for it or stop it") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def execute(
    case: Case,
    tasks: list[Task],
    folder: RunFolder,
    settings: Settings,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    cluster: str = "local",
    cluster_config: str | Path | None = None,
    retries: int = 2,
    no_workers_timeout: float = 120.0,
    tls: TLSFiles | None = None,
    on_done: Callable[[dict, int, int], None] | None = None,
    on_start: Callable[[str | None], None] | None = None,
    execution: Execution | None = None,
) -> list[dict]:
    """Run the tasks: in this process when ``workers == 0``, else on dask (``engine.run.cluster``).

    Tasks whose results are already complete and valid are not submitted. A task that raises
    is retried up to ``retries`` times (each failure becomes a run warning); a worker that
    dies has its tasks rescheduled by dask; with no workers for ``no_workers_timeout``
    seconds the run fails with a ``RunError`` instead of waiting forever.
    """
    from engine.run.cluster import ClusterSpec, TaskLoop

    execution = execution or Execution()
    spec = ClusterSpec.make(workers=workers, scheduler=scheduler, cluster=cluster, cluster_config=cluster_config,
                            no_workers_timeout=no_workers_timeout, tls=tls)
    execution.backend = spec.describe()

    def done(t: Task) -> bool:
        return task_done(t.path(folder), fingerprint(case, settings, t), draws=settings.draws if t.kind == "nuts" else None)

    todo, queue, seen = [], list(tasks), set()
    while queue:  # a finished reweighting may have asked for sampling tasks (resume): plan those too
        t = queue.pop(0)
        if t.id in seen:
            continue
        seen.add(t.id)
        if done(t):
            execution.skipped.append(t.id)
            queue += followups(t, folder, settings)
        else:
            todo.append(t)
    execution.total, execution.already_complete = len(seen), len(seen) - len(todo)
    _clean_temp_files(folder)

    def expand(t: Task) -> list[Task]:  # a task whose result is already there is skipped by the worker
        new = [f for f in followups(t, folder, settings) if f.id not in seen]
        seen.update(f.id for f in new)
        execution.total += len(new)
        return new

    loop = TaskLoop(case, todo, folder, settings, spec=spec, retries=retries, execution=execution,
                    on_done=on_done, on_start=on_start, offset=execution.already_complete, total=execution.total,
                    expand=expand)
    return loop.run()


def _clean_temp_files(folder: RunFolder) -> None:
    """Remove temporary files left by writers that were killed (only called under the run lock)."""
    for tmp in folder.root.glob("**/.tmp-*"):
        tmp.unlink(missing_ok=True)


def run_case(
    case: Case,
    *,
    settings: Settings = Settings(),
    out: str | Path = "runs",
    run_id: str | None = None,
    variants: tuple[Variant, ...] | list[Variant] = (),
    workers: int = 2,
    scheduler: str | None = None,
    cluster: str = "local",
    cluster_config: str | Path | None = None,
    retries: int = 2,
    no_workers_timeout: float = 120.0,
    tls: TLSFiles | None = None,
    command: list[str] | None = None,
    on_done: Callable[[dict, int, int], None] | None = None,
    on_start: Callable[[str | None], None] | None = None,
) -> Path:
    """Run a case end to end; return the run folder (which holds ``attribution.json``).

    Bad options and an unwritable or full ``out`` fail before anything is written; a run whose
    set-up fails (inputs and manifest not all written) leaves no run folder behind.
    """
    ensure_compiledir()
    variants = tuple(variants)
    _check_variants(case, variants)
    from engine.run.cluster import ClusterSpec

    ClusterSpec.make(workers=workers, scheduler=scheduler, cluster=cluster, cluster_config=cluster_config,
                     no_workers_timeout=no_workers_timeout, tls=tls).preflight()  # bad options fail before a run folder exists
    from engine.run.store import clear_folder, freeze_inputs, make_folder, remove_empty
    from engine.spec.priors import load_priors

    folder = new_run_folder(case, Path(out), run_id, settings)
    created = make_folder(folder.root)  # an unwritable --out fails here, naming the folder
    try:
        with lock_run_folder(folder):
            try:
                freeze_inputs(folder, case.text, load_priors(case.priors_dir).texts)
                man = manifest(case, settings, folder, command or sys.argv, variants)
                write_json(folder.manifest, man)
            except BaseException:  # e.g. no space left for the inputs or the manifest: leave nothing half-written
                clear_folder(folder.root)
                raise
            # from here on the folder is a run that --resume can continue
            _execute_and_collect(case, settings, variants, folder, man, workers=workers, scheduler=scheduler, cluster=cluster,
                                 cluster_config=cluster_config, retries=retries, no_workers_timeout=no_workers_timeout,
                                 tls=tls, on_done=on_done, on_start=on_start)
    except BaseException:
        remove_empty(created)  # only the folders this run created and left empty
        raise
    return folder.root


def resume_run(
    run_dir: str | Path,
    *,
    workers: int = 2,
    scheduler: str | None = None,
    cluster: str = "local",
    cluster_config: str | Path | None = None,
    retries: int = 2,
    no_workers_timeout: float = 120.0,
    tls: TLSFiles | None = None,
    command: list[str] | None = None,
    on_done: Callable[[dict, int, int], None] | None = None,
    on_start: Callable[[str | None], None] | None = None,
) -> Path:
    """Continue a run folder: recompute missing, truncated or corrupt task results, then combine."""
    ensure_compiledir()
    folder = RunFolder(Path(run_dir))
    case, settings, variants, man = open_run(folder)
    from engine.run.cluster import ClusterSpec

    ClusterSpec.make(workers=workers, scheduler=scheduler, cluster=cluster, cluster_config=cluster_config,
                     no_workers_timeout=no_workers_timeout, tls=tls).preflight()
    with lock_run_folder(folder):
        man.setdefault("executions", [])
        man["resumed_by"] = man.get("resumed_by", []) + [command or sys.argv]
        man["finished"] = None
        _execute_and_collect(case, settings, variants, folder, man, workers=workers, scheduler=scheduler, cluster=cluster,
                             cluster_config=cluster_config, retries=retries, no_workers_timeout=no_workers_timeout,
                             tls=tls, on_done=on_done, on_start=on_start)
    return folder.root


def open_run(folder: RunFolder) -> tuple[Case, Settings, tuple[Variant, ...], dict]:
    """The case, settings, variants and manifest of an existing run folder (for ``--resume``)."""
    from engine.spec.case import load_case

    if not folder.root.is_dir():
        raise RunError(f"{folder.root} is not a run folder (runs/<case>/<run>); check the path given to --resume")
    man = read_json(folder.manifest)
    if not isinstance(man, dict) or "settings" not in man or "case_sha256" not in man:
        raise RunError(f"{folder.manifest} is not a run manifest; cannot resume {folder.root}")
    if not folder.case.exists():
        raise RunError(f"{folder.case} is missing; cannot resume {folder.root}")
    _check_inputs(folder, man)
    priors = folder.priors if folder.priors.is_dir() else man.get("priors_dir")  # the run's frozen priors first
    case = load_case(folder.case, priors_dir=priors if priors and Path(priors).is_dir() else None)
    if "inputs" not in man and case.digest != man["case_sha256"]:
        raise RunError(f"the case or its priors library changed since {folder.root} started (sha256 differs); "
                       "start a new run instead of resuming this one")
    try:
        settings = Settings(**man["settings"])
        variants = tuple(Variant.of(name, data) for name, data in (man.get("variants") or {}).items())
    except TypeError as exc:
        raise RunError(f"{folder.manifest}: unreadable settings ({exc}); start a new run") from None
    return case, settings, variants, man


def _check_inputs(folder: RunFolder, man: dict) -> None:
    """Refuse a run folder whose frozen inputs differ from the sha256 in its manifest, naming the files.

    Manifests written before per-file hashes existed only have ``case_sha256`` (case text and
    priors together); ``open_run`` compares that after loading the case.
    """
    from engine.run.store import changed_inputs

    recorded = man.get("inputs")
    if recorded is None:
        return
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise RunError(f"{folder.manifest}: 'inputs' is not a mapping of file to sha256; start a new run")
    changed = changed_inputs(folder, recorded)
    if changed:
        raise RunError(f"inputs of {folder.root} changed since the run started: {', '.join(changed)} (sha256 differs from "
                       "manifest.json); restore them or start a new run instead of resuming this one")


def _check_variants(case: Case, variants: tuple[Variant, ...]) -> None:
    """Reject unknown or mis-shaped ``pm.Data`` names before anything is submitted."""
    names = [v.name for v in variants]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise RunError(f"variant names must be unique; repeated: {', '.join(dupes)}")
    if not variants:
        return
    from engine.model.build import structure_key

    seen = set()
    for hid in case.hypotheses:
        key = structure_key(case, hid)
        if key in seen:
            continue
        seen.add(key)
        cm = Compiled(case, hid)  # builds the model only; nothing is compiled
        for v in variants:
            cm.check(v.data(), f"variant {v.name!r}")


def _execute_and_collect(case: Case, settings: Settings, variants: tuple[Variant, ...], folder: RunFolder, man: dict,
                         **kw: Any) -> None:
    from engine.run.collect import collect

    execution = Execution()
    man["executions"].append(execution.to_dict())
    write_json(folder.manifest, man)  # a run killed from here on shows as "running" in its manifest
    try:
        execute(case, plan(case, settings, variants), folder, settings, execution=execution, **kw)
    except BaseException as exc:
        execution.status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
        execution.error = str(exc) or type(exc).__name__
        execution.finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        man["executions"][-1] = execution.to_dict()
        try:
            write_json(folder.manifest, man)
        except RunError:  # e.g. the disk is still full: the original error says more
            pass
        raise
    execution.status = "complete"
    execution.finished = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    man["executions"][-1] = execution.to_dict()
    run_warnings = [w for e in man["executions"] for w in e.get("warnings", [])]
    base_cache: dict = {}  # the base run, read once for all variants
    for vf in (folder, *(variant_folder(folder, v.name) for v in variants)):
        collect(case, vf, settings, base=None if vf is folder else folder, base_cache=base_cache)
        if run_warnings:  # execution problems (retried tasks) belong in the run's warnings too
            att = read_json(vf.attribution)
            att["warnings"] = list(att.get("warnings", [])) + [f"execution: {w}" for w in run_warnings]
            write_json(vf.attribution, att)
    man["finished"] = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    write_json(folder.manifest, man)


def read_attribution(run_dir: str | Path) -> dict:
    """The ``attribution.json`` of a finished run."""
    return read_json(RunFolder(Path(run_dir)).attribution)


def ensure_compiledir() -> None:
    """Point PyTensor at a stable compile cache (shared by this process and its workers).

    Also sets ``blas__ldflags`` to empty unless given: the models are scalar-sized, and
    PyTensor's BLAS probe on pip installs only warns that it found none. Processes sharing
    one compile directory serialise on PyTensor's file lock; threads would not, which is why
    workers run one thread each.
    """
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f]
    if not any(f.startswith("base_compiledir") for f in flags):
        cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "incident-engine" / "pytensor"
        flags.append(f"base_compiledir={cache}")
    if not any(f.startswith("blas__ldflags") for f in flags):
        flags.append("blas__ldflags=")
    os.environ["PYTENSOR_FLAGS"] = ",".join(flags)
