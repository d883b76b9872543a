"""``bitvelocity partitions report | apply``: see and run the partition lifecycle."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, TypeVar

import asyncpg
import typer
from rich.table import Table

from cli.console import err, out
from config.errors import ConfigurationError
from config.settings import load_settings
from sinks.postgres.connection import run_with_connection
from sinks.postgres.partitions import (
    ChildPartition,
    PartitionInfo,
    RetentionOutcome,
    apply_retention,
    partition_report,
)
from sinks.postgres.retention import is_ahead

if TYPE_CHECKING:  # deltalake and pyarrow load when the archive command runs, not with the CLI
    from sinks.delta.archive import ArchiveOutcome

T = TypeVar("T")

# The commands print warnings themselves; without this, Python's last-resort handler would
# print each logged warning a second time. Handlers a worker configures still receive them.
logging.getLogger("bitvelocity.partitions").addHandler(logging.NullHandler())

partitions_app = typer.Typer(
    help="Partitions of every pg_partman table: report them, premake and retire by retention.",
    no_args_is_help=True,
)

Database = Annotated[
    str | None, typer.Option(help="Database to act on (default: BV_POSTGRES__DATABASE).")
]


def _run(database: str | None, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
    return run_with_connection(load_settings().postgres, database, work)


@partitions_app.command("report")
def report_command(
    exact_counts: Annotated[
        bool, typer.Option("--exact-counts", help="Count rows (default: planner estimates).")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    database: Database = None,
) -> None:
    """Per partitioned table: each child's range, rows, size, and how many are premade ahead."""
    now = datetime.now(UTC)
    report = _run(
        database,
        lambda connection: partition_report(connection, exact_counts=exact_counts, now=now),
    )
    if as_json:
        out.print_json(json.dumps([report_as_dict(info) for info in report]))
        return
    for info in report:
        out.print(report_table(info, now))
        if info.default_rows:
            err.print(
                f"[yellow]warning:[/] {info.parent} default partition holds "
                f"{info.default_rows} rows: a child was missing when they arrived",
                soft_wrap=True,
            )
    if not report:
        out.print("no pg_partman-managed tables in this database")


@partitions_app.command("apply")
def apply_command(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only print what would be created and retired.")
    ] = False,
    database: Database = None,
) -> None:
    """Premake future partitions and detach (or drop) those past retention (BV_PARTITIONS__*).

    Idempotent: a second run finds nothing to do. The default partition is never touched.
    """
    settings = load_settings().partitions
    outcome = _run(
        database,
        lambda connection: apply_retention(
            connection, settings, now=datetime.now(UTC), dry_run=dry_run
        ),
    )
    for line in outcome_lines(outcome):
        out.print(line)
    for warning in outcome.warnings:
        err.print(f"[yellow]warning:[/] {warning}", soft_wrap=True)


