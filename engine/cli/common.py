"""What the commands share: one-line errors with the engine's exit codes, the execution
options (checked once, ``OptionError`` exit 2) and the TLS options of every command that takes
``--scheduler``, and reading one result of a run folder."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated

import typer

from engine.errors import CaseError, CaseErrors, EngineError

# control characters (C0, DEL, C1), line and paragraph separators, and bidirectional overrides:
# printed as escapes so that text from a file can neither start a line nor reorder one
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def clean(text: object) -> str:
    """``text`` as one printable line: control and bidi characters written as escapes (``\\n``, ``\\x1b``)."""
    return _UNSAFE.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}" if ord(m.group()) < 0x100
                                           else f"\\u{ord(m.group()):04x}"), str(text))


def console(**kw):  # noqa: ANN003, ANN201 - a rich Console
    """A rich ``Console`` that prints text as given: no markup, no emoji codes, no highlighting
    (text from a run folder such as ``[bold]`` or ``:smile:`` is shown, never interpreted)."""
    from rich.console import Console

    return Console(markup=False, emoji=False, highlight=False, **kw)


def fail(exc: EngineError) -> None:
    """Print ``exc`` as one line per problem on stderr and exit with its code."""
    lines = [str(e) for e in exc.errors] if isinstance(exc, CaseErrors) else [str(exc)]
    for line in lines:
        typer.echo(clean(line) if isinstance(exc, (CaseError, CaseErrors)) else f"error: {clean(line)}", err=True)
    raise typer.Exit(exc.exit_code)


# TLS to an existing scheduler: the same three options on every command that takes --scheduler
TlsCa = Annotated[Path | None, typer.Option("--tls-ca", metavar="FILE", help="CA certificate (PEM) that signed the "
                                            "certificates of a tls:// scheduler and its workers.")]
TlsCert = Annotated[Path | None, typer.Option("--tls-cert", metavar="FILE", help="This client's certificate (PEM), "
                                              "signed by that CA; with --scheduler tls://HOST:PORT.")]
TlsKey = Annotated[Path | None, typer.Option("--tls-key", metavar="FILE", help="The private key (PEM) of --tls-cert "
                                             "(omit it if the certificate file holds the key).")]


def execution_options(*, tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None, **options):  # noqa: ANN003, ANN202
    """The execution options, checked once (``OptionError``, exit 2, when they do not fit).

    With no --tls-* option, a tls:// scheduler uses the certificates of the dask config
    (distributed.comm.tls.*), which this also checks.
    """
    from engine.run.checks import TLSFiles
    from engine.run.settings import ExecutionOptions

    return ExecutionOptions(**options, tls=TLSFiles.of(tls_ca, tls_cert, tls_key))



Trust = Annotated[bool, typer.Option("--trust", help="Read the run folder even if its files differ from the sha256 "
                                      "recorded in its manifest (each difference is a warning on stderr).")]


def verify(run_dir: Path, trust: bool) -> dict:
    """Check ``run_dir`` against its manifest's hashes (``RunError``, exit 3, naming the changed
    files; with ``trust``, warnings on stderr instead); return the manifest."""
    from engine.run.verify import verify_run

    return verify_run(run_dir, trust=trust, warn=lambda line: typer.echo(clean(line), err=True))


def read_and_print(read, run_dir: Path, json_out: bool, printer, trust: bool = False) -> dict:  # noqa: ANN001
    """Verify a run folder, read one result of it and print it as JSON or through ``printer``."""
    try:
        verify(run_dir, trust)
        data = read(run_dir)
    except EngineError as exc:
        fail(exc)
    if json_out:
        typer.echo(json.dumps(data, indent=2))
    else:
        printer(data)
    return data
