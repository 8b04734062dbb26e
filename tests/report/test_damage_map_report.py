"""The report's damage-map sections (engine.report.damage, figures, document, report.typ).

The credible-region helper is checked against known Gaussians (closed-form axes, coverage of
fresh draws, the shadow of an ellipsoid found by brute force). The section itself is checked on
a real run: tests/cases/damage-map-2h.yaml (a cut of damage-map-4h.yaml: two hypotheses, a
quarter of the holes, one panel counted) sampled once at tiny settings; the PDF is read back
(section, panel ids, the weapon table's numbers against the stored posterior) and its figure
pages rendered. The run costs about 100 s of CPU (mostly compiling and the sampler's start).
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from pdfcheck import colour_share, ink, layout_problems, pdf_pages, render
from scipy import stats

from engine.report import SECTIONS, build_report, load_run, write_report
from engine.report import damage as D
from engine.report.rundata import load_posterior
from engine.results.records import CaseDamageMap

CASES = Path(__file__).resolve().parents[1] / "cases"
CASE = CASES / "damage-map-2h.yaml"
UNIT = "hole-map"
WHEN = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)


# ---------------------------------------------------------------- credible region (no run)
def _gaussian() -> tuple[np.ndarray, np.ndarray]:
    mean = np.array([1.5, -2.0])
    a = np.array([[2.0, 0.0], [1.2, 0.5]])
    return mean, a @ a.T


def test_90_percent_ellipse_of_a_gaussian_covers_90_percent_of_fresh_draws_and_has_its_closed_form_axes() -> None:
    mean, cov = _gaussian()
    rng = np.random.default_rng(11)
    region = D.credible_ellipsoid(rng.multivariate_normal(mean, cov, 20_000), 0.9)
    fresh = rng.multivariate_normal(mean, cov, 20_000)
    share = float(region.contains(fresh).mean())
    assert abs(share - 0.9) < 0.01, share  # binomial s.e. 0.002 plus the quantile's own error
    exact = np.sqrt(stats.chi2.ppf(0.9, 2) * np.linalg.eigvalsh(cov))[::-1]  # semi-axes of the exact 90 % ellipse
    np.testing.assert_allclose(region.semi_axes(), exact, rtol=0.03)
    np.testing.assert_allclose(region.mean, mean, atol=0.05)
    # the outline lies on the boundary: Mahalanobis distance sqrt(r2) everywhere
    line = region.outline()
    d = line - region.mean
    np.testing.assert_allclose(np.einsum("ij,ij->i", d @ np.linalg.inv(region.cov), d), region.r2, rtol=1e-9)


def test_a_3d_region_holds_its_level_and_its_shadow_is_the_brute_force_projection() -> None:
    rng = np.random.default_rng(5)
    chol = np.array([[1.0, 0, 0], [0.6, 0.8, 0], [-0.3, 0.4, 0.5]])
    draws = rng.multivariate_normal([5.0, 4.5, 4.0], chol @ chol.T, 20_000)
    region = D.credible_ellipsoid(draws, 0.9)
    assert abs(region.r2 - stats.chi2.ppf(0.9, 3)) < 0.15
    assert region.contains(draws).mean() == pytest.approx(0.9, abs=1e-3)
    # brute force: points on the ellipsoid's surface, projected on x-z; their extent along any direction
    # u equals the shadow's support function sqrt(r2 u' S_xz u)
    z = rng.normal(size=(200_000, 3))
    surface = region.mean + math.sqrt(region.r2) * (z / np.linalg.norm(z, axis=1, keepdims=True)) @ np.linalg.cholesky(region.cov).T
    shadow = region.shadow((0, 2))
    for t in np.linspace(0, math.pi, 7):
        u = np.array([math.cos(t), math.sin(t)])
        brute = float(((surface[:, [0, 2]] - shadow.mean) @ u).max())
        assert brute == pytest.approx(math.sqrt(shadow.r2 * u @ shadow.cov @ u), rel=5e-3)


def test_too_few_or_degenerate_draws_give_no_region() -> None:
    assert D.credible_ellipsoid(np.ones((5, 3))) is None
    flat = np.column_stack([np.arange(50.0), np.arange(50.0) * 2, np.zeros(50)])
    assert D.credible_ellipsoid(flat) is None


def test_panels_are_grouped_by_the_side_they_face() -> None:
    m = CaseDamageMap.model_validate({"panels": [
        {"id": "left", "corner": [0.0, 1.5, -1.5], "edge1": [0.0, 0.0, 3.0], "edge2": [3.0, 0.0, 0.0]},
        {"id": "right", "corner": [0.0, -1.5, -1.5], "edge1": [3.0, 0.0, 0.0], "edge2": [0.0, 0.0, 3.0]},
        {"id": "top", "corner": [0.0, -1.5, 1.5], "edge1": [3.0, 0.0, 0.0], "edge2": [0.0, 3.0, 0.0]}],
        "holes": [{"panel": "left", "at": [1.0, 1.5, 0.0], "bend": "in"}], "counts": [{"panel": "top", "holes": 7}]})
    got = [(f.axis, f.sign, [p.id for p in f.panels], f.dims) for f in D.faces(m)]
    assert got == [(1, 1, ["left"], (0, 2)), (1, -1, ["right"], (0, 2)), (2, 1, ["top"], (0, 1))]
    assert D.panel_counts(m) == {"left": (1, False), "right": (0, False), "top": (7, True)}
    assert "1 holes located on 2 of them, 7 more counted without positions on 1 (top)" in D.map_summary(m)


# ---------------------------------------------------------------- a real run
@pytest.fixture(scope="module")
def dm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """damage-map-2h sampled once at tiny settings, in-process."""
    from engine.run.lifecycle import run_case
    from engine.run.settings import ExecutionOptions, Settings
    from engine.spec.case import load_case

    with warnings.catch_warnings():  # engine/results/diagnostics.py: logaddexp(-inf, -inf) for a draw the map rules out
        warnings.filterwarnings("ignore", "invalid value encountered in logaddexp", RuntimeWarning)
        return run_case(load_case(CASE), settings=Settings(seed=7, draws=100, tune=100, chains=2, smc_draws=100, smc_chains=2),
                        options=ExecutionOptions(workers=0), out=tmp_path_factory.mktemp("runs"), command=["pytest"])


@pytest.fixture(scope="module")
def dm_report(dm_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    pdf = write_report(dm_run, tmp_path_factory.mktemp("report") / "dm.pdf", generated=WHEN)
    return pdf, pdf_pages(pdf)


def _flat(pages: list[str]) -> str:
    return " ".join("\n".join(pages).split())


def _section(pages: list[str]) -> str:
    """The damage-map section's text (up to the appendix)."""
    text = _flat(pages)
    start = text.rindex(f"{len(SECTIONS) + 1}. Damage map: {UNIT}")  # the heading, not its contents entry
    return text[start: text.index("A. Evidence items", start)]


