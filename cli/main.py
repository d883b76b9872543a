"""``bitvelocity``: the one command of the project, with a subcommand per job.

Every error this project raises on purpose, and every invalid setting, ends as one
readable line on stderr and a non-zero exit code, never a stack trace: the root group
(``cli.root.BitVelocityGroup``) catches them for every command.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Annotated

import typer

from cli.alerts import alerts_app
from cli.backup import backup_app, dr_app
from cli.bench import bench
from cli.cache import cache_app
from cli.chaos import chaos_app
from cli.console import ProgressLog, change_table, fail, out, status_table
from cli.db import db_app
from cli.demo import demo
from cli.dlq import dlq_app
from cli.lake import lake_app
from cli.oltp import connector_app, loadgen, migrate
from cli.partitions import partitions_app
from cli.quality import quality_app
from cli.root import BitVelocityGroup
from cli.scaleout import scaleout_app
from cli.schema import schema_app
from cli.stack import stack_app
from cli.status import status
from config.settings import PROJECT_ROOT, load_settings
from demo.smoke import EXPECTED_OPS, run_smoke
from stack.manager import SCALEOUT_NAMES, SERVICE_NAMES, Stack
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
    cls=BitVelocityGroup,
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
app.command("migrate")(migrate)
app.command("loadgen")(loadgen)
app.command("bench")(bench)
app.command("demo")(demo)


@app.command("worker")
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
