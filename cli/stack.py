"""``bitvelocity stack up|down|status|cycle|logs``: run the local services on loopback."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer

from cli.console import ProgressLog, err, out, status_table
from stack import process
from stack.disk import disk_report, report_lines
from stack.manager import MONITORING_NAMES, SCALEOUT_NAMES, SERVICE_NAMES, Stack
from stack.restart_cycle import cycle_services

stack_app = typer.Typer(
    help="Run the local services: Kafka, Connect+Debezium, registry, PostgreSQL, Redis.",
    no_args_is_help=True,
)

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
def stack_down(services: ServiceNames = None) -> None:
    """Stop the services this stack started (found by pid file); leaves data in place.

    A running Prometheus (from `up --with-monitoring`) and the scale-out services (from
    `up --with-scaleout`) are stopped too.
    """
    stack = Stack.from_environment(with_monitoring=True, with_scaleout=True)
    stopped = stack.down(ProgressLog(), services)
    out.print(f"stopped: {', '.join(stopped) if stopped else 'nothing was running'}")


@stack_app.command("status")
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
