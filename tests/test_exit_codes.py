"""Exit codes of the `incident` command over a table of bad inputs, each in a real process.

The README's promise: 2 for a bad case, priors library or option (anything given on the
command line), 3 for an unusable or changed run folder, never 1 (internal error) for bad
input; one line per problem on stderr, no traceback, nothing written, within seconds (a FIFO
or an endless device must not hang or exhaust memory). The commands of the table run
concurrently in a module fixture (each row is a process of about a second); each row is then
one test.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "tests" / "cases" / "oracle.yaml"
ORACLE = CASE.read_text(encoding="utf-8")
TIMEOUT = 60  # per process; a hang (FIFO) would exceed it


def _case(timing_items: str = "", extra: str = "") -> str:
    """The oracle case with ``timing_items`` replacing its timing item, and ``extra`` appended."""
    old = ("  - id: time\n    family: timing\n    source: lab\n"
           "    observed: {time: 52.0, window: [40.0, 70.0], period: [0.0, 600.0], clock_sd_min: 3.0, rounding_min: 5.0}\n")
    assert old in ORACLE
    return ORACLE.replace(old, timing_items or old) + extra


def _timing(item: str, group: str, when: str, window: str, period: str) -> str:
    return (f"  - id: {item}\n    group: {group}\n    family: timing\n    source: lab\n"
            f"    observed: {{time: {when}, window: [{window}], period: [{period}]}}\n")


DAY1 = ("2024-01-01T10:52:00", "2024-01-01T10:40:00, 2024-01-01T11:10:00", "2024-01-01T10:00:00, 2024-01-01T20:00:00")
DAY2 = ("2024-01-02T10:52:00", "2024-01-02T10:40:00, 2024-01-02T11:10:00", "2024-01-02T10:00:00, 2024-01-02T20:00:00")
DAY1_TZ = tuple(", ".join(f"{t}+00:00" for t in part.split(", ")) for part in DAY1)


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def _fifo(path: Path) -> Path:
    os.mkfifo(path)
    return path


def _run_folder(root: Path, *, warnings: tuple[str, ...] = (), diagnostics: bool = True) -> Path:
    """A finished run folder written by hand (no sampling), with the hashes a real run records."""
    from engine.run.store import RunFolder, input_hashes, write_json
    from engine.run.verify import _case_digest, record_outputs

    root.mkdir(parents=True)
    shutil.copy(CASE, root / "case.yaml")
    for name in ("base_rates.yaml", "mechanisms.yaml", "sources.yaml"):
        _write(root / "priors" / name, (ROOT / "priors" / name).read_bytes())
    hyp = {"prior": 0.5, "posterior_mcse": 0.01, "log_evidence": {"smc": -3.1, "bridge": -3.0, "pooled": -3.0},
           "log_evidence_se": 0.05, "method": "sampled"}
    write_json(root / "attribution.json", {
        "case": "oracle", "run": root.name, "leader": "external", "converged": True, "warnings": list(warnings),
        "hypotheses": {"external": {**hyp, "posterior": 0.7}, "internal": {**hyp, "posterior": 0.3}}})
    if diagnostics:
        per = {"rhat_max": 1.0, "ess_bulk_min": 800.0, "ess_tail_min": 700.0, "divergences": 0, "bfmi_min": 0.9,
               "n_chains": 2, "n_draws": 100, "problems": [],
               "estimators": {"smc": -3.1, "smc_se": 0.04, "bridge": -3.0, "bridge_se": 0.03, "spread": 0.1, "z": 1.0, "agree": True}}
        write_json(root / "diagnostics.json", {
            "case": "oracle", "run": root.name, "verdict": "pass", "reasons": [], "hypotheses": {"external": per, "internal": per},
            "posterior_mcse": {"external": 0.01, "internal": 0.01}, "predictive": {}, "unexplained": [],
            "contributions": {"leader": "external", "runner_up": "internal", "units": {}}})
    folder = RunFolder(root)
    man = {"case": "oracle", "run": root.name, "settings": {"seed": 1}, "inputs": input_hashes(folder),
           "case_sha256": _case_digest(folder), "finished": "2026-01-01T00:00:00+00:00"}
    write_json(folder.manifest, record_outputs(folder, man))
    return root


@dataclass(frozen=True)
class Row:
    """One bad input: how to make it (in ``tmp``), the command, the exit code, what stderr must say."""

    make: object  # (tmp: Path) -> list of command arguments
    code: int
    says: str
    lines: int | None = 1  # stderr lines (None: not counted)
    stdout_lacks: str = ""


def _resume(tmp: Path) -> Path:
    run = _run_folder(tmp / "oracle" / "r")
    (run / "case.yaml").write_text(ORACLE + "# edited\n")
    return run


ROWS: dict[str, Row] = {
    # ------------------------------------------------------------ options (exit 2)
    "draws-zero": Row(lambda t: ["run", CASE, "--draws", "0"], 2, "Invalid value for '--draws'"),
    "draws-negative": Row(lambda t: ["run", CASE, "--draws", "-5"], 2, "Invalid value for '--draws'"),
    "chains-zero": Row(lambda t: ["run", CASE, "--chains", "0"], 2, "Invalid value for '--chains'"),
    "smc-chains-one": Row(lambda t: ["run", CASE, "--smc-chains", "1"], 2, "Invalid value for '--smc-chains'"),
    "draws-not-a-number": Row(lambda t: ["run", CASE, "--draws", "many"], 2, "Invalid value for '--draws'"),
    "seed-negative": Row(lambda t: ["run", CASE, "--seed", "-1", "--workers", "0", "--out", t / "runs"], 2, "seed = -1 is out of range"),
    "unknown-option": Row(lambda t: ["show", t, "--colour"], 2, "No such option: --colour"),
    "unknown-command": Row(lambda t: ["explode"], 2, "No such command 'explode'"),
    "no-case": Row(lambda t: ["run"], 2, "give a case file"),
    "variant-method": Row(lambda t: ["run", CASE, "--variant-method", "guess"], 2, "--variant-method 'guess' is not known"),
    "out-is-a-file": Row(lambda t: ["run", CASE, "--workers", "0", "--out", _write(t / "runs", "a file\n")], 2,
                         "a file of that name is in the way"),
    "out-under-a-file": Row(lambda t: ["run", CASE, "--workers", "0", "--out", _write(t / "f", "a file\n") / "runs"], 2,
                            "a file of that name is in the way"),
    "variants-device": Row(lambda t: ["run", CASE, "--workers", "0", "--out", t / "runs", "--variants", "/dev/zero"], 2,
                           "/dev/zero: is a character device, not a regular file"),
    "variants-fifo": Row(lambda t: ["run", CASE, "--workers", "0", "--out", t / "runs", "--variants", _fifo(t / "v.yaml")], 2,
                         "is a named pipe (FIFO), not a regular file"),
    "variants-alias-bomb": Row(lambda t: ["run", CASE, "--workers", "0", "--out", t / "runs", "--variants", _write(
        t / "v.yaml", "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
            f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)))], 2,
        "--variants"),
    "variant-sets-observed-data": Row(lambda t: ["run", CASE, "--workers", "0", "--out", t / "runs", "--variants", _write(
        t / "v.yaml", "more-holes: {obs__holes__n: 40.0}\n")], 2, "obs__holes__n is not a prior or a switch"),
    "variant-sets-a-background": Row(lambda t: ["run", CASE, "--workers", "0", "--out", t / "runs", "--variants", _write(
        t / "v.yaml", "bg: {bg__holes: -3.0}\n")], 2, "observed data and what follows from it are the case file's"),
    "cluster-config-device": Row(lambda t: ["run", CASE, "--cluster", "slurm", "--cluster-config", "/dev/zero"], 2,
                                 "cluster config /dev/zero: is a character device"),
    "cluster-config-deep": Row(lambda t: ["run", CASE, "--cluster", "slurm", "--cluster-config",
                                          _write(t / "c.yaml", "a: " + "[" * 200 + "]" * 200 + "\n")], 2,
                               "nested more than 64 levels deep"),
    "report-to-dev-null": Row(lambda t: ["report", _run_folder(t / "oracle" / "r"), "-o", "/dev/null"], 2,
                              "cannot write /dev/null: it is a character device, not a regular file"),
    "run-report-output-alone": Row(lambda t: ["run", CASE, "--report-output", t / "r.pdf"], 2, "add --report"),
    "run-report-to-dev-null": Row(lambda t: ["run", CASE, "--workers", "0", "--out", t / "runs", "--report", "--report-output",
                                             "/dev/null"], 2, "cannot write /dev/null: it is a character device"),
    "report-to-a-folder": Row(lambda t: ["report", _run_folder(t / "oracle" / "r"), "-o", t], 2, "it is a folder, not a regular file"),
    # ------------------------------------------------------------ case files and priors (exit 2)
    "case-missing": Row(lambda t: ["validate", t / "nope.yaml"], 2, "file not found"),
    "case-is-a-folder": Row(lambda t: ["validate", t], 2, "is a folder, not a regular file"),
    "case-is-a-device": Row(lambda t: ["validate", "/dev/zero"], 2, "is a character device"),
    "case-links-to-a-device": Row(lambda t: ["validate", _link(t / "case.yaml", "/dev/urandom")], 2, "is a character device"),
    "case-is-a-fifo": Row(lambda t: ["run", _fifo(t / "case.yaml"), "--out", t / "runs"], 2, "is a named pipe (FIFO)"),
    "case-too-big": Row(lambda t: ["validate", _sparse(t / "big.yaml", 3_000_000)], 2, "above the 2000000-byte limit"),
    "case-deep": Row(lambda t: ["validate", _write(t / "d.yaml", "case: " + "{a: " * 100 + "1" + "}" * 100 + "\n")], 2,
                     "nested more than 64 levels deep"),
    "case-huge-integer": Row(lambda t: ["validate", _write(t / "n.yaml", "case: " + "9" * 5000 + "\n")], 2,
                             "a number with thousands of digits"),
    "case-huge-float": Row(lambda t: ["validate", _write(t / "f.yaml", ORACLE.replace("prior: 0.5", "prior: 1e999"))], 2,
                           "prior"),
    "case-not-utf8": Row(lambda t: ["validate", _write(t / "b.yaml", b"case: \xff\xfe\n")], 2, "not UTF-8"),
    "control-characters-in-a-key": Row(lambda t: ["validate", _write(
        t / "c.yaml", ORACLE.replace("case:\n", 'case:\n  "x\\nfake.yaml: ok (3 hypotheses, 5 evidence items)\\e[0m": 1\n', 1))],
        2, "\\nfake.yaml: ok (3 hypotheses", stdout_lacks="ok"),
    "bidi-override-in-a-value": Row(lambda t: ["validate", _write(
        t / "c.yaml", ORACLE.replace("prior: 0.5", 'prior: "0.5\\u202e ok"', 1))], 2, "\\u202e"),
    "merge-key-accepted": Row(lambda t: ["validate", _write(t / "m.yaml", ORACLE.replace(
        "    prior: 0.5\n", "    <<: {prior: 0.4}\n    prior: 0.5\n", 1))], 0, "", lines=0),
    "merge-key-bad-value": Row(lambda t: ["validate", _write(t / "m.yaml", ORACLE.replace(
        "    prior: 0.5\n", "    <<: [1, 2]\n", 1))], 2, "invalid YAML: expected a mapping for merging, but found scalar"),
    "group-predictions-differ": Row(lambda t: ["validate", _write(t / "g.yaml", _case(extra=(
        "  - id: statement-2\n    group: said\n    family: claim\n    source: press\n"
        "    observed: {statement: the tail was hit by fragments from outside, interest: neutral}\n"
        "    under: {external: {holds: 0.5}, internal: {holds: 0.2}, engine: {holds: 0.3}}\n")).replace(
        "  - id: statement\n", "  - id: statement\n    group: said\n"))], 2, "different 'under' predictions"),
    "timing-group-different-days": Row(lambda t: ["validate", _write(t / "g.yaml", _case(
        _timing("t1", "when", *DAY1) + _timing("t2", "when", *DAY2)))], 2,
        "are not on one clock: their periods start at different times (2024-01-01T10:00:00 and 2024-01-02T10:00:00)"),
    "timing-group-timezone-and-not": Row(lambda t: ["validate", _write(t / "g.yaml", _case(
        _timing("t1", "when", *DAY1) + _timing("t2", "when", *DAY1_TZ)))], 2, "one gives times with a timezone and the other without"),
    "timing-group-clock-and-minutes": Row(lambda t: ["validate", _write(t / "g.yaml", _case(
        _timing("t1", "when", *DAY1) + _timing("t2", "when", "52.0", "40.0, 70.0", "0.0, 600.0")))], 2,
        "one gives clock times and the other plain minutes"),
    "priors-probability-7": Row(lambda t: ["validate", _priors_case(t, "mechanisms.yaml", "other: 0.02}", "other: 7}")], 2,
                                "mechanisms.proximity_fragmentation.presence.other: present = 7 is outside [0, 1]"),
    "priors-reliability-3.5": Row(lambda t: ["validate", _priors_case(t, "sources.yaml", "eyewitness: {beta: [6.0, 4.0]}",
                                                                      "eyewitness: 3.5")], 2, "reliability.eyewitness: reliability must be"),
    "priors-negative-scale": Row(lambda t: ["validate", _priors_case(t, "mechanisms.yaml", "hole_rate: {gamma: [0.6, 0.003]}",
                                                                     "hole_rate: -4")], 2, "hole_rate = -4 is outside"),
    "priors-file-is-a-fifo": Row(lambda t: ["validate", _priors_case(t, "sources.yaml", fifo=True)], 2, "sources.yaml: <root>: is a named pipe"),
    # ------------------------------------------------------------ run folders (exit 3)
    "show-missing": Row(lambda t: ["show", t / "nope"], 3, "not found"),
    "show-a-file": Row(lambda t: ["show", _write(t / "f", "x")], 3, "not a folder"),
    "show-no-manifest": Row(lambda t: ["show", _unlink(_run_folder(t / "oracle" / "r"), "manifest.json")], 3, "manifest.json not found"),
    "show-manifest-garbage": Row(lambda t: ["show", _put(_run_folder(t / "oracle" / "r"), "manifest.json", "{not json")], 3, "is corrupt"),
    "show-manifest-deep": Row(lambda t: ["show", _put(_run_folder(t / "oracle" / "r"), "manifest.json", "[" * 100000 + "]" * 100000)], 3,
                              "is corrupt"),
    "show-manifest-fifo": Row(lambda t: ["show", _fifo_in(_run_folder(t / "oracle" / "r"), "manifest.json")], 3, "is a named pipe"),
    "show-attribution-edited": Row(lambda t: ["show", _put(_run_folder(t / "oracle" / "r"), "attribution.json", "{}")], 3,
                                   "was changed after the run: attribution.json (sha256 differs"),
    "show-case-edited": Row(lambda t: ["show", _put(_run_folder(t / "oracle" / "r"), "case.yaml", ORACLE + "# edited\n")], 3,
                            "was changed after the run: case.yaml"),
    "show-priors-edited": Row(lambda t: ["show", _append(_run_folder(t / "oracle" / "r"), "priors/sources.yaml")], 3,
                              "was changed after the run: priors/sources.yaml"),
    "show-manifest-inconsistent": Row(lambda t: ["show", _edit_manifest(_run_folder(t / "oracle" / "r"), case_sha256="0" * 64)], 3,
                                      "manifest.json (its case_sha256 does not match"),
    "show-result-added": Row(lambda t: ["show", _put(_run_folder(t / "oracle" / "r"), "posterior/extra.nc", "x")], 3,
                             "posterior/extra.nc (added)"),
    "show-attribution-links-to-device": Row(lambda t: ["show", _link_in(_run_folder(t / "oracle" / "r"), "attribution.json", "/dev/zero")],
                                            3, "attribution.json: is a symbolic link"),
    "diagnose-without-diagnostics": Row(lambda t: ["diagnose", _unlink(_run_folder(t / "oracle" / "r"), "diagnostics.json")], 3,
                                        "diagnostics.json (missing)"),
    "diagnose-old-without-diagnostics": Row(lambda t: ["diagnose", _edit_manifest(_unlink(
        _run_folder(t / "oracle" / "r"), "diagnostics.json"), outputs=None)], 3, "diagnostics.json not found; recompute it", lines=2),
    "report-edited": Row(lambda t: ["report", _put(_run_folder(t / "oracle" / "r"), "attribution.json", "{}"), "-o", t / "r.pdf"], 3,
                         "was changed after the run: attribution.json"),
    "resume-lock-is-a-link": Row(lambda t: ["run", "--resume", _lock_link(t), "--workers", "0"], 3,
                                 ".lock: is a symbolic link"),
    "resume-edited": Row(lambda t: ["run", "--resume", _resume(t), "--workers", "0"], 3, "changed since the run started: case.yaml"),
    # ------------------------------------------------------------ what is read is shown, never interpreted
    "show-markup-in-a-warning": Row(lambda t: ["show", _run_folder(t / "oracle" / "r", warnings=("[/bold] [red]x\nok",))], 0,
                                    "", lines=0),
    "show-trust-reads-a-changed-folder": Row(lambda t: ["show", _append(_run_folder(t / "oracle" / "r"), "priors/sources.yaml"),
                                                        "--trust"], 0, "WARNING: --trust: reading"),
}


def _lock_link(tmp: Path) -> Path:
    """A run folder whose lock file links to a file outside it (which a resume must not truncate)."""
    run = _run_folder(tmp / "oracle" / "r")
    _write(tmp / "precious.txt", "keep me\n")
    os.symlink(tmp / "precious.txt", run / ".lock")
    return run


def _link(path: Path, target: str) -> Path:
    os.symlink(target, path)
    return path


def _sparse(path: Path, size: int) -> Path:
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


def _priors_case(tmp: Path, name: str, old: str = "", new: str = "", fifo: bool = False) -> Path:
    lib = tmp / "mypriors"
    shutil.copytree(ROOT / "priors", lib)
    if fifo:
        (lib / name).unlink()
        os.mkfifo(lib / name)
    else:
        text = (lib / name).read_text()
        assert old in text, old
        (lib / name).write_text(text.replace(old, new, 1))
    return _write(tmp / "case.yaml", ORACLE + "priors: mypriors\n")


def _unlink(run: Path, name: str) -> Path:
    (run / name).unlink()
    return run


def _put(run: Path, name: str, text: str) -> Path:
    path = run / name
    if path.exists():
        path.unlink()
    _write(path, text)
    return run


def _append(run: Path, name: str) -> Path:
    with open(run / name, "a") as fh:
        fh.write("# edited\n")
    return run


def _fifo_in(run: Path, name: str) -> Path:
    (run / name).unlink()
    os.mkfifo(run / name)
    return run


def _link_in(run: Path, name: str, target: str) -> Path:
    (run / name).unlink()
    os.symlink(target, run / name)
    return run


def _edit_manifest(run: Path, **changes) -> Path:  # noqa: ANN003
    import json

    man = json.loads((run / "manifest.json").read_text())
    for k, v in changes.items():
        if v is None:
            man.pop(k, None)
        else:
            man[k] = v
    (run / "manifest.json").write_text(json.dumps(man))
    return run


def _snapshot(folder: Path) -> dict[str, str]:
    """{path: sha256 or kind} of everything under ``folder`` (FIFOs and links by kind, not read)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_symlink() or p.is_fifo():
            out[str(p)] = "special"
        elif p.is_file():
            out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        else:
            out[str(p)] = "dir"
    return out


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict:
    """Every row's command, run concurrently: {row: (completed process, snapshot before, snapshot after, folder)}."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    env.pop("INCIDENT_DEBUG", None)
    prepared = {}
    for name, row in ROWS.items():
        tmp = tmp_path_factory.mktemp(name)
        args = [str(a) for a in row.make(tmp)]
        prepared[name] = (tmp, args, _snapshot(tmp))

    def one(name: str):  # noqa: ANN202
        tmp, args, before = prepared[name]
        try:
            done = subprocess.run([sys.executable, "-m", "engine.cli", *args], capture_output=True, text=True, cwd=tmp,
                                  env=env, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            done = None
        return name, (done, before, _snapshot(tmp), tmp)

    with ThreadPoolExecutor(max_workers=3) as pool:
        return dict(pool.map(one, ROWS))


@pytest.mark.parametrize("name", list(ROWS))
def test_exit_code_and_one_line_per_problem(name, results):
    row = ROWS[name]
    done, before, after, tmp = results[name]
    assert done is not None, f"{name}: no answer within {TIMEOUT} s"
    assert done.returncode == row.code, (done.returncode, done.stdout[-2000:], done.stderr[-2000:])
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr, done.stderr
    lines = done.stderr.splitlines()
    if row.lines is not None:
        assert len(lines) == row.lines, lines
    assert row.says in done.stderr, done.stderr
    if row.code in (2, 3):
        assert lines and all(len(line) < 2000 for line in lines)  # one line, not a dump of the file
    if row.stdout_lacks:
        assert row.stdout_lacks not in done.stdout, done.stdout
    # nothing written: the folder of the row is as it was (a usage error or a refused run folder writes nothing)
    if row.code in (2, 3):
        assert after == before, sorted(set(after.items()) ^ set(before.items()))


def test_markup_and_control_characters_from_a_run_folder_are_printed_as_text(results):
    done = results["show-markup-in-a-warning"][0]
    assert "warning: [/bold] [red]x\\nok" in done.stdout  # shown literally, the newline escaped: no forged line
    assert not any(line.strip() == "ok" for line in done.stdout.splitlines())


def test_trust_warns_loudly_and_reads(results):
    done = results["show-trust-reads-a-changed-folder"][0]
    assert done.stderr.startswith("WARNING: --trust: reading") and "priors/sources.yaml" in done.stderr
    assert "external *" in done.stdout


def test_merge_key_is_accepted_and_the_own_key_wins(tmp_path):
    from engine.spec.case import load_case

    path = _write(tmp_path / "m.yaml", ORACLE.replace("    prior: 0.5\n", "    <<: {prior: 0.4, reasoning: merged}\n    prior: 0.5\n", 1))
    case = load_case(path)
    assert case.hypotheses["external"].reasoning == "merged"
    assert case.hypotheses["external"].prior == pytest.approx(0.5 / 1.0)
