"""``bitvelocity``: the one command of the project, with a subcommand per job.

Every error this project raises on purpose, and every invalid setting, ends as one
readable line on stderr and a non-zero exit code, never a stack trace (``guarded``).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer

from cli.alerts import alerts_app
from cli.backup import backup_app, dr_app
from cli.bench import bench
from cli.cache import cache_app
from cli.chaos import chaos_app
from cli.console import (
    ProgressLog,
    change_table,
    demo_table,
    err,
    fail,
    guarded,
    out,
    status_table,
)
from cli.db import db_app
from cli.demo_report import (
    analytics_problems,
    demo_failure,
    print_analytics,
    print_demo_checks,
)
from cli.dlq import dlq_app
from cli.lake import lake_app
from cli.oltp import connector_app, loadgen, migrate
from cli.partitions import partitions_app
from cli.quality import quality_app
from cli.scaleout import scaleout_app, scaleout_demo_section
from cli.schema import schema_app
from cli.status import status
from config.settings import PROJECT_ROOT, load_settings
from demo.checks import check_analytics
from demo.pipeline import run_demo
from demo.smoke import EXPECTED_OPS, run_smoke
from oltp.loadgen import LoadgenConfig
from stack import process
from stack.disk import disk_report, report_lines
from stack.manager import MONITORING_NAMES, SCALEOUT_NAMES, SERVICE_NAMES, Stack
from stack.restart_cycle import cycle_services
from streams.worker import AGENTS, main_worker, with_scaleout_bronze

app = typer.Typer(
    name="bitvelocity",
    help=(
        "BitVelocity Streams: exactly-once CDC from PostgreSQL into a medallion warehouse, "
        "real-time features and coherent caches.\n\n"
        "Settings come from BV_* environment variables (see config/settings.py); "
        "`bitvelocity stack up` runs every service locally, on loopback, without Docker."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
stack_app = typer.Typer(
    help="Run the local services: Kafka, Connect+Debezium, registry, PostgreSQL, Redis.",
    no_args_is_help=True,
)
app.add_typer(stack_app, name="stack")
app.add_typer(connector_app, name="connector")
app.add_typer(dlq_app, name="dlq")
app.add_typer(db_app, name="db")
app.command("status")(status)
app.add_typer(quality_app, name="quality")
app.add_typer(partitions_app, name="partitions")
app.add_typer(lake_app, name="lake")
app.add_typer(cache_app, name="cache")
app.add_typer(backup_app, name="backup")
app.add_typer(dr_app, name="dr")
app.add_typer(alerts_app, name="alerts")
app.add_typer(chaos_app, name="chaos")
app.add_typer(scaleout_app, name="scaleout")
app.add_typer(schema_app, name="schema")
app.command("migrate")(guarded(migrate))
app.command("loadgen")(guarded(loadgen))
app.command("bench")(guarded(bench))

ServiceNames = Annotated[
    list[str] | None,
    typer.Argument(help=f"Services to act on (default: all of {', '.join(SERVICE_NAMES)})."),
]
WithMonitoring = Annotated[
    bool,
    typer.Option(
        "--with-monitoring",
        help=f"Include the optional monitoring services ({', '.join(MONITORING_NAMES)}).",
    ),
]
WithScaleout = Annotated[
    bool,
    typer.Option(
        "--with-scaleout",
        help=f"Include the optional scale-out services ({', '.join(SCALEOUT_NAMES)}).",
    ),
]


@stack_app.command("up")
@guarded
def stack_up(
    services: ServiceNames = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only print the table.")] = False,
    with_monitoring: WithMonitoring = False,
    with_scaleout: WithScaleout = False,
) -> None:
    """Start the stack (idempotent): download on first use, then wait until all are ready."""
    progress = ProgressLog(quiet)
    stack = Stack.from_environment(
        create_credentials=True, with_monitoring=with_monitoring, with_scaleout=with_scaleout
    )
    rows = stack.up(progress, services)
    out.print(status_table(rows))
    out.print(
        f"stack ready in {progress.elapsed:.1f} s (state in {stack.settings.stack.state_dir})"
    )


@stack_app.command("down")
@guarded
def stack_down(services: ServiceNames = None) -> None:
    """Stop the services this stack started (found by pid file); leaves data in place.

    A running Prometheus (from `up --with-monitoring`) and the scale-out services (from
    `up --with-scaleout`) are stopped too.
    """
    stack = Stack.from_environment(with_monitoring=True, with_scaleout=True)
    stopped = stack.down(ProgressLog(), services)
    out.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@stack_app.command("status")
@guarded
def stack_status(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    with_monitoring: WithMonitoring = False,
    with_scaleout: WithScaleout = False,
) -> None:
    """Show each service: ready, starting or stopped, with pid, ports, version, state size.

    Also the WAL archive's size, and a warning for each replication slot retaining more WAL
    than BV_MONITORING__SLOT_RETAINED_WAL_WARN_BYTES.
    """
    stack = Stack.from_environment(with_monitoring=with_monitoring, with_scaleout=with_scaleout)
    rows = stack.status(sizes=True)
    postgres_ready = any(row.name == "postgres" and row.ready for row in rows)
    disk = disk_report(stack, postgres_ready=postgres_ready)
    if as_json:
        out.print_json(json.dumps([row.__dict__ for row in rows]))
    else:
        out.print(status_table(rows))
        for line in report_lines(disk):
            out.print(line)
    for warning in disk.warnings:
        err.print(f"[bold yellow]warning:[/] {warning}")
    if not all(row.ready for row in rows):
        raise typer.Exit(1)


@stack_app.command("cycle")
@guarded
def stack_cycle(
    services: ServiceNames = None,
    times: Annotated[int, typer.Option("--times", min=1, help="Restarts per service.")] = 20,
    clients: Annotated[
        int,
        typer.Option(
            "--clients", min=0, help="Fresh client connections held open while each is down."
        ),
    ] = 20,
    with_scaleout: WithScaleout = False,
) -> None:
    """Restart each service N times while clients hold connections; exit 1 on any failure.

    A drill for the stack's ports: a port inside this machine's ephemeral range can be taken
    by any client's outgoing connection while its service is down. Restarts the services of
    THIS stack: run it on a stack of your own.
    """
    progress = ProgressLog()
    stack = Stack.from_environment(create_credentials=True, with_scaleout=with_scaleout)
    stack.up(progress, services)
    results = cycle_services(stack, services, times, clients, progress)
    for result in results:
        out.print(f"{result.ok} of {result.rounds} restarts of {result.service} ok")
        for failure in result.failures:
            out.print(f"  [red]{failure}[/]")
    if any(result.failures for result in results):
        raise typer.Exit(1)


@stack_app.command("logs")
@guarded
def stack_logs(
    service: Annotated[
        str,
        typer.Argument(
            help=f"One of {', '.join(SERVICE_NAMES + MONITORING_NAMES + SCALEOUT_NAMES)}."
        ),
    ],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines.")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing.")] = False,
) -> None:
    """Print the end of a service's log file."""
    stack = Stack.from_environment(with_monitoring=True, with_scaleout=True)
    path = stack.service(service).log_path
    out.print(f"[dim]{path}[/dim]")
    print(process.tail(path, lines))
    if follow:
        _follow(path)