@partitions_app.command("archive")
def archive_command(
    older_than: Annotated[
        str, typer.Option("--older-than", help="Age of a partition's end, e.g. 90d, 12w, 36h.")
    ] = "90d",
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only compare with Delta; write and drop nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
    database: Database = None,
) -> None:
    """Move detached bronze partitions (schema archive) into the Delta bronze tables.

    Each partition's rows are appended where Delta lacks them, read back and compared by
    row count and checksums; only then is the PostgreSQL partition dropped, in the same
    transaction as its ops.data_lineage record. A mismatch keeps the partition (exit 1).
    """
    from sinks.delta.archive import archive_older_than, outcome_as_dict
    from sinks.delta.store import DeltaBronzeStore

    settings = load_settings()
    age = parse_age(older_than)
    store = DeltaBronzeStore(settings.lake, settings.lake.root(settings.stack.state_dir))
    now = datetime.now(UTC)

    async def work(connection: asyncpg.Connection) -> tuple[list[ArchiveOutcome], list[str]]:
        return await archive_older_than(connection, store, older_than=age, now=now, dry_run=dry_run)

    done, failed = _run(database, work)
    if as_json:
        out.print_json(json.dumps([outcome_as_dict(outcome) for outcome in done]))
    else:
        for outcome in done:
            part = outcome.partition
            verb = "moved" if outcome.dropped else "would move"
            out.print(
                f"{verb} {part.qualified} [{part.lower}, {part.upper}) -> "
                f"Delta bronze.{part.table}: "
                f"{outcome.rows} rows ({outcome.appended} appended, {outcome.already_in_delta} "
                f"already there), sha256 {outcome.checksum[:16]}"
            )
        if not done and not failed:
            out.print(f"nothing to archive: no detached bronze partition ended before {older_than}")
    for problem in failed:
        err.print(f"[bold red]error:[/] {problem}", soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def parse_age(text: str) -> timedelta:
    """``90d``, ``12w``, ``36h`` as a duration (days by default)."""
    match = re.fullmatch(r"\s*(\d+)\s*([dwh]?)\s*", text)
    if match is None:
        raise ConfigurationError(f"--older-than must look like 90d, 12w or 36h, not {text!r}")
    number, unit = int(match[1]), match[2] or "d"
    return {
        "d": timedelta(days=number),
        "w": timedelta(weeks=number),
        "h": timedelta(hours=number),
    }[unit]


def outcome_lines(outcome: RetentionOutcome) -> list[str]:
    """One line per change, worded as done or, for a dry run, as would be done."""
    would = "would " if outcome.dry_run else ""
    lines = []
    for premake in outcome.premade:
        starts = ", ".join(_moment(start) for start in premake.starts)
        lines.append(f"{would}premake {premake.parent}: {len(premake.starts)} from {starts}")
    for retire in outcome.retired:
        child = retire.child
        target = f" -> {retire.archive_table}" if retire.archive_table else ""
        lines.append(
            f"{would}{retire.action} {child.qualified} [{child.bounds.lower_text}, "
            f"{child.bounds.upper_text}){target} ({_size(child.size_bytes)}, {_rows(child)} rows)"
        )
    if not lines:
        lines.append("nothing to do: every partition is premade and within retention")
    return lines


def report_table(info: PartitionInfo, now: datetime) -> Table:
    """One parent's children, oldest first, the default partition last."""
    table = Table(
        title=(
            f"{info.parent} by {info.control}, every {info.interval}: {len(info.children)} "
            f"partitions, {info.premade_ahead} ahead (premake {info.premake})"
        )
    )
    for column in ("partition", "from", "to", "rows", "size", ""):
        table.add_column(column, justify="right" if column in ("rows", "size") else "left")
    for child in info.children:
        note = "default" if child.is_default else "ahead" if is_ahead(child.bounds, now) else ""
        table.add_row(
            child.qualified,
            child.bounds.lower_text or "-",
            child.bounds.upper_text or "-",
            _rows(child),
            _size(child.size_bytes),
            note,
        )
    return table


def report_as_dict(info: PartitionInfo) -> dict[str, object]:
    """The ``--json`` shape of one parent."""
    return {
        "parent": info.parent,
        "control": info.control,
        "interval": info.interval,
        "premake": info.premake,
        "premade_ahead": info.premade_ahead,
        "default_rows": info.default_rows,
        "partitions": [
            {
                "name": child.qualified,
                "bound": child.bounds.expression,
                "from": child.bounds.lower_text,
                "to": child.bounds.upper_text,
                "is_default": child.is_default,
                "rows": child.rows,
                "rows_exact": child.rows_exact,
                "size_bytes": child.size_bytes,
            }
            for child in info.children
        ],
    }


def _rows(child: ChildPartition) -> str:
    if child.rows is None:
        return "?"
    return f"{child.rows}" if child.rows_exact else f"~{child.rows}"


def _size(size_bytes: int) -> str:
    size = float(size_bytes)
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def _moment(moment: datetime) -> str:
    return f"{moment:%Y-%m-%d}" if moment.hour == moment.minute == 0 else moment.isoformat()
