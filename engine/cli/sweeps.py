"""Commands that run many more tasks: ``sensitivity`` (variants of a finished run) and
``calibrate`` (simulated incidents)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from engine.cli.common import TlsCa, TlsCert, TlsKey, clean, execution_options, fail
from engine.errors import EngineError


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

        options = execution_options(workers=workers, scheduler=scheduler, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
        result = run_sensitivity(run_dir, options=options, command=sys.argv)
    except EngineError as exc:
        fail(exc)
        return
    if json_out:
        typer.echo(json.dumps(result, indent=2))
        return
    typer.echo(f"leader: {clean(result['leader'])}")
    for alt, row in result["break_even"].items():
        typer.echo(f"break-even prior of {clean(alt)}: {row['break_even_prior']:.3f} (now {row['prior']:.3f}; "
                   f"log10 BF leader vs {alt} = {row['log10_bf_leader_vs_alt']:.2f})")
    for r in result["ablation"]:
        typer.echo(f"without {clean(r['label'])}: P({clean(result['leader'])}) = {r['leader_posterior']:.3f} ({r['shift']:+.3f}), leader {clean(r['leader'])}")
    for alarm in [*result["alarms"], *result["ties"]] or ["no single-leg alarm"]:
        typer.echo(clean(alarm))
    typer.echo(f"sensitivity: {Path(run_dir) / 'sensitivity.json'}")


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
    ece_max: Annotated[float | None, typer.Option(help="Exit 4 when the class-wise ECE is above this (default: the noise "
                                                  "floor's 95 % point at this N, a 5 % false-fail rate).")] = None,
    brier_gap_max: Annotated[float, typer.Option(help="Exit 4 when Brier exceeds the exact posterior's by more.")] = 0.01,
    json_out: Annotated[bool, typer.Option("--json", help="Print summary.json instead of the text report.")] = False,
) -> None:
    """Simulate incidents from TEMPLATE's prior predictive, attribute each, and score the calibration."""
    from engine.calibration.calibrate import CalibrationSettings, calibration_folder, format_summary, run_calibration, verdict, write_report
    from engine.spec.case import load_case

    try:
        options = execution_options(workers=workers, scheduler=scheduler, tls_ca=tls_ca, tls_cert=tls_cert, tls_key=tls_key)
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
        problems = verdict(summary, ece_max=ece_max, brier_gap_max=brier_gap_max)
        from engine.report.calibration_report import write_calibration_report

        write_calibration_report(summary, folder / "calibration.pdf", text=format_summary(summary), problems=problems)
    except EngineError as exc:
        fail(exc)
        return
    typer.echo(json.dumps(summary, indent=2) if json_out else format_summary(summary))
    typer.echo(f"calibration folder: {folder}")
    for p in problems:
        typer.echo(f"calibration check failed: {clean(p)}", err=True)
    if problems:
        raise typer.Exit(4)


def _reliability_png(summary: dict, path: Path) -> None:
    """The calibration's reliability diagram (``engine.report.calibration_plot``) as a PNG."""
    from engine.report.calibration_plot import reliability_figure
    from engine.run.store import atomic_write

    fig = reliability_figure(summary, forecasters=("engine", "exact", "mixture"))
    atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=120))
