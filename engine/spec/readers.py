"""Bounded reading: the one place that opens a file the engine reads.

Every file the engine reads (case files, priors files, the ``--variants`` file, the cluster
config, and every file of a run folder: JSON records, frozen inputs, netCDF results) goes
through :func:`read_bytes` (or :func:`check_file` just before a library such as ArviZ opens a
netCDF file by its path). The rules:

* **Regular files only.** The path is ``stat``-ed before it is opened, and a folder, a named
  pipe (FIFO), a socket or a device is refused without opening it; the file is opened with
  ``O_NONBLOCK`` (a FIFO swapped in between cannot block the open) and ``fstat``-ed again on
  the open descriptor, which is what is read.
* **Size checked before reading.** A file above the limit is refused from its ``fstat`` size,
  and at most ``limit + 1`` bytes are ever read (a file that grows while it is read is refused
  too), so memory stays bounded whatever is at the path.
* **Symbolic links.** Inputs named by the user (case, priors, variants, cluster config) may be
  symbolic links: the link is followed, and the rules apply to its target (a link to
  ``/dev/zero`` is a device and is refused). Files inside a run folder (``links="refuse"``)
  may not be links at all: the engine never writes one, so a link there means the folder was
  changed after the run, and it is refused (``O_NOFOLLOW``) rather than followed out of the
  folder.

Each problem is a :class:`ReadProblem` (the path as given and one line saying what is wrong
and what to do); callers turn it into the error of their exit code (``CaseError``/``OptionError``:
2 for inputs, ``RunError``: 3 for run folders).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

INPUT_LIMIT = 2_000_000  # case, priors, variants and cluster-config files (YAML)
RUN_JSON_LIMIT = 64 * 2**20  # a run folder's JSON records and frozen inputs
NETCDF_LIMIT = 4 * 2**30  # a run folder's netCDF results (opened lazily by xarray)

_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link"))


class ReadProblem(Exception):
    """A file that cannot be read: ``path`` as given and ``message`` (one line, with the fix)."""

    def __init__(self, path: str | Path, message: str) -> None:
        self.path = str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}")


def kind_of(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def _stat_problem(path: Path, exc: BaseException) -> ReadProblem:
    if isinstance(exc, FileNotFoundError):
        return ReadProblem(path, "file not found; check the path")
    if isinstance(exc, ValueError):  # e.g. an embedded NUL byte
        return ReadProblem(path, "is not a usable file name; check the path")
    reason = getattr(exc, "strerror", None) or type(exc).__name__
    return ReadProblem(path, f"cannot read file ({reason}); check the path and its permissions")


def _check_mode(path: Path, st: os.stat_result, limit: int, links: str) -> None:
    if stat.S_ISLNK(st.st_mode) and links == "refuse":
        raise ReadProblem(path, "is a symbolic link; a run folder holds only regular files written by the engine "
                          "(the folder was changed after the run): restore the file or rerun")
    if not stat.S_ISREG(st.st_mode):
        fix = ("a run folder holds only regular files written by the engine: restore the file or rerun" if links == "refuse"
               else "give the path of a regular file")
        raise ReadProblem(path, f"is {kind_of(st.st_mode)}, not a regular file; {fix}")
    if st.st_size > limit:
        raise ReadProblem(path, f"file is {st.st_size} bytes, above the {limit}-byte limit; "
                          "split it or remove embedded data")


def check_file(path: str | Path, *, limit: int, links: str = "follow") -> os.stat_result:
    """``stat`` ``path`` and refuse it unless it is a regular file of at most ``limit`` bytes
    (``links="refuse"``: and not a symbolic link). For files a library opens by path."""
    path = Path(path)
    try:
        st = os.lstat(path) if links == "refuse" else os.stat(path)
    except (OSError, ValueError) as exc:
        raise _stat_problem(path, exc) from None
    _check_mode(path, st, limit, links)
    return st


def read_bytes(path: str | Path, *, limit: int, links: str = "follow") -> bytes:
    """The contents of the regular file ``path`` (at most ``limit`` bytes), or a ``ReadProblem``."""
    path = Path(path)
    check_file(path, limit=limit, links=links)
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | (os.O_NOFOLLOW if links == "refuse" else 0)
    try:
        fd = os.open(path, flags)
    except (OSError, ValueError) as exc:
        raise _stat_problem(path, exc) from None
    try:
        st = os.fstat(fd)
        _check_mode(path, st, limit, links)  # what is open now, not what was at the path a moment ago
        chunks, got = [], 0
        while got <= limit:
            block = os.read(fd, min(1 << 20, limit + 1 - got))
            if not block:
                break
            chunks.append(block)
            got += len(block)
    except OSError as exc:
        raise _stat_problem(path, exc) from None
    finally:
        os.close(fd)
    if got > limit:
        raise ReadProblem(path, f"file grew above the {limit}-byte limit while it was read; read it again when it is complete")
    return b"".join(chunks)


def read_text(path: str | Path, *, limit: int, links: str = "follow") -> str:
    """``read_bytes`` decoded as UTF-8 (a ``ReadProblem`` naming the first bad byte otherwise)."""
    raw = read_bytes(path, limit=limit, links=links)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ReadProblem(path, f"not UTF-8 (byte {exc.start}); save the file as UTF-8") from None
