"""Compile once per worker process: the model of each structure, its samplers, and the PyTensor set-up.

``pm.sample`` and ``pm.sample_smc`` recompile their functions on every call (graph rewrites
and a C-cache hit, seconds each). Each worker process instead keeps one :class:`Compiled` per
model *structure* (``engine.model.build.structure_key``): the model, its NUTS
log-density-and-gradient function, its jittered initial-point function, its trace function,
an SMC kernel, and the bridge sampler's log density. A task resets every ``pm.Data`` to the
values of its hypothesis and variant and reruns PyMC's own NUTS / SMC code paths with fresh
step objects on those cached functions; the draws are bit-identical to a fresh ``pm.sample`` /
``pm.sample_smc`` with the same seed (tests/test_dask.py). PyTensor is not thread-safe: tasks
in one process run one at a time (``engine.run.task``).

A compiled structure is also kept on disk (:class:`StructureStore`, beside PyTensor's C cache): a
process that meets a structure another process already compiled loads it (~0.5 s) instead of
building the model and rewriting its graphs again (5-10 s per structure and process, even with
the C modules cached). The key holds everything the object depends on: the structure key, the
case's full text and priors, the engine's source code, the versions of Python, NumPy, PyMC and
PyTensor, and PyTensor's compile flags; a changed file is a miss, never a stale model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import sys
import time
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from engine.errors import RunError
from engine.run.seeds import SMC_KERNEL_SEED
from engine.run.settings import Variant
from engine.spec.case import Case

CACHE_SIZE = 8  # model structures (and base-run draws) kept per worker process


def quiet() -> None:
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
        self._starts: dict = {}  # (hypothesis, data digest) -> families' mode and covariance (_family_start)
        self._fits: dict = {}  # (hypothesis, data digest) -> the modes the families' starts climb to (_family_fits)
        self._smc: dict[int, Any] = {}
        self._logp: Callable | None = None
        self._pointwise: Callable | None = None
        self.case: Case | None = case  # the case and hypothesis whose data are set (``use``)
        self.hid: str | None = hid
        self.compiles = 0  # function sets this process obtained for this object: compiled, or loaded from disk (tests read it)
        self.loaded = 0  # of those, how many came from the disk store (StructureStore)
        self._obtained: set[str] = set()  # the function sets this process used so far
        self._unsaved = 0.0  # seconds of building not yet in the disk store
        self._sizes: dict[str, int] | None = None
        self.structure = ""  # short id of engine.model.structure_key, set by compiled_for
        self.store: Path | None = None  # where StructureStore keeps this object (compiled_for sets it)

    def __getstate__(self) -> dict:  # what the disk store keeps: the model and its compiled functions
        state = dict(self.__dict__)
        state.update(_starts={}, _fits={}, case=None, hid=None, compiles=0, loaded=0, _obtained=set(), _unsaved=0.0,
                     store=None)
        return state

    def _build(self, name: str, build: Callable[[], Any]) -> Any:  # noqa: ANN401 - a function set
        """``build()`` of function set ``name``, timed and counted (``_obtain``)."""
        t0 = time.perf_counter()
        value = build()
        self._obtain(name, built=time.perf_counter() - t0)
        return value

    def _obtain(self, name: str, *, built: float | None = None) -> None:
        """Count function set ``name`` once per process. ``built``: the seconds this process just spent
        building it (``_build``). Called again once the set is in place: if unsaved building has reached
        ``StructureStore.MIN_SECONDS``, the object is then written to the disk store (a set that builds
        faster than writing the file takes is kept in memory only)."""
        if name not in self._obtained:
            self._obtained.add(name)
            self.compiles += 1
            self.loaded += built is None
        if built is not None:
            self._unsaved += built
        elif self.store is not None and self._unsaved >= StructureStore.MIN_SECONDS:
            StructureStore.save(self)
            self._unsaved = 0.0

    def sizes(self) -> dict[str, int]:
        """Each value variable's number of entries (the structure fixes them; computed once)."""
        if self._sizes is None:
            point = self.model.initial_point()
            self._sizes = {v.name: int(np.size(point[v.name])) for v in self.model.value_vars}
        return self._sizes

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
        from engine.model.build import collapsed_data, hypothesis_data, observation_data

        # a collapsed unit's exact log p(y | H) (lh__) follows the observation
        self.case, self.hid = (observed if observed is not None else case), hid
        data = {**self.defaults, **hypothesis_data(observed if observed is not None else case, hid)}
        if observed is not None:
            obs = observation_data(observed)
            self.check(obs, f"case {observed.id!r}")
            data.update(obs)
        if variant is not None:
            self.check(variant.data(), f"variant {variant.name!r}")
            data.update(variant.data())
            data.update(collapsed_data(self.case, hid, data))  # a variant's prior of a collapsed unit
        for name, value in data.items():
            self.model.set_data(name, np.asarray(value, dtype=self.defaults[name].dtype))
        return self

    # -- NUTS: pm.sample(chains=1, cores=1, init="jitter+adapt_diag") on cached functions
    def _nuts_parts(self) -> tuple:
        if self._nuts is None:
            self._nuts = self._build("nuts", self._compile_nuts)
        self._obtain("nuts")
        return self._nuts

    def _compile_nuts(self) -> tuple:
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
        return (logp_dlogp, ipfn, trace_vars, trace_fn, shapes, dtypes)

    def sample_nuts(self, *, draws: int, tune: int, seed: int, target_accept: float, jitter_max_retries: int = 10,  # noqa: ANN201
                    warm: WarmStart | None = None):
        """One NUTS chain; the same InferenceData as ``pm.sample(..., chains=1, random_seed=seed)``.

        ``warm``: start from another run of the same model (a variant's chain from the base run's):
        its draw as the starting point, its step size, and its posterior's variance (covariance where
        the families' Laplace start gives a full mass matrix) as the mass matrix's first guess, which
        the adaptation replaces with the chain's own draws after its first window (101 steps)."""
        import pymc as pm
        from pymc.backends.ndarray import NDArray
        from pymc.blocking import DictToArrayBijection
        from pymc.sampling.mcmc import _iter_sample, _sample_return
        from pymc.step_methods.hmc import quadpotential
        from pymc.util import get_random_generator

        if not self.model.value_vars:
            return self.with_own_draws(self._exact_draws(draws), seed)
        logp_dlogp, ipfn, trace_vars, trace_fn, shapes, dtypes = self._nuts_parts()
        m = self.model
        rngs = get_random_generator(seed).spawn(1)
        seed0 = int(rngs[0].integers(2**30))
        point = _jittered_start(m, ipfn, logp_dlogp, seed0, jitter_max_retries)
        start = self.family_start()  # not None: a family proposed starting points, and the mass matrix is full
        raveled = DictToArrayBijection.map(point)
        q = raveled.data
        step_scale = {}
        if warm is not None:  # the other run's draw, its scale and its step size
            q = np.asarray(warm.start, dtype=q.dtype)
            point = DictToArrayBijection.rmap(type(raveled)(q, raveled.point_map_info))
            step_scale = {"step_scale": warm.step_size * q.size ** 0.25}  # PyMC's first step: step_scale / d^(1/4)
            if start is None:
                potential = quadpotential.QuadPotentialDiagAdapt(q.size, warm.mean, np.diag(warm.cov).copy(), WARM_WEIGHT, rng=seed0)
            else:
                potential = quadpotential.QuadPotentialFullAdapt(q.size, warm.mean, warm.cov, WARM_WEIGHT, rng=seed0)
        elif start is None:
            potential = quadpotential.QuadPotentialDiagAdapt(q.size, np.mean([q], axis=0), np.ones_like(q), 10, rng=seed0)
        else:  # start near the families' best mode with its curvature as a full mass matrix
            point, mode, cov = _laplace_draw(m, logp_dlogp, point, *start, seed0), *start[1:]
            q = DictToArrayBijection.map(point).data
            potential = quadpotential.QuadPotentialFullAdapt(q.size, mode, cov, FULL_MASS_WEIGHT, rng=seed0)
        step = pm.NUTS(potential=potential, model=m, rng=seed0, initial_point=point, logp_dlogp_func=logp_dlogp,
                       target_accept=target_accept, **step_scale)
        start = {k: v for k, v in point.items() if k in {v.name for v in m.value_vars}}
        trace = NDArray(model=m, vars=trace_vars, fn=trace_fn, var_shapes=shapes, var_dtypes=dtypes)
        trace.setup(draws + tune, 0, step.stats_dtypes)
        t0 = time.time()
        for _ in _iter_sample(draws=draws + tune, step=step, start=start, trace=trace, chain=0, tune=tune, rng=rngs[0], model=m):
            pass
        idata = _sample_return(run=None, traces=[trace], tune=tune, t_sampling=time.time() - t0, discard_tuned_samples=True,
                               compute_convergence_checks=False, return_inferencedata=True, keep_warning_stat=False,
                               idata_kwargs={"include_transformed": True}, model=m, quiet=True)
        return self.with_own_draws(idata, seed)

    def _start_key(self) -> tuple:
        return (self.hid, hashlib.sha256(b"".join(np.asarray(v.get_value()).tobytes() for v in self.model.data_vars)).hexdigest())

    def family_fits(self) -> list[tuple[float, np.ndarray, np.ndarray]] | None:
        """The modes its families' starting points climb to (``_family_fits``), for the hypothesis and data
        set now, or None when no family proposes starting points. Computed once per hypothesis and data in
        this process, from a base point of a fixed seed, so that every task (and chain) gets the same fits
        whichever ran first on the worker."""
        if self.case is None or not self.model.value_vars or not _proposes_starts(self.case):
            return None  # nothing to climb: no NUTS functions compiled for it (an SMC-only task stays cheap)
        key = self._start_key()
        if key not in self._fits:
            logp_dlogp, ipfn = self._nuts_parts()[:2]
            point = _jittered_start(self.model, ipfn, logp_dlogp, START_POINT_SEED, 10)
            self._fits[key] = _family_fits(self.model, self.case, self.hid, logp_dlogp, point)
        return self._fits[key]

    def family_start(self) -> tuple | None:
        """(raveled template, mode, covariance) of the best fit, or what a caller put in ``_starts``."""
        key = self._start_key()
        if key not in self._starts:
            fits = self.family_fits()
            self._starts[key] = None if fits is None else (fits[0][3], fits[0][1], fits[0][2])
        return self._starts[key]

    def _exact_draws(self, draws: int):  # noqa: ANN202
        """A model with no free parameter is exact: the "chain" holds no sampled variable (only the
        marker ``exact__``), no divergence, and the collapsed units' parameters drawn exactly."""
        import arviz as az

        return az.from_dict(posterior={"exact__": np.zeros((1, draws))},
                            sample_stats={"diverging": np.zeros((1, draws), dtype=bool)})

    def with_own_draws(self, idata, seed: int):  # noqa: ANN001, ANN202
        """``idata`` with the collapsed units' own parameters (``engine.model.build.own_draws``)."""
        from engine.model.build import own_draws

        if self.case is None:  # a model built elsewhere (the calibration's mixture control): no units of ours
            return idata
        post = idata.posterior
        n_chain, n_draw = post.sizes["chain"], post.sizes["draw"]
        n = n_chain * n_draw
        rel = {str(k): post[k].values.reshape(n) for k in post.data_vars if str(k).startswith("reliability__")}
        data = {v.name: np.asarray(v.get_value()) for v in self.model.data_vars}
        draws = own_draws(self.case, self.hid, rel, data, np.random.default_rng([int(seed), 20260]), n)
        if draws:
            # marked: exact conditional draws, not a sampler's, so convergence diagnostics skip them
            idata.posterior = post.assign({
                name: (("chain", "draw", *(f"{name}_dim_{i}" for i in range(v.ndim - 1))), v.reshape(n_chain, n_draw, *v.shape[1:]),
                       {"incident_exact_conditional": 1})
                for name, v in draws.items()})
        return idata

    # -- SMC: pm.sample_smc(chains=1, cores=1, kernel=IMH) on a cached kernel
    def smc_kernel(self, draws: int):  # noqa: ANN201
        if draws not in self._smc:
            self._smc[draws] = self._build(f"smc{draws}", lambda: _cached_imh_class()(
                draws=draws, start=None, model=self.model, random_seed=SMC_KERNEL_SEED))
        self._obtain(f"smc{draws}")
        return self._smc[draws]

    def sample_smc(self, *, draws: int, seed: int) -> dict:
        """One SMC chain: its final log marginal likelihood and number of stages, as ``pm.sample_smc`` computes them
        (exact, with no stage, for a model with no free parameter)."""
        if not self.model.value_vars:
            return {"log_marginal_likelihood": float(self.log_density()(np.zeros((1, 0)))[0]), "stages": 0}
        fits = self.family_fits()
        if fits is not None:  # a damage map: PyMC's SMC takes many minutes per chain on its sharp posterior
            return self.laplace_is(draws, seed, fits)
        return run_smc_chain(self.smc_kernel(draws), seed)

    def laplace_is(self, draws: int, seed: int, fits: list) -> dict:
        """One batch of importance sampling from Student-t approximations at the families' modes
        (``engine.inference.estimate.laplace_is_batch``); independent of the NUTS draws."""
        from engine.inference.estimate import laplace_is_batch

        return laplace_is_batch(self.log_density(), [(mode, cov) for lz, mode, cov, _ in fits if lz >= fits[0][0] - IS_MODE_WINDOW],
                                draws, np.random.default_rng([int(seed), 31]))

    # -- bridge sampling and pointwise log-likelihood
    def log_density(self) -> Callable[[np.ndarray], np.ndarray]:
        """Vectorised log p(y, theta) on the unconstrained space (Jacobians included)."""
        if self._logp is None:
            self._logp = self._build("log density", lambda: log_density(self.model))
        self._obtain("log density")
        return self._logp

    def pointwise_log_likelihood(self, posterior) -> dict[str, np.ndarray]:  # noqa: ANN001
        """``engine.model.pointwise_log_likelihood`` with its function compiled once."""
        m = self.model
        if self._pointwise is None:
            self._pointwise = self._build("pointwise", lambda: m.compile_fn(
                m.replace_rvs_by_values(m.potentials), inputs=m.value_vars, on_unused_input="ignore"))
        self._obtain("pointwise")
        pots = m.potentials
        n_chain, n_draw = posterior.sizes["chain"], posterior.sizes["draw"]
        values = {v.name: posterior[v.name].values for v in m.value_vars}
        out = np.empty((len(pots), n_chain, n_draw))
        for c in range(n_chain):
            for d in range(n_draw):
                out[:, c, d] = self._pointwise({k: v[c, d] for k, v in values.items()})
        return {p.name.removeprefix("ll__"): out[i] for i, p in enumerate(pots)}


