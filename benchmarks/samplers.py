"""Faster samplers and a cheaper second estimator, side by side on the engine's own PyMC models (issue 17).

    python benchmarks/samplers.py samplers [--cases oracle azal il20] [--samplers ...] [--draws 1000 --tune 1000 --chains 4]
    python benchmarks/samplers.py evidence [--cases oracle claims azal il20] [--seeds 5]
    python benchmarks/samplers.py quick        # the smallest configuration of both (tests/test_samplers_benchmark.py)

**samplers** - one PyMC model per case (``engine.run.compiled.compiled_for(case, hid).model``), sampled by
PyMC's NUTS on the engine's path (``Compiled.sample_nuts``, one call per chain as the engine's tasks do),
nutpie (numba backend; JAX backend with JAX gradients), NumPyro and BlackJAX through
``pymc.sampling.jax.sample_jax_nuts`` (chains one after another: NumPyro ``chain_method="sequential"``,
nutpie ``cores=1``; BlackJAX, which takes only "parallel" or "vectorized", ``vectorized``: the 4 chains
vmapped on one core). All at ``target_accept`` 0.9, jittered starts.
Each (case, sampler) runs in two fresh interpreters sharing one new cache directory (PyTensor's
``base_compiledir``, which also holds PyTensor's numba cache; ``NUMBA_CACHE_DIR``; JAX's persistent
compilation cache): the first is cold, the second warm. In each interpreter:

* compile = the explicit compile step (PyMC: the NUTS function set ``Compiled._nuts_parts``; nutpie:
  ``compile_pymc_model``) plus a first tiny run (5 + 5 draws, JIT on first call) minus a second tiny
  run (the per-call overhead that every later call pays: for the JAX path PyMC builds new jitted
  functions on each call, so this is a re-trace and a persistent-cache hit);
* sampling = the full run (tune + draws, all chains) minus that per-call overhead;
* min bulk ESS over the model's free variables (constrained), ESS / s of sampling alone and of
  one full run in a fresh interpreter (compile + per-call overhead + sampling), and the largest difference of posterior means from PyMC's NUTS in units of
  their joint Monte Carlo standard error (|z| above ~3.5 over a handful of variables is a real
  disagreement).

**evidence** - estimators of log Z = log p(y | H) against the exact value on every case here whose
evidence is exact (``engine.inference.closedform`` with fixed reliabilities; the Gauss-Jacobi
quadrature of ``engine.calibration.reference`` over Beta reliabilities and assertion rates, exact
because the integrand is a polynomial of known degree in each coordinate), each hypothesis, ``--seeds``
seeds per configuration. None of them reads NUTS draws (the independent check):

* SMC, the engine's path (``Compiled.sample_smc``: PyMC's IMH kernel, cached), particles x chains
  pooled by log-mean-exp as ``engine.inference.estimate.smc_log_evidence`` (1000 x 4 is the engine's
  default), and PyMC's MH kernel (the same cached prior draws);
* importance sampling from the prior (``prior-IS``): log Z = log mean_i p(y | theta_i), theta_i ~ p(theta);
* importance sampling from a Laplace / Student-t approximation (``laplace-t-IS``): the mode of the
  unconstrained log density (L-BFGS on central-difference gradients of the engine's vectorised
  ``log_density``), the inverse of the negative Hessian there (central differences) as the scale
  matrix of a multivariate t with 4 degrees of freedom; log Z = log mean_i p(y, x_i) / q(x_i),
  stated error sd(w) / (mean(w) sqrt(n)) (delta method) and the Pareto k of the weights;
* ``mixture-IS``: the same from the defensive mixture 0.5 prior + 0.5 Student-t (Hesterberg 1995): the
  weights stay bounded (by twice the likelihood) where the t approximation misses posterior mass.

Per configuration: mean, s.d. and max of |error| over hypotheses x seeds, how often |error| exceeds twice
the stated error, seconds per estimate (compile excluded, printed apart), and accuracy per second
1 / (MSE x seconds) (MSE over all estimates; higher is better; a method that is twice as fast at the
same error, or has half the variance at the same speed, scores twice as high).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
CASES = {  # name -> (file, hypotheses sampled in `samplers`)
    "oracle": ("tests/cases/oracle.yaml", ("external",)),
    "claims": ("tests/cases/calibration-oracle-claims.yaml", ("sam",)),
    "presence": ("tests/cases/calibration-presence.yaml", ("sam",)),
    "calclaims": ("tests/cases/calibration-claims.yaml", ("sam",)),
    "stress": ("(built: STRESS below)", ("a",)),
    "damage": ("tests/cases/damage-map-4h.yaml", ("large-sam",)),
    "azal": ("cases/azal8243-2024.yaml", ("russian_sam",)),
    "il20": ("cases/il20-2018.yaml", ("syria_alone",)),
}
STRESS = """# Built by benchmarks/samplers.py: informative data on shared parameters (24 claims from two sources of
# uncertain reliability, one assertion rate per interest class shared by 16 and 8 claims), so SMC needs
# several stages and the prior is a poor proposal; exact by the quadrature of engine.calibration.reference.
case: {id: stress-claims, title: "Stress case: many claims on shared reliabilities", date: 2024-01-01}
sources:
  - {id: witness, title: Witnesses, reliability: {beta: [2.0, 2.0]}}
  - {id: press, title: A newspaper, reliability: {beta: [3.0, 3.0]}}
