"""Reading a run folder for the report: the only IO of ``engine.report`` besides writing the PDF.

The report reads nothing but the run folder's records (``engine.results.records``):
``attribution.json`` (required), ``diagnostics.json``, ``case.json``, ``sensitivity.json`` and
``manifest.json`` (optional: missing parts print as "not available"), and ``posterior/<hid>.nc``
for the rank plots. A record that is there but malformed, or of another schema version, is a
``RunError`` naming the file and the field. It never reads the case YAML: ``case.json`` holds
what the report shows of the case (``incident report`` writes it into a run folder collected
before it existed).
"""

from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import RunError
from engine.results.records import Attribution, CaseRecord, Diagnostics, Record, Sensitivity
from engine.run.store import RunFolder, read_idata, read_json


@dataclass(frozen=True)
class RunData:
    """Everything the report shows about one run folder, as the records' JSON (the case may be missing)."""

    root: Path
    attribution: dict
    diagnostics: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    case: CaseRecord | None = None
    case_note: str = ""  # why the case is not shown, or that it differs from the run's
    sensitivity: dict = field(default_factory=dict)  # sensitivity.json, when `incident sensitivity` was run
    manifest_sha256: str = ""  # sha256 of manifest.json's bytes as read (empty when missing)

    @property
    def case_id(self) -> str:
        return str(self.attribution.get("case") or self.manifest.get("case") or self.root.parent.name)

    @property
    def run_id(self) -> str:
        return str(self.attribution.get("run") or self.manifest.get("run") or self.root.name)

    @property
    def meta(self) -> dict:
        """The case's id, title, date and description (empty when case.json is missing)."""
        return self.case.meta() if self.case is not None else {}

    def posterior_path(self, hid: str) -> Path:
        return RunFolder(self.root).posterior(hid)


def _record(path: Path, kind: type[Record]) -> Record | None:
    """The record at ``path``, None when the file is missing; ``RunError`` when it is malformed."""
    if not path.exists():
        return None
    return kind.from_json(read_json(path), source=str(path))


def _manifest(path: Path) -> dict:
    """manifest.json for the reproducibility table; empty when missing or unreadable (it is shown, not relied on)."""
    if not path.exists():
        return {}
    try:
        data = read_json(path)
    except RunError:
        return {}
    return data if isinstance(data, dict) else {}


def _case_note(case: CaseRecord | None, manifest: dict) -> str:
    if case is None:
        return ("case.json not found: this run folder was collected by an earlier version; `incident report RUN` "
                "writes it from the run's case.yaml")
    run_digest = manifest.get("case_sha256")
    if run_digest and case.digest and run_digest != case.digest:
        return "case.json describes a different case file or priors than the run's manifest (case sha256 mismatch)"
    return ""


def load_run(run_dir: str | Path) -> RunData:
    """Read a finished run folder's records; raise ``RunError`` if it has no valid ``attribution.json``
    or one of its records is malformed."""
    root = Path(run_dir)
    folder = RunFolder(root)
    if not root.is_dir():
        raise RunError(f"{root} is not a folder; pass a run folder, runs/<case>/<run>")
    attribution = Attribution.from_json(read_json(folder.attribution), source=str(folder.attribution))
    diagnostics = _record(folder.diagnostics, Diagnostics)
    sensitivity = _record(root / Sensitivity.FILE, Sensitivity)
    case = _record(root / CaseRecord.FILE, CaseRecord)
    manifest = _manifest(folder.manifest)
    digest = hashlib.sha256(folder.manifest.read_bytes()).hexdigest() if folder.manifest.exists() else ""
    return RunData(root, attribution.to_json(), diagnostics.to_json() if diagnostics else {}, manifest, case,
                   _case_note(case, manifest), sensitivity.to_json() if sensitivity else {}, digest)


def load_posterior(path: Path) -> Any | None:
    """The ArviZ InferenceData at ``path``, or None when it is missing or unreadable."""
    if not path.exists():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return read_idata(path)
        except (OSError, ValueError, KeyError):
            return None
