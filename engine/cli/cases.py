"""Commands on case files: ``validate`` and ``schema`` (no PyMC imported)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from engine.errors import CaseErrors, EngineError


def validate(cases: Annotated[list[Path], typer.Argument(help="Case files to check.")]) -> None:
    """Check case files; print one line per problem (exit 2) or 'ok' per file."""
    from engine.spec.case import load_case

    bad = 0
    for path in cases:
        try:
            case = load_case(path)
        except CaseErrors as exc:
            bad += 1
            for e in exc.errors:
                typer.echo(str(e), err=True)
            continue
        except EngineError as exc:
            bad += 1
            typer.echo(str(exc), err=True)
            continue
        typer.echo(f"{path}: ok ({len(case.hypotheses)} hypotheses, {len(case.items)} evidence items)")
    if bad:
        raise typer.Exit(2)


def schema() -> None:
    """Print the JSON Schema of case files (for editor completion)."""
    from engine.spec.case import case_schema

    typer.echo(json.dumps(case_schema(), indent=2))