hypotheses:
  - {id: a, description: external burst, prior: 0.5, mechanism: proximity_fragmentation}
  - {id: b, description: internal blast, prior: 0.5, mechanism: internal_explosion}
evidence:
""" + "".join(f"""  - {{id: w{i}, family: claim, source: witness, observed: {{statement: witness statement {i}, interest: neutral}},
     under: {{a: {{holds: 0.95}}, b: {{holds: {0.3 if i % 2 else 0.6}}}}}}}
""" for i in range(16)) + "".join(f"""  - {{id: p{i}, family: claim, source: press, observed: {{statement: press report {i}, interest: serves}},
     under: {{a: {{holds: 0.1}}, b: {{holds: 0.8}}}}}}
""" for i in range(8))


def stress_case_file() -> Path:
    path = Path(tempfile.gettempdir()) / "samplers-stress-claims.yaml"
    path.write_text(STRESS, encoding="utf-8")
    return path


SAMPLERS = ("pymc", "nutpie-numba", "nutpie-jax", "numpyro", "blackjax")
TARGET_ACCEPT = 0.9
TINY = 5  # tune and draws of the tiny runs that split JIT from sampling


def _case_path(name: str) -> Path:
    return stress_case_file() if name == "stress" else ROOT / CASES[name][0]


def _env(cache: Path | None) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    if cache is not None:
        flags = [f for f in env.get("PYTENSOR_FLAGS", "").split(",") if f and not f.startswith("base_compiledir")]
        env["PYTENSOR_FLAGS"] = ",".join([f"base_compiledir={cache / 'pytensor'}", *flags])
        env["NUMBA_CACHE_DIR"] = str(cache / "numba")
        env["SAMPLERS_JAX_CACHE"] = str(cache / "jax")
    return env


def _quiet() -> None:
    from engine.run.compiled import quiet

    quiet()
    warnings.filterwarnings("ignore")
    import logging

    for name in ("jax", "numpyro", "blackjax", "nutpie", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in ("pymc", "pytensor", "numba", "nutpie", "jax", "jaxlib", "numpyro", "blackjax", "arviz"):
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = "not installed"
    return out


# ------------------------------------------------------------------ (a) one sampler in this interpreter
def _jax_cache() -> None:
    import jax

    jax.config.update("jax_platforms", "cpu")
    if d := os.environ.get("SAMPLERS_JAX_CACHE"):
        jax.config.update("jax_compilation_cache_dir", d)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)


def _runner(sampler: str, compiled, chains: int, seed: int):  # noqa: ANN001, ANN202
    """(explicit compile step, run(tune, draws, seed) -> posterior Dataset) for one sampler."""
    import arviz as az

    model = compiled.model
    if sampler == "pymc":
        def prepare() -> None:
            compiled._nuts_parts()

        def run(tune: int, draws: int, s: int):  # noqa: ANN202 - one engine call per chain, as the tasks do
            from engine.run.seeds import sampler_seed

            parts = [compiled.sample_nuts(draws=draws, tune=tune, seed=int(sampler_seed(s, 0, 0, "nuts", c)),
                                          target_accept=TARGET_ACCEPT) for c in range(chains)]
            return az.concat(parts, dim="chain").posterior
        return prepare, run
    if sampler.startswith("nutpie"):
        import nutpie

        backend = sampler.split("-")[1]
        box = {}

        def prepare() -> None:
            if backend == "jax":
                _jax_cache()
            box["m"] = nutpie.compile_pymc_model(model, backend=backend, gradient_backend="jax" if backend == "jax" else "pytensor")

        def run(tune: int, draws: int, s: int):  # noqa: ANN202
            return nutpie.sample(box["m"], draws=draws, tune=tune, chains=chains, cores=1, seed=s, progress_bar=False,
                                 target_accept=TARGET_ACCEPT).posterior
        return prepare, run
    if sampler in ("numpyro", "blackjax"):
        def prepare() -> None:
            _jax_cache()

        def run(tune: int, draws: int, s: int):  # noqa: ANN202
            from pymc.sampling.jax import sample_jax_nuts

            return sample_jax_nuts(draws=draws, tune=tune, chains=chains, target_accept=TARGET_ACCEPT, random_seed=s, model=model,
                                   nuts_sampler=sampler, progressbar=False,
                                   chain_method="sequential" if sampler == "numpyro" else "vectorized").posterior
        return prepare, run
    raise SystemExit(f"unknown sampler {sampler!r}; known: {', '.join(SAMPLERS)}")


def one_sampler(case_name: str, hid: str, sampler: str, tune: int, draws: int, chains: int, seed: int) -> dict:
    """Time, ESS and posterior means of one sampler on one model (this interpreter is fresh)."""
    t0 = time.perf_counter()
    import arviz as az

    from engine.run.compiled import Compiled
    from engine.spec.case import load_case

    _quiet()
    t_import = time.perf_counter() - t0
    t0 = time.perf_counter()
    case = load_case(_case_path(case_name))
    compiled = Compiled(case, hid)
    t_build = time.perf_counter() - t0
    names = [rv.name for rv in compiled.model.free_RVs]
    out: dict = {"case": case_name, "hypothesis": hid, "sampler": sampler, "import_s": t_import, "build_s": t_build,
                 "dims": int(sum(np.prod(v.type.shape or (1,)) for v in compiled.model.value_vars))}
    try:
        prepare, run = _runner(sampler, compiled, chains, seed)
        t0 = time.perf_counter()
        prepare()
        run(TINY, TINY, seed + 1)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        post = run(tune, draws, seed)
        full = time.perf_counter() - t0
        t0 = time.perf_counter()
        run(TINY, TINY, seed + 2)
        overhead = time.perf_counter() - t0
    except Exception as exc:  # noqa: BLE001 - a backend that cannot run this model is a result, not a crash
        out["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        return out
    post = post[names]
    ess = az.ess(post, method="bulk")
    mcse = az.mcse(post, method="mean")
    out.update(compile_s=max(first - overhead, 0.0), call_overhead_s=overhead, sampling_s=max(full - overhead, 1e-9),
               min_ess=float(min(float(np.min(ess[n].values)) for n in names)),
               means={n: np.ravel(post[n].mean(("chain", "draw")).values).tolist() for n in names},
               mcse={n: np.ravel(mcse[n].values).tolist() for n in names})
    return out


def _subprocess(args: list[str], cache: Path | None, timeout: float = 900) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        res = subprocess.run(cmd, env=_env(cache), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {res.returncode}: {tail[:160]}"}
    return json.loads(lines[-1])


def z_vs(ref: dict, row: dict) -> float:
    """Largest |mean - reference mean| / sqrt(mcse^2 + reference mcse^2) over the free variables."""
    zs = []
    for n, m in row["means"].items():
        a, b = np.asarray(m), np.asarray(ref["means"][n])
        s = np.hypot(np.asarray(row["mcse"][n]), np.asarray(ref["mcse"][n]))
        zs.append(np.max(np.abs(a - b) / s))
    return float(max(zs))


def bench_samplers(cases: list[str], samplers: list[str], tune: int, draws: int, chains: int, seed: int, cold: bool) -> list[dict]:
    rows = []
    for name in cases:
        for hid in CASES[name][1]:
            ref = None
            for sampler in samplers:
                one = ["_one", name, hid, sampler, str(tune), str(draws), str(chains), str(seed)]
                if cold:
                    cache = Path(tempfile.mkdtemp(prefix="samplers-cache-"))
                    try:
                        r_cold = _subprocess(one, cache)
                        r = _subprocess(one, cache)
                    finally:
                        shutil.rmtree(cache, ignore_errors=True)
                    r["compile_cold_s"] = r_cold.get("compile_s")
                    r["build_cold_s"] = r_cold.get("build_s")
                    if "error" in r_cold and "error" not in r:
                        r["error"] = "cold: " + r_cold["error"]
                else:  # the caches this environment already has (PYTENSOR_FLAGS; JAX: none)
                    r = _subprocess(one, None)
                r.setdefault("case", name)
                r.setdefault("hypothesis", hid)
                r["sampler"] = sampler
                if sampler == "pymc" and "error" not in r:
                    ref = r
                if ref is not None and "error" not in r:
                    r["z_vs_pymc"] = 0.0 if r is ref else z_vs(ref, r)
                rows.append(r)
                print_sampler_row(r, cold, header=len(rows) == 1)
    return rows


def print_sampler_row(r: dict, cold: bool, header: bool) -> None:
    if header:
        print(f"{'case/hypothesis':<22} {'sampler':<13} {'d':>2} {'build':>6} {'compile':>8} {'cold':>7} {'call':>6} "
              f"{'sample':>7} {'minESS':>7} {'ESS/s':>8} {'ESS/s':>8} {'|z| vs pymc':>11}")
        print(f"{'':<22} {'':<13} {'':>2} {'s':>6} {'warm s':>8} {'s':>7} {'s':>6} {'s':>7} {'':>7} {'sample':>8} "
              f"{'1st run':>8} {'max':>11}")
    label = f"{r['case']}/{r['hypothesis']}"[:22]
    if "error" in r:
        print(f"{label:<22} {r['sampler']:<13} cannot run: {r['error']}", flush=True)
        return
    cold_s = f"{r['compile_cold_s']:7.1f}" if cold and r.get("compile_cold_s") is not None else f"{'-':>7}"
    ess_s = r["min_ess"] / r["sampling_s"]
    ess_c = r["min_ess"] / (r["compile_s"] + r["call_overhead_s"] + r["sampling_s"])  # one full run in a fresh process
    z = f"{r['z_vs_pymc']:11.2f}" if "z_vs_pymc" in r else f"{'-':>11}"
    print(f"{label:<22} {r['sampler']:<13} {r['dims']:>2} {r['build_s']:6.1f} {r['compile_s']:8.1f} {cold_s} "
          f"{r['call_overhead_s']:6.2f} {r['sampling_s']:7.2f} {r['min_ess']:7.0f} {ess_s:8.0f} {ess_c:8.1f} {z}", flush=True)


# ------------------------------------------------------------------ (b) the second estimator
def exact_log_z(case) -> dict[str, float]:  # noqa: ANN001
    from engine.calibration.reference import reference_log_evidence, reference_problem
    from engine.inference.closedform import exact_log_evidence, has_exact

    if has_exact(case) is None:
        return {h: exact_log_evidence(case, h) for h in case.hypotheses}
    if reference_problem(case) is None:
        return reference_log_evidence(case)
    raise SystemExit(f"case {case.id} has no exact log evidence")


def prior_log_density(model):  # noqa: ANN001, ANN201
    """Vectorised log p(theta) of the free variables on the unconstrained space (Jacobians included),
    built as ``engine.run.compiled.log_density`` builds log p(y, theta) (FAST_COMPILE, a leading draw axis)."""
    import pytensor
    import pytensor.tensor as pt
    from pytensor.compile.mode import get_mode
    from pytensor.graph.replace import vectorize_graph

    point = model.initial_point()
    names = [v.name for v in model.value_vars]
    shapes = [np.shape(point[n]) for n in names]
    splits = np.cumsum([int(np.prod(s)) for s in shapes])[:-1]
    batched = {v: pt.tensor(name=f"{v.name}__batch", shape=(None, *v.type.shape), dtype=v.dtype) for v in model.value_vars}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        terms = model.logp(vars=model.free_RVs, jacobian=True, sum=False)
        total = sum(t.sum(axis=tuple(range(1, t.ndim))) for t in vectorize_graph(terms, replace=batched))
        fn = pytensor.function(list(batched.values()), total, on_unused_input="ignore", mode=get_mode("FAST_COMPILE"))

    def f(x: np.ndarray) -> np.ndarray:
        parts = np.split(np.asarray(x, dtype=float), splits, axis=1)
        return np.asarray(fn(*(p.reshape(len(x), *s) for p, s in zip(parts, shapes, strict=True))), dtype=float)

    return f


def laplace_t(log_p, dim: int, x0: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """Mode and inverse negative Hessian of ``log_p`` (vectorised) by L-BFGS and central differences."""
    from scipy.optimize import minimize

    h = 1e-4

    def neg(x: np.ndarray) -> tuple[float, np.ndarray]:
        pts = np.vstack([x, x + h * np.eye(dim), x - h * np.eye(dim)])
        v = log_p(pts)
        if not np.isfinite(v[0]):
            return 1e300, np.zeros(dim)
        return -float(v[0]), -(v[1:dim + 1] - v[dim + 1:]) / (2 * h)

    mode = minimize(neg, x0, jac=True, method="L-BFGS-B").x
    e = 1e-3 * np.eye(dim)
    ii = [(i, j) for i in range(dim) for j in range(i, dim)]
    pts = [mode] + [mode + s * e[i] + t * e[j] for i, j in ii for s, t in ((1, 1), (1, -1), (-1, 1), (-1, -1))]
    v = log_p(np.vstack(pts))
    hess = np.empty((dim, dim))
    for k, (i, j) in enumerate(ii):
        pp, pm_, mp, mm = v[1 + 4 * k:5 + 4 * k]
        hess[i, j] = hess[j, i] = (pp - pm_ - mp + mm) / (4 * 1e-6)
    w, vec = np.linalg.eigh(-(hess + hess.T) / 2)
    cov = (vec / np.clip(w, 1e-6, None)) @ vec.T
    return mode, (cov + cov.T) / 2


def _is_estimate(log_w: np.ndarray) -> tuple[float, float, float]:
    """(log mean w, its delta-method s.e., Pareto k of the weights)."""
    from arviz import psislw
    from scipy.special import logsumexp

    lw = np.where(np.isfinite(log_w), log_w, -np.inf)
    n = lw.size
    value = float(logsumexp(lw) - np.log(n))
    w = np.exp(lw - lw.max())
    se = float(np.std(w, ddof=1) / w.mean() / np.sqrt(n))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, k = psislw(lw.copy())
    return value, se, float(k)


class Estimators:
    """The second estimator's candidates for one model structure (compiled once, data set per hypothesis)."""

    def __init__(self, compiled) -> None:  # noqa: ANN001
        t0 = time.perf_counter()
        self.c = compiled
        self.log_p = compiled.log_density()
        self.log_prior = prior_log_density(compiled.model)
        self.dim = sum(int(np.prod(v.type.shape or (1,))) for v in compiled.model.value_vars)
        self._draw = None
        self.prior_draws(2, 0)
        self.compile_s = {"is": time.perf_counter() - t0}
        self._mh: dict = {}

    def prior_draws(self, n: int, seed: int) -> np.ndarray:
        """(n, d) draws from the prior on the unconstrained space, in one call: each free variable's
        distribution resized to n (``change_dist_size``) and transformed; when a free variable's prior
        depends on another's, one call per draw (the engine's cached SMC prior-draw function)."""
        from pymc.distributions.shape_utils import change_dist_size
        from pymc.pytensorf import collect_default_updates, reseed_rngs
        from pymc.pytensorf import compile as pm_compile
        from pytensor.graph.basic import ancestors

        m = self.c.model
        if self._draw is None:
            import pytensor.tensor as pt

            free = set(m.free_RVs)
            if any(set(ancestors(rv.owner.inputs)) & free for rv in m.free_RVs):
                self._draw = False
            else:
                size = pt.iscalar("n")
                outs = []
                for rv in m.free_RVs:
                    b = change_dist_size(rv, new_size=(size,), expand=True)
                    tr = m.rvs_to_transforms.get(rv)
                    outs.append((tr.forward(b, *b.owner.inputs) if tr is not None else b).reshape((size, -1)))
                self._draw = (pm_compile([size], outs, random_seed=0, mode="FAST_COMPILE"),
                              list(collect_default_updates(inputs=[size], outputs=outs)))
        if self._draw is False:
            from engine.run.compiled import _cached_imh_class

            kernel = self.c.smc_kernel(n)
            kernel.rng = np.random.default_rng(seed)
            pop = _cached_imh_class().initialize_population(kernel)
            return np.column_stack([pop[v.name].reshape(n, -1) for v in m.value_vars])
        fn, rngs = self._draw
        reseed_rngs(rngs, seed)
        by_rv = dict(zip(m.free_RVs, fn(n), strict=True))  # value_vars are in free_RVs' order
        return np.column_stack([by_rv[rv] for rv in m.free_RVs])

    def prior_is(self, n: int, seed: int) -> dict:
        t0 = time.perf_counter()
        x = self.prior_draws(n, seed)
        value, se, k = _is_estimate(self.log_p(x) - self.log_prior(x))
        return {"value": value, "se": se, "k": k, "seconds": time.perf_counter() - t0}

    def laplace_is(self, n: int, seed: int, df: float = 4.0, prior_share: float = 0.0) -> dict:
        """Importance sampling from the Laplace / Student-t approximation; with ``prior_share`` > 0 from the
        defensive mixture prior_share p(theta) + (1 - prior_share) t(theta) (Hesterberg 1995), whose weights
        p(y, theta) / q(theta) are bounded by the likelihood / prior_share wherever the t misses mass."""
        from scipy import stats
        from scipy.special import logsumexp

        t0 = time.perf_counter()
        ip = self.c.model.initial_point()
        x0 = np.concatenate([np.ravel(ip[v.name]) for v in self.c.model.value_vars])
        mode, cov = laplace_t(self.log_p, self.dim, x0)
        rng = np.random.default_rng(seed)
        q = stats.multivariate_t(loc=mode, shape=cov, df=df, seed=rng)
        n_prior = int(rng.binomial(n, prior_share)) if prior_share > 0 else 0
        x = np.atleast_2d(q.rvs(size=n - n_prior).reshape(n - n_prior, self.dim))
        if n_prior:
            x = np.vstack([x, self.prior_draws(n_prior, int(rng.integers(2**31)))])
        log_q = q.logpdf(x).reshape(n)
        if prior_share > 0:
            log_q = logsumexp([np.log(prior_share) + self.log_prior(x), np.log1p(-prior_share) + log_q], axis=0)
        value, se, k = _is_estimate(self.log_p(x) - log_q)
        return {"value": value, "se": se, "k": k, "seconds": time.perf_counter() - t0}

    def smc_chains(self, kernel: str, n: int, chains: int, seed: int) -> list[dict]:
        """``chains`` SMC chains of ``n`` particles with the engine's per-chain seeds: chain c is the same
        whatever the number of chains, so a configuration with fewer chains pools the first ones."""
        from engine.run.seeds import sampler_seed

        out = []
        for ch in range(chains):
            t0 = time.perf_counter()
            s = int(sampler_seed(seed, 0, 0, "smc", ch))
            r = self.c.sample_smc(draws=n, seed=s) if kernel == "IMH" else self._sample_mh(n, s)
            out.append({**r, "seconds": time.perf_counter() - t0})
        return out

    def _sample_mh(self, n: int, seed: int) -> dict:
        """``Compiled.sample_smc`` with PyMC's MH kernel (the engine's cached prior draws, same seeding)."""
        from pymc.smc.kernels import MH

        from engine.run.compiled import _cached_imh_class, run_smc_chain
        from engine.run.seeds import SMC_KERNEL_SEED

        if n not in self._mh:
            imh = _cached_imh_class()
            cls = type("CachedMH", (MH,), {"set_rng": imh.set_rng, "initialize_population": imh.initialize_population,
                                           "_draw_fn": None, "_draw_rngs": []})
            t0 = time.perf_counter()
            self._mh[n] = cls(draws=n, start=None, model=self.c.model, random_seed=SMC_KERNEL_SEED)
            self.compile_s[f"MH {n}"] = time.perf_counter() - t0
        return run_smc_chain(self._mh[n], seed)


