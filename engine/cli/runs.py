"""Commands on case runs: ``run`` (or ``--resume``), ``show``, ``diagnose``, ``report``."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import TlsCa, TlsCert, TlsKey, Trust, clean, execution_options, fail, read_and_print, verify
from engine.errors import EngineError


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
    variant_tune: Annotated[int | None, typer.Option(min=0, help="NUTS tuning steps of a variant's chain, which starts from "
                                                     "the base run's (its draw, step size and scale); at most --tune. (default 250)")] = None,
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
    report: Annotated[bool, typer.Option("--report", help="Then write the PDF report, as incident report RUN does, in this "
                                         "process (its imports and reads are done already): reports/<case>-<run>.pdf.")] = False,
    report_output: Annotated[Path | None, typer.Option(help="With --report: the PDF's path instead.")] = None,
) -> None:
    """Run a case: estimate every hypothesis's evidence two ways and attribute."""
    from engine.errors import OptionError

    sampling = {"seed": seed, "draws": draws, "tune": tune, "chains": chains, "smc_draws": smc_draws, "smc_chains": smc_chains,
                "variant_method": variant_method, "variant_tune": variant_tune}
    try:
        if report_output is not None and not report:
            raise OptionError("--report-output is the path of the PDF that --report writes; add --report")
        if report_output is not None:
            from engine.run.store import refuse_special

            refuse_special(report_output)  # -o /dev/null, a folder, a FIFO: refused before any work
        if resume is not None:
            given = [f"--{k.replace('_', '-')}" for k, v in sampling.items() if v is not None]
            if case_file is not None or given or variants is not None or run_id is not None:
                extra = ", ".join(([str(case_file)] if case_file is not None else []) + given
                                  + (["--variants"] if variants is not None else []) + (["--run-id"] if run_id is not None else []))
                raise OptionError(f"--resume continues a run with the case and settings in its folder; drop {extra}")
        elif case_file is None:
            raise OptionError("give a case file (incident run CASE.yaml) or a run folder to continue (--resume RUN)")
        from engine.run.settings import VARIANT_METHODS

        if variant_method is not None and variant_method not in VARIANT_METHODS:
            raise OptionError(f"--variant-method {variant_method!r} is not known; use one of {', '.join(VARIANT_METHODS)}")
        options = execution_options(workers=workers, scheduler=scheduler, cluster=cluster, cluster_config=cluster_config, retries=retries,
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
                root = resume_run(resume, options=options, command=sys.argv, on_done=done, on_start=started,
                                  wait_for_workers=not report)  # the report is written while the workers shut down
            else:
                from engine.spec.case import load_case

                case = load_case(case_file)
                defaults = Settings()
                settings = Settings(**{k: getattr(defaults, k) if v is None else v for k, v in sampling.items()})
                root = run_case(case, settings=settings, options=options, out=out, run_id=run_id,
                                variants=_read_variants(variants), command=sys.argv, on_done=done, on_start=started,
                                wait_for_workers=not report)
        result = read_attribution(root)
    except EngineError as exc:
        fail(exc)
        return
    if json_out:
        typer.echo(json.dumps(result, indent=2))
    else:
        _print_table(result)
    typer.echo(f"run folder: {clean(root)}")
    if report:
        _report(root, report_output, trust=False)
        from engine.run.cluster import finish_closing

        finish_closing()


def _read_variants(path: Path | None) -> tuple:
    """Variants from a YAML file {name: {pm.Data name: number or list}} (read with the case files' limits)."""
    if path is None:
        return ()
    from engine.errors import OptionError, RunError
    from engine.run.settings import Variant
    from engine.spec.yamlio import read_yaml

    raw = read_yaml(path, error=lambda file, where, msg: OptionError(f"--variants {file}: {where + ': ' if where else ''}{msg}"))
    if not isinstance(raw, dict) or not raw or not all(isinstance(v, dict) for v in raw.values()):
        raise OptionError(f"--variants {path}: must map variant names to {{pm.Data name: value}} mappings")
    try:
        return tuple(Variant.of(str(name), data) for name, data in raw.items())
    except (TypeError, ValueError, RunError) as exc:  # RunError: a name that is not a safe folder name
        raise OptionError(f"--variants {path}: {exc}") from None


def _agreement(agree: bool | None, reweighted: dict | None) -> str:
    """'yes' / 'NO', or for a reweighted variant its own check: Pareto k and importance ESS."""
    if agree is not None:
        return "yes" if agree else "NO"
    if reweighted:
        k = reweighted.get("pareto_k")
        return f"n/a (reweighted: k {'-' if k is None else f'{k:.2f}'}, ESS {reweighted['ess']:.0f})"
    return "n/a"


def show(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, runs/<case>/<run>.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print attribution.json.")] = False,
    trust: Trust = False,
) -> None:
    """Print the attribution of a finished run (after checking the folder against its manifest)."""
    from engine.run.collect import read_attribution_record

    read_and_print(lambda d: read_attribution_record(d).to_json(), run_dir, json_out, _print_table, trust)


def diagnose(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, runs/<case>/<run>.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print diagnostics.json.")] = False,
    trust: Trust = False,
) -> None:
    """Convergence, estimator agreement and predictive checks of a run; exit 4 if the verdict is 'fail'. Never writes."""
    from engine.run.collect import read_diagnostics

    diag = read_and_print(read_diagnostics, run_dir, json_out, _print_diagnostics, trust)
    if diag["verdict"] == "fail":
        raise typer.Exit(4)


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder, runs/<case>/<run>.")],
    output: Annotated[Path | None, typer.Option("-o", "--output", help="PDF path (default reports/<case>-<run>.pdf).")] = None,
    trust: Trust = False,
) -> None:
    """Write the PDF attribution report of a run (after checking the folder against its manifest)."""
    _report(run_dir, output, trust=trust)