def run_smc_chain(kernel, seed: int) -> dict:  # noqa: ANN001 - a PyMC SMC kernel
    """One SMC chain on ``kernel`` as ``pm.sample_smc(chains=1, random_seed=seed)`` runs it: its final log
    marginal likelihood and number of stages."""
    from pymc.util import _get_seeds_per_chain

    (chain_seed,) = _get_seeds_per_chain(random_state=seed, chains=1)
    rng = np.random.default_rng(chain_seed)
    rng.integers(2**30)  # sample_smc draws the kernel's construction seed from the chain's generator first
    kernel.initialize(None, rng)
    stages = 0
    while kernel.beta < 1:
        kernel.update_beta_and_weights()
        kernel.step()
        stages += 1
    return {"log_marginal_likelihood": float(kernel.log_marginal_likelihood), "stages": stages}


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


@dataclasses.dataclass(frozen=True)
class WarmStart:
    """Where a chain starts from another run of the same model (``Compiled.sample_nuts``): ``start``, one
    of its draws, and ``mean``/``cov`` of its draws, all on the unconstrained space in
    ``model.value_vars`` order (``unconstrained_draws``); ``step_size``, its NUTS step size after tuning."""

    start: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    step_size: float

    @classmethod
    def of(cls, model, idata, chain: int) -> WarmStart:  # noqa: ANN001 - a pm.Model, an InferenceData
        """From ``idata``'s NUTS draws: the last draw of chain ``chain`` (modulo the chains there), the
        draws' mean and covariance pooled over chains, that chain's final step size."""
        x = unconstrained_draws(model, idata)
        c = chain % x.shape[0]
        flat = x.reshape(-1, x.shape[-1])
        cov = np.atleast_2d(np.cov(flat, rowvar=False))
        cov += np.diag(np.maximum(np.diag(cov), 1e-12)) * 1e-6  # positive definite with highly correlated draws
        return cls(start=x[c, -1].copy(), mean=flat.mean(axis=0), cov=cov,
                   step_size=float(idata.sample_stats["step_size"].values[c, -1]))