@pytest.mark.slow
def test_case_json_keeps_the_panels_and_holes(dm_run: Path) -> None:
    item = next(e for e in json.loads((dm_run / "case.json").read_text(encoding="utf-8"))["evidence"] if e["family"] == "damage_map")
    m = CaseDamageMap.model_validate(item["damage_map"])
    assert len(m.panels) == 7 and len(m.holes) == 111 and [(c.panel, c.holes) for c in m.counts] == [("top-fwd", 8)]


@pytest.mark.slow
def test_the_report_has_a_damage_map_section_with_panels_and_hypotheses(dm_report: tuple[Path, list[str]]) -> None:
    _, pages = dm_report
    assert f"{len(SECTIONS) + 1}. Damage map: {UNIT}" in _flat(pages[:1]), "not in the contents"
    section = _section(pages)
    for panel in ("left-fwd", "left-aft", "top-fwd", "top-aft", "right-fwd", "right-aft", "nose"):
        assert panel in section, panel
    assert "7 inspected panels (63.0 m² of skin); 111 holes located on 6 of them, 8 more counted without positions on 1 (top-fwd)" in section
    assert "8 holes (count only)" in section and "54 holes" in section and "0 holes" in section
    assert "Burst point" in section and "Weapon posterior per hypothesis" in section
    assert "Mahalanobis" in section and "90 %" in section
    for hid in ("large-sam", "bomb"):
        assert re.search(rf"{hid}: 90 % region's semi-axes [\d., ]+ m, centre \(", section), hid
        assert f"{hid} (P = " in section  # the cloud's legend


