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


def damage_map(item: Any) -> dict:
    """``{"damage_map": its panels, holes and counts}`` (what the report draws) for a damage_map item; {} for
    another family's (case.json gets no key)."""
    from engine.evidence.damage_map import DamageMap

    if item.family != DamageMap.name:
        return {}
    return dict(damage_map=item.observed.model_dump(mode="json", include={"panels", "holes", "counts"}))  # the record field


def influence_bounds(case: Any) -> dict[str, float | None]:
    """Per item id, the most its unit can move the odds between any two hypotheses (nat; None where
    its family states no bound): ``influence_bound`` at the unit's reliability, each source at its
    mean (exact for a unit evaluated alone: the reliability enters linearly)."""
    import math

    from engine.evidence import combined_reliability, family_of, shared_parameters, unit_sources
    from engine.evidence.base import influence_bound

    shared = shared_parameters(case)
    out: dict[str, float | None] = {}
    for _, items in case.units():
        r = combined_reliability(case.sources[s].reliability.mean() for s in unit_sources(items))
        b = influence_bound(float(r), family_of(items).log_ratio_cap(items, shared))
        out.update({it.id: (b if math.isfinite(b) else None) for it in items})
    return out


def case_record(case: Any) -> CaseRecord:
    """case.json of a resolved case: title, date, hypotheses, sources with their reliability, evidence rows."""
    bounds = influence_bounds(case)
    return CaseRecord(
        schema_version=SCHEMA_VERSION, id=case.id, title=case.title, date=str(case.date), description=case.description,
        digest=case.digest,
        hypotheses=[CaseHypothesis(id=h.id, description=h.description, prior=float(h.prior), mechanism=h.mechanism,
                                   reasoning=h.reasoning) for h in case.hypotheses.values()],
        sources=[CaseSource(id=s.id, title=s.title, citation=s.citation, profile=s.profile, reliability=s.reliability.describe(),
                            reliability_fixed=s.reliability.kind == "fixed", reliability_mean=float(s.reliability.mean()))
                 for s in case.sources.values()],
        evidence=[CaseEvidence(id=it.id, family=it.family, source=it.source, group=it.group, restates=it.restates,
                               observation=observation_text(it.family, it.observed), description=it.description,
                               cites=[Citation(file=c.file, quote=c.quote) for c in it.cites],
                               influence_bound=bounds.get(it.id), **damage_map(it)) for it in case.items],
    )
