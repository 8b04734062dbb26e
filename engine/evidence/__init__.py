"""Evidence families: one module per family, each one ``Family`` (``engine.evidence.base``) that
declares everything the engine needs of it; ``REGISTRY`` maps family names to them.

Adding a family is one new module with its ``Family`` subclass plus its line here. Nothing
outside this folder branches on a family's name: spec, model, inference, results, calibration
and report ask the registry. Importing this package imports pydantic, numpy and the family
modules, never PyMC or PyTensor (validation stays fast); the tensor methods import them.
"""

from __future__ import annotations

from engine.dists import Dist
from engine.evidence.base import Family, combined_reliability, unit_sources
from engine.evidence.claim import Claim
from engine.evidence.damage_map import DamageMap
from engine.evidence.elicited import Elicited
from engine.evidence.fragments import Fragments
from engine.evidence.interval import Interval
from engine.evidence.perforations import Perforations
from engine.evidence.presence import Presence
from engine.evidence.timing import Timing

REGISTRY: dict[str, Family] = {f.name: f for f in (
    Perforations(),
    Fragments(),
    Timing(),
    Interval(),
    Claim(),
    Elicited(),
    DamageMap(),
    Presence(),
)}


def family_of(items: tuple) -> Family:
    """The family of a unit (an item, or the reports of one dependency group)."""
    return REGISTRY[items[0].family]


def generic_spec(case, items: tuple) -> dict[str, Dist]:  # noqa: ANN001 - an engine.spec.case.Case
    """The parameters of the background an unfaithful report of the unit follows."""
    return family_of(items).generic(items, case.background.get(items[0].family, {}), case.hypotheses)


def shared_parameters(case) -> dict[str, Dist]:  # noqa: ANN001 - an engine.spec.case.Case
    """Model parameters several units share (e.g. claims' assertion rates): name -> prior."""
    return {name: spec for fam in REGISTRY.values() for name, spec in fam.shared_parameters(case).items()}


__all__ = ["REGISTRY", "Family", "combined_reliability", "family_of", "generic_spec", "shared_parameters", "unit_sources"]
