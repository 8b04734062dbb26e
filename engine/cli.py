"""The ``incident`` command line: thin commands over the library.

Exit codes: 0 success, 1 unexpected internal error, 2 invalid input (case file),
3 run failure or unusable run folder, 4 diagnostics verdict "fail".
Errors are one line each on stderr, never a traceback (set INCIDENT_DEBUG=1 to see one).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from engine.errors import CaseError, CaseErrors, EngineError

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Attribute the cause of an incident among competing hypotheses.")


def _fail(exc: EngineError) -> None:
    lines = [str(e) for e in exc.errors] if isinstance(exc, CaseErrors) else [str(exc)]
    for line in lines:
        typer.echo(line if isinstance(exc, (CaseError, CaseErrors)) else f"error: {line}", err=True)
    raise typer.Exit(exc.exit_code)


# TLS to an existing scheduler: the same three options on every command that takes --scheduler
TlsCa = Annotated[Path | None, typer.Option("--tls-ca", metavar="FILE", help="CA certificate (PEM) that signed the "
                                            "certificates of a tls:// scheduler and its workers.")]
TlsCert = Annotated[Path | None, typer.Option("--tls-cert", metavar="FILE", help="This client's certificate (PEM), "
                                              "signed by that CA; with --scheduler tls://HOST:PORT.")]
TlsKey = Annotated[Path | None, typer.Option("--tls-key", metavar="FILE", help="The private key (PEM) of --tls-cert "
                                             "(omit it if the certificate file holds the key).")]


def _options(*, tls_ca: Path | None, tls_cert: Path | None, tls_key: Path | None, **options):  # noqa: ANN003, ANN202
    """The execution options, checked once (``OptionError``, exit 2, when they do not fit).

    With no --tls-* option, a tls:// scheduler uses the certificates of the dask config
    (distributed.comm.tls.*), which this also checks.
    """
    from engine.run.checks import TLSFiles
    from engine.run.settings import ExecutionOptions

    return ExecutionOptions(**options, tls=TLSFiles.of(tls_ca, tls_cert, tls_key))


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


@app.command()
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


@app.command()
def schema() -> None:
    """Print the JSON Schema of case files (for editor completion)."""
    from engine.spec.case import case_schema

    typer.echo(json.dumps(case_schema(), indent=2))


@app.command()
def run(
    case_file: Annotated[Path | None, typer.Argument(help="The case file (YAML); omit it with --resume.")] = None,
    seed: Annotated[int | None, typer.Option(help="Run seed; every task's seed derives from it. (default 20181017)")] = None,
    out: Annotated[Path, typer.Option(help="Folder that receives runs/<case>/<run>.")] = Path("runs"),
    run_id: Annotated[str | None, typer.Option(help="Name of the run folder (default: time and seed).")] = None,
    draws: Annotated[int | None, typer.Option(min=50, help="NUTS draws per chain. (default 1000)")] = None,
    tune: Annotated[int | None, typer.Option(min=50, help="NUTS tuning steps per chain. (default 1000)")] = None,
    chains: Annotated[int | None, typer.Option(min=1, help="NUTS chains per hypothesis. (default 4)")] = None,
    smc_draws: Annotated[int | None, typer.Option(min=100, help="SMC particles per chain. (default 1000)")] = None,
    smc_chains: Annotated[int | None, typer.Option(min=2, help="SMC chains per hypothesis. (default 4)")] = None,
    variants: Annotated[Path | None, typer.Option(help="YAML file {variant name: {pm.Data name: value}}: extra runs "
                                                   "with those data overrides (sensitivity sweeps), in variants/<name>/.")] = None,
    variant_method: Annotated[str | None, typer.Option(help="reweight: estimate each variant by importance reweighting of "
                                                       "the base run's draws, sampling it where the weights are unreliable; "
                                                       "sample: sample every variant. (default reweight)")] = None,
    workers: Annotated[int, typer.Option(min=0, help="Worker processes: local dask workers (0: run in this process), "
                                         "or SLURM worker processes with --cluster slurm.")] = 2,
    scheduler: Annotated[str | None, typer.Option(help="Address of an existing dask scheduler (tcp://host:port; tls://host:port with --tls-*).")] = None,
    cluster: Annotated[str, typer.Option(help="local: an embedded LocalCluster; slurm: workers as SLURM jobs (dask-jobqueue).")] = "local",
    cluster_config: Annotated[Path | None, typer.Option(help="YAML file of SLURM settings (queue, account, cores, memory, "
                                                        "walltime, ...); default: dask's jobqueue.slurm config.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue the run folder RUN: recompute only missing, truncated "
                                                "or corrupt task results.", metavar="RUN")] = None,
    retries: Annotated[int, typer.Option(min=0, help="Retries of a task that raises (each is a run warning).")] = 2,
    no_workers_timeout: Annotated[float, typer.Option(min=1, help="Fail after this many seconds without any dask worker.")] = 120.0,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print attribution.json instead of the table.")] = False,
) -> None:
    """Run a case: estimate every hypothesis's evidence two ways and attribute."""
    from engine.errors import OptionError, RunError

    sampling = {"seed": seed, "draws": draws, "tune": tune, "chains": chains, "smc_draws": smc_draws, "smc_chains": smc_chains,
                "variant_method": variant_method}
    try:
        if resume is not None:
            given = [f"--{k.replace('_', '-')}" for k, v in sampling.items() if v is not None]
            if case_file is not None or given or variants is not None or run_id is not None:
                extra = ", ".join(([str(case_file)] if case_file is not None else []) + given
                                  + (["--variants"] if variants is not None else []) + (["--run-id"] if run_id is not None else []))
                raise RunError(f"--resume continues a run with the case and settings in its folder; drop {extra}")
        elif case_file is None:
            raise RunError("give a case file (incident run CASE.yaml) or a run folder to continue (--resume RUN)")
        from engine.run.settings import VARIANT_METHODS

        if variant_method is not None and variant_method not in VARIANT_METHODS:
            raise OptionError(f"--variant-method {variant_method!r} is not known; use one of {', '.join(VARIANT_METHODS)}")
        options = _options(workers=workers, scheduler=scheduler, cluster=cluster, cluster_config=cluster_config, retries=retries,
                           no_workers_timeout=no_workers_timeout, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from engine.run.lifecycle import read_attribution, resume_run, run_case
        from engine.run.settings import Settings

        console = Console(stderr=True)
        plain = {"last": 0.0, "t0": time.monotonic()}
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      TextColumn("eta"), TimeRemainingColumn(), console=console, transient=True,
                      disable=not console.is_terminal) as bar:
            job = bar.add_task("tasks", total=None)

            def started(address: str | None) -> None:
                if address:
                    console.print(f"dask dashboard: {address}")

            def done(summary: dict, n: int, total: int) -> None:
                bar.update(job, completed=n, total=total, description=f"{summary.get('key', '')}")
                now = time.monotonic()
                if not console.is_terminal and (now - plain["last"] >= 10 or n == total):
                    plain["last"] = now
                    elapsed = now - plain["t0"]
                    eta = f"{elapsed / n * (total - n):.0f} s" if n else "?"
                    console.print(f"tasks {n}/{total}, elapsed {elapsed:.0f} s, eta {eta}", highlight=False)

            if resume is not None:
                root = resume_run(resume, options=options, command=sys.argv, on_done=done, on_start=started)
            else:
                from engine.spec.case import load_case

                case = load_case(case_file)
                defaults = Settings()
                settings = Settings(**{k: getattr(defaults, k) if v is None else v for k, v in sampling.items()})
                root = run_case(case, settings=settings, options=options, out=out, run_id=run_id,
                                variants=_read_variants(variants), command=sys.argv, on_done=done, on_start=started)
        result = read_attribution(root)
    except EngineError as exc:
        _fail(exc)
        return
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_table(result)
    typer.echo(f"run folder: {root}")