WARM_WEIGHT = 10  # the other run's variance counts as this many draws (PyMC's weight for its own first guess)

# ---- families' starting points (issue 13: damage maps); nothing changes for a case without one
FULL_MASS_WEIGHT = 50  # the Laplace covariance counts as this many draws in the full mass matrix's adaptation
START_SCREEN, START_KEEP, START_MAXITER = 30, 3, 400  # L-BFGS iterations: every candidate, then the best few
START_POINT_SEED = 20261202  # the base point of the families' starts (parameters no family proposes)
IS_MODE_WINDOW = 10.0  # nat: a mode this far below the best by Laplace evidence holds < e^-10 of the mass; IS leaves it out


def _family_fits(model, case, hid: str, logp_dlogp, point: dict) -> list | None:  # noqa: ANN001
    """The modes the families' starting points climb to, best first, as (Laplace log evidence, mode,
    covariance, raveled template), distinct modes only; None when no unit's family proposes starting
    points (``initial_values``).

    From each candidate (the family's parameters set, everything else at ``point``) L-BFGS climbs the
    model's own log density (unconstrained space) a few steps; the most promising few climb on to their
    modes. A mode's covariance is the inverse of the negative Hessian (central differences of the
    gradient, eigenvalues floored); its Laplace log evidence log p(y, q*) + d/2 log 2 pi + 1/2 log det S.
    """
    import itertools

    import pytensor.tensor as pt
    from pymc.blocking import DictToArrayBijection
    from scipy.optimize import minimize

    from engine.evidence import family_of
    from engine.model.build import unit_id

    per_unit = []
    for _, items in case.units():
        candidates = family_of(items).initial_values(items, items[0].params[hid])
        if candidates:
            uid = unit_id(items)
            per_unit.append([{f"{uid}__{k}": v for k, v in c.items()} for c in candidates])
    if not per_unit:
        return None
    rvs = {rv.name: rv for rv in model.free_RVs}

    def value(name: str, v: float) -> tuple[str, np.ndarray]:
        rv = rvs[name]
        tr = model.rvs_to_transforms.get(rv)
        x = np.asarray(v, dtype=float) if tr is None else tr.forward(pt.as_tensor(float(v)), *rv.owner.inputs).eval()
        return model.rvs_to_values[rv].name, np.asarray(x, dtype=point[model.rvs_to_values[rv].name].dtype)

    neg = _negative(logp_dlogp)
    fits = []
    for combo in itertools.islice(itertools.product(*per_unit), 64):
        start = dict(point)
        for cand in combo:
            start.update(value(k, v) for k, v in cand.items() if k in rvs)
        q0 = DictToArrayBijection.map(start)
        fit = minimize(neg, q0.data, jac=True, method="L-BFGS-B", options={"maxiter": START_SCREEN})
        fits.append((fit.fun, fit.x))
    # the most promising few climb on to their modes
    climbed = sorted((minimize(neg, x, jac=True, method="L-BFGS-B", options={"maxiter": START_MAXITER})
                      for _, x in sorted(fits, key=lambda f: f[0])[:START_KEEP]), key=lambda f: f.fun)
    out = []
    for c in climbed:
        mode = c.x
        if not np.isfinite(c.fun) or c.fun >= 1e299:
            continue
        n = mode.size
        h = 1e-5 * np.maximum(1.0, np.abs(mode))
        hess = np.empty((n, n))
        for i in range(n):
            e = np.zeros(n)
            e[i] = h[i]
            hess[i] = (neg(mode + e)[1] - neg(mode - e)[1]) / (2 * h[i])
        w, v = np.linalg.eigh((hess + hess.T) / 2)
        cov = (v / np.clip(w, 1e-8, None)) @ v.T
        cov = (cov + cov.T) / 2
        if any(_same_mode(mode, o[1], o[2]) for o in out):
            continue
        log_z = -float(c.fun) + 0.5 * n * np.log(2 * np.pi) + 0.5 * float(np.sum(np.log(1.0 / np.clip(w, 1e-8, None))))
        out.append((log_z, mode, cov, q0))
    if not out:  # every climb failed: the first candidate's start, unit covariance
        out = [(-np.inf, fits[0][1], np.eye(fits[0][1].size), q0)]
    return sorted(out, key=lambda f: -f[0])


