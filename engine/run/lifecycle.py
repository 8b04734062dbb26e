"""A run's life: a new run folder with its frozen inputs and manifest, held under a lock while
its tasks execute and their results are combined; continuing (``--resume``) an existing one;
reading its attribution.

``run_case(case, settings=Settings(...), options=ExecutionOptions(...))`` is the public entry
point: the settings say what to compute (and the seed), the options where to compute it.
"""

from __future__ import annotations

import datetime as dt
import errno
import fcntl
import os
import stat
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from engine.errors import OptionError, RunError
from engine.run.cluster import finish_closing
from engine.run.compiled import Compiled, ensure_compiledir
from engine.run.executor import Execution, Executor, execute
from engine.run.plan import ENGINE_VERSION, code_digest, plan, variant_folder
from engine.run.settings import ExecutionOptions, Settings, Variant
from engine.run.store import RunFolder, read_json, safe_name, write_json
from engine.spec.case import Case

Progress = Callable[[dict, int, int], None]  # on_done(task summary, tasks done, tasks in all)
Started = Callable[[str | None], None]  # on_start(dask dashboard address or None)


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
    try:  # never through a link, never onto a FIFO or device (a changed folder): the lock file is truncated below
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise RunError(f"{path}: is a symbolic link; a run folder holds only regular files written by the engine: "
                           "remove it") from None
        raise fs_error(exc, f"write {path}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunError(f"{path}: is not a regular file; a run folder holds only regular files written by the engine: remove it")
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



def run_case(
    case: Case,
    *,
    settings: Settings = Settings(),
    options: ExecutionOptions | None = None,
    out: str | Path = "runs",
    run_id: str | None = None,
    variants: tuple[Variant, ...] | list[Variant] = (),
    command: list[str] | None = None,
    on_done: Progress | None = None,
    on_start: Started | None = None,
    wait_for_workers: bool = True,
) -> Path:
    """Run a case end to end; return the run folder (which holds ``attribution.json``).

    ``settings``: what to compute and the seed; ``options``: where (default: a local cluster
    of 2 worker processes); ``variants``: sensitivity variants run beside the base run;
    ``command``: the command line recorded in the manifest (default ``sys.argv``); ``on_done``
    and ``on_start`` follow progress. Bad options and an unwritable or full ``out`` fail before
    anything is written; a run whose set-up fails (inputs and manifest not all written) leaves
    no run folder behind. ``wait_for_workers=False`` returns while a local cluster's workers may
    still be shutting down (``engine.run.cluster.finish_closing`` waits for them, and so does the
    interpreter's exit): the caller can go on meanwhile, e.g. write the report.
    """
    _check_types(settings, options)
    executor = Executor(options)
    ensure_compiledir()
    variants = tuple(variants)
    _check_variants(case, variants)
    executor.preflight()  # an unreachable scheduler fails before a run folder exists
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
            _execute_and_collect(case, settings, variants, folder, man, executor, on_done=on_done, on_start=on_start,
                                 wait_for_workers=wait_for_workers)
    except BaseException:
        remove_empty(created)  # only the folders this run created and left empty
        raise
    return folder.root


def resume_run(
    run_dir: str | Path,
    *,
    options: ExecutionOptions | None = None,
    command: list[str] | None = None,
    on_done: Progress | None = None,
    on_start: Started | None = None,
    wait_for_workers: bool = True,
) -> Path:
    """Continue a run folder: recompute missing, truncated or corrupt task results, then combine
    (``wait_for_workers`` as in :func:`run_case`)."""
    _check_types(None, options)
    executor = Executor(options)
    ensure_compiledir()
    folder = RunFolder(Path(run_dir))
    case, settings, variants, man = open_run(folder)
    executor.preflight()
    with lock_run_folder(folder):
        man.setdefault("executions", [])
        man["resumed_by"] = man.get("resumed_by", []) + [command or sys.argv]
        man["finished"] = None
        _execute_and_collect(case, settings, variants, folder, man, executor, on_done=on_done, on_start=on_start,
                             wait_for_workers=wait_for_workers)
    return folder.root


def _check_types(settings: Settings | None, options: ExecutionOptions | None) -> None:
    if settings is not None and not isinstance(settings, Settings):
        raise OptionError(f"settings should be engine.Settings(...), got {type(settings).__name__}")
    if options is not None and not isinstance(options, ExecutionOptions):
        raise OptionError(f"options should be engine.ExecutionOptions(...), got {type(options).__name__}")


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
    except (TypeError, OptionError) as exc:
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
                         executor: Executor, *, on_done: Progress | None, on_start: Started | None,
                         wait_for_workers: bool = True) -> None:
    from engine.run.collect import collect

    execution = Execution()
    man["executions"].append(execution.to_dict())
    write_json(folder.manifest, man)  # a run killed from here on shows as "running" in its manifest
    try:
        execute(case, plan(case, settings, variants), folder, settings, executor, execution=execution, on_done=on_done,
                on_start=on_start)
    except BaseException as exc:
        finish_closing()
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
    from engine.run.verify import record_outputs

    write_json(folder.manifest, record_outputs(folder, man))  # what show, diagnose and report verify
    if wait_for_workers:
        finish_closing()  # the local cluster shut down while the results were collected


def read_attribution(run_dir: str | Path) -> dict:
    """The ``attribution.json`` of a finished run."""
    return read_json(RunFolder(Path(run_dir)).attribution)

