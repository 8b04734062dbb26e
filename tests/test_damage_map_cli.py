"""Bad damage maps through the command line: `incident validate` and `incident run` exit 2 with one
line naming the field (and the fix), and `run` writes nothing. The maps are the synthetic
4-hypothesis case (tests/cases/damage-map-4h.yaml) spoiled one way each."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from runhelp import TESTS, incident

BASE = yaml.safe_load((TESTS / "cases" / "damage-map-4h.yaml").read_text())


def _inside_prior(doc: dict) -> None:
    """The missiles' burst prior tight around the middle of the fuselage: no panel is struck from outside."""
    doc["evidence"][0]["under"]["default"].update({f"burst_{c}": {"normal": [m, 0.3]} for c, m in zip("xyz", (3.0, 0.0, 0.0), strict=True)})


def _negative_size(doc: dict) -> None:
    doc["evidence"][0]["observed"]["holes"][3]["size_mm"] = -4.0


def _ten_thousand(doc: dict) -> None:
    holes = doc["evidence"][0]["observed"]["holes"]
    doc["evidence"][0]["observed"]["holes"] = [copy.deepcopy(holes[i % len(holes)]) for i in range(10_000)]


def _outside_every_panel(doc: dict) -> None:
    doc["evidence"][0]["observed"]["holes"][0]["at"] = [3.0, 0.0, 9.0]


def _skewed_panel(doc: dict) -> None:
    doc["evidence"][0]["observed"]["panels"][0]["edge2"] = [3.0, 0.0, 1.0]  # not perpendicular to edge1 (0, 0, 3)


def _elongation_below_one(doc: dict) -> None:
    doc["evidence"][0]["observed"]["holes"][5]["elongation"] = 0.7


CASES = [
    ("burst prior excludes every panel", _inside_prior,
     "evidence[hole-map].observed.panels: the burst prior (burst_x/y/z, mean [3.0, 0.0, 0.0] m, +-2 s.d.) reaches no inspected panel"),
    ("negative hole size", _negative_size, "evidence[hole-map].observed.holes[3].size_mm: must be a number > 0"),
    ("ten thousand holes", _ten_thousand, "evidence[hole-map].observed: holes: 10000 located holes, at most 5000"),
    ("hole outside every panel", _outside_every_panel, "evidence[hole-map].observed: holes[0]: [3.0, 0.0, 9.0] lies"),
    ("non-rectangular panel", _skewed_panel, "not perpendicular"),
    ("elongation below 1", _elongation_below_one, "evidence[hole-map].observed.holes[5].elongation: must be a number >= 1"),
]


def _one_line(out, path: Path) -> str:  # noqa: ANN001
    """The error text: exit 2, every line ``<case file>: <field>: <message>``, no traceback."""
    assert out.returncode == 2, (out.returncode, out.stdout[-2000:], out.stderr[-2000:])
    assert "Traceback" not in out.stderr, out.stderr
    assert all(ln.startswith(f"{path}: evidence[hole-map].observed") for ln in out.stderr.splitlines()), out.stderr
    return out.stderr


@pytest.mark.parametrize("name, spoil, message", CASES, ids=[c[0] for c in CASES])
def test_validate_refuses_a_bad_damage_map_naming_the_field(tmp_path: Path, name, spoil, message):  # noqa: ANN001
    doc = copy.deepcopy(BASE)
    spoil(doc)
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    out = incident("validate", path, timeout=300)
    text = _one_line(out, path)
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.strip()]
    assert all(message in ln for ln in lines), lines  # one line per hypothesis at most, each naming the field
    assert len(lines) == (3 if name.startswith("burst prior") else 1), lines  # the three missile hypotheses share the prior
    assert message in text


@pytest.mark.parametrize("name, spoil, message", [CASES[0], CASES[1]], ids=[CASES[0][0], CASES[1][0]])
def test_run_refuses_a_bad_damage_map_and_writes_nothing(tmp_path: Path, name, spoil, message):  # noqa: ANN001
    doc = copy.deepcopy(BASE)
    spoil(doc)
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    runs = tmp_path / "runs"
    out = incident("run", path, "--out", runs, "--workers", "0", timeout=300)
    assert message in _one_line(out, path)
    assert not runs.exists() or not any(runs.rglob("*")), sorted(runs.rglob("*"))
