"""``bitvelocity lake run | compact | vacuum``: the Delta Lake bronze tier.

``run`` is the lake sink's worker process (its own consumer group, exactly once through
the Delta log); ``compact`` and ``vacuum`` are the tables' maintenance, safe by default:
``vacuum`` only lists unless ``--apply``, and keeps ``BV_LAKE__VACUUM_RETENTION`` (7 days).
"""

from __future__ import annotations

import json
import signal
import threading
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from cli.console import fail, out
from config.settings import load_settings
from observability.logging import configure_logging
from sinks.postgres.tables import TABLES
from streams.worker import default_worker_id

if TYPE_CHECKING:  # deltalake and pyarrow load when a lake command runs, not with the CLI
    from sinks.delta.store import DeltaBronzeStore, MaintenanceResult

lake_app = typer.Typer(
    help="Delta Lake bronze tables: run the exactly-once lake sink, compact, vacuum.",
    no_args_is_help=True,
)
Tables = Annotated[
    list[str] | None,
    typer.Option("--table", help=f"Tables to act on (default: all of {', '.join(TABLES)})."),
]


def _store() -> DeltaBronzeStore:
    from sinks.delta.store import DeltaBronzeStore

    settings = load_settings()
    return DeltaBronzeStore(settings.lake, settings.lake.root(settings.stack.state_dir))


def _tables(store: DeltaBronzeStore, tables: list[str] | None) -> list[str]:
    unknown = sorted(set(tables or []) - set(TABLES))
    if unknown:
        fail(f"unknown table(s) {', '.join(unknown)}; choose from {', '.join(TABLES)}")
    return store.existing_tables(tables or list(TABLES))


@lake_app.command("run")
def run_command(
    worker_id: Annotated[
        str | None, typer.Option(help="This worker's name (default: host-pid).")
    ] = None,
) -> None:
    """Write every CDC record to its Delta bronze table until SIGTERM/SIGINT, exactly once."""
    settings = load_settings()
    configure_logging(settings.log_level)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    from agents.lakehouse import LakeSink

    sink = LakeSink(settings, worker_id=worker_id or default_worker_id())
    stats = sink.run(stop)
    out.print(
        f"lake sink stopped: {stats.commits} commits, {stats.consumed} records, "
        f"{stats.rows} rows, {stats.dead_letters} dead letters, {stats.filtered} filtered"
    )


@lake_app.command("compact")
def compact_command(tables: Tables = None) -> None:
    """Rewrite small data files into ~BV_LAKE__TARGET_FILE_SIZE_MB files (data unchanged)."""
    store = _store()
    _print([store.compact(table) for table in _tables(store, tables)], "compacted")


@lake_app.command("vacuum")
def vacuum_command(
    tables: Tables = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Delete the files (default: only list them).")
    ] = False,
    retention_hours: Annotated[
        int | None,
        typer.Option(help="Keep files unreferenced for less than this (default: setting)."),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Allow a retention below the table minimum (7 d).")
    ] = False,
) -> None:
    """Delete data files no version within the retention references, and files left by
    writes that crashed before their commit.

    A running lake sink's staged files are unreferenced until its commit: never --force a
    retention shorter than a batch takes while a sink runs.
    """
    store = _store()
    retention = (
        timedelta(hours=retention_hours)
        if retention_hours is not None
        else store.settings.vacuum_retention
    )
    results = [
        store.vacuum(table, retention, dry_run=not apply, force=force)
        for table in _tables(store, tables)
    ]
    _print(results, "vacuumed" if apply else "would vacuum (dry run; --apply deletes)")


def _print(results: list[MaintenanceResult], title: str) -> None:
    table = Table(title=title)
    table.add_column("table")
    table.add_column("result")
    for result in results:
        table.add_row(result.table, json.dumps(result.detail, default=str))
    if not results:
        out.print("no Delta bronze tables yet")
        return
    out.print(table)