def _proposes_starts(case: Case) -> bool:
    """Whether a family of the case's units proposes starting points (overrides ``Family.initial_values``)."""
    from engine.evidence import family_of
    from engine.evidence.base import Family

    return any(type(family_of(items)).initial_values is not Family.initial_values for _, items in case.units())


def _same_mode(a: np.ndarray, b: np.ndarray, cov: np.ndarray) -> bool:
    """Two modes are one when they are within 1 s.d. of each other (Mahalanobis distance under ``cov``)."""
    d = a - b
    return float(d @ np.linalg.solve(cov, d)) < 1.0


def _family_start(model, case, hid: str, logp_dlogp, point: dict):  # noqa: ANN001, ANN202
    """(raveled template, mode, covariance) of the best of :func:`_family_fits`, else None."""
    fits = _family_fits(model, case, hid, logp_dlogp, point)
    return None if fits is None else (fits[0][3], fits[0][1], fits[0][2])


def _negative(logp_dlogp):  # noqa: ANN001, ANN202
    def neg(q: np.ndarray) -> tuple[float, np.ndarray]:
        lp, grad = logp_dlogp([q], extra_vars={})
        return (-float(lp), -np.asarray(grad, dtype=float)) if np.isfinite(lp) else (1e300, np.zeros_like(q))

    return neg


