"""Sensitivity variants run as tasks on a finished run, with known answers."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import CASES


@pytest.fixture(scope="module")
def sensitivity_result(tmp_path_factory):
    from engine.run.lifecycle import run_case
    from engine.run.sensitivity import run_sensitivity
    from engine.run.settings import ExecutionOptions, Settings
    from engine.spec.case import load_case

    case = load_case(CASES / "sensitivity.yaml")
    here = ExecutionOptions(workers=0)
    root = run_case(case, settings=Settings(seed=4, draws=300, tune=300, chains=2, smc_draws=400, smc_chains=2), options=here,
                    out=tmp_path_factory.mktemp("runs"))
    return root, run_sensitivity(root, options=here)


@pytest.mark.slow
def test_the_only_support_of_the_leader_fires_the_single_leg_alarm(sensitivity_result):
    _, res = sensitivity_result
    assert res["leader"] == "a"
    assert any("strong" in a for a in res["alarms"]), res["alarms"]
    row = next(r for r in res["ablation"] if r["label"] == "strong")
    assert row["leader"] == "b" or row["shift"] < -0.3


@pytest.mark.slow
def test_dropping_one_copy_inside_a_group_changes_nothing(sensitivity_result):
    root, res = sensitivity_result
    base = json.loads((root / "attribution.json").read_text())
    for item in ("w1", "w2"):
        row = next(r for r in res["ablation"] if r["variant"] == f"drop-{item}")
        assert row["leader_posterior"] == base["hypotheses"]["a"]["posterior"]
    assert not any("w1" in a or "w2" in a for a in res["alarms"])


@pytest.mark.slow
def test_reliability_sweep_waterfall_and_break_even_are_reported(sensitivity_result):
    root, res = sensitivity_result
    assert set(res["reliability"]) == {"witness"} and set(res["reliability"]["witness"]) == {"lo", "hi"}
    steps = [w["step"] for w in res["waterfall"]]
    assert steps == list(range(len(steps)))
    assert res["waterfall"][0]["leader_posterior"] == pytest.approx(0.5, abs=0.02)  # priors only
    assert res["break_even"]["b"]["break_even_prior"] > 0.5
    assert (root / "sensitivity.json").exists()


@pytest.mark.slow
def test_report_gains_a_sensitivity_section(sensitivity_result, tmp_path):
    from pypdf import PdfReader
    from report.pdfcheck import layout_problems

    from engine.report import build_report, load_run, write_report

    root, res = sensitivity_result
    pdf = write_report(root, tmp_path / "s.pdf")
    text = " ".join(page.extract_text() for page in PdfReader(str(pdf)).pages)
    assert "7. Sensitivity" in text and "single-leg" in text and "break-even" in text.lower()
    assert "reliability at its 10% quantile" in text and "witness (r " in text
    assert layout_problems(pdf) == []
    axes = [ax for fig in build_report(load_run(root)).figures.values() for ax in fig.axes]
    tornado = [ax for ax in axes if ax.get_label() == "tornado"]
    assert len(tornado) == 1 and len(tornado[0].patches) == 2  # one source: its low and high bar
    assert [b["source"] for b in res["tornado"]["bars"]] == ["witness"]
    assert [ax for ax in axes if ax.get_label() == "break-even"]


# ------------------------------------------------------------------ the seed cases on a real LocalCluster
SEED_CASES = Path(__file__).resolve().parents[2] / "cases"
TINY = dict(seed=3, draws=100, tune=100, chains=2, smc_draws=200, smc_chains=2)
# Function sets a task of each kind compiles on first use of a structure in a process (engine.run.compiled.Compiled):
# NUTS (log density and gradient, initial point, trace) plus the pointwise log-likelihood; the SMC
# kernel (one smc_draws value per run); the vectorised log density, which bridge sampling and
# importance reweighting share.
FUNCTION_SETS = {"nuts": 2, "smc": 1, "log density": 1}
SHARES = {"bridge": "log density", "reweight": "log density"}


def _check_compiled_once_per_worker(case, summaries: list[dict], want_ids: set[str]) -> dict:  # noqa: ANN001
    """Every planned task ran on one of two worker processes (not here), and per worker process,
    model structure and task kind exactly one task compiled, compiling that kind's function sets
    once: a structure is compiled at most once per worker whatever the hypotheses and variants."""
    from engine.model.build import structure_key

    computed = [s for s in summaries if not s.get("skipped")]
    assert sorted(s["key"] for s in computed) == sorted(want_ids)
    procs = {s["process"] for s in computed}
    assert len(procs) == 2 and f"{socket.gethostname()}:{os.getpid()}" not in procs, procs
    structures = {hashlib.sha256(repr(structure_key(case, h)).encode()).hexdigest()[:12] for h in case.hypotheses}
    assert {s["structure"] for s in computed} == structures
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for s in computed:
        groups[s["process"], s["structure"], SHARES.get(s["kind"], s["kind"])].append(s)
    tally: dict = {}
    for (proc, structure, kind), tasks in groups.items():
        compiling = [s["key"] for s in tasks if s["compiled"]]
        assert len(compiling) <= 1, f"{proc} compiled structure {structure} again for {kind} tasks {compiling}"
        assert len(compiling) == 1, f"{proc} ran {len(tasks)} {kind} tasks of a fresh structure and none compiled"
        assert sum(s["compiles"] for s in tasks) == FUNCTION_SETS[kind], (proc, kind, [s["compiles"] for s in tasks])
        tally.setdefault(proc, {"tasks": 0, "structures": {}})
        tally[proc]["tasks"] += len(tasks)
        tally[proc]["structures"].setdefault(structure, {})[kind] = {
            "tasks": len(tasks), "compiling_tasks": 1, "function_sets": FUNCTION_SETS[kind]}
    for proc in procs:  # per (process, structure): at most one compile of each function set in all
        for structure in structures:
            n = sum(s["compiles"] for s in computed if s["process"] == proc and s["structure"] == structure)
            assert n <= sum(FUNCTION_SETS.values()), (proc, structure, n)
    return tally


@pytest.mark.slow
@pytest.mark.parametrize("case_file", ["azal8243-2024.yaml", "il20-2018.yaml"])
def test_seed_case_sweep_runs_on_two_workers_compiling_each_structure_once_per_worker(case_file, tmp_path):
    from report.pdfcheck import layout_problems

    from engine.report import build_report, load_run, write_report
    from engine.results.sensitivity import plan_variants
    from engine.run.lifecycle import run_case
    from engine.run.plan import followups, plan
    from engine.run.sensitivity import run_sensitivity
    from engine.run.settings import ExecutionOptions, Settings, Variant
    from engine.run.store import RunFolder
    from engine.spec.case import load_case

    case = load_case(SEED_CASES / case_file)
    settings = Settings(**TINY)
    base: list[dict] = []
    sweep: list[dict] = []
    two = ExecutionOptions(workers=2)
    root = run_case(case, settings=settings, options=two, out=tmp_path, on_done=lambda s, done, total: base.append(s))
    _check_compiled_once_per_worker(case, base, {t.id for t in plan(case, settings)})

    res = run_sensitivity(root, options=two, on_done=lambda s, done, total: sweep.append(s))
    variants = [Variant.of(n, v["overrides"]) for n, v in plan_variants(case).items()]
    reweights = [t for t in plan(case, settings, variants) if t.variant is not None]
    assert {t.kind for t in reweights} == {"reweight"}
    # plus the sampling tasks of every (variant, hypothesis) whose reweighting was unreliable
    want = {t.id for t in reweights} | {f.id for t in reweights for f in followups(t, RunFolder(root), settings)}
    assert len(want) > len(reweights)
    tally = _check_compiled_once_per_worker(case, sweep, want)
    # each worker reused its compiled structure across many hypotheses and variants
    for proc in tally:
        mine = [s for s in sweep if s.get("process") == proc and not s.get("skipped")]
        reused = [s for s in mine if not s["compiled"]]
        # Reuse, not balance: how dask splits the tasks between the two workers depends on the machine's load
        # (CI saw 35 of 120 on one worker while other pytest workers ran). Each worker ran tasks of many
        # variants, and most of its tasks ran on a structure it had already compiled.
        assert len({s["key"].split("/")[0] for s in mine}) >= 5, sorted({s["key"] for s in mine})
        assert len(reused) >= 2 * (len(mine) - len(reused)), (len(reused), len(mine))
    assert res["execution"] == {"computed": len(want), "by_process": tally}
    assert json.loads((root / "sensitivity.json").read_text())["execution"] == res["execution"]

    # the sweep's results are complete and reported, tornado included
    sources = {s for s in case.sources if case.sources[s].reliability.kind == "beta"
               and any(it.source == s for it in case.items)}
    assert {b["source"] for b in res["tornado"]["bars"]} == sources
    assert all(0.0 <= b[k] <= 1.0 for b in res["tornado"]["bars"] for k in ("low", "high"))
    assert layout_problems(write_report(root, tmp_path / "sweep.pdf")) == []
    (tornado,) = [ax for fig in build_report(load_run(root)).figures.values() for ax in fig.axes if ax.get_label() == "tornado"]
    assert len(tornado.patches) == 2 * len(sources)
