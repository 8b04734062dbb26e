"""Run-folder layout and atomic writes.

``runs/<case-id>/<run-id>/``::

    case.yaml            the case file as read (frozen)
    manifest.json        versions, seed, command line, hashes, settings, timestamps
    tasks/               one result per task: <estimator>-<hypothesis>-<chain>.{nc,json}
    posterior/<hid>.nc   NUTS draws of each hypothesis's model (ArviZ InferenceData)
    attribution.json     the result
    diagnostics.json     convergence and estimator agreement

Every file is written to a temporary name in the same folder and renamed into place, so a
reader never sees half a file and a crash leaves at most a stray ``.tmp-*`` file. A write that
fails (no space left, permission denied, read-only file system) removes its temporary file and
raises a one-line ``RunError`` naming the path.

The manifest's ``inputs`` hold the sha256 of every input file frozen into the run folder
(``case.yaml`` and ``priors/<file>``); ``changed_inputs`` compares them with the folder's
current files, which is how ``--resume`` refuses a run whose inputs were edited; ``task_done``
says whether a task's stored result is complete, valid and of the expected fingerprint.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import OptionError, RunError
from engine.spec.readers import NETCDF_LIMIT, RUN_JSON_LIMIT, ReadProblem, check_file, kind_of, read_text

_UMASK = os.umask(0)
os.umask(_UMASK)
SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_name(name: str, what: str) -> str:
    """Refuse names that could leave the run folder (path separators, '..', empty)."""
    if not SAFE.match(name) or ".." in name:
        raise RunError(f"{what} {name!r} is not a safe folder name; use letters, digits, '.', '-', '_'")
    return name


def fs_error(exc: OSError, action: str) -> RunError:
    """A one-line ``RunError`` for a failed file-system ``action`` ("write PATH"), with the fix."""
    text = " ".join(str(exc).split())
    reason = exc.strerror or text or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or "No space left" in text or "quota exceeded" in text:
        fix = "free space there or choose another --out folder"
    else:
        fix = "choose a writable --out folder"
    return RunError(f"cannot {action}: {reason}; {fix}")


def refuse_special(path: Path) -> None:
    """Refuse to write over anything but a regular file: a folder, a device (``-o /dev/null``),
    a FIFO or a socket at ``path`` (or at the target of a link there) is an ``OptionError`` (exit 2),
    raised before anything is written. A missing path, or a dangling link, is fine."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return
    if not stat.S_ISREG(st.st_mode):
        raise OptionError(f"cannot write {path}: it is {kind_of(st.st_mode)}, not a regular file; "
                          "give the path of a new or regular file")


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` then rename ``tmp`` to ``path``; on any failure remove ``tmp``.

    A target that exists and is not a regular file (a device, a FIFO, a folder) is refused
    first (``refuse_special``, exit 2): the rename would replace it. File-system errors
    (``OSError``: ENOSPC, EACCES, EROFS, ...) become a ``RunError`` naming the path; nothing
    is left behind, and an existing ``path`` is untouched.
    """
    path = Path(path)
    refuse_special(path)
    tmp_path: Path | None = None
    try:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
            tmp_path = Path(tmp)
            os.close(fd)
            os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are meant to be shared
        except OSError as exc:
            raise fs_error(exc, f"write in {path.parent}") from None
        try:
            write(tmp_path)
            os.replace(tmp_path, path)
        except OSError as exc:
            raise fs_error(exc, f"write {path}") from None
    except BaseException:
        if tmp_path is not None:
            try:
                tmp_path.unlink(missing_ok=True)
            except OSError:
                pass
        raise
    return path


def make_folder(path: Path) -> list[Path]:
    """Create ``path`` and its missing parents; return the folders created (outermost first).

    A folder that cannot be created (an unwritable, read-only or full file system, or a
    parent that is a file) raises a one-line ``RunError`` naming it, after removing the
    folders this call created.
    """
    path = Path(path)
    missing = []
    p = path
    while not p.is_dir() and p != p.parent:
        missing.append(p)
        p = p.parent
    created: list[Path] = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            if d.is_dir():  # made meanwhile by another run
                continue
            remove_empty(created)
            raise OptionError(f"cannot create folder {d}: a file of that name is in the way; choose another --out folder") from None
        except OSError as exc:
            remove_empty(created)
            raise fs_error(exc, f"create folder {d}") from None
        created.append(d)
    return created


def clear_folder(root: Path) -> None:
    """Remove everything in ``root`` (what a run set-up that failed had written)."""
    for child in Path(root).iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            try:
                child.unlink()
            except OSError:
                pass


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (as ``make_folder`` returned them) innermost first, each only if empty."""
    for d in reversed(folders):
        try:
            d.rmdir()
        except OSError:  # not empty (e.g. another run's folder is in it) or already gone
            pass


def write_json(path: Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n"
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


NETCDF_ENGINE = "netcdf4"  # see write_idata


def write_idata(path: Path, idata: Any) -> Path:
    """Write an ArviZ InferenceData as netCDF4 (what ``az.from_netcdf`` reads), zlib-compressed as ArviZ does.

    The file is made in memory and written with plain writes: HDF5 writing straight into a
    full file system can crash the process (h5py 3.16 / h5netcdf 1.8 segfault after ENOSPC,
    in the write or later when the half-closed file is collected), while a plain write fails
    with an ``OSError`` that ``atomic_write`` turns into a ``RunError``.

    The netCDF-C library (``netCDF4``, its in-memory mode) writes and reads: measured on a NUTS
    chain file of the AZAL seed case (80 variables in 4 groups), 0.13 s to write and 0.10 s to read
    against 0.67 s and 0.71 s through h5netcdf, which resolves HDF5 dimension scales in Python
    (``benchmarks/profile_run.py`` shows the share of a run's time).
    """
    import dask

    encoding = {f"/{group}": {name: {"zlib": True} for name, var in getattr(idata, group).variables.items()
                              if var.dtype.kind in "biuf"} for group in idata.groups()}
    # In a dask worker xarray would guard the write with a distributed lock named after the target,
    # which an in-memory target cannot name; the data are in memory, so a local lock is right.
    with dask.config.set(scheduler="synchronous"):
        data = idata.to_datatree().to_netcdf(None, engine=NETCDF_ENGINE, encoding=encoding)
    return atomic_write(path, lambda p: p.write_bytes(data))


def read_json(path: Path, *, limit: int = RUN_JSON_LIMIT) -> Any:
    """A run folder's JSON file, read with ``engine.spec.readers``' rules for run folders (a regular
    file, not a link, at most ``limit`` bytes); every problem is a one-line ``RunError`` (exit 3)."""
    try:
        text = read_text(path, limit=limit, links="refuse")
    except ReadProblem as exc:
        if exc.message.startswith("file not found"):
            raise RunError(f"{path} not found; is this a run folder (runs/<case>/<run>)?") from None
        raise RunError(str(exc)) from None
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError, an integer of thousands of digits, deep nesting
        raise RunError(f"{path} is corrupt; rerun with --resume to recompute it") from None


READ_CACHE = 64  # netCDF files kept per process by open_netcdf, at most
READ_CACHE_BYTES = 256 * 2**20  # and at most this many bytes of their arrays
_READS: OrderedDict[tuple, tuple[Any, int]] = OrderedDict()


def file_identity(path: Path) -> tuple[int, int, int]:
    """(inode, mtime in ns, size) of ``path``, zeros if it cannot be read: a file rewritten (atomically,
    as every run file is) has another identity."""
    try:
        st = path.stat()
    except OSError:
        return (0, 0, 0)
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def open_netcdf(path: Path) -> Any:
    """A run folder's netCDF file as InferenceData (``read_idata``) after checking that it is a regular
    file (not a link, a FIFO or a device) of at most ``NETCDF_LIMIT`` bytes (``RunError`` otherwise).

    The files read last (``READ_CACHE`` of them and ``READ_CACHE_BYTES`` of arrays at most) are kept
    in this process, keyed by path and ``file_identity`` (a rewritten file is read again); every call
    returns its own shallow copy (new Dataset objects over the same arrays), so a caller that assigns
    variables or attributes changes only its copy. ``read_ahead`` fills it while a run's tasks are
    still running."""
    try:
        check_file(path, limit=NETCDF_LIMIT, links="refuse")
    except ReadProblem as exc:
        raise RunError(str(exc)) from None
    key = (str(Path(path).resolve()), *file_identity(path))
    if key not in _READS:
        idata = read_idata(path)
        _READS[key] = (idata, sum(getattr(idata, g).nbytes for g in idata.groups()))
        while len(_READS) > 1 and (len(_READS) > READ_CACHE or sum(n for _, n in _READS.values()) > READ_CACHE_BYTES):
            _READS.popitem(last=False)
    _READS.move_to_end(key)
    return _shallow_copy(_READS[key][0])


def read_ahead(path: Path) -> None:
    """Read ``path`` into ``open_netcdf``'s cache now (e.g. a NUTS chain as its task finishes, while the
    client waits for the others), so that collecting the run does not wait for it. A file that cannot be
    read, whatever the error, is left for the reader that needs it, which reports it (as ``task_done`` does)."""
    try:
        open_netcdf(path)
    except Exception:  # noqa: BLE001, S110 - a prefetch; the reader that needs the file reports its error
        pass


def _shallow_copy(idata: Any) -> Any:  # noqa: ANN401 - an arviz InferenceData
    import arviz as az

    return az.InferenceData(**{g: getattr(idata, g).copy(deep=False) for g in idata.groups()})


def read_idata(path: Path) -> Any:
    """An InferenceData read whole into memory through xarray (its file lock and cache), the file closed.

    Not ``az.from_netcdf``: it opens the file once with ``netCDF4.Dataset`` outside xarray's lock
    and leaves the groups open lazily; after some twenty writes and reads in one process that
    crashed HDF5 (a segfault with netCDF4 1.7.5 / HDF5 2.2, "NetCDF: HDF error" with 1.7.2 /
    HDF5 1.14), while reading through ``xarray.open_datatree`` ran 300 cycles clean.
    """
    import arviz as az
    import xarray as xr

    with xr.open_datatree(str(path), engine=NETCDF_ENGINE) as tree:
        tree = tree.load()
    return az.InferenceData.from_datatree(tree)


def _jsonable(x: Any) -> Any:
    import numpy as np

    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    return str(x)


class RunFolder:
    """Paths inside one run folder."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @property
    def manifest(self) -> Path:
        return self.root / "manifest.json"

    @property
    def attribution(self) -> Path:
        return self.root / "attribution.json"

    @property
    def diagnostics(self) -> Path:
        return self.root / "diagnostics.json"

    @property
    def case(self) -> Path:
        return self.root / "case.yaml"

    @property
    def priors(self) -> Path:
        return self.root / "priors"

    def task(self, key: str, ext: str) -> Path:
        return self.root / "tasks" / f"{key}.{ext}"

    def posterior(self, hid: str) -> Path:
        return self.root / "posterior" / f"{hid}.nc"


def freeze_inputs(folder: RunFolder, case_text: str, priors_texts: dict[str, str]) -> None:
    """Copy the case file and the priors it used into the run folder (the run's own inputs)."""
    write_text(folder.case, case_text)
    for name, text in priors_texts.items():
        write_text(folder.priors / name, text)


def file_sha256(path: Path, *, limit: int = NETCDF_LIMIT) -> str:
    """sha256 of a run folder's file, read as ``read_json`` reads (``RunError`` naming it otherwise)."""
    try:
        check_file(path, limit=limit, links="refuse")
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
    except ReadProblem as exc:
        raise RunError(str(exc)) from None
    except OSError as exc:
        raise RunError(f"{path}: cannot read file ({exc.strerror}); check the run folder") from None
    h = hashlib.sha256()
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise RunError(f"{path}: is not a regular file; restore the file or rerun")
        read = 0
        for block in iter(lambda: fh.read(1 << 20), b""):
            read += len(block)
            if read > limit:
                raise RunError(f"{path}: file grew above the {limit}-byte limit while it was read")
            h.update(block)
    return h.hexdigest()


def input_hashes(folder: RunFolder) -> dict[str, str]:
    """{path relative to the run folder: sha256} of its frozen inputs: ``case.yaml`` and every file under ``priors/``."""
    files = [folder.case] if os.path.lexists(folder.case) else []
    if folder.priors.is_dir() and not folder.priors.is_symlink():
        for dirpath, dirnames, filenames in os.walk(folder.priors):  # links and special files are listed, then refused
            names = [*filenames, *(d for d in dirnames if os.path.islink(os.path.join(dirpath, d)))]
            files += sorted(Path(dirpath) / n for n in names if not n.startswith(".tmp-"))
    return {p.relative_to(folder.root).as_posix(): file_sha256(p) for p in files}


def changed_inputs(folder: RunFolder, recorded: dict[str, str]) -> list[str]:
    """The input files whose sha256 differs from ``recorded`` (the manifest's ``inputs``), and
    those missing from or added to the run folder since, e.g. ``["priors/sources.yaml", "case.yaml (missing)"]``."""
    return compare_hashes(recorded, input_hashes(folder))


def compare_hashes(recorded: dict[str, str], current: dict[str, str]) -> list[str]:
    """The names whose sha256 differs between ``recorded`` and ``current``, and those missing from
    or added to ``current`` ("case.yaml (missing)", "x.json (added)")."""
    out = []
    for name in sorted(set(recorded) | set(current)):
        if name not in current:
            out.append(f"{name} (missing)")
        elif name not in recorded:
            out.append(f"{name} (added)")
        elif current[name] != recorded[name]:
            out.append(name)
    return out


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
        import numpy as np

        idata = open_netcdf(path)
        post = idata.posterior
        if fp is not None and post.attrs.get("incident_fingerprint") != fp:
            return False
        if draws is not None and post.sizes.get("draw", 0) != draws:
            return False
        return "sample_stats" in idata.groups() and post.sizes.get("draw", 0) > 0 and all(
            np.all(np.isfinite(post[v].values)) for v in post.data_vars)
    except Exception:  # noqa: BLE001 - any unreadable file is an incomplete result
        return False