def _read_variants(path: Path | None) -> tuple:
    """Variants from a YAML file {name: {pm.Data name: number or list}}."""
    if path is None:
        return ()
    import yaml

    from engine.errors import RunError
    from engine.run.settings import Variant

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"variants file {path} not found") from None
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise RunError(f"cannot read variants file {path}: {type(exc).__name__}") from None
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, dict) for v in raw.values()):
        raise RunError(f"variants file {path} must map variant names to {{pm.Data name: value}} mappings")
    try:
        return tuple(Variant.of(str(name), data) for name, data in raw.items())
    except (TypeError, ValueError) as exc:
        raise RunError(f"variants file {path}: {exc}") from None


@app.command()
def show(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, runs/<case>/<run>.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print attribution.json.")] = False,
) -> None:
    """Print the attribution of a finished run."""
    from engine.run.lifecycle import read_attribution

    _read_and_print(read_attribution, run_dir, json_out, _print_table)


def _read_and_print(read, run_dir: Path, json_out: bool, printer) -> dict:  # noqa: ANN001
    """Read one result of a run folder and print it as JSON or through ``printer``."""
    try:
        data = read(run_dir)
    except EngineError as exc:
        _fail(exc)
    if json_out:
        typer.echo(json.dumps(data, indent=2))
    else:
        printer(data)
    return data