SMC_CONFIGS = (("IMH", 250, 4), ("IMH", 500, 4), ("IMH", 1000, 2), ("IMH", 1000, 4), ("IMH", 2000, 4), ("MH", 1000, 4))
IS_CONFIGS = (("prior-IS", 4000), ("prior-IS", 16000), ("laplace-t-IS", 1000), ("laplace-t-IS", 4000), ("laplace-t-IS", 16000),
              ("mixture-IS", 4000), ("mixture-IS", 16000))


def bench_evidence(cases: list[str], seeds: int, smc_configs, is_configs, hyps: int | None = None) -> dict:  # noqa: ANN001
    """Every configuration on every hypothesis of ``cases`` (the first ``hyps`` when given) x ``seeds`` seeds."""
    from engine.inference.estimate import smc_log_evidence
    from engine.run.compiled import compiled_for
    from engine.spec.case import load_case

    _quiet()
    by_config: dict[str, list[dict]] = {}
    compile_s: dict[str, float] = {}
    for name in cases:
        case = load_case(_case_path(name))
        exact = exact_log_z(case)
        t0 = time.perf_counter()
        est = Estimators(compiled_for(case, next(iter(case.hypotheses))))
        compile_s[f"{name}: log densities (IS)"] = time.perf_counter() - t0
        for hid in list(case.hypotheses)[:hyps]:
            compiled_for(case, hid)
            for kernel, n in sorted({(k, n) for k, n, _ in smc_configs}):
                most = max(c for k, m, c in smc_configs if (k, m) == (kernel, n))
                if kernel == "IMH" and n not in est.c._smc:
                    t0 = time.perf_counter()
                    est.c.smc_kernel(n)
                    compile_s[f"{name}: SMC IMH kernel {n}"] = time.perf_counter() - t0
                for s in range(seeds):
                    runs = est.smc_chains(kernel, n, most, 1000 + s)
                    for chains in sorted(c for k, m, c in smc_configs if (k, m) == (kernel, n)):
                        pooled = smc_log_evidence(np.array([r["log_marginal_likelihood"] for r in runs[:chains]]))
                        by_config.setdefault(f"SMC {kernel} {n}x{chains}", []).append({
                            "case": name, "hypothesis": hid, "seed": s, "exact": exact[hid], "value": pooled.value,
                            "se": pooled.se, "stages": float(np.mean([r["stages"] for r in runs[:chains]])),
                            "seconds": float(sum(r["seconds"] for r in runs[:chains]))})
            for method, n in is_configs:
                key = f"{method} {n}"
                for s in range(seeds):
                    r = (est.prior_is(n, 1000 + s) if method == "prior-IS" else
                         est.laplace_is(n, 1000 + s, prior_share=0.5 if method == "mixture-IS" else 0.0))
                    by_config.setdefault(key, []).append({"case": name, "hypothesis": hid, "seed": s, "exact": exact[hid], **r})
        compile_s.update({f"{name}: {k}": v for k, v in est.compile_s.items() if k.startswith("MH")})
    return {"rows": by_config, "compile_s": compile_s}