def _laplace_draw(model, logp_dlogp, point, q0, mode, cov, seed: int) -> dict:  # noqa: ANN001
    """A chain's start: a draw from the normal approximation N(mode, cov) with a finite log density (else the mode)."""
    from pymc.blocking import DictToArrayBijection

    rng = np.random.default_rng([seed, 13])
    q = mode
    for _ in range(20):
        trial = rng.multivariate_normal(mode, cov)
        if _negative(logp_dlogp)(trial)[0] < 1e299:
            q = trial
            break
    return DictToArrayBijection.rmap(type(q0)(q, q0.point_map_info))


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


class StructureStore:
    """Compiled structures on disk, shared by every process that uses the same compile directory.

    One file per key (``path``): the :class:`Compiled` object (its model and every function set
    compiled so far) pickled with cloudpickle and zlib-compressed, ~0.5 MB. A process writes it
    once it has spent ``MIN_SECONDS`` building sets not yet written (atomically: a temporary file,
    then ``os.replace``), so the file grows to the sets the runs need; loading restores the object
    in 0.5-2 s (``benchmarks/structure_store.py``), and its
    functions use the same C modules from PyTensor's cache. Anything that fails to load is a miss
    (the structure is built as before and the file rewritten). ``INCIDENT_STRUCTURE_CACHE=0``
    turns the store off; set to a directory, it keeps the files there instead of in PyTensor's
    compile directory. The ``KEEP`` most recently used files are kept.
    """

    DIR = "incident-structures"
    KEEP = 400
    MIN_SECONDS = 1.0  # building worth a write (a write takes 0.1-0.5 s)
    _code: str | None = None

    @classmethod
    def code_digest(cls) -> str:
        """The engine's source files, the versions of what compiles and runs the models, and PyTensor's
        compile settings: a change to any of them changes every key."""
        if cls._code is None:
            import cloudpickle
            import pymc
            import pytensor

            h = hashlib.sha256()
            root = Path(__file__).resolve().parents[1]
            for f in sorted(root.rglob("*.py")):
                h.update(str(f.relative_to(root)).encode() + b"\0" + f.read_bytes() + b"\0")
            c = pytensor.config
            h.update(repr((sys.version, np.__version__, pymc.__version__, pytensor.__version__, cloudpickle.__version__,
                           c.floatX, c.mode, c.linker, c.cxx, c.gcc__cxxflags, c.blas__ldflags)).encode())
            cls._code = h.hexdigest()
        return cls._code

    @classmethod
    def path(cls, case: Case, key: tuple) -> Path | None:
        """The file of the structure ``key`` of ``case`` (None when the store is off)."""
        where = os.environ.get("INCIDENT_STRUCTURE_CACHE", "1")
        if where == "0":
            return None
        import pytensor

        # the case's content, not where its files are: a copy elsewhere builds the same model
        content = repr(dataclasses.replace(case, path="", priors_dir=""))
        h = hashlib.sha256("\0".join((cls.code_digest(), repr(key), content)).encode()).hexdigest()
        return (Path(pytensor.config.compiledir) / cls.DIR if where == "1" else Path(where)) / f"{h[:40]}.pkl.z"

    @classmethod
    def load(cls, path: Path | None) -> Compiled | None:
        import pickle
        import zlib

        if path is None or not path.is_file():
            return None
        try:
            cm = pickle.loads(zlib.decompress(path.read_bytes()))
            if not isinstance(cm, Compiled):
                return None
            os.utime(path)  # recently used: kept by the pruning in save
            return cm
        except Exception:  # noqa: BLE001 - a truncated, corrupt or incompatible file is a miss
            return None

    @classmethod
    def save(cls, cm: Compiled) -> None:
        import zlib

        import cloudpickle

        path = cm.store
        try:
            blob = zlib.compress(cloudpickle.dumps(cm), 1)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(blob)
            os.replace(tmp, path)
        except Exception as exc:  # noqa: BLE001 - the store only saves time: a failure to write costs a rebuild later
            warnings.warn(f"could not keep the compiled structure in {path}: {exc}", RuntimeWarning, stacklevel=2)
            return
        mtimes = []
        for f in path.parent.glob("*.pkl.z"):
            try:
                mtimes.append((f.stat().st_mtime, f))
            except OSError:  # pruned meanwhile by another process
                continue
        for _, old in sorted(mtimes)[:-cls.KEEP]:
            old.unlink(missing_ok=True)


