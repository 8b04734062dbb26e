"""Build time of the seed-case PDF report (``incident report``) from a finished run folder.

    python benchmarks/report_build.py [RUN_DIR] [--repeat 3]

RUN_DIR defaults to the newest folder under runs/azal8243-2024/ (``make demo`` writes one). The
folder is copied to a temporary directory first (the report command may add case.json or
diagnostics.json to an older folder; the original is never touched). Two numbers, best of
``--repeat``:

- **command**: ``incident report COPY -o OUT`` in a fresh interpreter (imports included), what a
  user waits for;
- **build**: ``engine.report.write_report`` alone, in this process after one warm-up build
  (imports and font caches already loaded).

Prints a summary and one JSON line.

Measured here (2026-12-02, the 2-core machine shared with other sessions, load average 5-7, so
the numbers are noisy; each line a pair run back to back, the demo run of azal8243-2024):

    hand-made matplotlib layout (before)   command 16.6 s, 16.7 s, 16.0 s   build 4.47 s, 4.15 s, 7.35 s   5 pages
    Typst template (after)                 command 13.5 s,  7.8 s, 10.6 s   build 4.14 s, 2.35 s, 3.95 s   8 pages
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _default_run() -> Path:
    runs = sorted((p for p in (ROOT / "runs" / "azal8243-2024").glob("*") if (p / "attribution.json").exists()),
                  key=lambda p: p.stat().st_mtime)
    if not runs:
        sys.exit("no finished run under runs/azal8243-2024/: run `make demo` first or pass a run folder")
    return runs[-1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", nargs="?", type=Path)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    src = (args.run_dir or _default_run()).resolve()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / src.parent.name / src.name
        shutil.copytree(src, run)
        out = Path(tmp) / "report.pdf"
        command = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "engine.cli", "report", str(run), "-o", str(out)], check=True,
                           capture_output=True, cwd=ROOT)
            command.append(time.perf_counter() - t0)
        from engine.report import write_report

        write_report(run, out)  # warm-up
        build = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            write_report(run, out)
            build.append(time.perf_counter() - t0)
        from pypdf import PdfReader

        pages, size = len(PdfReader(str(out)).pages), out.stat().st_size
    result = {"run": f"{src.parent.name}/{src.name}", "command_s": round(min(command), 3), "build_s": round(min(build), 3),
              "pages": pages, "bytes": size, "repeat": args.repeat}
    print(f"report of {result['run']}: {pages} pages, {size / 1024:.0f} KiB")
    print(f"  incident report (fresh interpreter): {min(command):.2f} s (best of {args.repeat})")
    print(f"  write_report (warm, in process):     {min(build):.2f} s (best of {args.repeat})")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