@app.command()
def diagnose(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, runs/<case>/<run>.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print diagnostics.json.")] = False,
) -> None:
    """Convergence, estimator agreement and predictive checks of a run; exit 4 if the verdict is 'fail'."""
    from engine.run.collect import read_diagnostics

    diag = _read_and_print(read_diagnostics, run_dir, json_out, _print_diagnostics)
    if diag["verdict"] == "fail":
        raise typer.Exit(4)


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, runs/<case>/<run>.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="PDF path (default reports/<case>-<run>.pdf).")] = None,
) -> None:
    """Write the PDF attribution report of a run."""
    try:
        from engine.report import write_report
        from engine.run.collect import prepare_report

        prepare_report(run_dir)  # diagnostics.json and case.json written if an older run lacks them
        path = write_report(run_dir, output)
    except EngineError as exc:
        _fail(exc)
        return
    typer.echo(f"report: {path}")


@app.command()
def sensitivity(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder, runs/<case>/<run>.")],
    workers: Annotated[int, typer.Option(min=0, help="Local dask worker processes (0: run in this process).")] = 2,
    scheduler: Annotated[str | None, typer.Option(help="Address of an existing dask scheduler.")] = None,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print sensitivity.json.")] = False,
) -> None:
    """Break-even priors, evidence ablation (single-leg alarm), reliability sweep, waterfall."""
    try:
        from engine.run.sensitivity import run_sensitivity

        options = _options(workers=workers, scheduler=scheduler, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        result = run_sensitivity(run_dir, options=options, command=sys.argv)
    except EngineError as exc:
        _fail(exc)
        return
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"leader: {result['leader']}")
    for alt, row in result["break_even"].items():
        typer.echo(f"break-even prior of {alt}: {row['break_even_prior']:.3f} (now {row['prior']:.3f}; "
                   f"log10 BF leader vs {alt} = {row['log10_bf_leader_vs_alt']:.2f})")
    for r in result["ablation"]:
        typer.echo(f"without {r['label']}: P({result['leader']}) = {r['leader_posterior']:.3f} ({r['shift']:+.3f}), leader {r['leader']}")
    for alarm in result["alarms"] or ["no single-leg alarm"]:
        typer.echo(alarm)
    typer.echo(f"sensitivity: {Path(run_dir) / 'sensitivity.json'}")


def _print_diagnostics(diag: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=140)
    table = Table(title=f"diagnostics — {diag['case']} / {diag['run']}")
    for col in ("hypothesis", "r-hat max", "ESS bulk", "ESS tail", "divergences", "BFMI", "log Z SMC", "log Z bridge", "agree"):
        table.add_column(col, justify="left" if col == "hypothesis" else "right")
    for hid, d in diag["hypotheses"].items():
        e = d["estimators"]
        table.add_row(hid, f"{d['rhat_max']:.3f}", f"{d['ess_bulk_min']:.0f}", f"{d['ess_tail_min']:.0f}", str(d["divergences"]),
                      f"{d['bfmi_min']:.2f}", f"{e['smc']:.2f} ± {e['smc_se']:.2f}", f"{e['bridge']:.2f} ± {e['bridge_se']:.2f}",
                      "yes" if e["agree"] else "NO")
    console.print(table)
    checks = Table(title="posterior predictive p-values (per evidence unit, under each hypothesis)")
    hids = list(diag["hypotheses"])
    checks.add_column("unit")
    for hid in hids:
        checks.add_column(hid, justify="right")
    for uid, row in diag["predictive"].items():
        checks.add_row(uid, *[("—" if row["p_values"][h] is None else f"{row['p_values'][h]:.3f}") for h in hids])
    console.print(checks)
    for uid in diag["unexplained"]:
        console.print(f"none of the hypotheses explains {uid}")
    console.print(f"verdict: {diag['verdict']}")
    for reason in diag["reasons"]:
        console.print(f"  - {reason}")


