"""Verifying a run folder before a command reads it (``show``, ``diagnose``, ``report``).

The manifest records the sha256 of

* ``inputs``: the frozen inputs, ``case.yaml`` and every file under ``priors/`` (written when
  the run starts);
* ``outputs``: the results, every file outside ``tasks/``, ``priors/``, ``case.yaml`` and the
  manifest itself: ``attribution.json``, ``diagnostics.json``, ``case.json``,
  ``sensitivity.json``, ``posterior/<h>.nc`` and the same under ``variants/<v>/`` (written when
  a run, a resumed run or ``incident sensitivity`` finishes);
* ``case_sha256``: the sha256 of the case text and the priors it was read with together
  (``Case.digest``), which must agree with the frozen files too.

:func:`verify_run` compares them with the folder and refuses (``RunError``, exit 3) a folder
whose files were changed, removed or added since, or that holds a link, a FIFO or a device
where a result belongs, naming the files. ``trust=True`` (``--trust``) reads the folder anyway
after a warning per problem on stderr. A manifest written before a record existed (no
``inputs``, or no ``outputs``) is read with a warning saying what is not verified. The hashes
detect changes made without the manifest; they are not a signature (whoever can rewrite the
manifest too can forge a consistent folder).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from engine.errors import RunError
from engine.run.store import RunFolder, changed_inputs, compare_hashes, file_sha256, read_json
from engine.spec.readers import RUN_JSON_LIMIT, ReadProblem, read_text

PRIORS_FILES = ("base_rates.yaml", "mechanisms.yaml", "sources.yaml")  # what Case.digest hashes, in this order
_SKIP_TOP = {"manifest.json", ".lock", "case.yaml"}
_SKIP_DIRS = {"tasks", "priors"}


def output_files(folder: RunFolder) -> list[Path]:
    """The folder's result files (see the module docstring), links included (they are refused when hashed)."""
    root = folder.root
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        parts = Path(dirpath).relative_to(root).parts
        if (parts and parts[0] in _SKIP_DIRS) or (len(parts) == 3 and parts[0] == "variants" and parts[2] in _SKIP_DIRS):
            dirnames[:] = []
            continue
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]  # not walked into: listed, then refused
        for name in (*filenames, *links):
            if name.startswith(".tmp-") or (not parts and name in _SKIP_TOP):
                continue
            found.append(Path(dirpath) / name)
    return sorted(found)


def output_hashes(folder: RunFolder) -> dict[str, str]:
    """{path relative to the run folder: sha256} of its result files."""
    return {p.relative_to(folder.root).as_posix(): file_sha256(p) for p in output_files(folder)}


def record_outputs(folder: RunFolder, man: dict) -> dict:
    """``man`` with the sha256 of the folder's results as they are now under ``outputs``."""
    man["outputs"] = output_hashes(folder)
    return man


def _case_digest(folder: RunFolder) -> str | None:
    """``Case.digest`` recomputed from the frozen case.yaml and priors/ (None when they are not all there)."""
    try:
        case = read_text(folder.case, limit=RUN_JSON_LIMIT, links="refuse")
        texts = [read_text(folder.priors / n, limit=RUN_JSON_LIMIT, links="refuse") for n in PRIORS_FILES]
    except ReadProblem:
        return None
    lib = hashlib.sha256("\0".join(texts).encode()).hexdigest()
    return hashlib.sha256((case + "\0" + lib).encode()).hexdigest()


def problems(folder: RunFolder) -> tuple[dict, list[str], list[str]]:
    """(manifest, problems that refuse the folder, what could not be verified) of one run folder."""
    root = folder.root
    if not root.is_dir():
        what = "not found" if not os.path.lexists(root) else "not a folder"
        raise RunError(f"{root}: {what}; give a run folder, runs/<case>/<run>")
    if not os.path.lexists(folder.manifest):
        raise RunError(f"{folder.manifest} not found: {root} is not a run folder, or its manifest was removed; "
                       "give runs/<case>/<run> (--trust does not replace a manifest)")
    man = read_json(folder.manifest)
    if not isinstance(man, dict):
        raise RunError(f"{folder.manifest} is not a run manifest (a JSON object); the folder was changed after the run")
    bad: list[str] = []
    unverified: list[str] = []
    for key in ("inputs", "outputs"):
        rec = man.get(key)
        if rec is not None and (not isinstance(rec, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                                       for k, v in rec.items())):
            raise RunError(f"{folder.manifest}: '{key}' is not a mapping of file to sha256; the folder was changed after the run")
    inputs, outputs = man.get("inputs"), man.get("outputs")
    if inputs is None:
        unverified.append("its inputs (the manifest predates per-file hashes)")
    else:
        bad += changed_inputs(folder, inputs)
        digest = _case_digest(folder) if not bad else None
        if digest is not None and isinstance(man.get("case_sha256"), str) and man["case_sha256"] != digest:
            bad.append("manifest.json (its case_sha256 does not match case.yaml and priors/)")
    if outputs is None:
        unverified.append("its results (the manifest predates result hashes)")
        for p in output_files(folder):  # still: regular files only, within the size limits
            file_sha256(p)
    else:
        bad += compare_hashes(outputs, output_hashes(folder))
    return man, bad, unverified


def verify_run(run_dir: str | Path, *, trust: bool = False, warn: Callable[[str], None] | None = None) -> dict:
    """Check a run folder against its manifest before reading it; return the manifest.

    A changed folder is a ``RunError`` naming the files, unless ``trust``: then each problem is
    passed to ``warn`` (a line for stderr) and the folder is read anyway.
    """
    folder = RunFolder(Path(run_dir))
    man, bad, unverified = problems(folder)
    say = warn or (lambda line: None)
    for what in unverified:
        say(f"warning: {folder.root}: {what} not verified")
    if bad:
        listed = ", ".join(bad)
        if not trust:
            raise RunError(f"run folder {folder.root} was changed after the run: {listed} (sha256 differs from manifest.json); "
                           f"restore the files or recompute them with `incident run --resume {folder.root}` "
                           "(--trust reads the folder anyway)")
        say(f"WARNING: --trust: reading {folder.root} although it was changed after the run: {listed} "
            "(sha256 differs from manifest.json); its results may not be the run's")
    return man
