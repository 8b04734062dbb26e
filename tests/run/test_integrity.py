"""Run integrity: the manifest records the sha256 of every input file frozen into the run
folder, and `--resume` refuses a run whose inputs changed, naming the files; an unwritable,
read-only or full output folder is a one-line error that leaves nothing half-written."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import runhelp
from runhelp import CASE, ROOT, incident

TINY = ["--seed", "5", "--draws", "50", "--tune", "50", "--chains", "2", "--smc-chains", "2", "--smc-draws", "100"]
PRIORS = ["base_rates.yaml", "mechanisms.yaml", "sources.yaml"]


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _one_line_error(out: subprocess.CompletedProcess) -> str:
    assert out.stderr.startswith("error: ") and out.stderr.count("\n") == 1, out.stderr
    assert "Traceback" not in out.stderr and "internal error" not in out.stderr, out.stderr
    return out.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> Path:
    """A finished run of the oracle case with tiny sampling settings, in this process's compile cache."""
    out_dir = tmp_path_factory.mktemp("runs")
    out = incident("run", CASE, "--out", out_dir, "--run-id", "tiny", "--workers", "0", *TINY, timeout=600)
    assert out.returncode == 0, out.stderr
    return out_dir / "oracle" / "tiny"


# ------------------------------------------------------------------ manifest inputs
def test_the_manifest_records_the_sha256_of_every_input_file(tiny_run):
    inputs = runhelp.manifest(tiny_run)["inputs"]
    assert sorted(inputs) == ["case.yaml", *(f"priors/{name}" for name in PRIORS)]
    for name, digest in inputs.items():  # the hash of each file as frozen in the run folder ...
        assert digest == _sha(tiny_run / name), name
    # ... which are the very files the run was given
    assert inputs["case.yaml"] == _sha(CASE)
    for name in PRIORS:
        assert inputs[f"priors/{name}"] == _sha(ROOT / "priors" / name)


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "# edited after the run started\n")


EDITS = {  # what is done to a copy of the run folder -> the files the refusal must name
    "case": (lambda r: _edit(r / "case.yaml"), ["case.yaml"]),
    "one-prior": (lambda r: _edit(r / "priors" / "sources.yaml"), ["priors/sources.yaml"]),
    "case-and-prior": (lambda r: (_edit(r / "case.yaml"), _edit(r / "priors" / "mechanisms.yaml")),
                       ["case.yaml", "priors/mechanisms.yaml"]),
    "prior-broken-yaml": (lambda r: (r / "priors" / "base_rates.yaml").write_text("base_rates: [unclosed\n"),
                          ["priors/base_rates.yaml"]),
    "prior-deleted": (lambda r: (r / "priors" / "base_rates.yaml").unlink(), ["priors/base_rates.yaml (missing)"]),
    "prior-added": (lambda r: (r / "priors" / "extra.yaml").write_text("notes: []\n"), ["priors/extra.yaml (added)"]),
}


@pytest.mark.parametrize("edit", list(EDITS))
def test_resume_refuses_changed_inputs_naming_the_files(edit, tiny_run, tmp_path):
    run = tmp_path / "oracle" / "copy"
    shutil.copytree(tiny_run, run)
    change, named = EDITS[edit]
    change(run)
    before = (run / "manifest.json").read_bytes()
    out = incident("run", "--resume", run, "--workers", "0", timeout=120)
    assert out.returncode == 3, (out.stdout, out.stderr)
    line = _one_line_error(out)
    # exactly the changed files, no others
    assert f"inputs of {run} changed since the run started: {', '.join(named)} (sha256 differs" in line, line
    assert (run / "manifest.json").read_bytes() == before  # nothing was run or recorded


def test_unchanged_inputs_pass_the_check_and_the_check_reads_the_manifest(tiny_run, tmp_path):
    from engine.errors import RunError
    from engine.run.lifecycle import open_run
    from engine.run.store import RunFolder

    run = tmp_path / "oracle" / "copy"
    shutil.copytree(tiny_run, run)
    case, settings, _, man = open_run(RunFolder(run))
    assert case.id == "oracle" and settings.draws == 50
    # a manifest whose recorded hash is not the file's is refused too (the check compares, it does not trust)
    man["inputs"]["priors/mechanisms.yaml"] = "0" * 64
    (run / "manifest.json").write_text(json.dumps(man))
    with pytest.raises(RunError, match=r"changed since the run started: priors/mechanisms\.yaml \(sha256"):
        open_run(RunFolder(run))


# ------------------------------------------------------------------ unwritable output folders
def _assert_no_run(out_dir: Path) -> None:
    leftovers = [p for p in Path(out_dir).rglob("*")] if Path(out_dir).is_dir() else []
    assert not leftovers, leftovers


def test_out_under_proc_is_a_one_line_error(tmp_path):
    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this system")
    out = incident("run", CASE, "--out", "/proc/incident-out", "--workers", "0", *TINY, timeout=120)
    assert out.returncode == 3, (out.stdout, out.stderr)
    line = _one_line_error(out)
    assert "cannot create folder /proc/incident-out:" in line and "choose a writable --out folder" in line, line
    assert not Path("/proc/incident-out").exists()


