"""``bitvelocity db``: reports about the PostgreSQL the pipeline writes to."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.table import Table

from cli.console import out
from config.settings import Settings, load_settings
from observability.slow_queries import SlowStatement, slow_statements
from sinks.postgres.connection import connect

db_app = typer.Typer(help="Reports about the PostgreSQL database.", no_args_is_help=True)


async def _fetch(settings: Settings, min_mean_ms: float, limit: int) -> list[SlowStatement]:
    pg = settings.postgres
    connection = await connect(pg)
    try:
        return await slow_statements(
            connection,
            min_mean_ms=min_mean_ms,
            limit=limit,
            where=f"PostgreSQL at {pg.host}:{pg.port}",
        )
    finally:
        await connection.close()


@db_app.command("slow-queries")
def slow_queries(
    min_mean_ms: Annotated[
        float, typer.Option(min=0, help="List statements whose mean time is at least this.")
    ] = 1000.0,
    limit: Annotated[int, typer.Option(min=1, help="At most this many, slowest first.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
) -> None:
    """Statements above a mean execution time, from pg_stat_statements, with calls and totals."""
    rows = asyncio.run(_fetch(load_settings(), min_mean_ms, limit))
    if as_json:
        out.print_json(json.dumps([asdict(row) for row in rows]))
        return
    if not rows:
        out.print(f"no statement with a mean time of {min_mean_ms:g} ms or more")
        return
    table = Table(title=f"Statements with mean time >= {min_mean_ms:g} ms")
    for column in ("mean ms", "calls", "total ms", "rows", "role", "database", "query"):
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(
            f"{row.mean_ms:.1f}",
            str(row.calls),
            f"{row.total_ms:.0f}",
            str(row.rows),
            row.role,
            row.database,
            row.query,
        )
    out.print(table)