def _follow(path: Path) -> None:
    with path.open("r", errors="replace") as handle:
        handle.seek(0, 2)
        while True:
            line = handle.readline()
            if line:
                print(line, end="")
            else:
                time.sleep(0.5)


@app.command("demo")
@guarded
def demo(
    transactions: Annotated[int, typer.Option(help="Business transactions to generate.")] = 400,
    rate: Annotated[float, typer.Option(help="Transactions per second.")] = 200.0,
    seed: Annotated[int, typer.Option(help="Load generator seed.")] = 42,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the capture.")] = 120.0,
    summary_json: Annotated[
        Path | None, typer.Option("--json", help="Also write the summary to this JSON file.")
    ] = None,
    with_scaleout: WithScaleout = False,
    check_only: Annotated[
        bool,
        typer.Option(
            "--check-only",
            help="Only judge what gold and the Redis feature store hold now against SQL over "
            "the OLTP tables (no stack start, load or agents); exit 1 on any difference.",
        ),
    ] = False,
) -> None:
    """The end-to-end demo: stack, OLTP schema, Debezium, a seeded workload, a checked summary.

    With --with-scaleout it also starts Cassandra and FerretDB and checks chat, telemetry
    and posts events through the store agents (`bitvelocity scaleout`).

    Starts what is missing, migrates, registers the connector, runs the load generator for a
    bounded time, waits until every change reached Kafka, runs every agent until caught up,
    and prints per table what was written, captured and stored, then the hourly revenue,
    customer features and Redis feature store checked against SQL, a cache round and the web
    views. Exits 1 on any difference. The stack keeps running afterwards (`bitvelocity stack
    down` stops it).
    """
    if check_only:
        check = asyncio.run(check_analytics(load_settings(), datetime.now(UTC)))
        print_analytics(check)
        if not check.ok:
            fail("demo checks failed: " + "; ".join(analytics_problems(check)), code=1)
        out.print("[green]checks ok[/]: gold and the Redis feature store equal SQL")
        return
    progress = ProgressLog()
    stack = Stack.from_environment(create_credentials=True, with_scaleout=with_scaleout)
    out.print(status_table(stack.up(progress)))
    # Orders within 30 days: every one lands in an hourly window inside the analytics'
    # retention (35 days), so the whole load is compared against gold.
    config = LoadgenConfig(seed=seed, transactions=transactions, rate=rate, days_back=30)
    summary = run_demo(stack.settings, config, progress, timeout_s=timeout)
    out.print(demo_table(summary))
    document = summary.as_dict()
    if with_scaleout:
        scaleout = scaleout_demo_section(stack.settings, seed, progress, timeout)
        document["scaleout"] = scaleout.as_dict()
    if summary_json is not None:
        summary_json.write_text(json.dumps(document, indent=2, default=str), encoding="utf-8")
    out.print(
        f"gold: {summary.gold_current_facts} current order facts; "
        f"{summary.sink_batches} sink batches in {summary.sink_seconds:.1f} s; "
        f"dead letters so far: {summary.dead_letters}; quality failures so far: "
        f"{summary.quality_failures} (`bitvelocity quality report`)"
    )
    print_demo_checks(summary)
    if not summary.captured_ok:
        missing = [t.table for t in summary.tables if not (t.complete and t.silver_matches)]
        fail(
            f"change events missing on Kafka for: {', '.join(missing)} "
            f"(see `bitvelocity connector status` and `bitvelocity stack logs connect`)",
            code=1,
        )
    if not summary.ok:
        fail(demo_failure(summary), code=1)
    out.print(
        f"[green]demo ok[/]: {summary.transactions} transactions, every row change captured "
        f"once and landed in bronze and silver; gold hourly revenue, customer features and "
        f"the Redis feature store equal SQL over the OLTP tables; a price change evicted the "
        f"cache; in {progress.elapsed:.0f} s. Next: `bitvelocity worker` (web views on "
        f"{stack.settings.web.host}:{stack.settings.web.port}, /metrics and /dashboard on "
        f"{stack.settings.web.host}:{stack.settings.web.metrics_port}), "
        "`bitvelocity loadgen --rate 50 --duration 60`, `bitvelocity quality report`, "
        "`bitvelocity status`; the stack is "
        "still running (`bitvelocity stack down`)."
    )


