"""Case files: pydantic models of the YAML, validation, and resolution into an immutable ``Case``.

``load_case(path)`` is the only entry point.  It parses the YAML (``engine.spec.yamlio``), checks
the document against the pydantic models below (unknown keys rejected), checks every
cross-reference (sources, mechanisms, hypotheses, groups), resolves every evidence
parameter for every hypothesis against the priors/ library, and returns a frozen ``Case``.
Everything downstream trusts it.  All problems found are reported together as
``CaseErrors``, one line per mistake: ``FILE: path.to.field: message``, where the path names
sources, hypotheses and evidence items by id (``evidence[tail-holes].observed.holes``) and the
message speaks the case file's words, not pydantic's (``engine.spec.messages``). Suspicious but
legal cases get warnings instead (``engine.spec.lint``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError

from engine.dists import Dist
from engine.errors import CaseError, CaseErrors
from engine.evidence import REGISTRY
from engine.evidence.base import BIG, ParamSpec, Strict
from engine.spec.messages import SECTIONS, entry, pydantic_errors, written
from engine.spec.priors import PriorLibrary, load_priors, probability_problem, spec_problem
from engine.spec.yamlio import read_yaml_text

ID = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]
FAMILIES = tuple(REGISTRY)
OBSERVED: dict[str, type[BaseModel]] = {name: fam.Obs for name, fam in REGISTRY.items()}  # observed values per family
PARAMS = {name: fam.params for name, fam in REGISTRY.items()}  # family -> parameter -> (allowed kinds, range of a fixed value)


# ---------------------------------------------------------------- the document
class Meta(Strict):
    id: ID
    title: str
    date: dt.date
    description: str = ""


class Source(Strict):
    id: ID
    title: str
    citation: str = ""
    url: str = ""
    reliability: str | ParamSpec


class Cite(Strict):
    file: str
    quote: str


class Hypothesis(Strict):
    id: ID
    description: str
    prior: Annotated[float, Field(strict=True, le=BIG)] | dict[Literal["base_rate"], str]
    mechanism: str
    overrides: dict[str, dict[str, ParamSpec]] = {}
    reasoning: str = ""


class Evidence(Strict):
    id: ID
    family: Literal[FAMILIES]  # type: ignore[valid-type]
    source: str
    description: str = ""
    group: ID | None = None
    cites: tuple[Cite, ...] = ()
    observed: dict[str, Any]
    under: dict[str, dict[str, ParamSpec]] = {}


class CaseDoc(Strict):
    case: Meta
    sources: tuple[Source, ...]
    hypotheses: tuple[Hypothesis, ...] = Field(min_length=2)
    evidence: tuple[Evidence, ...] = Field(min_length=1)
    priors: str | None = None


# ---------------------------------------------------------------- the resolved, trusted case
@dataclass(frozen=True)
class ResolvedSource:
    id: str
    title: str
    citation: str
    reliability: Dist
    profile: str


@dataclass(frozen=True)
class ResolvedHypothesis:
    id: str
    description: str
    prior: float  # normalised
    mechanism: str
    reasoning: str


@dataclass(frozen=True)
class ResolvedItem:
    id: str
    family: str
    source: str
    group: str | None
    description: str
    observed: Any  # the family's *Obs model, times converted to minutes
    cites: tuple[Cite, ...]
    params: dict[str, dict[str, Dist]]  # hypothesis id -> parameter -> spec


@dataclass(frozen=True)
class Case:
    """A validated case with every reference resolved; immutable."""

    path: str
    id: str
    title: str
    date: dt.date
    description: str
    sources: dict[str, ResolvedSource]
    hypotheses: dict[str, ResolvedHypothesis]
    items: tuple[ResolvedItem, ...]
    assertion_rates: dict[str, Dist]
    background: dict[str, dict[str, Dist]]  # the generic mechanism: what an unfaithful report follows
    text: str = field(repr=False)  # the YAML as read, frozen into the run folder
    digest: str = ""  # sha256 of the case text and the priors used
    priors_dir: str = ""

    def item(self, item_id: str) -> ResolvedItem:
        return next(i for i in self.items if i.id == item_id)

    def units(self) -> list[tuple[str, tuple[ResolvedItem, ...]]]:
        """Likelihood units: each ungrouped item alone, each dependency group as one unit."""
        units: dict[str, list[ResolvedItem]] = {}
        for it in self.items:
            units.setdefault(it.group or f"item:{it.id}", []).append(it)
        return [(k, tuple(v)) for k, v in units.items()]

    def describe_hypothesis(self, hid: str) -> str:
        return self.hypotheses[hid].description


# ---------------------------------------------------------------- loading
def _check_spec(family: str, name: str, spec: Dist) -> str | None:
    return spec_problem(family, name, spec)


def load_case(path: str | Path, *, priors_dir: str | Path | None = None) -> Case:
    """Read, validate and resolve one case file; raise ``CaseErrors`` listing every problem."""
    path = Path(path)
    file = str(path)
    text, raw = read_yaml_text(path)
    if not isinstance(raw, dict):
        raise CaseErrors([CaseError(file, "", "the file must be a mapping with case, sources, hypotheses, evidence")])
    try:
        doc = CaseDoc.model_validate(raw)
    except ValidationError as exc:
        raise CaseErrors(pydantic_errors(file, exc, raw)) from None
    pdir = Path(priors_dir) if priors_dir else (path.parent / doc.priors if doc.priors else None)
    lib = load_priors(pdir)
    errors: list[CaseError] = []

    def err(where: str, msg: str) -> None:
        errors.append(CaseError(file, where, msg))

    for what, seq in (("sources", doc.sources), ("hypotheses", doc.hypotheses), ("evidence", doc.evidence)):
        seen: dict[str, int] = {}
        for i, x in enumerate(seq):
            if x.id in seen:
                err(f"{what}[{x.id}].id", f"duplicate id {x.id!r} (entries #{seen[x.id] + 1} and #{i + 1} of {what}); "
                    f"every {SECTIONS[what]} needs its own id")
            seen.setdefault(x.id, i)

    sources: dict[str, ResolvedSource] = {}
    for s in doc.sources:
        if isinstance(s.reliability, str):
            if s.reliability not in lib.reliability:
                err(f"{entry('sources', s.id)}.reliability", f"unknown reliability profile {s.reliability!r}; use one of {', '.join(sorted(lib.reliability))} or {{beta: [a, b]}}")
                continue
            rel, profile = lib.reliability[s.reliability], s.reliability
        else:
            rel, profile = s.reliability, "custom"
            if probability_problem("reliability", rel):
                err(f"{entry('sources', s.id)}.reliability", f"reliability must be a profile name, {{beta: [a, b]}} or a number in (0, 1], got {written(rel)}")
                continue
        sources[s.id] = ResolvedSource(s.id, s.title, s.citation or s.url, rel, profile)

    priors_raw: list[float] = []
    for h in doc.hypotheses:
        hw = entry("hypotheses", h.id)
        if h.id == "default":
            err(f"{hw}.id", "'default' is reserved (under.default applies to every hypothesis); rename it")
        if h.mechanism not in lib.mechanisms:
            err(f"{hw}.mechanism", f"unknown mechanism {h.mechanism!r}; use one of {', '.join(sorted(lib.mechanisms))}")
        if isinstance(h.prior, dict):
            name = h.prior.get("base_rate")
            if name is None:  # an empty mapping passes the schema's dict[Literal["base_rate"], str]
                err(f"{hw}.prior", "give a number or {base_rate: NAME} from the priors library")
                priors_raw.append(math.nan)
                continue
            if name not in lib.base_rates:
                err(f"{hw}.prior.base_rate", f"unknown base rate {name!r}; use one of {', '.join(sorted(lib.base_rates))}")
                priors_raw.append(math.nan)
                continue
            priors_raw.append(lib.base_rates[name])
        else:
            if not math.isfinite(h.prior) or h.prior < 0:
                err(f"{hw}.prior", f"prior must be a finite number >= 0, got {h.prior!r}")
            priors_raw.append(h.prior)
        for fam, params in h.overrides.items():
            if fam not in PARAMS:
                err(f"{hw}.overrides.{fam}", f"unknown family {fam!r}; overrides are keyed by family ({', '.join(FAMILIES)})")
                continue
            for name, spec in params.items():
                if problem := _check_spec(fam, name, spec):
                    err(f"{hw}.overrides.{fam}.{name}", problem)
    finite = [p for p in priors_raw if math.isfinite(p) and p >= 0]
    if len(finite) == len(priors_raw) and sum(finite) <= 0:
        err("hypotheses", "priors are all zero; give at least one hypothesis a positive prior")

    hyp_ids = [h.id for h in doc.hypotheses]
    items: list[ResolvedItem] = []
    flawed: set[str] = set()  # items whose parameters have errors: their group's predictions are not compared
    for e in doc.evidence:
        where = entry("evidence", e.id)
        if e.source not in {s.id for s in doc.sources}:
            known = f" or use one of {', '.join(s.id for s in doc.sources)}" if doc.sources else ""
            err(f"{where}.source", f"undefined source {e.source!r}; add it under sources{known}")
        before = len(errors)
        family = REGISTRY[e.family]
        try:
            obs = family.parse(e.observed)
        except ValidationError as exc:
            errors.extend(pydantic_errors(file, exc, e.observed, f"{where}.observed"))
            continue
        except ValueError as exc:
            err(f"{where}.observed", str(exc))
            continue
        for fld, problem in family.check_observed(obs):
            err(f"{where}.observed.{fld}", problem)
        misnamed: set[str] = set()  # under.<h> with an unknown parameter name: a missing one is its follow-on
        for hid, params in e.under.items():
            if hid != "default" and hid not in hyp_ids:
                err(f"{where}.under.{hid}", f"unknown hypothesis {hid!r}; use one of {', '.join(hyp_ids)} or 'default'")
            for name, spec in params.items():
                if problem := _check_spec(e.family, name, spec):
                    err(f"{where}.under.{hid}.{name}", problem)
                    misnamed |= {hid} if name not in PARAMS[e.family] else set()
        params: dict[str, dict[str, Dist]] = {}
        missing: dict[str, list[str]] = {}  # parameter -> hypotheses without a value of it
        for h in doc.hypotheses:
            mech = family.mechanism_params(obs, lib.mechanisms.get(h.mechanism, {}).get(e.family, {}))
            resolved: dict[str, Dist] = {}
            for name in PARAMS[e.family]:
                for spec_src in (e.under.get(h.id, {}), e.under.get("default", {}), h.overrides.get(e.family, {}), mech):
                    if name in spec_src:
                        resolved[name] = spec_src[name]
                        break
                else:
                    if h.mechanism in lib.mechanisms:
                        missing.setdefault(name, []).append(h.id)
            for fld, problem in family.check_params(obs, resolved):
                err(f"{where}.observed.{fld}", f"{problem} (mechanism {h.mechanism})")
            params[h.id] = resolved
        for name, hids in missing.items():
            hids = [] if "default" in misnamed else [h for h in hids if h not in misnamed]
            if not hids:
                continue
            if len(hids) == 1:
                err(f"{where}.under.{hids[0]}.{name}", f"no value of {name!r} for hypothesis {hids[0]!r}; add under.{hids[0]}.{name} or under.default.{name}")
            else:
                err(f"{where}.under", f"no value of {name!r} for hypotheses {', '.join(map(repr, hids))} (their mechanisms have none); "
                    f"add under.default.{name}, or under.<hypothesis>.{name} for each")
        items.append(ResolvedItem(e.id, e.family, e.source, e.group, e.description, obs, e.cites, params))
        if len(errors) > before:
            flawed.add(e.id)

    _check_groups(file, items, err, flawed)
    if errors:
        raise CaseErrors(list({(e.path, e.message): e for e in errors}.values()))  # one line per mistake

    total = sum(priors_raw)
    hyps = {
        h.id: ResolvedHypothesis(h.id, h.description, p / total, h.mechanism, h.reasoning)
        for h, p in zip(doc.hypotheses, priors_raw, strict=True)
    }
    digest = hashlib.sha256((text + "\0" + lib.digest).encode()).hexdigest()
    return Case(
        path=file, id=doc.case.id, title=doc.case.title, date=doc.case.date, description=doc.case.description,
        sources=sources, hypotheses=hyps, items=tuple(items), assertion_rates=dict(lib.assertion_rates),
        background=lib.mechanisms["generic"],
        text=text, digest=digest, priors_dir=lib.directory,
    )


def _check_groups(file: str, items: list[ResolvedItem], err, flawed: set[str]) -> None:  # noqa: ANN001
    groups: dict[str, list[ResolvedItem]] = {}
    for it in items:
        if it.group:
            groups.setdefault(it.group, []).append(it)
    ids = {it.id for it in items}
    for name, members in groups.items():
        first = members[0]
        if name in ids:
            err(f"{entry('evidence', first.id)}.group", f"group name {name!r} is also an item id; rename the group")
        for it in members[1:]:
            where = f"{entry('evidence', it.id)}.group"
            against = f" ({it.id!r} against {first.id!r}, the group's first report)"
            if it.family != first.family:
                err(where, f"group {name!r} mixes families {first.family} and {it.family}; a group holds reports of one fact{against}")
            elif problem := REGISTRY[it.family].group_conflict(name, first.observed, it.observed):
                err(where, problem + against)
            elif it.params != first.params and not {it.id, first.id} & flawed:
                err(where, f"reports in group {name!r} have different 'under' predictions; give them once, identically{against}")


def case_schema() -> dict[str, Any]:
    """JSON Schema of the case file, for editors."""
    schema = CaseDoc.model_json_schema()
    schema["$comment"] = "observed: per family, see definitions " + ", ".join(m.__name__ for m in OBSERVED.values())
    for m in OBSERVED.values():
        schema.setdefault("$defs", {})[m.__name__] = m.model_json_schema()
    return schema


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


__all__ = ["Case", "load_case", "case_schema", "FAMILIES", "PARAMS", "PriorLibrary"]
