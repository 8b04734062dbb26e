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
    restates: ID | None = None
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
    restates: str | None = None  # the item whose information this one repeats (``restatements``): it has no term of its own
    reporters: tuple[str, ...] = ()  # sources of the items restating this one: they join its unit (``unit_sources``)


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
        """Likelihood units: each ungrouped item alone, each dependency group as one unit. An item that
        restates another is in no unit: its source is one of the restated unit's (``reporters``)."""
        units: dict[str, list[ResolvedItem]] = {}
        for it in self.items:
            if it.restates is None:
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
        items.append(ResolvedItem(e.id, e.family, e.source, e.group, e.description, obs, e.cites, params, e.restates))
        if len(errors) > before:
            flawed.add(e.id)
        if (interest := getattr(obs, "interest", None)) is not None and interest not in lib.assertion_rates:
            err(f"{where}.observed.interest", f"interest {interest!r} has no assertion rate in the priors library "
                f"(sources.yaml assertion_rate); add one there or use one of {', '.join(sorted(lib.assertion_rates))}")

    _check_groups(file, items, err, flawed)
    items = restatements(file, items, err, flawed | ({e.id for e in doc.evidence} - {it.id for it in items}), sources, lib)
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


def restatements(file: str, items: list[ResolvedItem], err, flawed: set[str],  # noqa: ANN001
                 sources: dict[str, ResolvedSource], lib: PriorLibrary) -> list[ResolvedItem]:
    r"""Check every ``restates:`` and give each restated item its ``reporters``.

    **Semantics.** ``B.restates = A`` says that B carries A's information, not new information: one
    video reported as a hole count by one source and as an official's "consistent with shrapnel" by
    another; one read-out repeated by parties with different interests. B then has no likelihood
    term of its own: its source joins A's unit (A alone, or A's dependency group) as one more
    reporter of that fact, exactly as a second report in a group does, so the unit's term stays

    .. math::
        \log\big(r\,p(y_A \mid H) + (1 - r)\,p_{bg}(y_A)\big),\qquad r = 1 - \prod_{s} (1 - r_s)

    over the distinct sources of A's unit and of the items restating it (B's source counts once even
    if it restates several items of the unit, and not at all if it already reports the unit). The
    information counts once; B's reliability raises the chance that at least one report carries it
    faithfully. B's observation, family and interest class do not enter the likelihood (A's family,
    parameters and background are the unit's), so B must agree with A, which is checked:

    * **direction**: per hypothesis, each side's evidence alone,
      :math:`d(H) = \log(\bar r\,p(y \mid H) + (1 - \bar r)\,p_{bg}(y))` (closed forms, each source at
      its mean reliability, shared rates at their means), centred over the hypotheses; B is refused
      when :math:`d_A \cdot d_B < 0`, i.e. when B points the other way from A, and the message names
      the pair of hypotheses on which they disagree most. Where a side has no closed form (a damage
      map) the direction is not checked.
    * **structure**: B must name another, existing item that itself restates nothing (no chains or
      cycles: restate the original), and B must not be in a group (it would count in two units).
      Restating a member of a group is allowed: B's source joins that group's unit.

    Dropping A's unit (``use__<unit> = 0``, the sensitivity ablation) drops the fact with every
    reporter of it, restating ones included.
    """
    from dataclasses import replace

    by_id = {it.id: it for it in items}
    reporters: dict[str, set[str]] = {}
    cycles: set[frozenset[str]] = set()
    for it in items:
        if it.restates is None:
            continue
        where, target = f"{entry('evidence', it.id)}.restates", by_id.get(it.restates)
        if it.restates == it.id:
            err(where, f"item {it.id!r} restates itself; name the item whose information it repeats, or remove restates")
        elif target is None and it.restates in flawed:  # the restated item failed to parse: its own error says why
            continue
        elif target is None:
            err(where, f"unknown item {it.restates!r}; name the id of the evidence item whose information {it.id!r} repeats")
        elif target.restates is not None:
            chain, cur = [it.id], target
            while cur is not None and cur.restates is not None and cur.id not in chain:
                chain.append(cur.id)
                cur = by_id.get(cur.restates)
            if cur is not None and cur.id in chain:  # back on the chain: a cycle, reported once at its first item
                ring = frozenset(chain[chain.index(cur.id):])
                if it.id in ring and ring not in cycles:
                    cycles.add(ring)
                    err(where, f"restatements form a cycle ({' -> '.join(map(repr, [*chain, cur.id]))}); one item is the "
                        "original: remove restates from it")
            elif cur is not None:  # else the chain ends in an unknown id, whose own error says so
                err(where, f"{target.id!r} itself restates {target.restates!r}; restate the original directly "
                    f"(restates: {cur.id})")
        elif it.group is not None:
            err(where, f"item {it.id!r} is in group {it.group!r} and restates {target.id!r}; an item counts in one unit: "
                "remove its group (its source joins the restated item's unit) or remove restates")
        else:
            unit = [o for o in items if o.restates is None and (o.id == target.id or (target.group and o.group == target.group))]
            if not ({it.id} | {o.id for o in unit}) & flawed and (problem := _against(it, unit, sources, lib)):
                err(where, problem)
            reporters.setdefault(target.id, set()).add(it.source)
    return [replace(it, reporters=tuple(sorted(reporters[it.id]))) if it.id in reporters else it for it in items]


