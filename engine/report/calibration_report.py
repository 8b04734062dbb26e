"""The calibration report of ``incident calibrate`` as a PDF/A, typeset by the report's template system.

``write_calibration_report(summary, path)`` takes ``engine.calibration.calibrate.summarize``'s
output (``summary.json``): the reliability diagram (``calibration_plot.reliability_figure``, as
SVG), the scores of each forecaster, the noise floors a calibrated forecaster would show at this
N, the comparison with the exact posterior where there is one, and the verdict's problems and the
plain-text summary as the caller passes them (``verdict`` and ``format_summary`` of
``engine.calibration.calibrate``: this module does not import the calibration layer). The layout
is ``calibration.typ``, in the house style ``style.typ`` it shares with the attribution report.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

from engine.report.calibration_plot import STYLE, reliability_figure
from engine.report.document import PDF_STANDARD, typeset
from engine.report.figures import svg
from engine.report.fmt import NA, is_number
from engine.run.store import atomic_write

TITLE = "Calibration report"
FORECASTERS = ("engine", "exact", "mixture")


def _f(x: object, digits: int = 4) -> str:
    return f"{x:.{digits}f}" if is_number(x) else NA


def calibration_data(summary: dict, *, text: str = "", problems: tuple[str, ...] | list[str] = (),
                     generated: dt.datetime | None = None) -> dict:
    """What the calibration report prints: strings and rows, every number formatted here."""
    from engine import __version__

    generated = generated or dt.datetime.now(dt.UTC)
    template = str(summary.get("template") or "calibration template")
    name = Path(template).stem
    scores = [[STYLE.get(f, (None, None, f))[2], _f(s.get("ece")), _f(s.get("ece_equal_mass")), _f(s.get("ece_top_label")),
               _f(s.get("brier")), _f(s.get("log_score")), _f(s.get("accuracy"), 3)] for f, s in summary["scores"].items()]
    floors = []
    if isinstance(summary.get("ece_noise_floor"), dict):
        nf = summary["ece_noise_floor"]
        floors.append(f"ECE of a calibrated forecaster stating these probabilities at this N: mean {_f(nf.get('mean'))}, "
                      f"95% quantile {_f(nf.get('q95'))}.")
    if isinstance(summary.get("brier_noise_floor"), dict):
        bf = summary["brier_noise_floor"]
        floors.append(f"Brier of a calibrated forecaster stating these probabilities at this N: mean {_f(bf.get('mean'))}, "
                      f"95% range {_f(bf.get('q025'))} to {_f(bf.get('q975'))}.")
    v = summary.get("versus_exact")
    if isinstance(v, dict):
        floors.append(f"{v.get('forecaster')} against the exact posterior on the same incidents: Brier difference "
                      f"{v.get('brier_difference', float('nan')):+.4f} ± {_f(v.get('brier_difference_se'))}, mean |P − P_exact| "
                      f"{_f(v.get('posterior_abs_error_mean'))} (largest {_f(v.get('posterior_abs_error_max'))}).")
    truth = summary.get("truth_counts") or {}
    return {
        "title": TITLE, "timestamp": int(generated.timestamp()),
        "meta": {"title": f"{TITLE}: {name}, {summary['n']} incidents", "author": f"incident-engine {__version__}",
                 "description": f"Calibration of the engine's posterior probabilities on incidents simulated from {template}",
                 "keywords": [f"template {template}", f"incidents {summary['n']}", f"engine {__version__}"]},
        "footer": f"{TITLE} · {name} · {summary['n']} incidents",
        "subtitle": f"{summary['n']} incidents simulated from {template}",
        "line": f"engine version {__version__}  ·  generated {generated:%Y-%m-%d %H:%M} UTC"
                + ("  ·  true cause: " + ", ".join(f"{h} {n}" for h, n in truth.items()) if truth else ""),
        "verdict": {"text": "Calibration check: " + ("FAILED." if problems else "passed."), "problems": list(problems)},
        "figure": "reliability",
        "alt": "Reliability diagram: observed frequency against stated probability per bin, with the counts per bin.",
        "figure_note": "Observed frequency of the true cause against the stated probability P(H | evidence), per bin, with "
                       "±2 binomial standard errors around the diagonal a calibrated forecaster follows; below, how many "
                       "stated probabilities fell in each bin (log scale).",
        "scores": scores, "floors": floors, "text": text.rstrip("\n").split("\n") if text else [],
    }


def calibration_pdf(summary: dict, *, text: str = "", problems: tuple[str, ...] | list[str] = (),
                    generated: dt.datetime | None = None, standard: str | None = PDF_STANDARD) -> bytes:
    data = calibration_data(summary, text=text, problems=problems, generated=generated)
    fig = reliability_figure(summary, forecasters=FORECASTERS)
    return typeset("calibration.typ", json.dumps({**data, "figures": {"reliability": svg(fig)}}, ensure_ascii=False),
                   timestamp=data["timestamp"], standard=standard)


def write_calibration_report(summary: dict, path: str | Path, *, text: str = "", problems: tuple[str, ...] | list[str] = (),
                             generated: dt.datetime | None = None, standard: str | None = PDF_STANDARD) -> Path:
    """Write the calibration report (PDF/A by default) atomically; return its path."""
    pdf = calibration_pdf(summary, text=text, problems=problems, generated=generated, standard=standard)
    return atomic_write(Path(path), lambda tmp: Path(tmp).write_bytes(pdf))