def test_out_under_a_regular_file_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    out = incident("run", CASE, "--out", blocker / "runs", "--workers", "0", *TINY, timeout=120)
    assert out.returncode == 2, (out.stdout, out.stderr)  # a bad --out is a usage error
    line = _one_line_error(out)
    assert f"cannot create folder {blocker}: a file of that name is in the way; choose another --out folder" in line, line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-file"] and blocker.read_text() == "not a folder\n"


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes into a chmod 0o500 folder anyway; "
                    "the /proc, regular-file and read-only tmpfs tests cover unwritable folders as root")
def test_out_in_a_folder_without_write_permission_is_a_one_line_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        out = incident("run", CASE, "--out", locked, "--workers", "0", *TINY, timeout=120)
        assert out.returncode == 3, (out.stdout, out.stderr)
        line = _one_line_error(out)
        assert f"cannot create folder {locked / 'oracle'}: Permission denied" in line and "--out" in line, line
        _assert_no_run(locked)
    finally:
        locked.chmod(0o700)


@contextlib.contextmanager
def _tmpfs(path: Path, options: str):
    """A real tmpfs mounted at ``path`` (needs root); the test is skipped when it cannot be mounted."""
    if shutil.which("mount") is None:
        pytest.skip("no mount command to make a small or read-only file system")
    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True, timeout=30)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); a full or read-only disk "
                    "needs one (root with mount rights)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)


def test_out_on_a_read_only_file_system_is_a_one_line_error(tmp_path):
    with _tmpfs(tmp_path / "ro", "ro,size=64k") as ro:
        out = incident("run", CASE, "--out", ro, "--workers", "0", *TINY, timeout=120)
        assert out.returncode == 3, (out.stdout, out.stderr)
        line = _one_line_error(out)
        assert f"cannot create folder {ro / 'oracle'}: Read-only file system; choose a writable --out folder" in line, line
        _assert_no_run(ro)