def _direction(unit: list[ResolvedItem], sources: dict[str, ResolvedSource], lib: PriorLibrary):  # noqa: ANN202
    """The unit's log evidence per hypothesis, evaluated alone (sources at their mean reliability,
    shared and extra parameters at their means), centred; None where it has no closed form."""
    import numpy as np

    from engine.evidence import combined_reliability

    if any(it.source not in sources for it in unit):
        return None
    fam, hids = REGISTRY[unit[0].family], list(unit[0].params)
    r = float(combined_reliability(sources[s].reliability.mean() for s in {it.source for it in unit}))
    items = tuple(unit)
    params = {f"assertion_rate__{c}": np.asarray([d.mean()]) for c, d in lib.assertion_rates.items()}
    params.update({name: np.asarray([d.mean()]) for name, d in fam.unit_parameters(items).items()})
    generic = fam.generic(items, lib.mechanisms["generic"].get(unit[0].family, {}), hids)
    out = []
    for h in hids:
        lh, lb = (float(np.ravel(x)[0]) for x in fam.unit_log_evidence(items, unit[0].params[h], generic, params, 1))
        if math.isnan(lh) or not math.isfinite(lb):
            return None
        with np.errstate(divide="ignore"):
            out.append(np.logaddexp(np.log(r) + lh, np.log1p(-r) + lb) if r < 1 else lh)
    d = np.asarray(out, dtype=float)
    return d - d.mean() if np.all(np.isfinite(d)) else None


def _against(it: ResolvedItem, unit: list[ResolvedItem], sources: dict[str, ResolvedSource], lib: PriorLibrary) -> str | None:
    """Why ``it`` cannot restate ``unit`` (it points the other way: d_A . d_B < 0), or None."""
    d_b, d_a = _direction([it], sources, lib), _direction(unit, sources, lib)
    if d_a is None or d_b is None or float(d_a @ d_b) >= -1e-9 * float(abs(d_a).sum() * abs(d_b).sum()):
        return None
    hids, n = list(it.params), len(d_a)
    worst = min(((i, j) for i in range(n) for j in range(n) if d_b[i] > d_b[j]),
                key=lambda p: (d_a[p[0]] - d_a[p[1]]) * (d_b[p[0]] - d_b[p[1]]))
    i, j = worst
    return (f"{it.id!r} points the other way from {unit[0].id!r}, which it restates: it favours {hids[i]!r} over {hids[j]!r} "
            f"by {d_b[i] - d_b[j]:.2g} nat, {unit[0].id!r} favours {hids[j]!r} by {d_a[j] - d_a[i]:.2g} nat; a restatement "
            "repeats the same information: correct its observation or remove restates (two separate reports)")


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