@app.command("worker")
@guarded
def worker(
    agents: Annotated[
        list[str] | None,
        typer.Option(
            "--agents",
            help=f"Agents to run, repeatable (default: {', '.join(AGENTS)}; also: lake, "
            "stores = the scale-out Cassandra/MongoDB store agents).",
        ),
    ] = None,
    worker_id: Annotated[
        str | None, typer.Option(help="This worker's name in the group (default: host-pid).")
    ] = None,
    metrics: Annotated[bool, typer.Option(help="Serve /metrics (BV_WEB__METRICS_PORT).")] = True,
    with_scaleout: Annotated[
        bool,
        typer.Option(
            "--with-scaleout",
            help="Also land chat-messages, device-telemetry and social-posts in bronze "
            "(BV_SINK__SCALEOUT_BRONZE).",
        ),
    ] = False,
) -> None:
    """Run the pipeline's agents until SIGTERM/SIGINT (the batch in flight finishes first).

    Start several workers with the same settings to share the partitions; each commits its
    batches and offsets in one PostgreSQL transaction, so a crash or rebalance loses and
    duplicates nothing.
    """
    settings = load_settings()
    if with_scaleout:
        settings = with_scaleout_bronze(settings)
    main_worker(settings, agents or list(AGENTS), worker_id, metrics)


@app.command("smoke")
@guarded
def smoke(
    converter: Annotated[
        str, typer.Option(help="Value format Debezium writes: avro (via the registry) or json.")
    ] = "avro",
) -> None:
    """Smoke pipeline: a throw-away table captured by its own connector, decoded back."""
    if converter not in ("avro", "json"):
        fail(f"--converter must be avro or json, not {converter!r}")
    progress = ProgressLog()
    stack = Stack.from_environment(create_credentials=True)
    out.print(status_table(stack.up(progress)))
    changes = run_smoke(stack.settings, progress, converter=converter)  # type: ignore[arg-type]
    out.print(change_table(changes))
    received = tuple(change.op for change in changes)
    if received != EXPECTED_OPS:
        fail(f"expected change events {EXPECTED_OPS}, received {received}", code=1)
    out.print(f"[green]smoke ok[/]: {len(changes)} change events decoded")


@app.command("test")
@guarded
def run_tests(
    pytest_args: Annotated[
        list[str] | None, typer.Argument(help="Extra arguments for pytest (after --).")
    ] = None,
    keep_stack: Annotated[
        bool, typer.Option(help="Leave the services it started running afterwards.")
    ] = False,
) -> None:
    """Run the whole test suite against the real local stack (started, then stopped)."""
    progress = ProgressLog()
    # The suite also covers the scale-out services, so it starts them too.
    stack = Stack.from_environment(create_credentials=True, with_scaleout=True)
    already = {row.name for row in stack.status() if row.pid is not None}
    out.print(status_table(stack.up(progress)))
    try:
        command = [sys.executable, "-m", "pytest", *(pytest_args or [])]
        progress(f"running {' '.join(command[2:])}")
        # Our own interpreter and pytest; the extra arguments are the caller's own.
        code = subprocess.call(command, cwd=PROJECT_ROOT)  # noqa: S603
    finally:
        started = [s for s in (*SERVICE_NAMES, *SCALEOUT_NAMES) if s not in already]
        if started and not keep_stack:
            stack.down(progress, started)
    if code == 5:
        fail("pytest collected no tests: a suite that runs nothing is a failure", code=5)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
