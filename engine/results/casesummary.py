"""The case as the report shows it (``CaseRecord``, written to case.json by collect), from the resolved ``Case``.

Pure: the ``Case`` in, the record out. The observed values of each item are put in words by
the item's evidence family, so the report needs neither the YAML nor the families.
"""

from __future__ import annotations

from typing import Any

from engine.results.records import SCHEMA_VERSION, CaseEvidence, CaseHypothesis, CaseRecord, CaseSource, Citation


def observation_text(family: str, observed: Any) -> str:
    """One item's observed values in words, as its evidence family describes them."""
    from engine.evidence import REGISTRY

    return REGISTRY[family].describe(observed)


def case_record(case: Any) -> CaseRecord:
    """case.json of a resolved case: title, date, hypotheses, sources with their reliability, evidence rows."""
    return CaseRecord(
        schema_version=SCHEMA_VERSION, id=case.id, title=case.title, date=str(case.date), description=case.description,
        digest=case.digest,
        hypotheses=[CaseHypothesis(id=h.id, description=h.description, prior=float(h.prior), mechanism=h.mechanism,
                                   reasoning=h.reasoning) for h in case.hypotheses.values()],
        sources=[CaseSource(id=s.id, title=s.title, citation=s.citation, profile=s.profile, reliability=s.reliability.describe(),
                            reliability_fixed=s.reliability.kind == "fixed", reliability_mean=float(s.reliability.mean()))
                 for s in case.sources.values()],
        evidence=[CaseEvidence(id=it.id, family=it.family, source=it.source, group=it.group,
                               observation=observation_text(it.family, it.observed), description=it.description,
                               cites=[Citation(file=c.file, quote=c.quote) for c in it.cites]) for it in case.items],
    )
