"""Run-folder layout and atomic writes.

``runs/<case-id>/<run-id>/``::

    case.yaml            the case file as read (frozen)
    manifest.json        versions, seed, command line, hashes, settings, timestamps
    tasks/               one result per task: <estimator>-<hypothesis>-<chain>.{nc,json}
    posterior/<hid>.nc   NUTS draws of each hypothesis's model (ArviZ InferenceData)
    attribution.json     the result
    diagnostics.json     convergence and estimator agreement

Every file is written to a temporary name in the same folder and renamed into place, so a
reader never sees half a file and a crash leaves at most a stray ``.tmp-*`` file.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine.errors import RunError

_UMASK = os.umask(0)
os.umask(_UMASK)
SAFE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def safe_name(name: str, what: str) -> str:
    """Refuse names that could leave the run folder (path separators, '..', empty)."""
    if not SAFE.match(name) or ".." in name:
        raise RunError(f"{what} {name!r} is not a safe folder name; use letters, digits, '.', '-', '_'")
    return name


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Call ``write(tmp)`` then rename ``tmp`` to ``path``; clean up on failure."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; results are meant to be shared
    except OSError as exc:
        raise RunError(f"cannot write in {path.parent}: {exc.strerror}; choose a writable --out folder") from None
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        os.replace(tmp_path, path)
    except OSError as exc:
        tmp_path.unlink(missing_ok=True)
        raise RunError(f"cannot write {path}: {exc.strerror}; free space or choose another --out folder") from None
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return path


def write_json(path: Path, obj: Any) -> Path:
    text = json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n"
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_text(path: Path, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_idata(path: Path, idata: Any) -> Path:
    return atomic_write(path, lambda p: idata.to_netcdf(str(p), engine="h5netcdf"))


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path} not found; is this a run folder (runs/<case>/<run>)?") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise RunError(f"{path} is corrupt; rerun with --resume to recompute it") from None


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
