"""``bitvelocity chaos``: a seeded chaos run with an independent oracle, and the oracle alone.

Both exit non-zero when an invariant is violated and name it (``ORACLE: FAIL I3 ...``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from chaos.env import chaos_environment
from chaos.faults import FAULTS
from chaos.oracle import OracleTarget, judge, render
from chaos.runner import ChaosConfig, ChaosReport, run_chaos
from cli.console import ProgressLog, fail
from config.settings import load_settings

chaos_app = typer.Typer(
    help=(
        "Chaos soak: run the load generator and two or more workers on an isolated pipeline "
        "while a seeded schedule injects faults (SIGKILL of workers; PostgreSQL, Redis, "
        "Kafka and Kafka Connect restarts; a SIGSTOP pause of a service; poison records and "
        "truncated Avro on CDC topics; a schema-registry outage; a re-snapshot; duplicated "
        "batches; source DDL: an added column, a widened type). Every fault is logged with "
        "its time. At the end an oracle independent of "
        "the pipeline (SQL over the OLTP source plus a read of the topics) checks invariants "
        "I1-I7 of DESIGN.md section 11 and prints a table; the exit code is 1 on any "
        "violation, naming the invariant.\n\n"
        "It stops and restarts the stack's services: run it on a stack of your own "
        "(BV_STACK__STATE_DIR and ports), never on one others are using."
    ),
    invoke_without_command=True,
)


@chaos_app.callback()
def chaos(
    ctx: typer.Context,
    minutes: Annotated[float, typer.Option(help="How long the load and faults run.")] = 3.0,
    seed: Annotated[int, typer.Option(help="Seed of the fault schedule and the load.")] = 1,
    workers: Annotated[int, typer.Option(help="Worker processes (at least 2).")] = 2,
    rate: Annotated[float, typer.Option(help="Load: business transactions per second.")] = 20.0,
    fault: Annotated[
        list[str] | None,
        typer.Option(
            "--fault", help=f"Only these faults (repeatable; default all: {', '.join(FAULTS)})."
        ),
    ] = None,
    stall_allowance: Annotated[
        float, typer.Option(help="I7: seconds a record may wait beyond the longest outage.")
    ] = 60.0,
    log_dir: Annotated[Path, typer.Option(help="Worker logs (one directory per run).")] = Path(
        ".state/chaos"
    ),
) -> None:
    """Run a chaos soak (see above); `bitvelocity chaos oracle` judges a pipeline alone."""
    if ctx.invoked_subcommand is not None:
        return
    if workers < 2:
        fail("--workers must be at least 2")
    unknown = sorted(set(fault or []) - set(FAULTS))
    if unknown:
        fail(f"unknown --fault {', '.join(unknown)}; choose from {', '.join(FAULTS)}")
    settings = load_settings()
    progress = ProgressLog()
    config = ChaosConfig(
        minutes=minutes,
        seed=seed,
        workers=workers,
        rate=rate,
        faults=tuple(fault or FAULTS),
        stall_allowance_s=stall_allowance,
        log_dir=log_dir,
    )
    progress(f"chaos: {minutes:g} min, seed {seed}, {workers} workers, {rate:g} tx/s")
    with chaos_environment(settings) as env:
        progress(f"pipeline {env.run_id}: database {env.settings.postgres.database}")
        report = asyncio.run(run_chaos(settings, env, config, progress))
    typer.echo(render_report(report))
    if not report.verdict.passed:
        fail(f"invariant(s) violated: {', '.join(report.verdict.broken)}", code=1)


def render_report(report: ChaosReport) -> str:
    lines = ["faults injected:", f"{'time':<10}{'+s':>6}  {'fault':<18}{'outage s':>9}  detail"]
    for f in report.faults:
        lines.append(
            f"{f.wall:%H:%M:%S}  {f.at_s:>6.0f}  {f.kind:<18}{f.outage_s:>9.1f}  {f.detail}"
        )
    lines.append(
        f"\nload chunks {report.load_chunks} ({report.load_failures} hit by a fault);"
        f" workers that exited by themselves {report.worker_crashes};"
        f" allowed stall {report.allowed_stall_s:.0f} s\n"
    )
    return "\n".join(lines) + render(report.verdict)


@chaos_app.command("oracle")
def oracle(
    group: Annotated[
        str | None,
        typer.Option(
            help="The medallion sink's group (default: <BV_KAFKA__CONSUMER_GROUP>-medallion)."
        ),
    ] = None,
    allowed_stall: Annotated[
        float, typer.Option(help="I7: longest stall allowed, seconds.")
    ] = 60.0,
) -> None:
    """Judge the pipeline the BV_* settings name (database, CDC prefix, Redis prefixes)."""
    settings = load_settings()
    target = OracleTarget(
        settings,
        group or f"{settings.kafka.consumer_group}-medallion",
        allowed_stall_s=allowed_stall,
    )
    verdict = asyncio.run(judge(target))
    typer.echo(render(verdict))
    if not verdict.passed:
        fail(f"invariant(s) violated: {', '.join(verdict.broken)}", code=1)