def summarize(rows: list[dict]) -> dict:
    err = np.array([r["value"] - r["exact"] for r in rows])
    se = np.array([r["se"] for r in rows])
    a = np.abs(err)
    secs = float(np.mean([r["seconds"] for r in rows]))
    mse = float(np.mean(err**2))
    return {"n": int(a.size), "mean_abs": float(a.mean()), "sd_abs": float(a.std(ddof=1)) if a.size > 1 else 0.0,
            "max_abs": float(a.max()), "bias": float(err.mean()), "rmse": float(np.sqrt(mse)),
            "beyond_2se": float(np.mean(a > 2 * np.where(np.isfinite(se), se, 0.0))), "seconds": secs,
            "per_second": float(1.0 / (max(mse, 1e-12) * secs)),
            "max_k": float(max(r.get("k", float("nan")) for r in rows)) if "k" in rows[0] else None}


def print_evidence(result: dict, cases: list[str]) -> dict:
    tables = {}
    for scope in [*cases, "all"]:
        print(f"\n{scope if scope != 'all' else 'all cases together'}: |error| against the exact log evidence (nat)")
        print(f"  {'estimator':<22} {'n':>3} {'mean|err|':>9} {'sd':>7} {'max':>7} {'bias':>8} {'>2se':>5} {'s/est':>7} "
              f"{'1/(MSE*s)':>10} {'max k':>6}")
        table = {}
        for key, rows in result["rows"].items():
            mine = [r for r in rows if scope == "all" or r["case"] == scope]
            if not mine:
                continue
            t = table[key] = summarize(mine)
            k = f"{t['max_k']:6.2f}" if t["max_k"] is not None else f"{'-':>6}"
            print(f"  {key:<22} {t['n']:>3} {t['mean_abs']:9.4f} {t['sd_abs']:7.4f} {t['max_abs']:7.4f} {t['bias']:+8.4f} "
                  f"{t['beyond_2se']:5.0%} {t['seconds']:7.3f} {t['per_second']:10.3g} {k}")
        best_acc = min(table, key=lambda k: table[k]["rmse"])
        best_rate = max(table, key=lambda k: table[k]["per_second"])
        print(f"  most accurate: {best_acc} (RMSE {table[best_acc]['rmse']:.4f}); most accuracy per second: {best_rate}")
        tables[scope] = table
    print("\none-off compile per process (s): " + "; ".join(f"{k} {v:.1f}" for k, v in result["compile_s"].items()))
    return tables


