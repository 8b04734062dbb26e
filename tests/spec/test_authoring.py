"""Authoring: messages name entries by id in plain words, one per mistake; warnings for suspicious but
legal cases; `incident new` writes a skeleton that validates."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest
import yaml

from engine.errors import CaseError, CaseErrors
from engine.evidence import REGISTRY
from engine.spec.case import load_case
from engine.spec.lint import case_warnings
from engine.spec.skeleton import SKELETON

ROOT = Path(__file__).resolve().parents[2]
BAD = sorted((ROOT / "tests" / "fixtures" / "bad").glob("*.yaml"))
SECTIONS = ("sources", "hypotheses", "evidence")


def _model_names() -> set[str]:
    """Class names of the case's pydantic models that are not plain words (PerforationsObs, CaseDoc, ...)."""
    names, todo = set(), [pydantic.BaseModel]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("engine.") and len(re.findall(r"[A-Z]", sub.__name__)) >= 2:
                names.add(sub.__name__)
    return names


FORBIDDEN = [r"constrained", r"_type\b", r"_error\b", r"literal_error", r"pydantic", r"Input should", r"Value error",
             r"validation error", r"\w+Obs\b", r"\bObs\b", r"\bDist\b", r"function-", r"tagged-union", r"json-or-python",
             r"\bTuple\b", r"\bdict\[", r"\bfloat\b", r"\bint\b", r"\bstr\b", r"NoneType", r"\[key\]", r"\bStrict\b",
             r"\bMeta\b", r"\bParamSpec\b", r"\bCaseDoc\b", r"\bdatetime\b"]
FORBIDDEN += [rf"\b{name}\b" for name in _model_names()]


def errors_of(path: Path) -> list[CaseError]:
    try:
        load_case(path)
    except CaseErrors as exc:
        return exc.errors
    except CaseError as exc:
        return [exc]
    raise AssertionError(f"{path.name} validated")


