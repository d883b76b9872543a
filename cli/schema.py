"""``bitvelocity schema changes | accept``: source schema drift and what the sink decided."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from cli.console import out
from config.errors import PermanentError
from config.settings import load_settings
from sinks.postgres.connection import run_with_connection
from sinks.postgres.schema_changes import (
    UnknownTableError,
    accept_schema_changes,
    list_schema_changes,
)

schema_app = typer.Typer(
    help="Source schema changes: what the sink found and decided; resume a paused table.",
    no_args_is_help=True,
)
Database = Annotated[
    str | None, typer.Option(help="Warehouse database (default: BV_POSTGRES__DATABASE).")
]


class NotATableError(PermanentError):
    """The table named is not one the medallion sink writes."""


@schema_app.command("changes")
def changes_command(
    table: Annotated[str | None, typer.Argument(help="Only this table.")] = None,
    database: Database = None,
) -> None:
    """Every recorded change: when, table, schema id, LSN, column, change, decision, accepted."""
    rows = run_with_connection(
        load_settings().postgres, database, lambda c: list_schema_changes(c, table)
    )
    grid = Table(
        "when (UTC)", "table", "schema", "LSN", "column", "change", "types", "decision", "accepted"
    )
    for r in rows:
        types = " -> ".join(t for t in (r["silver_type"], r["source_type"]) if t)
        grid.add_row(
            r["detected_at"].strftime("%Y-%m-%d %H:%M:%S"),
            r["table_name"],
            str(r["schema_id"]),
            str(r["source_lsn"] or ""),
            r["column_name"],
            r["change"],
            types,
            r["decision"],
            r["accepted_at"].strftime("%Y-%m-%d %H:%M:%S") if r["accepted_at"] else "",
        )
    out.print(grid if rows else "no source schema change recorded")
    paused = {r["table_name"]: r["reason"] for r in rows if _waiting(r)}
    for name, reason in paused.items():
        out.print(f"[red]paused:[/] {name}: {reason}")


def _waiting(row: dict[str, Any]) -> bool:
    return row["decision"] == "pause" and row["accepted_at"] is None


@schema_app.command("accept")
def accept_command(
    table: Annotated[str, typer.Argument(help="The paused table, e.g. order_items.")],
    database: Database = None,
) -> None:
    """Resume a paused table (after migrating silver yourself) from exactly where it stopped."""
    try:
        accepted = run_with_connection(
            load_settings().postgres, database, lambda c: accept_schema_changes(c, table)
        )
    except UnknownTableError as exc:
        raise NotATableError(str(exc)) from exc
    if accepted:
        out.print(f"accepted {accepted} change(s) of {table}: workers resume it within seconds")
    else:
        out.print(f"{table} is not paused by a schema change")