# ------------------------------------------------------------------ command line
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_one":
        from engine.run.compiled import ensure_compiledir

        ensure_compiledir()
        name, hid, sampler, tune, draws, chains, seed = argv[1:]
        print(json.dumps(one_sampler(name, hid, sampler, int(tune), int(draws), int(chains), int(seed))))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("what", choices=("samplers", "evidence", "quick"))
    p.add_argument("--cases", nargs="*")
    p.add_argument("--samplers", nargs="*", default=list(SAMPLERS))
    p.add_argument("--tune", type=int, default=1000)
    p.add_argument("--draws", type=int, default=1000)
    p.add_argument("--chains", type=int, default=4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--warm-only", action="store_true", help="one interpreter on this environment's caches (no cold run)")
    p.add_argument("--seeds", type=int, default=5, help="evidence: seeds per configuration and hypothesis")
    p.add_argument("--only-is", nargs="*", help="evidence: only these importance samplers (all when none named), no SMC")
    p.add_argument("--hyps", type=int, default=None, help="evidence: only the first N hypotheses of each case")
    p.add_argument("--json", help="write the results here")
    p.add_argument("--load", nargs="*", help="print the tables of these earlier --json files together (no sampling)")
    a = p.parse_args(argv)

    from engine.run.compiled import ensure_compiledir

    ensure_compiledir()
    print("command:", shlex.join([Path(sys.executable).name, "benchmarks/samplers.py", *argv]))
    print("versions:", " ".join(f"{k} {v}" for k, v in versions().items()), flush=True)
    out: dict = {"versions": versions(), "argv": argv}
    t0 = time.perf_counter()
    if a.what == "quick":  # the smallest configuration of both parts (tests/test_samplers_benchmark.py)
        print("\n(a) samplers, oracle/external, PyMC NUTS, 2 chains x (100 + 100), this environment's caches")
        out["samplers"] = bench_samplers(["oracle"], ["pymc"], 100, 100, 2, a.seed, cold=False)
        print("\n(b) second estimator, oracle case, every hypothesis, 2 seeds, the importance samplers only (SMC's kernel compile "
              "alone takes ~30 s)")
        res = bench_evidence(["oracle"], 2, (), (("prior-IS", 2000), ("laplace-t-IS", 1000)))
        out["evidence"] = {"tables": print_evidence(res, ["oracle"]), **res}
    elif a.what == "samplers":
        cases = a.cases or ["oracle", "azal", "il20"]
        print(f"\n(a) samplers: {a.chains} chains x ({a.tune} tune + {a.draws} draws), target_accept {TARGET_ACCEPT}, "
              f"one core each; compile warm = second interpreter on the first one's caches")
        if a.load:  # rows of several earlier runs, |z| against the PyMC row of the same model
            latest = {(r["case"], r["hypothesis"], r["sampler"]): r  # a later file's row replaces an earlier one's
                      for f in a.load for r in json.loads(Path(f).read_text(encoding="utf-8"))["samplers"]}
            rows = list(latest.values())
            order = {s: i for i, s in enumerate(SAMPLERS)}
            rows.sort(key=lambda r: (list(CASES).index(r["case"]), r["hypothesis"], order.get(r["sampler"], 99)))
            for i, r in enumerate(rows):
                ref = next((q for q in rows if q["sampler"] == "pymc" and "error" not in q
                            and (q["case"], q["hypothesis"]) == (r["case"], r["hypothesis"])), None)
                if ref is not None and "error" not in r:
                    r["z_vs_pymc"] = z_vs(ref, r)
                print_sampler_row(r, cold=not a.warm_only, header=i == 0)
            out["samplers"] = rows
        else:
            out["samplers"] = bench_samplers(cases, a.samplers, a.tune, a.draws, a.chains, a.seed, cold=not a.warm_only)
    else:
        cases = a.cases or ["oracle", "claims", "azal", "il20"]
        print(f"\n(b) second estimator: {a.seeds} seeds per configuration and hypothesis")
        if a.load:  # tables of several earlier runs together (e.g. one case per run)
            res = {"rows": {}, "compile_s": {}}
            for f in a.load:
                old = json.loads(Path(f).read_text(encoding="utf-8"))["evidence"]
                for k, rows in old["rows"].items():
                    res["rows"].setdefault(k, []).extend(rows)
                for k, v in old["compile_s"].items():
                    res["compile_s"].setdefault(k, v)  # the first run of a case compiled from its cache state
            cases = list(dict.fromkeys(r["case"] for rows in res["rows"].values() for r in rows))
        else:
            if a.only_is is None:
                res = bench_evidence(cases, a.seeds, SMC_CONFIGS, IS_CONFIGS, a.hyps)
            else:
                res = bench_evidence(cases, a.seeds, (), [c for c in IS_CONFIGS if not a.only_is or c[0] in a.only_is], a.hyps)
        out["evidence"] = {"tables": print_evidence(res, cases), **res}
    out["seconds"] = time.perf_counter() - t0
    print(f"\nwall time {out['seconds']:.0f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