def ids_in(path: Path) -> dict[str, list[str]]:
    """section -> the ids of its entries as written (``#N`` for an entry without a string id)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except Exception:  # noqa: BLE001 - a fixture that is not YAML names no entry
        return {}
    out = {}
    for s in SECTIONS:
        seq = raw.get(s) if isinstance(raw, dict) else None
        if isinstance(seq, list):
            out[s] = [str(x["id"]).strip() if isinstance(x, dict) and isinstance(x.get("id"), str) else f"#{i + 1}"
                      for i, x in enumerate(seq)]
    return out


def test_the_forbidden_list_holds_the_model_names():
    assert {"PerforationsObs", "DamageMapObs", "CaseDoc"} <= _model_names()


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_every_bad_fixture_names_entries_by_id_in_plain_words(path):
    ids = ids_in(path)
    errors = errors_of(path)
    assert len({(e.path, e.message) for e in errors}) == len(errors), "the same problem reported twice"
    for e in errors:
        line = str(e)
        for pattern in FORBIDDEN:
            assert not re.search(pattern, f"{e.path}: {e.message}"), f"{pattern!r} in {line}"
        head = re.match(r"^(sources|hypotheses|evidence)\[([^\]]*)\]", e.path)
        if re.match(r"^(sources|hypotheses|evidence)\.\d", e.path) or re.match(r"^(sources|hypotheses|evidence)\[\d+\]", e.path):
            raise AssertionError(f"a list position where an id belongs: {line}")
        if head:
            section, label = head.groups()
            assert label in ids.get(section, []), f"{label!r} is not an id of {section} in {path.name}: {line}"


def write(tmp_path: Path, doc: dict) -> Path:
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture
def doc() -> dict:
    return {
        "case": {"id": "t", "title": "t", "date": "2024-01-01"},
        "sources": [{"id": "lab", "title": "lab", "reliability": "official_investigation"}],
        "hypotheses": [
            {"id": "external", "description": "e", "prior": 0.5, "mechanism": "proximity_fragmentation"},
            {"id": "internal", "description": "i", "prior": 0.5, "mechanism": "internal_explosion"},
        ],
        "evidence": [
            {"id": "tail-holes", "family": "perforations", "source": "lab", "observed": {"holes": 6, "inward": 5}},
            {"id": "frags", "family": "fragments", "source": "lab", "observed": {"counts": {"cube": 3, "natural": 1}}},
        ],
    }


def test_an_unknown_family_is_one_error(tmp_path, doc):
    doc["evidence"][0]["family"] = "perforation"
    doc["evidence"][0]["observed"] = {"holes": "six", "colour": "red"}
    errors = errors_of(write(tmp_path, doc))
    assert [(e.path, e.message.split(";")[0]) for e in errors] == [("evidence[tail-holes].family", "unknown family 'perforation'")]


def test_a_wrong_prior_is_one_error_in_plain_words(tmp_path, doc):
    doc["hypotheses"][1]["prior"] = "high"
    (e,) = errors_of(write(tmp_path, doc))
    assert e.path == "hypotheses[internal].prior"
    assert e.message == "must be a number >= 0 or {base_rate: NAME} from the priors library (got 'high')"


def test_a_negative_count_says_whole_number(tmp_path, doc):
    doc["evidence"][0]["observed"]["holes"] = -2
    (e,) = errors_of(write(tmp_path, doc))
    assert str(e).endswith("evidence[tail-holes].observed.holes: must be a whole number >= 0 (got -2)")


def test_an_entry_without_an_id_is_named_by_its_position(tmp_path, doc):
    del doc["evidence"][1]["id"]
    (e,) = errors_of(write(tmp_path, doc))
    assert (e.path, e.message) == ("evidence[#2].id", "missing; add it")


def test_a_parameter_missing_under_every_hypothesis_is_one_error(tmp_path, doc):
    doc["evidence"].append({"id": "said", "family": "claim", "source": "lab",
                            "observed": {"statement": "x", "interest": "neutral"}})
    (e,) = errors_of(write(tmp_path, doc))
    assert e.path == "evidence[said].under" and "'holds'" in e.message and "'external', 'internal'" in e.message


def test_a_group_conflict_names_both_reports(tmp_path, doc):
    a, b = copy.deepcopy(doc["evidence"][0]), copy.deepcopy(doc["evidence"][0])
    a.update(group="tail"), b.update(id="tail-holes-press", group="tail", observed={"holes": 7, "inward": 5})
    doc["evidence"][0:1] = [a, b]
    (e,) = errors_of(write(tmp_path, doc))
    assert e.path == "evidence[tail-holes-press].group" and "'tail-holes'" in e.message


def test_a_clean_case_has_no_warnings(tmp_path, doc):
    assert case_warnings(load_case(write(tmp_path, doc))) == []


def test_warnings_for_suspicious_but_legal_cases(tmp_path, doc):
    doc["sources"].append({"id": "press", "title": "press", "reliability": "independent_media"})
    doc["hypotheses"].append({"id": "bird", "description": "b", "prior": 0, "mechanism": "bird_strike"})
    doc["evidence"][1]["observed"] = {"counts": {"cube": 0}}  # no fragment: no evidence
    doc["evidence"].append({"id": "when", "family": "timing", "source": "lab",
                            "observed": {"time": 95.0, "window": [10.0, 20.0], "period": [0.0, 90.0]}})
    doc["evidence"].append({"id": "said", "family": "claim", "source": "lab",
                            "observed": {"statement": "x", "interest": "neutral"}, "under": {"default": {"holds": 0.5}}})
    found = {(w.path, w.message.split(" ")[0]) for w in case_warnings(load_case(write(tmp_path, doc)))}
    paths = {p for p, _ in found}
    assert paths == {"sources[press]", "hypotheses[bird].prior", "evidence[frags].observed.counts",
                     "evidence[when].observed.time", "evidence[said].under"}, found


def test_validate_prints_warnings_and_exits_0(tmp_path, doc):
    doc["sources"].append({"id": "press", "title": "press", "reliability": "independent_media"})
    path = write(tmp_path, doc)
    out = subprocess.run([sys.executable, "-m", "engine.cli", "validate", str(path)], capture_output=True, text=True,
                         timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stderr.splitlines() == [f"{path}: warning: sources[press]: no evidence item cites source 'press'; "
                                       "give an item `source: press` or remove it"]
    assert out.stdout.strip() == f"{path}: ok (2 hypotheses, 2 evidence items, 1 warning)"


def test_the_skeleton_shows_every_family_and_validates_without_warnings(tmp_path):
    families = {item["family"] for item in yaml.safe_load(SKELETON)["evidence"]}
    assert families == set(REGISTRY)
    path = tmp_path / "skeleton.yaml"
    path.write_text(SKELETON, encoding="utf-8")
    case = load_case(path)
    assert case_warnings(case) == []
    assert SKELETON.count("\n#") + SKELETON.count("  #") >= 2 * len(REGISTRY), "the skeleton explains itself"


def test_incident_new_writes_the_skeleton_and_never_overwrites(tmp_path):
    path = tmp_path / "mine.yaml"

    def new():  # noqa: ANN202
        return subprocess.run([sys.executable, "-m", "engine.cli", "new", str(path)], capture_output=True, text=True,
                              timeout=120, cwd=ROOT)

    out = new()
    assert out.returncode == 0, out.stderr
    assert path.read_text(encoding="utf-8") == SKELETON
    path.write_text("mine", encoding="utf-8")
    again = new()
    assert again.returncode == 2 and "already exists" in again.stderr and "Traceback" not in again.stderr
    assert path.read_text(encoding="utf-8") == "mine"


def test_a_misnamed_parameter_is_one_error(tmp_path, doc):
    doc["evidence"].append({"id": "said", "family": "claim", "source": "lab", "observed": {"statement": "x", "interest": "neutral"},
                            "under": {"default": {"hold": 0.5}}})
    (e,) = errors_of(write(tmp_path, doc))
    assert e.path == "evidence[said].under.default.hold" and e.message.startswith("unknown parameter 'hold'")


def test_a_group_member_with_a_wrong_parameter_gets_no_group_error(tmp_path, doc):
    said = {"family": "claim", "source": "lab", "group": "said", "observed": {"statement": "x", "interest": "neutral"},
            "under": {"default": {"holds": 0.5}, "external": {"holds": 0.9}}}
    doc["evidence"] += [{"id": "said-1", **copy.deepcopy(said)}, {"id": "said-2", **copy.deepcopy(said)}]
    doc["evidence"][-1]["under"]["external"]["holds"] = {"normal": [0.9, 0.1]}
    (e,) = errors_of(write(tmp_path, doc))
    assert e.path == "evidence[said-2].under.external.holds" and e.message.startswith("holds must be {beta: [a, b]} or a number")


def test_an_entry_of_unknown_keys_is_one_error_and_no_count_error(tmp_path, doc):
    doc["hypotheses"][1] = {"mechansim": "generic"}
    (e,) = errors_of(write(tmp_path, doc))
    assert e.path == "hypotheses[#2]"
    assert e.message == "none of its keys (mechansim) is known here; give id, description, prior, mechanism (see `incident schema`)"


def test_parameter_values_are_shown_as_yaml_writes_them(tmp_path, doc):
    doc["hypotheses"][0]["overrides"] = {"perforations": {"hole_rate": True}}
    (e,) = errors_of(write(tmp_path, doc))
    assert e.message == "value must be a number, got true"
