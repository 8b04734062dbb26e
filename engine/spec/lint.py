"""Warnings about a valid case: legal, but probably not what the author meant.

``case_warnings(case)`` lists them; ``incident validate`` prints each as ``FILE: warning: path: message``
and still exits 0. Paths follow the error messages' convention (``evidence[tail-holes].observed.time``).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.evidence import REGISTRY
from engine.spec.case import Case
from engine.spec.messages import entry


@dataclass(frozen=True)
class CaseWarning:
    file: str
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: warning: {self.path}: {self.message}"


def case_warnings(case: Case) -> list[CaseWarning]:
    """Suspicious but legal things in ``case``: an uncited source, a hypothesis with prior 0, a family's
    suspicious observation (a time outside its own period, fragment counts that are all zero), an item whose
    parameters are the same under every hypothesis (it cannot favour one over another), a restatement by a
    source that already reports the fact (it adds nothing)."""
    out: list[CaseWarning] = []

    def warn(path: str, message: str) -> None:
        out.append(CaseWarning(case.path, path, message))

    cited = {it.source for it in case.items}
    for sid in case.sources:
        if sid not in cited:
            warn(entry("sources", sid), f"no evidence item cites source {sid!r}; give an item `source: {sid}` or remove it")
    for hid, h in case.hypotheses.items():
        if h.prior == 0:
            warn(f"{entry('hypotheses', hid)}.prior", f"prior of {hid!r} is 0, so no evidence can give it a posterior "
                 "above 0; give it a small positive prior or remove it")
    unit_of = {it.id: items for _, items in case.units() for it in items}
    heard: dict[str, set[str]] = {}  # unit (its first item's id) -> sources reporting it so far
    for it in case.items:
        where = entry("evidence", it.id)
        if it.restates is not None:
            unit = unit_of[it.restates]
            seen = heard.setdefault(unit[0].id, {o.source for o in unit})
            if it.source in seen:
                warn(f"{where}.restates", f"source {it.source!r} already reports the fact of {it.restates!r}, so {it.id!r} "
                     "adds nothing (a source counts once per fact); give the restatement's own source or remove the item")
            seen.add(it.source)
        for fld, problem in REGISTRY[it.family].suspicious(it.observed):
            warn(f"{where}.observed.{fld}", problem)
        for hid, spec in it.params.items():
            for fld, problem in REGISTRY[it.family].suspicious_params(it.observed, spec):
                warn(f"{where}.observed.{fld}", f"under {hid}: {problem}")
        specs = list(it.params.values())
        if len(specs) > 1 and all(s == specs[0] for s in specs[1:]):
            warn(f"{where}.under", f"item {it.id!r} has the same parameters under every hypothesis, so it favours none "
                 "over another; give the hypotheses different predictions (under.<hypothesis>) or remove it")
    return out


__all__ = ["CaseWarning", "case_warnings"]
