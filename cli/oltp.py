"""CLI for the OLTP source: ``migrate``, ``connector register|status|delete`` and ``loadgen``."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table

from admin.connectors import ConnectClient, register_oltp_connector
from cli.console import ProgressLog, err, out
from config.settings import load_settings
from oltp.loadgen import LoadgenConfig, LoadgenResult, run_loadgen
from oltp.scaleout_events import ScaleoutLoad
from oltp.scaleout_load import produce_scaleout
from oltp.schema import migrate_oltp
from sinks.postgres.warehouse import migrate_warehouse

connector_app = typer.Typer(
    help="Manage the Debezium connector that captures the OLTP tables.", no_args_is_help=True
)


def migrate(
    database: Annotated[
        str | None, typer.Option(help="Database to migrate (default: BV_POSTGRES__DATABASE).")
    ] = None,
) -> None:
    """Create or upgrade the OLTP schema and the warehouse (bronze, silver, gold, ops, ref).

    Idempotent: applies only what is new; also sets the generated role passwords.
    """
    settings = load_settings()
    progress = ProgressLog()
    target = database or settings.postgres.database
    for label, run in (("OLTP", migrate_oltp), ("warehouse", migrate_warehouse)):
        applied = asyncio.run(run(settings, database, progress))
        names = ", ".join(f"{m.version:04d}_{m.name}" for m in applied) or "nothing new"
        out.print(f"{label} schema in database {target}: applied {names}")


@connector_app.command("register")
def connector_register(
    update: Annotated[
        bool, typer.Option(help="Replace the config if the connector exists with another one.")
    ] = False,
) -> None:
    """Register the Debezium PostgreSQL connector for the OLTP tables (idempotent)."""
    out.print(register_oltp_connector(load_settings(), update=update, progress=ProgressLog()))


@connector_app.command("status")
def connector_status(
    as_json: Annotated[
        bool, typer.Option("--json", help="Print Connect's status document.")
    ] = False,
) -> None:
    """Show the connector's and its tasks' state."""
    settings = load_settings()
    with ConnectClient(settings) as client:
        status = client.status(settings.connector.name)
    if status is None:
        err.print(f"connector {settings.connector.name} is not registered")
        raise typer.Exit(1)
    if as_json:
        out.print_json(json.dumps(status))
        return
    tasks = ", ".join(f"task {t['id']}: {t['state']}" for t in status.get("tasks", []))
    out.print(f"{status['name']}: {status['connector']['state']} ({tasks or 'no tasks'})")
    if status["connector"]["state"] != "RUNNING":
        raise typer.Exit(1)


@connector_app.command("delete")
def connector_delete() -> None:
    """Delete the connector (its replication slot stays: drop it to let WAL go)."""
    settings = load_settings()
    with ConnectClient(settings) as client:
        existed = client.delete(settings.connector.name)
    out.print(
        f"connector {settings.connector.name} {'deleted' if existed else 'was not registered'}"
    )


Seed = Annotated[int, typer.Option(help="Random seed: same seed, same operations.")]
Transactions = Annotated[int, typer.Option(help="Business transactions to run.")]
Rate = Annotated[
    float | None, typer.Option(help="Transactions per second (default: as fast as possible).")
]
Duration = Annotated[float | None, typer.Option(help="Stop after this many seconds.")]
Customers = Annotated[int, typer.Option(help="Customers to have (created if missing).")]
Products = Annotated[int, typer.Option(help="Products to have (created if missing).")]
Categories = Annotated[int, typer.Option(help="Categories to have.")]
DaysBack = Annotated[
    int,
    typer.Option(
        help="Spread order dates over this many days (beyond the 35-day revenue retention,"
        " changes go to late-events instead of gold)."
    ),
]
Chat = Annotated[int, typer.Option(help="Chat messages to produce (scale-out).")]
Telemetry = Annotated[int, typer.Option(help="Telemetry readings to produce (scale-out).")]
Posts = Annotated[int, typer.Option(help="Social posts to produce (scale-out).")]
PostUpdates = Annotated[
    int, typer.Option(help="Later versions of those posts to produce (scale-out).")
]


def loadgen(
    seed: Seed = 42,
    transactions: Transactions = 500,
    rate: Rate = None,
    duration: Duration = None,
    customers: Customers = 50,
    products: Products = 40,
    categories: Categories = 8,
    days_back: DaysBack = 30,
    chat: Chat = 0,
    telemetry: Telemetry = 0,
    posts: Posts = 0,
    post_updates: PostUpdates = 0,
) -> None:
    """Drive the OLTP database with a seeded e-commerce workload and print what it changed.

    With --chat/--telemetry/--posts it also produces those events to `chat-messages`,
    `device-telemetry` and `social-posts` (Avro), for `bitvelocity scaleout worker`.
    """
    if chat or telemetry or posts:
        _produce_scaleout_events(
            ScaleoutLoad(
                seed=seed,
                chat_messages=chat,
                telemetry=telemetry,
                posts=posts,
                post_updates=post_updates,
            )
        )
        if transactions == 0:
            return
    config = LoadgenConfig(
        seed=seed,
        customers=customers,
        products=products,
        categories=categories,
        transactions=transactions,
        rate=rate,
        duration_s=duration,
        days_back=days_back,
    )
    out.print(loadgen_table(_run_with_progress_bar(config)))


def _produce_scaleout_events(load: ScaleoutLoad) -> None:
    """Produce the scale-out events (chat, telemetry, posts) and say how many."""
    produced = produce_scaleout(load_settings(), load)
    out.print(
        f"produced {produced.chat_messages} chat messages, {produced.telemetry} readings, "
        f"{produced.post_versions} versions of {produced.posts} posts"
    )


def _run_with_progress_bar(config: LoadgenConfig) -> LoadgenResult:
    """Run the load generator with a progress bar on stderr (stdout keeps only the table)."""
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
    ) as bar:
        task = bar.add_task("business transactions", total=config.transactions)
        return asyncio.run(
            run_loadgen(
                load_settings(),
                config,
                progress=lambda done, _total: bar.update(task, completed=done),
            )
        )


def loadgen_table(result: LoadgenResult) -> Table:
    """Rows changed per table, as the CDC topics should see them."""
    table = Table(
        title=f"Load generator: {result.transactions} transactions in {result.elapsed_s:.1f} s"
    )
    for column in ("table", "inserted", "updated", "deleted", "row changes"):
        table.add_column(column, justify="right" if column != "table" else "left")
    for name, changes in sorted(result.tables.items()):
        table.add_row(
            name,
            str(changes.inserts),
            str(changes.updates),
            str(changes.deletes),
            str(changes.total),
        )
    return table