_COMPILED: OrderedDict[tuple, Compiled] = OrderedDict()


def compiled_for(case: Case, hid: str, variant: Variant | None = None) -> Compiled:
    """This process's compiled model for ``hid``'s structure, with ``hid``'s (and the variant's) data set."""
    from engine.model.build import structure_key

    key = structure_key(case, hid)
    cm = _COMPILED.get(key)
    if cm is None:
        store = StructureStore.path(case, key)
        cm = StructureStore.load(store)
        if cm is None:
            cm = Compiled(case, hid)
        cm.store = store
        cm.structure = hashlib.sha256(repr(key).encode()).hexdigest()[:12]
        _COMPILED[key] = cm
        while len(_COMPILED) > CACHE_SIZE:
            _COMPILED.popitem(last=False)
    _COMPILED.move_to_end(key)
    return cm.use(case, hid, variant)


def model_for(case: Case, hid: str, variant: Variant | None = None):  # noqa: ANN201
    """The model of ``hid`` (shared by every hypothesis of the same structure in this process)."""
    return compiled_for(case, hid, variant).model


def unconstrained_draws(model, idata) -> np.ndarray:  # noqa: ANN001
    """(chain, draw, d) matrix of the model's value variables, in ``model.value_vars`` order."""
    post = idata.posterior
    cols = [post[v.name].values.reshape(post.sizes["chain"], post.sizes["draw"], -1) for v in model.value_vars]
    return np.concatenate(cols, axis=-1) if cols else np.zeros((post.sizes["chain"], post.sizes["draw"], 0))


