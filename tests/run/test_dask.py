"""Execution on dask: compile-once sampling equals fresh PyMC, the same seed gives the same
numbers on any number of workers, real `dask scheduler`/`dask worker` processes complete a
run, survive `kill -9` of a worker and retry a failing task; bad execution options are
one-line errors."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pytest
import runhelp
from runhelp import CASE, SEED, SMALL, incident, numbers

from engine.errors import RunError


def _quietly(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


# ------------------------------------------------------------------ compile once
def test_compiled_once_samplers_are_bit_identical_to_fresh_pymc_and_variants_do_not_leak(oracle_case):
    import pymc as pm

    from engine.model.build import build_model, pointwise_log_likelihood
    from engine.run.compiled import compiled_for
    from engine.run.settings import Variant

    draws, tune, seed, smc_draws, smc_seed = 150, 150, 1234, 300, 99
    fresh = build_model(oracle_case, "internal")
    with fresh:
        want = _quietly(pm.sample, draws=draws, tune=tune, chains=1, cores=1, random_seed=seed, target_accept=0.9,
                        progressbar=False, compute_convergence_checks=False, idata_kwargs={"include_transformed": True})
        trace = _quietly(pm.sample_smc, draws=smc_draws, chains=1, cores=1, random_seed=smc_seed, progressbar=False,
                         compute_convergence_checks=False)
    stages = [float(v) for v in np.ravel(trace.sample_stats["log_marginal_likelihood"].values) if v is not None]
    want_lml = [v for v in stages if np.isfinite(v)][-1]

    def run(hid, variant=None):  # noqa: ANN001, ANN202
        cm = compiled_for(oracle_case, hid, variant)
        idata = _quietly(cm.sample_nuts, draws=draws, tune=tune, seed=seed, target_accept=0.9)
        smc = _quietly(cm.sample_smc, draws=smc_draws, seed=smc_seed)
        return cm, idata, smc

    # another hypothesis and a variant run first on the same compiled model: nothing may leak
    run("external")
    low = Variant.of("low", {"hp__reliability__lab": 0.3, "hp__gap__log_median": [3.5, 0.4]})
    cm, v_idata, v_smc = run("internal", low)
    compiles = cm.compiles
    cm, idata, smc = run("internal")
    assert cm.compiles == compiles, "a second use of the same structure must not compile again"

    sampled = {v for v in idata.posterior.data_vars if not idata.posterior[v].attrs.get("incident_exact_conditional")}
    assert sampled == set(want.posterior.data_vars)  # besides the collapsed units' exact draws
    assert set(idata.sample_stats.data_vars) == set(want.sample_stats.data_vars)
    for name in want.posterior.data_vars:
        np.testing.assert_array_equal(idata.posterior[name].values, want.posterior[name].values, err_msg=name)
    for name in ("diverging", "energy", "step_size", "tree_depth"):
        np.testing.assert_array_equal(idata.sample_stats[name].values, want.sample_stats[name].values, err_msg=name)
    assert smc["log_marginal_likelihood"] == want_lml
    assert smc["stages"] == np.ravel(trace.sample_stats["beta"].values).size

    # the variant really changed the model (and so its evidence)
    assert not np.array_equal(v_idata.posterior["gap__log_median"].values, idata.posterior["gap__log_median"].values)
    assert v_smc["log_marginal_likelihood"] != smc["log_marginal_likelihood"]

    # the cached pointwise log-likelihood is engine.model.build's
    ours = cm.pointwise_log_likelihood(idata.posterior)
    theirs = pointwise_log_likelihood(fresh, idata.posterior)
    assert list(ours) == list(theirs)
    for unit in ours:
        np.testing.assert_allclose(ours[unit], theirs[unit], rtol=1e-12, atol=1e-12)


def test_variant_with_unknown_or_misshaped_data_is_rejected_before_running(oracle_case, tmp_path):
    from engine.run.lifecycle import run_case
    from engine.run.settings import ExecutionOptions, Settings, Variant

    here = ExecutionOptions(workers=0)
    with pytest.raises(RunError, match=r"'hp__nope' is not a pm.Data.*known: .*hp__reliability__lab"):
        run_case(oracle_case, settings=Settings(), options=here, out=tmp_path, variants=[Variant.of("x", {"hp__nope": 1.0})])
    with pytest.raises(RunError, match=r"hp__gap__log_median needs shape \(2,\)"):
        run_case(oracle_case, settings=Settings(), options=here, out=tmp_path, variants=[Variant.of("x", {"hp__gap__log_median": 1.0})])
    with pytest.raises(RunError, match="not a safe folder name"):
        Variant.of("../up", {})
    assert not (tmp_path / "oracle").exists()


# ------------------------------------------------------------------ retries (client logic, fast)
def _fake_tasks(n):  # noqa: ANN001, ANN202
    from engine.run.plan import Task

    return [Task("smc", "external", c) for c in range(n)]


def test_a_task_that_raises_is_retried_and_reported(monkeypatch, oracle_case, tmp_path):
    import engine.run.task as task_module
    from engine.run.executor import Execution, Executor, execute
    from engine.run.settings import ExecutionOptions, Settings
    from engine.run.store import RunFolder

    calls = {}

    def flaky(case, task, run_dir, settings):  # noqa: ANN001, ANN202
        calls[task.id] = calls.get(task.id, 0) + 1
        if task.chain == 1 and calls[task.id] <= 2:
            raise ValueError(f"boom {calls[task.id]}")
        return {"key": task.id, "skipped": False}

    monkeypatch.setattr(task_module, "run_task", flaky)  # what the loop runs for a case's tasks
    ex = Execution()
    summaries = execute(oracle_case, _fake_tasks(3), RunFolder(tmp_path), Settings(), Executor(ExecutionOptions(workers=0, retries=2)),
                        execution=ex)
    assert [s["key"] for s in summaries] == ["smc-external-0", "smc-external-1", "smc-external-2"]
    assert calls == {"smc-external-0": 1, "smc-external-1": 3, "smc-external-2": 1}
    assert ex.warnings == ["task smc-external-1 failed (attempt 1 of 3: ValueError: boom 1); retried",
                           "task smc-external-1 failed (attempt 2 of 3: ValueError: boom 2); retried"]
    assert ex.computed == ["smc-external-0", "smc-external-1", "smc-external-2"] and ex.backend == "in-process"

    calls.clear()
    with pytest.raises(RunError, match=r"task smc-external-1 failed 2 times \(last: ValueError: boom 2\).*--resume"):
        execute(oracle_case, _fake_tasks(3), RunFolder(tmp_path), Settings(), Executor(ExecutionOptions(workers=0, retries=1)))


def test_the_task_loop_runs_the_callables_it_is_handed_in_order_with_follow_ups(oracle_case):
    from engine.run.cluster import ClusterSpec
    from engine.run.executor import Execution
    from engine.run.loop import TaskLoop

    seen, progress = [], []

    def work(n):  # noqa: ANN001, ANN202
        seen.append(n)
        return {"n": n, "process": "here:1"}

    ex = Execution()
    loop = TaskLoop(ClusterSpec.make(workers=0), [1, 2], work=work, name=lambda n: f"t{n}", execution=ex,
                    expand=lambda n: [10 * n] if n < 10 else [], on_done=lambda s, done, total: progress.append((done, total)))
    assert [s["n"] for s in loop.run()] == [1, 2, 10, 20]
    assert seen == [1, 2, 10, 20] and ex.computed == ["t1", "t2", "t10", "t20"] and ex.tasks_by_process == {"here:1": 4}
    assert progress == [(1, 3), (2, 4), (3, 4), (4, 4)]


def test_execution_options_are_checked_once_when_built(tmp_path):
    from engine.errors import OptionError
    from engine.run.settings import ExecutionOptions

    with pytest.raises(OptionError, match="--workers -1 must be 0"):
        ExecutionOptions(workers=-1)
    with pytest.raises(OptionError, match="--retries -1 must be 0 or more"):
        ExecutionOptions(retries=-1)
    with pytest.raises(OptionError, match="--no-workers-timeout 0 must be positive"):
        ExecutionOptions(no_workers_timeout=0)
    with pytest.raises(OptionError, match="is not of the form tcp://HOST:PORT"):
        ExecutionOptions(scheduler="nowhere")
    assert ExecutionOptions(scheduler="127.0.0.1:8786").scheduler == "tcp://127.0.0.1:8786"
    assert ExecutionOptions().kind == "local" and ExecutionOptions(workers=0).kind == "inprocess"
    config = tmp_path / "slurm.yaml"
    config.write_text("queue: debug\ncores: 2\n")
    slurm = ExecutionOptions(cluster="slurm", cluster_config=config, workers=2)
    assert slurm.kind == "slurm" and slurm.slurm == {"queue": "debug", "cores": 2}


def test_settings_refuse_values_out_of_range_in_the_api():
    import engine
    from engine.errors import OptionError

    with pytest.raises(OptionError, match="draws = 0 is out of range; give 1 or more"):
        engine.Settings(draws=0)
    with pytest.raises(OptionError, match="smc_chains = 0 is out of range"):
        engine.Settings(smc_chains=0)
    with pytest.raises(OptionError, match="seed = -1 is out of range"):
        engine.Settings(seed=-1)
    with pytest.raises(OptionError, match="chains = 2.5 should be a whole number"):
        engine.Settings(chains=2.5)
    with pytest.raises(OptionError, match="target_accept = 1.0 is out of range"):
        engine.Settings(target_accept=1.0)
    with pytest.raises(OptionError, match="variant method 'x' is not known"):
        engine.Settings(variant_method="x")
    assert engine.Settings(seed=0, draws=1, tune=0).draws == 1


def test_seeds_keep_their_derivations():
    """The seed of every task and sampler is a fixed function of the run seed and names (results
    stay bit-identical across versions); the values below are those of the first release."""
    import zlib

    from engine.run import seeds

    ss = seeds.task_seed(20241225, "nuts-external-0")
    assert ss.spawn_key == (zlib.crc32(b"nuts-external-0"),) and ss.entropy == 20241225
    assert seeds.int_seed(ss) == int(np.random.SeedSequence(20241225, spawn_key=(zlib.crc32(b"nuts-external-0"),))
                                     .generate_state(1, dtype=np.uint32)[0])
    assert seeds.resample_seed(5, "h").spawn_key == seeds.task_seed(5, "reweight-h-0").spawn_key
    assert seeds.incident_seed(3, 7).spawn_key == (7,) and seeds.predictive_seed(3, 1, 2).spawn_key == (1, 2)
    assert seeds.sampler_seed(1, 4, 2, "smc", 1) == seeds.int_seed(np.random.SeedSequence(1, spawn_key=(4, 3, 2, 1)))
    assert seeds.mixture_seed(1, 4, 1) == seeds.sampler_seed(1, 4, 0, "nuts", 1)
    # the derived-from-the-run-seed ones differ between runs and between items
    assert seeds.coincidence_seed(1, "t").generate_state(1)[0] != seeds.coincidence_seed(2, "t").generate_state(1)[0]
    assert seeds.coincidence_seed(1, "t").generate_state(1)[0] != seeds.coincidence_seed(1, "u").generate_state(1)[0]
    assert seeds.ece_null_seed(1).generate_state(1)[0] != seeds.ece_null_seed(2).generate_state(1)[0]


# ------------------------------------------------------------------ bad execution options
@pytest.mark.parametrize("args, message", [
    (["--scheduler", "not an address"], "is not of the form tcp://HOST:PORT"),
    (["--cluster", "pbs"], "--cluster 'pbs' is not known"),
    (["--cluster-config", "tests/cases/oracle.yaml"], "--cluster-config applies to --cluster slurm only"),
    (["--cluster", "slurm", "--scheduler", "tcp://127.0.0.1:1"], "exclude each other"),
    (["--cluster", "slurm", "--workers", "0"], "needs --workers 1 or more"),
    (["--cluster", "slurm", "--cluster-config", "no/such/file.yaml"], "cluster config no/such/file.yaml not found"),
    (["--resume", "no/such/run"], "is not a run folder"),
    (["--variant-method", "bogus"], "--variant-method 'bogus' is not known; use one of reweight, sample"),
], ids=["bad-address", "unknown-cluster", "config-without-slurm", "slurm-and-scheduler", "slurm-no-workers", "missing-config",
        "resume-missing", "unknown-variant-method"])
def test_bad_execution_options_are_one_line_errors(args, message, tmp_path):
    out = incident("run", *([] if "--resume" in args else [CASE]), "--out", tmp_path, *args, timeout=120)
    # a usage error exits 2; a run folder that is not one exits 3
    assert out.returncode == (3 if "--resume" in args else 2), (out.stdout, out.stderr)
    assert message in out.stderr and "Traceback" not in out.stderr
    assert out.stderr.count("\n") == 1, out.stderr
    assert not (tmp_path / "oracle").exists()


def test_cluster_config_with_unknown_keys_or_bad_types_is_a_clean_error(tmp_path):
    from engine.run.checks import load_cluster_config

    bad = tmp_path / "slurm.yaml"
    bad.write_text("queue: debug\nqueu: typo\n")
    with pytest.raises(RunError, match="unknown keys queu; known: queue"):
        load_cluster_config(bad)
    bad.write_text("cores: two\n")
    with pytest.raises(RunError, match="cores = 'two' should be a int"):
        load_cluster_config(bad)
    bad.write_text("queue: [unclosed\n")
    with pytest.raises(RunError, match="line 2: invalid YAML: expected .*; fix the syntax"):
        load_cluster_config(bad)
    bad.write_text("slurm: {queue: debug, cores: 2, memory: 4GB, compiledir_per_node: false}\n")
    assert load_cluster_config(bad) == {"queue": "debug", "cores": 2, "memory": "4GB", "compiledir_per_node": False}


@pytest.mark.timeout(180)
def test_unreachable_scheduler_is_a_one_line_error_without_a_run_folder(tmp_path):
    port = runhelp.free_port()
    t0 = time.monotonic()
    out = incident("run", CASE, "--out", tmp_path, "--scheduler", f"tcp://127.0.0.1:{port}", timeout=120)
    assert out.returncode == 3 and "Traceback" not in out.stderr
    assert f"cannot reach the dask scheduler at tcp://127.0.0.1:{port}" in out.stderr
    assert out.stderr.count("\n") == 1 and time.monotonic() - t0 < 60
    assert not (tmp_path / "oracle").exists()


# ------------------------------------------------------------------ workers
@pytest.mark.slow
@pytest.mark.timeout(900)
def test_same_seed_gives_identical_numbers_on_one_and_two_workers(tmp_path, tmp_path_factory):
    ref = runhelp.reference(tmp_path_factory.mktemp("reference"))
    runs = {}
    for n in ("1", "2"):
        out = incident("run", CASE, "--out", tmp_path, "--run-id", f"w{n}", "--workers", n, *SMALL)
        assert out.returncode == 0, out.stderr
        runs[n] = tmp_path / "oracle" / f"w{n}"
    assert numbers(runs["1"]) == numbers(runs["2"]) == numbers(ref)
    for n in ("1", "2"):  # the work really was spread over that many worker processes
        ex = runhelp.manifest(runs[n])["executions"][-1]
        assert len(ex["tasks_by_process"]) == int(n) and sum(ex["tasks_by_process"].values()) == runhelp.N_TASKS


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_run_that_does_not_wait_for_its_workers_gives_the_same_numbers_and_leaves_none(oracle_case, tmp_path, tmp_path_factory):
    """``wait_for_workers=False`` (what ``incident run --report`` uses to write the PDF while the local
    cluster shuts down): the same numbers; after ``finish_closing`` no worker process of the run is left."""
    import psutil

    from engine.run.cluster import finish_closing
    from engine.run.lifecycle import run_case
    from engine.run.settings import ExecutionOptions, Settings

    ref = runhelp.reference(tmp_path_factory.mktemp("reference"))
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    settings = Settings(seed=int(SEED), draws=200, tune=200, chains=2, smc_chains=2, smc_draws=300)
    root = _quietly(run_case, oracle_case, settings=settings, options=ExecutionOptions(workers=2), out=tmp_path, run_id="nowait",
                    command=["pytest"], wait_for_workers=False)
    assert numbers(root) == numbers(ref)
    finish_closing()
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before]
    # multiprocessing's resource tracker lives as long as this interpreter; nothing else may be left
    assert [p.cmdline() for p in left if "resource_tracker" not in " ".join(p.cmdline())] == []


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_variants_run_in_their_own_folders_without_disturbing_the_base_run(tmp_path, tmp_path_factory):
    ref = runhelp.reference(tmp_path_factory.mktemp("reference"))
    spec = tmp_path / "variants.yaml"
    spec.write_text("no-lab: {hp__reliability__lab: 0.0, hp__reliability__press: 0.0, hp__assertion_rate__neutral: [30.0, 20.0]}\n")
    out = incident("run", CASE, "--out", tmp_path, "--run-id", "v", "--workers", "0", "--variants", spec, *SMALL)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "oracle" / "v"
    assert numbers(run) == numbers(ref)  # the variant, run in the same process on the same compiled models, left no trace
    variant = run / "variants" / "no-lab"
    # reweighting the base draws to a source of reliability 0 is unreliable (the posterior becomes the prior):
    # every hypothesis fell back to sampling the variant
    reweights = [f"reweight-{h}-0.json" for h in numbers(run)["hypotheses"]]
    assert sorted(p.name for p in runhelp.result_files(variant)) == sorted([p.name for p in runhelp.result_files(run)] + reweights)
    assert {h["method"] for h in numbers(variant)["hypotheses"].values()} == {"sampled"}
    assert (variant / "attribution.json").exists() and (variant / "posterior" / "external.nc").exists()
    # with its only source unreliable, every unit's likelihood is the hypothesis-free background: posterior = prior
    for hid, h in numbers(variant)["hypotheses"].items():
        assert abs(h["posterior"] - h["prior"]) <= max(4 * h["posterior_mcse"], 0.02), (hid, h)
    assert sum(abs(h["posterior"] - h["prior"]) for h in numbers(run)["hypotheses"].values()) > 0.2
    assert runhelp.manifest(run)["variants"] == {"no-lab": {"hp__reliability__lab": 0.0, "hp__reliability__press": 0.0,
                                                            "hp__assertion_rate__neutral": [30.0, 20.0]}}


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    yield from runhelp.DaskProcesses(tmp_path_factory.mktemp("dask")).running("w1", "w2")


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_real_scheduler_and_workers_complete_a_run(dask_cluster, tmp_path, tmp_path_factory):
    ref = runhelp.reference(tmp_path_factory.mktemp("reference"))
    out = incident("run", CASE, "--out", tmp_path, "--run-id", "sched", "--scheduler", dask_cluster.address, *SMALL)
    assert out.returncode == 0, out.stderr
    assert "dask dashboard: http://127.0.0.1:" in out.stderr
    run = tmp_path / "oracle" / "sched"
    assert numbers(run) == numbers(ref)
    ex = runhelp.manifest(run)["executions"][-1]
    assert ex["backend"] == f"dask scheduler {dask_cluster.address}" and ex["status"] == "complete"
    assert len(ex["computed"]) == runhelp.N_TASKS and not ex["warnings"]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_failing_task_is_retried_and_reported_in_the_run_warnings(dask_cluster, tmp_path, tmp_path_factory):
    from distributed import Client

    ref = runhelp.reference(tmp_path_factory.mktemp("reference"))
    with Client(dask_cluster.address, timeout="10s") as c:
        assert set(c.run(runhelp.install_fault, str(tmp_path), "smc-internal-1").values()) == {"installed"}
    try:
        out = incident("run", CASE, "--out", tmp_path, "--run-id", "fault", "--scheduler", dask_cluster.address, *SMALL)
    finally:
        with Client(dask_cluster.address, timeout="10s") as c:
            c.run(runhelp.remove_fault)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "oracle" / "fault"
    assert (tmp_path / "smc-internal-1.failed").exists()
    assert numbers(run) == numbers(ref)  # the retry reproduced the task exactly
    warned = json.loads((run / "attribution.json").read_text())["warnings"]
    assert "execution: task smc-internal-1 failed (attempt 1 of 3: RuntimeError: injected fault); retried" in warned
    assert "smc-internal-1 failed" in "".join(runhelp.manifest(run)["executions"][-1]["warnings"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_9_of_a_worker_mid_run_still_gives_the_same_attribution(dask_cluster, tmp_path, tmp_path_factory):
    ref = runhelp.reference(tmp_path_factory.mktemp("reference"))
    run = tmp_path / "oracle" / "killed"
    proc = runhelp.popen_incident("run", CASE, "--out", tmp_path, "--run-id", "killed", "--scheduler", dask_cluster.address,
                                  *SMALL, log=tmp_path / "run.log")
    try:
        runhelp.wait_for(lambda: len(runhelp.result_files(run)) >= 3 or proc.poll() is not None, 600, "three task results")
        assert proc.poll() is None, (tmp_path / "run.log").read_text()
        dask_cluster.kill("w1")
        assert proc.wait(600) == 0, (tmp_path / "run.log").read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
    assert numbers(run) == numbers(ref)
    events = runhelp.manifest(run)["executions"][-1]["events"]
    assert any("left; its tasks are rescheduled" in e for e in events), events
    assert dask_cluster.n_workers() == 1


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_with_no_workers_left_the_run_fails_in_bounded_time(dask_cluster, tmp_path):
    dask_cluster.kill("w1")  # (already gone when the kill -9 test ran first)
    dask_cluster.kill("w2")
    runhelp.wait_for(lambda: dask_cluster.n_workers() == 0, 120, "the workers to be gone")
    t0 = time.monotonic()
    out = incident("run", CASE, "--out", tmp_path, "--run-id", "orphan", "--scheduler", dask_cluster.address,
                   "--no-workers-timeout", "5", *SMALL, timeout=240)
    assert out.returncode == 3, out.stderr
    assert time.monotonic() - t0 < 120
    assert f"no dask workers at {dask_cluster.address} for" in out.stderr and "--resume" in out.stderr
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in out.stderr and len(errors) == 1 and out.stderr.strip().endswith(errors[0]), out.stderr
    ex = runhelp.manifest(tmp_path / "oracle" / "orphan")["executions"][-1]
    assert ex["status"] == "failed" and "no dask workers" in ex["error"]
