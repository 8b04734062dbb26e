"""The ``incident`` command line: thin commands over the library.

Exit codes: 0 success, 1 unexpected internal error, 2 invalid input (case file),
3 run failure or unusable run folder, 4 diagnostics verdict "fail".
Errors are one line each on stderr, never a traceback (set INCIDENT_DEBUG=1 to see one).
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from engine.cli import cases, runs, sweeps

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Attribute the cause of an incident among competing hypotheses.")


def _version(value: bool) -> None:
    if value:
        from engine import __version__

        typer.echo(f"incident-engine {__version__}")
        raise typer.Exit(0)


@app.callback()
def _main(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    pass


for command in (cases.validate, cases.new, cases.schema, runs.run, runs.show, runs.diagnose, runs.report, sweeps.sensitivity, sweeps.calibrate):
    app.command()(command)


def _usage_errors() -> tuple[tuple[type, ...], tuple[type, ...], tuple[type, ...]]:
    """(usage errors, "no arguments: show help", aborts) of click and of typer's own copy of it."""
    modules = []
    try:
        from typer._click import exceptions as vendored  # typer >= 0.2x carries its own click

        modules.append(vendored)
    except ImportError:
        pass
    import click.exceptions

    modules.append(click.exceptions)
    get = lambda name: tuple(getattr(m, name) for m in modules if hasattr(m, name))  # noqa: E731
    return get("ClickException"), get("NoArgsIsHelpError"), (*get("Abort"), getattr(typer, "Abort", KeyboardInterrupt))


def main() -> None:
    """Console entry point: a usage error is one line (exit 2), any unexpected exception one line (exit 1)."""
    from engine.cli.common import clean

    usage, no_args, aborts = _usage_errors()
    try:
        code = app(standalone_mode=False)
    except no_args as exc:  # `incident` alone: the help
        ctx = getattr(exc, "ctx", None)
        typer.echo(ctx.get_help() if ctx is not None else str(exc))
        sys.exit(2)
    except usage as exc:  # unknown option or command, bad value, missing argument
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        typer.echo(f"error: {clean(where + exc.format_message())}{hint}", err=True)
        sys.exit(getattr(exc, "exit_code", 2) or 2)
    except aborts:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except SystemExit:
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("INCIDENT_DEBUG"):
            raise
        typer.echo(f"internal error: {clean(f'{type(exc).__name__}: {exc}')} (set INCIDENT_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)
