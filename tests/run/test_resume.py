"""`incident run --resume RUN`: after `kill -9` of the run, or with truncated and corrupt
results, a resumed run recomputes only what is missing or broken and gives the numbers of an
uninterrupted run."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
import time

import psutil
import pytest
import runhelp
from runhelp import CASE, SMALL, incident, numbers


def _snapshot(run_dir):  # noqa: ANN001, ANN202
    return {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in runhelp.result_files(run_dir)}


def _complete(run_dir):  # noqa: ANN001, ANN202
    from engine.run.plan import Task, fingerprint
    from engine.run.settings import Settings
    from engine.run.store import task_done
    from engine.spec.case import load_case

    man = runhelp.manifest(run_dir)
    case, settings = load_case(CASE), Settings(**man["settings"])
    done = set()
    for p in runhelp.result_files(run_dir):
        kind, rest = p.stem.split("-", 1)
        hid, chain = rest.rsplit("-", 1)
        t = Task(kind, hid, int(chain))
        if task_done(p, fingerprint(case, settings, t), draws=settings.draws if kind == "nuts" else None):
            done.add(t.id)
    return done


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_kill_9_of_the_run_then_resume_gives_the_same_numbers_without_recomputing(tmp_path, tmp_path_factory):
    ref = runhelp.reference(tmp_path_factory.mktemp("reference"))
    run = tmp_path / "oracle" / "k"
    proc = runhelp.popen_incident("run", CASE, "--out", tmp_path, "--run-id", "k", "--workers", "2", *SMALL, log=tmp_path / "k.log")
    try:
        runhelp.wait_for(lambda: len(runhelp.result_files(run)) >= 6 or proc.poll() is not None, 600, "six task results")
        assert proc.poll() is None, (tmp_path / "k.log").read_text()
        children = psutil.Process(proc.pid).children(recursive=True)
        assert children, "the run should have started local worker processes"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    # its workers do not outlive it (they would keep writing into the run folder)
    _, alive = psutil.wait_procs(children, timeout=60)
    assert not alive, [p.pid for p in alive]
    assert not (run / "attribution.json").exists()

    before = _snapshot(run)
    complete = _complete(run)
    assert 0 < len(complete) < runhelp.N_TASKS
    out = incident("run", "--resume", run, "--workers", "1")
    assert out.returncode == 0, out.stderr
    assert numbers(run) == numbers(ref)

    man = runhelp.manifest(run)
    assert [e["status"] for e in man["executions"]] == ["running", "complete"]  # a killed run cannot record its end
    last = man["executions"][-1]
    assert last["already_complete"] == len(complete)
    assert set(last["computed"]) == {t for t in _all_tasks()} - complete
    assert len(last["computed"]) == runhelp.N_TASKS - len(complete)
    after = _snapshot(run)
    for name in (f"{t}.{'nc' if t.startswith('nuts') else 'json'}" for t in complete):
        assert after[name] == before[name], f"{name} was recomputed"
    assert man["finished"] and man["settings"]["seed"] == int(runhelp.SEED)


def _all_tasks():  # noqa: ANN202
    from engine.run.plan import plan
    from engine.run.settings import Settings
    from engine.spec.case import load_case

    s = Settings(seed=int(runhelp.SEED), draws=200, tune=200, chains=2, smc_draws=300, smc_chains=2)
    return [t.id for t in plan(load_case(CASE), s)]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_resume_recomputes_only_truncated_corrupt_stale_and_missing_results(tmp_path, tmp_path_factory):
    ref = runhelp.reference(tmp_path_factory.mktemp("reference"))
    run = tmp_path / "oracle" / "copy"
    shutil.copytree(ref, run)
    (run / "attribution.json").unlink()
    tasks = run / "tasks"
    nc = tasks / "nuts-engine-1.nc"
    nc.write_bytes(nc.read_bytes()[: nc.stat().st_size // 2])  # truncated
    (tasks / "smc-external-0.json").write_text('{"ok": true, "log_marginal_likelihood": ')  # corrupt
    stale = json.loads((tasks / "smc-internal-1.json").read_text())
    stale["fingerprint"] = "0" * 32  # written under other settings
    (tasks / "smc-internal-1.json").write_text(json.dumps(stale))
    (tasks / "bridge-internal-0.json").unlink()  # missing
    (tasks / ".tmp-smc-engine-0.json-abc").write_text("{")  # left by a killed writer
    before = _snapshot(run)

    out = incident("run", "--resume", run, "--workers", "0")
    assert out.returncode == 0, out.stderr
    last = runhelp.manifest(run)["executions"][-1]
    broken = {"nuts-engine-1", "smc-external-0", "smc-internal-1", "bridge-internal-0"}
    assert set(last["computed"]) == broken
    assert last["already_complete"] == runhelp.N_TASKS - len(broken)
    assert numbers(run) == numbers(ref)
    assert not list(tasks.glob(".tmp-*"))
    after = _snapshot(run)
    for name, stamp in before.items():
        if name.rsplit(".", 1)[0] not in broken:
            assert after[name] == stamp, f"{name} was recomputed"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_resuming_a_finished_run_recomputes_nothing(tmp_path, tmp_path_factory):
    ref = runhelp.reference(tmp_path_factory.mktemp("reference"))
    run = tmp_path / "oracle" / "again"
    shutil.copytree(ref, run)
    out = incident("run", "--resume", run, "--workers", "0", "--json")
    assert out.returncode == 0, out.stderr
    last = runhelp.manifest(run)["executions"][-1]
    assert last["computed"] == [] and last["already_complete"] == runhelp.N_TASKS
    assert numbers(run) == numbers(ref)


def test_resume_refuses_conflicting_options_and_busy_or_foreign_folders(tmp_path):
    run = tmp_path / "oracle" / "r"
    run.mkdir(parents=True)
    out = incident("run", CASE, "--resume", run, "--draws", "300", timeout=120)
    assert out.returncode == 2 and f"drop {CASE}, --draws" in out.stderr, out.stderr  # a usage error
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr

    out = incident("run", "--resume", run, timeout=120)
    assert out.returncode == 3 and "manifest.json not found" in out.stderr and "Traceback" not in out.stderr

    (run / "manifest.json").write_text(json.dumps({"settings": {}, "case_sha256": "x"}))
    shutil.copy(CASE, run / "case.yaml")
    out = incident("run", "--resume", run, timeout=120)
    assert out.returncode == 3 and "changed since" in out.stderr and "Traceback" not in out.stderr

    out = incident("run", timeout=120)
    assert out.returncode == 2 and "give a case file" in out.stderr  # a usage error


def test_a_run_folder_in_use_cannot_be_resumed_twice(tmp_path):
    from engine.run.lifecycle import manifest
    from engine.run.settings import Settings
    from engine.run.store import RunFolder, write_json
    from engine.spec.case import load_case

    case = load_case(CASE)
    folder = RunFolder(tmp_path / "oracle" / "busy")
    folder.root.mkdir(parents=True)
    shutil.copy(CASE, folder.case)
    write_json(folder.manifest, manifest(case, Settings(), folder, ["test"]))
    fd = os.open(folder.root / ".lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.pwrite(fd, b"4242", 0)
        t0 = time.monotonic()
        out = incident("run", "--resume", folder.root, "--workers", "0", timeout=120)
        assert out.returncode == 3 and "is in use by another `incident run` (pid 4242)" in out.stderr, out.stderr
        assert time.monotonic() - t0 < 60
    finally:
        os.close(fd)