def _row(section: str, label: str, n: int) -> list[str]:
    """The ``n`` cells after a weapon-table row's label: "mean (low – high)" or "fixed v" or "–"."""
    cell = r"(-?[\d.e]+ \(-?[\d.e]+ – -?[\d.e]+\)|fixed -?[\d.e]+|–)"
    m = re.search(re.escape(label) + r" " + r" ".join([cell] * n), section)
    assert m, f"no row {label!r} in {section[:3000]}"
    return list(m.groups())


def _close(printed: str, x: float) -> bool:
    """``printed`` is ``x`` to the digits shown."""
    digits = len(printed.split(".")[1]) if "." in printed else 0
    return abs(float(printed) - x) <= 0.51 * 10 ** -digits + 1e-9


@pytest.mark.slow
def test_the_weapon_table_is_the_stored_posterior(dm_run: Path, dm_report: tuple[Path, list[str]]) -> None:
    _, pages = dm_report
    section = _section(pages)
    hids = ["large-sam", "bomb"]
    post = {h: load_posterior(dm_run / "posterior" / f"{h}.nc").posterior for h in hids}
    rows = {"fragment speed (static), m/s (fragment_speed)": "fragment_speed", "fragments thrown, ln N (log_fragments)": "log_fragments",
            "burst point x, m (burst_x)": "burst_x", "burst point z, m (burst_z)": "burst_z", "spray angle from the course, deg (spray_angle)": "spray_angle"}
    for label, name in rows.items():
        cells = _row(section, label, len(hids))
        for h, cell in zip(hids, cells, strict=True):
            var = f"{UNIT}__{name}"
            if var not in post[h]:
                assert cell.startswith("fixed") or cell == "–", (h, name, cell)
                continue
            x = post[h][var].values.ravel()
            mean, lo, hi = re.match(r"(\S+) \((\S+) – (\S+)\)", cell).groups()
            assert _close(mean, x.mean()) and _close(lo, np.quantile(x, 0.05)) and _close(hi, np.quantile(x, 0.95)), (h, name, cell)
    # the bomb fixes its spray angle (90 deg) and samples no weapon speed or course (internal_explosion)
    assert _row(section, "spray angle from the course, deg (spray_angle)", 2)[1] == "fixed 90.0"
    assert _row(section, "weapon speed, m/s (weapon_speed)", 2)[1] == "fixed 230"
    fragments = _row(section, "fragments thrown, N = exp(log_fragments) (N)", 2)[0]
    x = np.exp(post["large-sam"][f"{UNIT}__log_fragments"].values.ravel())
    assert _close(fragments.split(" ")[0], x.mean())


@pytest.mark.slow
def test_figure_pages_are_drawn_and_the_layout_fits(dm_report: tuple[Path, list[str]], tmp_path: Path) -> None:
    pdf, pages = dm_report
    pngs = render(pdf, tmp_path / "png", dpi=100)
    panels = next(i for i, p in enumerate(pages) if i > 0 and f"{len(SECTIONS) + 1}. Damage map" in p)
    cloud = next(i for i, p in enumerate(pages) if i >= panels and "Burst point" in p)
    inward, large_sam, bomb = (0x00, 0x72, 0xB2), (0x00, 0x72, 0xB2), (0xD5, 0x5E, 0x00)  # figures.BEND_COLOURS, HYPOTHESIS_COLOURS
    assert colour_share(pngs[panels], inward, tol=30) > 5e-5  # the holes bent inward (a hundred dots)
    for colour in (large_sam, bomb):
        assert colour_share(pngs[cloud], colour, tol=30) > 5e-5  # each hypothesis's cloud and region
    for png in pngs:
        assert ink(png) > 0.01, png.name
    assert layout_problems(pdf) == []


