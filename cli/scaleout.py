"""``bitvelocity scaleout worker | counts``: the Cassandra and MongoDB store agents.

The stores run with ``bitvelocity stack up --with-scaleout``; events come from
``bitvelocity loadgen --chat N --telemetry N --posts N``.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cli.console import fail, out
from config.settings import Settings, load_settings

if TYPE_CHECKING:  # the Cassandra and MongoDB drivers load when a command needs them
    from agents.scaleout_stores import StoreStats
    from demo.scaleout import ScaleoutSummary

scaleout_app = typer.Typer(
    help="Scale-out stores: chat and telemetry into Cassandra, social posts into MongoDB.",
    no_args_is_help=True,
)


async def run_scaleout_worker(settings: Settings) -> dict[str, StoreStats]:
    """Run the three store agents until SIGTERM or SIGINT."""
    from agents.scaleout_stores import ScaleoutStores

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        return await ScaleoutStores(settings).run(stop)
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


@scaleout_app.command("worker")
def worker_command() -> None:
    """Consume chat-messages, device-telemetry and social-posts into the stores (until SIGTERM)."""
    stats = asyncio.run(run_scaleout_worker(load_settings()))
    for kind, s in stats.items():
        out.print(
            f"{kind}: consumed {s.consumed}, written {s.written}, "
            f"dead letters {s.dead_letters}, retries {s.retries}"
        )


@scaleout_app.command("counts")
def counts_command(
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Rows in Cassandra (chat, telemetry) and documents in MongoDB (posts)."""
    from sinks.scaleout_counts import store_counts

    settings = load_settings()
    counts = store_counts(settings)
    if as_json:
        out.print_json(json.dumps(asdict(counts)))
        return
    table = Table(title="scale-out stores")
    for column in ("store", "table", "rows"):
        table.add_column(column)
    table.add_row(
        "Cassandra", f"{settings.cassandra.keyspace}.chat_messages", str(counts.chat_messages)
    )
    table.add_row(
        "Cassandra", f"{settings.cassandra.keyspace}.device_telemetry", str(counts.telemetry)
    )
    table.add_row("MongoDB", f"{settings.mongo.database}.posts", str(counts.posts))
    out.print(table)


def scaleout_table(summary: ScaleoutSummary) -> Table:
    """This run's events per store and bronze table: produced, found, and the total there."""
    table = Table(
        title=f"Scale-out events: this run's stored in {summary.seconds:.1f} s (stores, bronze)"
    )
    for column in ("store", "events", "produced", "found", "store total"):
        table.add_column(column, justify="left" if column in ("store", "events") else "right")
    table.add_row(
        "Cassandra",
        "chat messages",
        str(summary.chat_produced),
        str(summary.chat_found),
        str(summary.chat_total),
    )
    table.add_row(
        "Cassandra",
        "telemetry readings",
        str(summary.telemetry_produced),
        str(summary.telemetry_found),
        str(summary.telemetry_total),
    )
    table.add_row(
        "MongoDB",
        f"posts ({summary.post_versions} versions)",
        str(summary.posts_produced),
        str(summary.posts_found),
        str(summary.posts_total),
    )
    expected = summary.bronze_expected
    for name, (rows, total) in summary.bronze.items():
        table.add_row("PostgreSQL", f"bronze.{name}", str(expected[name]), str(rows), str(total))
    return table


def scaleout_demo_section(
    settings: Settings, seed: int, progress: Callable[[str], None], timeout_s: float
) -> ScaleoutSummary:
    """Run the scale-out part of the demo, print its table, exit 1 when an event is missing."""
    from demo.scaleout import demo_load, run_scaleout_demo

    summary = run_scaleout_demo(
        settings, demo_load(seed, chat=1000, telemetry=2000, posts=200), progress, timeout_s
    )
    out.print(scaleout_table(summary))
    if not summary.ok:
        fail(
            "scale-out events missing from their stores or bronze (see `bitvelocity scaleout "
            "counts`, `bitvelocity stack logs cassandra|ferretdb` and `bitvelocity dlq list`)",
            code=1,
        )
    return summary
