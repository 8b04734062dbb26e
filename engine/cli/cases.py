"""Commands on case files: ``validate``, ``new`` and ``schema`` (no PyMC imported)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from engine.errors import CaseErrors, EngineError


def validate(cases: Annotated[list[Path], typer.Argument(help="Case files to check.")]) -> None:
    """Check case files; print one line per problem (exit 2) or 'ok' per file, after its warnings
    (FILE: warning: path: message; suspicious but legal, exit 0)."""
    from engine.cli.common import clean
    from engine.spec.case import load_case
    from engine.spec.lint import case_warnings

    bad = 0
    for path in cases:
        try:
            case = load_case(path)
        except CaseErrors as exc:
            bad += 1
            for e in exc.errors:
                typer.echo(clean(e), err=True)
            continue
        except EngineError as exc:
            bad += 1
            typer.echo(clean(exc), err=True)
            continue
        warnings = case_warnings(case)
        for w in warnings:
            typer.echo(clean(w), err=True)
        noted = f", {len(warnings)} warning{'s' * (len(warnings) != 1)}" if warnings else ""
        typer.echo(f"{clean(path)}: ok ({len(case.hypotheses)} hypotheses, {len(case.items)} evidence items{noted})")
    if bad:
        raise typer.Exit(2)


def new(path: Annotated[Path, typer.Argument(help="Where to write the skeleton.")] = Path("case.yaml")) -> None:
    """Write a commented case skeleton (one item of every evidence family) to PATH; never overwrites (exit 2)."""
    from engine.spec.skeleton import SKELETON

    try:
        with path.open("x", encoding="utf-8") as f:
            f.write(SKELETON)
    except FileExistsError:
        typer.echo(f"{path}: already exists; choose another path or remove the file", err=True)
        raise typer.Exit(2) from None
    except OSError as exc:
        typer.echo(f"{path}: cannot write ({exc.strerror}); check the folder and its permissions", err=True)
        raise typer.Exit(2) from None
    typer.echo(f"{path}: written; edit it, then run `incident validate {path}`")


def schema() -> None:
    """Print the JSON Schema of case files (for editor completion)."""
    from engine.spec.case import case_schema

    typer.echo(json.dumps(case_schema(), indent=2))
