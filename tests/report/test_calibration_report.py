"""The calibration report (engine.report.calibration_report): the same template system as the
attribution report, read back from the PDF. The summary is ``summarize`` of hand-made records
(test data, no sampler), as in tests/calibration's reliability-figure test."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
from pdfcheck import flat, fonts, layout_problems, pdf_pages, xmp_values
from pypdf import PdfReader

from engine.calibration.calibrate import format_summary, summarize, verdict
from engine.report.calibration_report import write_calibration_report

WHEN = dt.datetime(2026, 1, 2, 3, 4, tzinfo=dt.UTC)


def _summary(n: int = 40) -> dict:
    """Records whose true cause is drawn from the stated probabilities (a calibrated forecaster)."""
    rng = np.random.default_rng(4)
    hids = ["a", "b", "c", "d"]
    records = []
    for i in range(n):
        p = rng.dirichlet([1, 1, 1, 1])
        records.append({"index": i, "hypotheses": hids, "truth": hids[int(rng.choice(4, p=p))],
                        "exact": {"posterior": p.tolist(), "log_z": [0.0] * 4}, "seconds": 1.0,
                        "estimated": {"mixture": {"posterior": p.tolist(), "mcse": [0.0] * 4}}})
    return summarize(records)


def test_calibration_report_prints_the_scores_plot_and_verdict_as_pdf_a(tmp_path: Path) -> None:
    summary = _summary()
    problems = verdict(summary, ece_max=0.01)
    assert problems  # 40 incidents: the ECE is above 0.01 (noise), so the verdict lists a problem
    pdf = write_calibration_report(summary, tmp_path / "calibration.pdf", text=format_summary(summary), problems=problems,
                                   generated=WHEN)
    text = flat(" ".join(pdf_pages(pdf)))
    assert "Calibration check: FAILED." in text and flat(problems[0]) in text
    for name, s in summary["scores"].items():  # every score to 4 decimals, in its row
        label = {"exact": "exact posterior", "mixture": "marginalised mixture (NUTS)"}[name]
        assert f"{label} {s['ece']:.4f} {s['ece_equal_mass']:.4f} {s['ece_top_label']:.4f} {s['brier']:.4f}" in text
    assert f"mean {summary['ece_noise_floor']['mean']:.4f}" in text
    assert "reliability over 40 simulated incidents" in text and "stated probability P(H | evidence)" in text  # the plot, as text
    assert flat(format_summary(summary).splitlines()[0]) in text
    reader = PdfReader(str(pdf))
    assert xmp_values(reader).get("pdfaid:part") == "2" and "/OutputIntents" in reader.root_object
    assert all(embedded for _, embedded in fonts(reader))
    assert reader.metadata.title == "Calibration report: calibration template, 40 incidents"
    assert layout_problems(pdf) == []
    passed = write_calibration_report(summary, tmp_path / "ok.pdf", problems=[], generated=WHEN)
    assert "Calibration check: passed." in flat(pdf_pages(passed)[0])
