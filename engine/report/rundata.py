"""Reading a run folder for the report: the only IO of ``engine.report`` besides writing the PDF.

The report reads nothing but the run folder: ``attribution.json`` (required),
``diagnostics.json`` and ``manifest.json`` (optional: missing parts print as "not
available"), ``case.yaml`` with the run's frozen ``priors/`` (if any) and
``posterior/<hid>.nc``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.errors import EngineError, RunError
from engine.report.fmt import is_number
from engine.run.store import RunFolder, read_json
from engine.spec.case import Case, load_case
from engine.spec.yamlio import read_yaml


@dataclass(frozen=True)
class RunData:
    """Everything the report shows about one run folder (the case may be missing)."""

    root: Path
    attribution: dict
    diagnostics: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    case: Case | None = None
    case_raw: dict = field(default_factory=dict)
    case_note: str = ""  # why the case could not be resolved, or that it differs from the run's
    sensitivity: dict = field(default_factory=dict)  # sensitivity.json, when `incident sensitivity` was run

    @property
    def case_id(self) -> str:
        return str(self.attribution.get("case") or self.manifest.get("case") or self.root.parent.name)

    @property
    def run_id(self) -> str:
        return str(self.attribution.get("run") or self.manifest.get("run") or self.root.name)

    @property
    def meta(self) -> dict:
        """The case file's ``case:`` block (id, title, date, description), from the resolved case or the raw YAML."""
        if self.case is not None:
            c = self.case
            return {"id": c.id, "title": c.title, "date": str(c.date), "description": c.description}
        raw = self.case_raw.get("case")
        return {k: str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}

    def posterior_path(self, hid: str) -> Path:
        return RunFolder(self.root).posterior(hid)


def _optional_json(path: Path) -> tuple[dict, str]:
    if not path.exists():
        return {}, f"{path.name} not found"
    try:
        data = read_json(path)
    except RunError as exc:
        return {}, str(exc)
    return (data, "") if isinstance(data, dict) else ({}, f"{path.name} is not a JSON object")


def _read_case(folder: RunFolder, manifest: dict) -> tuple[Case | None, dict, str]:
    """The resolved case (the frozen case.yaml against the run's own priors/ when it has one, else
    against the priors its ``priors:`` key names); failing that, the raw YAML for titles."""
    path = folder.case
    try:
        case = load_case(path, priors_dir=folder.priors if folder.priors.is_dir() else None)
    except EngineError as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        try:
            raw = read_yaml(path)
        except EngineError:
            raw = {}
        return None, raw if isinstance(raw, dict) else {}, f"the case could not be resolved ({first}); tables show the raw case file"
    note = ""
    run_digest = manifest.get("case_sha256")
    if run_digest and run_digest != case.digest:
        note = "the case file or priors library read now differ from the run's (case sha256 mismatch); source reliabilities are today's"
    return case, {}, note


def load_run(run_dir: str | Path) -> RunData:
    """Read a finished run folder; raise ``RunError`` if it has no readable ``attribution.json``."""
    root = Path(run_dir)
    folder = RunFolder(root)
    if not root.is_dir():
        raise RunError(f"{root} is not a folder; pass a run folder, runs/<case>/<run>")
    attribution = read_json(folder.attribution)
    hyps = attribution.get("hypotheses") if isinstance(attribution, dict) else None
    if not isinstance(hyps, dict) or not hyps or not all(isinstance(h, dict) and is_number(h.get("posterior")) for h in hyps.values()):
        raise RunError(f"{folder.attribution} has no hypotheses with posterior probabilities; rerun the case to recompute it")
    diagnostics, _ = _optional_json(folder.diagnostics)
    manifest, _ = _optional_json(folder.manifest)
    sensitivity, _ = _optional_json(folder.root / "sensitivity.json")
    case, raw, note = (None, {}, "case.yaml not found in the run folder") if not folder.case.exists() else _read_case(folder, manifest)
    return RunData(root, attribution, diagnostics, manifest, case, raw, note, sensitivity)


def load_posterior(path: Path) -> Any | None:
    """The ArviZ InferenceData at ``path``, or None when it is missing or unreadable."""
    if not path.exists():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        import arviz as az

        try:
            return az.from_netcdf(str(path))
        except (OSError, ValueError, KeyError):
            return None