def _report(run_dir: Path, output: Path | None, *, trust: bool) -> None:
    try:
        from engine.run.store import refuse_special

        if output is not None:
            refuse_special(output)  # -o /dev/null, a folder, a FIFO: refused before any work
        verify(run_dir, trust)
        from engine.report import write_report
        from engine.run.collect import prepare_report

        prepare_report(run_dir)  # case.json written if an older run (no result hashes) lacks it
        path = write_report(run_dir, output)
    except EngineError as exc:
        fail(exc)
        return
    typer.echo(f"report: {clean(path)}")


def _print_diagnostics(diag: dict) -> None:
    from rich.table import Table

    from engine.cli.common import clean, console

    out = console(width=140)
    table = Table(title=f"diagnostics — {clean(diag['case'])} / {clean(diag['run'])}")
    for col in ("hypothesis", "r-hat max", "ESS bulk", "ESS tail", "divergences", "BFMI", "log Z SMC/IS", "log Z bridge", "agree"):
        table.add_column(col, justify="left" if col == "hypothesis" else "right")
    for hid, d in diag["hypotheses"].items():
        e = d["estimators"]
        table.add_row(clean(hid), f"{d['rhat_max']:.3f}", f"{d['ess_bulk_min']:.0f}", f"{d['ess_tail_min']:.0f}", clean(d["divergences"]),
                      f"{d['bfmi_min']:.2f}", f"{e['smc']:.2f} ± {e['smc_se']:.2f}" + (" IS" if e.get("independent") == "laplace_is" else ""), f"{e['bridge']:.2f} ± {e['bridge_se']:.2f}",
                      _agreement(e["agree"], d.get("reweighted")))
    out.print(table)
    checks = Table(title="posterior predictive p-values (per evidence unit, under each hypothesis)")
    hids = list(diag["hypotheses"])
    checks.add_column("unit")
    for hid in hids:
        checks.add_column(clean(hid), justify="right")
    for uid, row in diag["predictive"].items():
        checks.add_row(clean(uid), *[("—" if row["p_values"].get(h) is None else f"{row['p_values'][h]:.3f}") for h in hids])
    out.print(checks)
    for uid in diag["unexplained"]:
        out.print(f"none of the hypotheses explains {clean(uid)}")
    out.print(f"verdict: {clean(diag['verdict'])}")
    for reason in diag["reasons"]:
        out.print(f"  - {clean(reason)}")


def _print_table(result: dict) -> None:
    from rich.table import Table

    from engine.cli.common import clean, console
    from engine.terms import probability_term

    table = Table(title=f"{clean(result['case'])} — run {clean(result['run'])}")
    for col in ("hypothesis", "prior", "posterior", "± MCSE", "term", "log Z (SMC/IS)", "log Z (bridge)"):
        table.add_column(col, justify="left" if col in ("hypothesis", "term") else "right")
    rows = sorted(result["hypotheses"].items(), key=lambda kv: -kv[1]["posterior"])
    for hid, h in rows:
        mark = " *" if hid == result["leader"] else ""
        table.add_row(clean(hid) + mark, f"{h['prior']:.3f}", f"{h['posterior']:.3f}", f"{h['posterior_mcse']:.3f}",
                      probability_term(h["posterior"]), f"{h['log_evidence']['smc']:.2f}", f"{h['log_evidence']['bridge']:.2f}")
    out = console(width=120)
    out.print(table)
    status = "converged" if result["converged"] else "NOT converged — treat with caution"
    out.print(f"leader: {clean(result['leader'])} ({status})")
    for w in result["warnings"]:
        out.print(f"warning: {clean(w)}")