def _print_table(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    from engine.terms import probability_term

    table = Table(title=f"{result['case']} — run {result['run']}")
    for col in ("hypothesis", "prior", "posterior", "± MCSE", "term", "log Z (SMC)", "log Z (bridge)"):
        table.add_column(col, justify="left" if col in ("hypothesis", "term") else "right")
    rows = sorted(result["hypotheses"].items(), key=lambda kv: -kv[1]["posterior"])
    for hid, h in rows:
        mark = " *" if hid == result["leader"] else ""
        table.add_row(hid + mark, f"{h['prior']:.3f}", f"{h['posterior']:.3f}", f"{h['posterior_mcse']:.3f}",
                      probability_term(h["posterior"]), f"{h['log_evidence']['smc']:.2f}", f"{h['log_evidence']['bridge']:.2f}")
    console = Console(width=120)
    console.print(table)
    status = "converged" if result["converged"] else "NOT converged — treat with caution"
    console.print(f"leader: {result['leader']} ({status})")
    for w in result["warnings"]:
        console.print(f"warning: {w}")


@app.command()
def calibrate(
    template: Annotated[Path, typer.Argument(help="Case template (YAML): hypotheses, sources and the evidence design.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Number of simulated incidents.")] = 200,
    seed: Annotated[int, typer.Option(help="Run seed; incident i uses SeedSequence(seed, spawn_key=(i,)).")] = 1,
    draws: Annotated[int, typer.Option(min=10, help="NUTS draws per chain.")] = 500,
    tune: Annotated[int, typer.Option(min=0, help="NUTS tuning steps per chain.")] = 500,
    chains: Annotated[int, typer.Option(min=1, help="NUTS chains per hypothesis.")] = 2,
    smc_draws: Annotated[int, typer.Option(min=50, help="SMC particles per chain.")] = 500,
    smc_chains: Annotated[int, typer.Option(min=1, help="SMC chains per hypothesis.")] = 2,
    estimator: Annotated[str, typer.Option(help="engine, or a deliberately broken control: sign-error, mixture.")] = "engine",
    workers: Annotated[int, typer.Option(min=0, help="Local dask worker processes (0: run in this process).")] = 2,
    scheduler: Annotated[str | None, typer.Option(help="Address of an existing dask scheduler (tcp://host:port).")] = None,
    tls_ca: TlsCa = None,
    tls_cert: TlsCert = None,
    tls_key: TlsKey = None,
    out: Annotated[Path, typer.Option(help="Folder that receives calibration/<template>/<run>.")] = Path("runs"),
    run_id: Annotated[str | None, typer.Option(help="Name of the run folder (default s<seed>-n<N>-<estimator>); "
                                               "an existing one is continued.")] = None,
    ece_max: Annotated[float, typer.Option(help="Exit 4 when the class-wise ECE is above this.")] = 0.03,
    brier_gap_max: Annotated[float, typer.Option(help="Exit 4 when Brier exceeds the exact posterior's by more.")] = 0.01,
    json_out: Annotated[bool, typer.Option("--json", help="Print summary.json instead of the text report.")] = False,
) -> None:
    """Simulate incidents from TEMPLATE's prior predictive, attribute each, and score the calibration."""
    from engine.calibration.calibrate import CalibrationSettings, calibration_folder, format_summary, run_calibration, verdict, write_report
    from engine.spec.case import load_case

    try:
        options = _options(workers=workers, scheduler=scheduler, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        case = load_case(template)
        settings = CalibrationSettings(seed=seed, n=n, draws=draws, tune=tune, chains=chains, smc_draws=smc_draws,
                                       smc_chains=smc_chains, estimator=estimator)
        folder = calibration_folder(out, case, settings, run_id)
        t0 = time.monotonic()

        def done(rec: dict, k: int, total: int) -> None:
            if k == total or k % 10 == 0:
                typer.echo(f"incidents {k}/{total}, elapsed {time.monotonic() - t0:.0f} s", err=True)

        run_ = run_calibration(case, settings, options=options, out=folder, on_done=done)
        summary = write_report(run_, folder)
        _reliability_png(summary, folder / "reliability.png")
    except EngineError as exc:
        _fail(exc)
        return
    typer.echo(json.dumps(summary, indent=2) if json_out else format_summary(summary))
    typer.echo(f"calibration folder: {folder}")
    problems = verdict(summary, ece_max=ece_max, brier_gap_max=brier_gap_max)
    for p in problems:
        typer.echo(f"calibration check failed: {p}", err=True)
    if problems:
        raise typer.Exit(4)


def _reliability_png(summary: dict, path: Path) -> None:
    """The calibration's reliability diagram (``engine.report.calibration_plot``) as a PNG."""
    from engine.report.calibration_plot import reliability_figure
    from engine.run.store import atomic_write

    fig = reliability_figure(summary, forecasters=("engine", "exact", "mixture"))
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))


def main() -> None:
    """Console entry point: turn any unexpected exception into one line (exit 1)."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # noqa: BLE001 - the last line of defence against tracebacks
        if os.environ.get("INCIDENT_DEBUG"):
            raise
        typer.echo(f"internal error: {type(exc).__name__}: {exc} (set INCIDENT_DEBUG=1 for a traceback)", err=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