def log_density(model):  # noqa: ANN001, ANN201
    """Vectorised log p(y, theta) on the unconstrained space (Jacobians included): a function of an
    (n, d) matrix of unconstrained draws (columns in ``model.value_vars`` order) returning n values.

    The model's log density graph is vectorised over a leading draw dimension
    (``pytensor.graph.replace.vectorize_graph``) and compiled in PyTensor's FAST_COMPILE mode (no C
    compilation): each operation then runs once per batch on arrays. Measured on the seed cases'
    hypotheses (2,000 draws): 8 us per draw against 45-56 us per draw for one call per draw of the
    C-compiled scalar log density, and about 5 s to build against 28-146 s for the C compile. A
    model holding an operation that cannot be vectorised (the damage map's custom likelihood) is
    evaluated one draw at a time by the C-compiled scalar function, as before.
    """
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import get_mode
    from pytensor.graph.replace import vectorize_graph

    point = model.initial_point()
    names = [v.name for v in model.value_vars]
    shapes = [np.shape(point[n]) for n in names]
    sizes = [int(np.prod(s)) for s in shapes]
    splits = np.cumsum(sizes)[:-1]
    batched = {v: pt.tensor(name=f"{v.name}__batch", shape=(None, *v.type.shape), dtype=v.dtype) for v in model.value_vars}
    f = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            terms = []  # each term summed over its own dimensions, per draw (a term of no parameter: one number)
            scalar_terms = model.logp(jacobian=True, sum=False)
            for t0, t in zip(scalar_terms, vectorize_graph(scalar_terms, replace=batched), strict=True):
                terms.append(t.sum(axis=tuple(range(1, t.ndim))) if t.ndim > t0.ndim else t.sum())
            while len(terms) > 1:  # a balanced sum: numpy's ufuncs (the FAST_COMPILE kernels) take at most 32 operands
                terms = [pt.add(*terms[i:i + 8]) for i in range(0, len(terms), 8)]
            # FAST_COMPILE without the canonicalisers that would flatten the balanced sum (or products) back
            mode = get_mode("FAST_COMPILE").excluding("local_add_canonizer", "local_mul_canonizer")
            fn = pytensor.function(list(batched.values()), terms[0], on_unused_input="ignore", mode=mode)

        def f(x: np.ndarray) -> np.ndarray:
            x = np.asarray(x, dtype=float)
            parts = np.split(x, splits, axis=1)
            out = fn(*(p.reshape(len(x), *s) for p, s in zip(parts, shapes, strict=True)))
            return np.broadcast_to(np.asarray(out, dtype=float), (len(x),)).copy()

        if names:  # an operation that fails on arrays fails here, at the initial point, not in a task
            f(np.tile(np.concatenate([np.ravel(point[n]) for n in names]), (2, 1)))
    except Exception:  # noqa: BLE001 - any failure to vectorise or to run vectorised: one draw at a time
        f = None
    if f is not None and names:
        return f
    scalar = model.compile_logp(jacobian=True)

    def g(x: np.ndarray) -> np.ndarray:
        res = np.empty(x.shape[0])
        for i, row in enumerate(x):
            parts = np.split(row, splits) if names else []
            res[i] = scalar({n: p.reshape(s) for n, p, s in zip(names, parts, shapes, strict=True)})
        return res

    return g


