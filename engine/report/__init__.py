"""The PDF attribution report of a run folder (the only part of the engine that imports matplotlib).

    from engine.report import write_report
    path = write_report(Path("runs/oracle/dev"))          # -> reports/oracle-dev.pdf
    path = write_report(Path("runs/oracle/dev"), Path("out.pdf"))

``build_report(load_run(run_dir))`` returns a ``Report``: what the report prints as data (every
number and sentence, computed by ``engine.report.content``) and its plots as matplotlib figures;
``Report.pdf()`` typesets it with the Typst template ``report.typ`` into an archival PDF/A.
``SECTIONS`` are the section headings printed in the report.
"""

from __future__ import annotations

from engine.report.document import APPENDIX, PDF_STANDARD, SECTIONS, Report, build_report, default_output, write_report
from engine.report.rundata import RunData, load_run

__all__ = ["APPENDIX", "PDF_STANDARD", "SECTIONS", "Report", "RunData", "build_report", "default_output", "load_run", "write_report"]