def _fill(fs: Path, leave: int) -> None:
    """Fill the file system of ``fs`` but ``leave`` bytes (tmpfs counts whole pages)."""
    spare = fs / "spare"
    spare.write_bytes(b"\0" * leave)
    with open(fs / "filler", "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    spare.unlink()


def test_a_full_disk_while_freezing_the_inputs_leaves_no_run_folder(tmp_path):
    with _tmpfs(tmp_path / "full", "size=64k") as fs:
        _fill(fs, 4096)  # room for case.yaml (one page), not for priors/mechanisms.yaml (two)
        out = incident("run", CASE, "--out", fs, "--run-id", "r", "--workers", "0", *TINY, timeout=120)
        assert out.returncode == 3, (out.stdout, out.stderr)
        line = _one_line_error(out)
        assert f"cannot write {fs / 'oracle' / 'r'}" in line and "No space left on device" in line, line
        assert "free space there or choose another --out folder" in line, line
        assert sorted(p.name for p in fs.rglob("*")) == ["filler"]  # no run folder, no case.yaml, no .tmp-* file


@pytest.mark.timeout(600)
def test_a_full_disk_during_the_tasks_is_a_clean_error_and_leaves_no_partial_file(tmp_path):
    """48 KiB hold the frozen inputs and the manifest but no NUTS result (netCDF): each attempt's
    temporary file is removed, the run stops with the path and the fix, and can be resumed."""
    with _tmpfs(tmp_path / "full", "size=48k") as fs:
        out = incident("run", CASE, "--out", fs, "--run-id", "r", "--workers", "0", "--retries", "1", *TINY, timeout=600)
        assert out.returncode == 3, (out.stdout, out.stderr)
        line = _one_line_error(out)
        run = fs / "oracle" / "r"
        assert "task nuts-external-0 failed 2 times" in line and f"cannot write {run / 'tasks' / 'nuts-external-0.nc'}" in line, line
        assert "No space left on device" in line and f"incident run --resume {run}" in line, line
        assert not [p for p in fs.rglob(".tmp-*")], list(fs.rglob("*"))
        assert not (run / "tasks").exists() or not any((run / "tasks").iterdir())
        ex = runhelp.manifest(run)["executions"][-1]
        assert ex["status"] == "failed" and "No space left on device" in ex["error"]
        assert set(runhelp.manifest(run)["inputs"]) == {"case.yaml", *(f"priors/{n}" for n in PRIORS)}


def test_atomic_write_removes_its_temporary_file_and_names_the_path(tmp_path):
    from engine.errors import RunError
    from engine.run.store import atomic_write, write_text

    target = tmp_path / "result.json"
    write_text(target, "old\n")

    def fails(tmp: Path) -> None:
        tmp.write_text("half a resu")
        os.rmdir(tmp)  # a real OSError from the file system (ENOTDIR: tmp is a file)

    with pytest.raises(RunError, match=re.escape(f"cannot write {target}: Not a directory; choose a writable --out folder")):
        atomic_write(target, fails)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"] and target.read_text() == "old\n"


# ------------------------------------------------------------------ verified on read
def _files(run: Path) -> dict[str, str]:
    return {p.relative_to(run).as_posix(): _sha(p) for p in sorted(run.rglob("*")) if p.is_file()}


def test_the_manifest_records_the_results_and_show_verifies_them(tiny_run, tmp_path):
    outputs = runhelp.manifest(tiny_run)["outputs"]
    assert {"attribution.json", "diagnostics.json", "case.json"} <= set(outputs)
    assert {f"posterior/{h}.nc" for h in ("external", "internal", "engine")} <= set(outputs)
    assert not [k for k in outputs if k.startswith(("tasks/", "priors/")) or k in ("case.yaml", "manifest.json", ".lock")]
    for name, digest in outputs.items():
        assert digest == _sha(tiny_run / name), name
    run = tmp_path / "oracle" / "copy"
    shutil.copytree(tiny_run, run)
    assert incident("show", run, timeout=120).returncode == 0
    with open(run / "posterior" / "external.nc", "ab") as fh:  # one byte more: a changed result
        fh.write(b"\0")
    before = _files(run)
    for command in ("show", "diagnose", "report"):
        out = incident(command, run, *(["-o", tmp_path / "r.pdf"] if command == "report" else []), timeout=120)
        assert out.returncode == 3, (command, out.stderr)
        line = _one_line_error(out)
        assert f"run folder {run} was changed after the run: posterior/external.nc (sha256 differs" in line, line
    assert _files(run) == before and not (tmp_path / "r.pdf").exists()


def test_diagnose_without_its_diagnostics_file_writes_nothing(tiny_run, tmp_path):
    run = tmp_path / "oracle" / "copy"
    shutil.copytree(tiny_run, run)
    (run / "diagnostics.json").unlink()
    before = _files(run)
    out = incident("diagnose", run, timeout=120)
    assert out.returncode == 3 and "diagnostics.json (missing)" in _one_line_error(out)
    trusted = incident("diagnose", run, "--trust", timeout=120)
    assert trusted.returncode == 3 and f"{run / 'diagnostics.json'} not found; recompute it with `incident run --resume" in trusted.stderr
    assert trusted.stderr.startswith("WARNING: --trust: reading")
    assert _files(run) == before  # attribution.json and posterior/*.nc untouched, nothing recomputed


def test_netcdf_reads_kept_in_memory_follow_rewrites_and_give_each_caller_its_own_copy(tiny_run, tmp_path):
    """open_netcdf keeps what it read (read_ahead fills it while tasks run): a file rewritten in place is
    read again, and a caller's changes to its copy do not reach the next caller."""
    import numpy as np

    from engine.run.store import file_identity, open_netcdf, read_ahead, read_idata, write_idata

    chain = tmp_path / "nuts.nc"
    shutil.copyfile(tiny_run / "tasks" / "nuts-external-0.nc", chain)
    read_ahead(chain)
    first = open_netcdf(chain)
    on_disk = read_idata(chain)
    np.testing.assert_array_equal(first.posterior["assertion_rate__neutral"], on_disk.posterior["assertion_rate__neutral"])
    first.posterior.attrs["incident_task"] = "changed by a caller"
    first.posterior["extra"] = first.posterior["assertion_rate__neutral"] * 0
    again = open_netcdf(chain)
    assert again.posterior.attrs["incident_task"] == on_disk.posterior.attrs["incident_task"] and "extra" not in again.posterior
    before = file_identity(chain)
    changed = on_disk.map(lambda ds: ds + 1.0, groups="posterior")  # a chain written again, atomically, with other draws
    write_idata(chain, changed)
    assert file_identity(chain) != before
    np.testing.assert_array_equal(open_netcdf(chain).posterior["assertion_rate__neutral"],
                                  on_disk.posterior["assertion_rate__neutral"] + 1.0)
    read_ahead(tmp_path / "missing.nc")  # nothing to read ahead: left to the reader that needs it


def test_the_netcdf_read_cache_keeps_to_its_byte_bound(tiny_run, tmp_path, monkeypatch):
    from engine.run import store

    monkeypatch.setattr(store, "_READS", type(store._READS)())
    paths = []
    for c in range(2):
        paths.append(tmp_path / f"nuts-{c}.nc")
        shutil.copyfile(tiny_run / "tasks" / f"nuts-external-{c}.nc", paths[-1])
    store.open_netcdf(paths[0])
    one = sum(n for _, n in store._READS.values())
    monkeypatch.setattr(store, "READ_CACHE_BYTES", one + one // 2)  # room for one file, not two
    store.open_netcdf(paths[1])
    assert [k[0] for k in store._READS] == [str(paths[1].resolve())]


def test_reading_ahead_a_corrupt_chain_leaves_the_error_to_its_reader(tmp_path):
    from engine.run.store import open_netcdf, read_ahead

    bad = tmp_path / "nuts.nc"
    bad.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 64)  # an HDF5 signature and nothing behind it
    read_ahead(bad)  # no exception: the prefetch leaves it
    with pytest.raises(Exception):  # noqa: B017, PT011 - whatever the netCDF stack raises, the reader sees it
        open_netcdf(bad)
