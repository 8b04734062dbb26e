"""The PDF attribution report of a run folder (the only part of the engine that imports matplotlib).

    from engine.report import write_report
    path = write_report(Path("runs/oracle/dev"))          # -> reports/oracle-dev.pdf
    path = write_report(Path("runs/oracle/dev"), Path("out.pdf"))

``build_report(load_run(run_dir))`` returns the pages as matplotlib figures and
``layout_problems(pages)`` lists anything that runs off a page or overlaps (empty when the
layout is sound); ``SECTIONS`` are the section headings printed in the report.
"""

from __future__ import annotations

from engine.report.document import SECTIONS, build_report, default_output, save_pdf, write_report
from engine.report.layout import layout_problems
from engine.report.rundata import RunData, load_run

__all__ = ["SECTIONS", "RunData", "build_report", "default_output", "layout_problems", "load_run", "save_pdf", "write_report"]