@pytest.mark.slow
def test_the_figures_draw_every_panel_hole_and_hypothesis(dm_run: Path) -> None:
    report = build_report(load_run(dm_run), generated=WHEN)
    assert {"dm0-panels", "dm0-cloud"} <= set(report.figures)
    panels = report.figures["dm0-panels"]
    drawn = sum(len(c.get_offsets()) for ax in panels.axes for c in ax.collections)
    assert drawn == 111  # every located hole once
    cloud = report.figures["dm0-cloud"]
    assert len(cloud.axes) == 2
    for ax in cloud.axes:
        assert len(ax.collections) == 2 and len(ax.patches) == 2 * 7  # a cloud per hypothesis; each panel's fill and outline
    section = report.data["damage_maps"][0]
    assert section["weapon"]["hids"] == ["large-sam", "bomb"] and section["skipped"] == []


@pytest.mark.slow
def test_without_a_burst_point_a_hypothesis_is_skipped_with_a_line(dm_run: Path, tmp_path: Path) -> None:
    import arviz as az

    from engine.run.store import write_idata

    run = tmp_path / "run"
    shutil.copytree(dm_run, run)
    idata = load_posterior(run / "posterior" / "bomb.nc")
    post = idata.posterior.drop_vars([v for v in idata.posterior.data_vars if str(v).startswith(f"{UNIT}__burst")])
    write_idata(run / "posterior" / "bomb.nc", az.InferenceData(posterior=post))
    section = _section(pdf_pages(write_report(run, tmp_path / "r.pdf", generated=WHEN)))
    assert f"bomb: its model samples no burst point for {UNIT} (no {UNIT}__burst_x, _y or _z in its posterior); not shown." in section
    assert "large-sam: 90 % region's semi-axes" in section and "bomb: 90 % region" not in section


def test_a_run_without_a_damage_map_has_no_such_section(tmp_path: Path) -> None:
    from test_report import make_run  # the hand-made oracle run: no damage_map item

    run = make_run(tmp_path / "runs" / "oracle" / "hand")
    report = build_report(load_run(run), generated=WHEN)
    assert report.data["damage_maps"] == [] and not any(k.startswith("dm") for k in report.figures)
    assert "Damage map" not in _flat(pdf_pages(write_report(run, tmp_path / "r.pdf", generated=WHEN)))


@pytest.mark.slow
def test_an_old_case_json_without_the_map_says_how_to_get_it(dm_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    shutil.copytree(dm_run, run)
    record = json.loads((run / "case.json").read_text(encoding="utf-8"))
    for e in record["evidence"]:
        e.pop("damage_map", None)
    (run / "case.json").write_text(json.dumps(record), encoding="utf-8")
    section = _section(pdf_pages(write_report(run, tmp_path / "r.pdf", generated=WHEN)))
    assert "are not available in case.json" in section and "incident report RUN" in section


@pytest.mark.slow
def test_a_damage_map_hypothesis_is_checked_by_importance_sampling_that_agrees_with_bridge_sampling(dm_run: Path,
                                                                                                   dm_report: tuple[Path, list[str]]) -> None:
    """Its "smc" tasks hold importance-sampling batches (Student-t at the Laplace fits, not PyMC's SMC); pooled, the
    estimate agrees with bridge sampling on the NUTS draws, its Pareto k is recorded, and the report marks it "IS"."""
    diag = json.loads((dm_run / "diagnostics.json").read_text(encoding="utf-8"))
    for hid, d in diag["hypotheses"].items():
        e = d["estimators"]
        assert e["independent"] == "laplace_is", hid
        batches = [json.loads(p.read_text()) for p in sorted((dm_run / "tasks").glob(f"smc-{hid}-*.json"))]
        assert len(batches) == 2 and all(b["estimator"] == "laplace_is" and b["n"] == 100 for b in batches)
        assert e["pareto_k"] < 0.7, (hid, e["pareto_k"])  # (negative: bounded weights)
        assert abs(e["smc"] - e["bridge"]) <= max(0.25, 4 * math.hypot(e["smc_se"], e["bridge_se"])), (hid, e)
    assert "(IS, k" in _flat(dm_report[1])
