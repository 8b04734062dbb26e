"""The resolved-incident benchmark's physical-only variant (benchmarks/incidents.py ``physical_case``):
the derived case must load through the engine, and its family split must cover the registry."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import yaml

from engine.evidence import REGISTRY
from engine.spec.case import load_case

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("incidents_benchmark", ROOT / "benchmarks" / "incidents.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def _case() -> dict:
    """A bomb against a fuel-tank account: a claim restated by a presence item (the claim goes in the
    physical-only variant) and a presence item restated by a claim (the claim goes)."""
    return {
        "case": {"id": "restates-split", "title": "restates across the physical split", "date": "2024-01-01"},
        "sources": [{"id": "lab", "title": "Laboratory", "reliability": 0.9},
                    {"id": "minister", "title": "Minister", "reliability": 0.6},
                    {"id": "panel", "title": "Panel source", "reliability": 0.7}],
        "hypotheses": [{"id": "bomb", "description": "a bomb", "prior": 0.5, "mechanism": "internal_explosion"},
                       {"id": "tank", "description": "a fuel-tank explosion", "prior": 0.5,
                        "mechanism": "fuel_tank_explosion"}],
        "evidence": [
            {"id": "minister-residue", "family": "claim", "source": "minister",
             "observed": {"statement": "explosive residue was found", "interest": "neutral"},
             "under": {"bomb": {"holds": 0.9}, "tank": {"holds": 0.1}}},
            {"id": "lab-residue", "family": "presence", "source": "lab", "restates": "minister-residue",
             "observed": {"thing": "explosive-residue", "found": True, "detection": 0.9}},
            {"id": "no-device", "family": "presence", "source": "lab",
             "observed": {"thing": "device-parts", "found": False, "detection": 0.7},
             "under": {"bomb": {"present": 0.9}, "tank": {"present": 0.02}}},
            {"id": "panel-no-device", "family": "claim", "source": "panel", "restates": "no-device",
             "observed": {"statement": "no device was found", "interest": "neutral"},
             "under": {"bomb": {"holds": 0.2}, "tank": {"holds": 0.95}}},
        ],
    }


def _write(tmp_path: Path, name: str, doc: dict) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


def test_physical_case_drops_restates_of_removed_items_and_loads(tmp_path: Path) -> None:
    case = _case()
    full = load_case(_write(tmp_path, "full", case))  # the full case is valid as written
    assert {it.id for it in full.items} == {"minister-residue", "lab-residue", "no-device", "panel-no-device"}
    phys = bench.physical_case(case)
    assert [e["id"] for e in phys["evidence"]] == ["lab-residue", "no-device"]
    assert "restates" not in phys["evidence"][0]  # its target, a claim, is gone
    assert {s["id"] for s in phys["sources"]} == {"lab"}
    assert case["evidence"][1]["restates"] == "minister-residue"  # the input is not modified
    loaded = load_case(_write(tmp_path, "physical", phys))
    assert {it.id for it in loaded.items} == {"lab-residue", "no-device"}
    assert all(it.restates is None for it in loaded.items)


def test_physical_case_keeps_restates_between_kept_items(tmp_path: Path) -> None:
    case = _case()
    case["evidence"][3] = {"id": "lab-no-device-2", "family": "presence", "source": "panel", "restates": "no-device",
                           "observed": {"thing": "device-parts", "found": False, "detection": 0.7}}
    phys = bench.physical_case(case)
    assert phys["evidence"][-1]["restates"] == "no-device"
    loaded = load_case(_write(tmp_path, "physical", phys))
    assert {it.id: it.restates for it in loaded.items}["lab-no-device-2"] == "no-device"


def test_family_split_covers_the_registry() -> None:
    physical, statements = set(bench.PHYSICAL_FAMILIES), set(bench.STATEMENT_FAMILIES)
    assert not physical & statements
    assert physical | statements == set(REGISTRY), "classify a new evidence family in benchmarks/incidents.py"


@pytest.mark.parametrize("path", sorted(p for p in (ROOT / "benchmarks" / "incidents").glob("*.yaml")
                                        if p.name != "answers.yaml"), ids=lambda p: p.stem)
def test_benchmark_cases_and_their_physical_variants_load(path: Path, tmp_path: Path) -> None:
    case = yaml.safe_load(path.read_text(encoding="utf-8"))
    load_case(path)
    phys = bench.physical_case(case)
    assert phys is not None, "every incident has at least one physical item (issue 15)"
    load_case(_write(tmp_path, case["case"]["id"], phys))