def ensure_compiledir() -> None:
    """Point PyTensor at a stable compile cache (shared by this process and its workers).

    Also sets ``blas__ldflags`` to empty unless given: the models are scalar-sized, and
    PyTensor's BLAS probe on pip installs only warns that it found none. And ``gcc__cxxflags=-Og -g0``
    unless given (gcc takes the last ``-O`` and ``-g``, so they override PyTensor's ``-O3 -g``): a cold
    C compile of two AZAL hypotheses takes 16.5 s against 20.7 s at ``-O1 -g0`` and ~40 s at ``-O3 -g``,
    and NUTS runs no slower (``python benchmarks/cflags.py --repeat 3``; benchmarks/README.md, "C compiler
    flags": ``-O0`` samples 40-70 % slower). Processes sharing
    one compile directory serialise on PyTensor's file lock; threads would not, which is why
    workers run one thread each.
    """
    flags = [f for f in os.environ.get("PYTENSOR_FLAGS", "").split(",") if f]
    given = {f.split("=", 1)[0] for f in flags}
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "incident-engine" / "pytensor"
    defaults = {"base_compiledir": str(cache), "blas__ldflags": "", "gcc__cxxflags": "-Og -g0"}
    flags += [f"{k}={v}" for k, v in defaults.items() if k not in given]
    os.environ["PYTENSOR_FLAGS"] = ",".join(flags)
