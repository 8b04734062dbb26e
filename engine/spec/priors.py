"""The priors/ library: mechanisms, source-reliability profiles, assertion rates, base rates.

Layout of a priors folder (default: ``priors/`` at the top of the repository)::

    mechanisms.yaml   mechanism -> family -> parameter -> spec (see engine.dists)
    sources.yaml      reliability: profile -> spec;  assertion_rate: interest -> spec
    base_rates.yaml   name -> relative frequency (used as a hypothesis prior)

Each file may carry ``notes:`` entries saying where the numbers come from; they are kept for
the report but not interpreted.
"""

from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from engine.dists import Dist, parse_dist
from engine.errors import CaseError
from engine.spec.yamlio import read_yaml_text

DEFAULT_DIR = Path(__file__).resolve().parents[2] / "priors"
INTERESTS = ("serves", "neutral", "against")


@dataclass(frozen=True)
class PriorLibrary:
    directory: str
    mechanisms: dict[str, dict[str, dict[str, Dist]]]
    mechanism_notes: dict[str, str]
    reliability: dict[str, Dist]
    assertion_rates: dict[str, Dist]
    base_rates: dict[str, float]
    digest: str
    texts: dict[str, str]


def _mapping(file: Path, path: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CaseError(file, path, f"expected a mapping, got {type(value).__name__}; see priors/README")
    return value


def _dist(file: Path, path: str, value: Any) -> Dist:
    try:
        return parse_dist(value)
    except ValueError as exc:
        raise CaseError(file, path, str(exc)) from None


def spec_problem(family: str, name: str, spec: Dist) -> str | None:
    """Why ``spec`` is not a valid value of parameter ``name`` of ``family`` (None if it is): the
    family's parameter table gives the allowed kinds and the range of a fixed value. The same rule
    for a case's values (``under``, ``overrides``) and the library's."""
    from engine.evidence import REGISTRY
    from engine.spec.messages import kinds_in_words, written

    table = REGISTRY[family].params
    if name not in table:
        return f"unknown parameter {name!r} for family {family}; use one of {', '.join(table)}"
    kinds, (lo, hi) = table[name]
    if spec.kind not in kinds:
        return f"{name} must be {kinds_in_words(kinds)}, got {written(spec)}"
    if spec.kind == "fixed" and not lo <= spec.args[0] <= hi:
        return f"{name} = {spec.args[0]:g} is outside [{lo:g}, {hi:g}]"
    return None


def probability_problem(what: str, spec: Dist, *, zero: bool = False) -> str | None:
    """A reliability or an assertion rate: a beta prior or a fixed number in (0, 1] ([0, 1] with ``zero``)."""
    if spec.kind == "beta" or (spec.kind == "fixed" and (0 <= spec.args[0] if zero else 0 < spec.args[0]) and spec.args[0] <= 1):
        return None
    from engine.spec.messages import written

    return f"{what} must be {{beta: [a, b]}} or a number in {'[' if zero else '('}0, 1], got {written(spec)}"


def _check_mechanism(f: Path, where: str, family: str, params: dict[str, Dist]) -> None:
    """The library's values of one family under one mechanism, by the case values' rules. A key
    that is not a parameter of a one-parameter family is that parameter for one kind of thing
    (``presence: {weapon-parts: ...}``, see the family's ``mechanism_params``)."""
    from engine.evidence import REGISTRY

    names = list(REGISTRY[family].params)
    for key, spec in params.items():
        name = key if key in names or len(names) != 1 else names[0]
        if problem := spec_problem(family, name, spec):
            raise CaseError(f, f"{where}.{key}", f"{problem}; fix the priors library")


def load_priors(directory: str | Path | None = None) -> PriorLibrary:
    """Load and validate a priors folder (cached per folder and file contents)."""
    d = Path(directory) if directory else DEFAULT_DIR
    if not d.is_dir():
        raise CaseError(d, "", "priors folder not found; set `priors:` in the case file to the folder path")
    stamp = tuple((p.name, *_stamp(p)) for p in sorted(d.glob("*.yaml")))
    return _load(str(d.resolve()), stamp)


def _stamp(p: Path) -> tuple:
    try:
        st = os.stat(p)
    except (OSError, ValueError):  # e.g. a dangling link: reading it says what is wrong
        return (None, None)
    return (st.st_mtime_ns, st.st_size)


@lru_cache(maxsize=8)
def _load(directory: str, _stamp: tuple) -> PriorLibrary:
    from engine.evidence import REGISTRY

    d = Path(directory)
    texts, docs = {}, {}
    for name in ("mechanisms.yaml", "sources.yaml", "base_rates.yaml"):
        if not os.path.lexists(d / name):
            raise CaseError(d / name, "", "missing from the priors folder; copy it from the repository's priors/")
        texts[name], docs[name] = read_yaml_text(d / name)

    f = d / "mechanisms.yaml"
    mechs_raw = _mapping(f, "", docs[f.name])
    mechanisms: dict[str, dict[str, dict[str, Dist]]] = {}
    notes: dict[str, str] = {}
    for mname, fams in _mapping(f, "", mechs_raw.get("mechanisms")).items():
        fams = _mapping(f, f"mechanisms.{mname}", fams)
        notes[mname] = str(fams.get("description", ""))
        mechanisms[mname] = {}
        for fam, params in fams.items():
            if fam in ("description", "sources"):
                continue
            params = _mapping(f, f"mechanisms.{mname}.{fam}", params)
            if fam not in REGISTRY:
                raise CaseError(f, f"mechanisms.{mname}.{fam}", f"unknown family {fam!r}; use one of {', '.join(REGISTRY)}")
            mechanisms[mname][fam] = {k: _dist(f, f"mechanisms.{mname}.{fam}.{k}", v) for k, v in params.items()}
            _check_mechanism(f, f"mechanisms.{mname}.{fam}", fam, mechanisms[mname][fam])

    if "generic" not in mechanisms:
        raise CaseError(f, "mechanisms.generic", "missing; the generic mechanism is the background of unfaithful reports")
    f = d / "sources.yaml"
    src = _mapping(f, "", docs[f.name])
    reliability = {k: _dist(f, f"reliability.{k}", v) for k, v in _mapping(f, "reliability", src.get("reliability")).items()}
    rates = {k: _dist(f, f"assertion_rate.{k}", v) for k, v in _mapping(f, "assertion_rate", src.get("assertion_rate")).items()}
    for k, spec in reliability.items():
        if problem := probability_problem("reliability", spec):
            raise CaseError(f, f"reliability.{k}", f"{problem}; fix the priors library")
    for k, spec in rates.items():
        if problem := probability_problem("assertion rate", spec):
            raise CaseError(f, f"assertion_rate.{k}", f"{problem}; fix the priors library")
    for k in INTERESTS:
        if k not in rates:
            raise CaseError(f, f"assertion_rate.{k}", "missing; give a beta prior for every interest (serves, neutral, against)")

    f = d / "base_rates.yaml"
    br = _mapping(f, "", docs[f.name])
    base_rates: dict[str, float] = {}
    for k, v in _mapping(f, "base_rates", br.get("base_rates")).items():
        val = v.get("rate") if isinstance(v, dict) else v
        if isinstance(val, bool) or not isinstance(val, (int, float)) or not math.isfinite(val) or val < 0:
            raise CaseError(f, f"base_rates.{k}", f"rate must be a finite number >= 0, got {val!r}")
        base_rates[k] = float(val)

    digest = hashlib.sha256("\0".join(texts[k] for k in sorted(texts)).encode()).hexdigest()
    return PriorLibrary(str(d), mechanisms, notes, reliability, rates, base_rates, digest, texts)
