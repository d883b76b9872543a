"""Slow statements from ``pg_stat_statements``: mean execution time above a threshold.

The extension needs ``shared_preload_libraries = 'pg_stat_statements'`` (a server restart)
and ``CREATE EXTENSION`` in the database queried. The stack's PostgreSQL config carries the
library, and ``stack up`` creates the extension once the library is loaded; a cluster
started before that reports a one-line error naming the restart it needs, never a SQL trace.
Statistics are cluster-wide; the query text is PostgreSQL's normalised form (``$1`` for
constants), so no parameter values, and no PII, are shown.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from config.errors import StatementStatsUnavailableError

EXTENSION = "pg_stat_statements"

_LOADED_SQL = """
SELECT $1 = ANY (
    string_to_array(replace(current_setting('shared_preload_libraries'), ' ', ''), ',')
)
"""
_CREATED_SQL = "SELECT extversion FROM pg_extension WHERE extname = $1"
_SLOW_SQL = """
SELECT s.query, s.calls, s.mean_exec_time, s.total_exec_time, s.rows,
       coalesce(r.rolname, '?') AS role, coalesce(d.datname, '?') AS database
FROM pg_stat_statements AS s
LEFT JOIN pg_roles AS r ON r.oid = s.userid
LEFT JOIN pg_database AS d ON d.oid = s.dbid
WHERE s.mean_exec_time >= $1
ORDER BY s.mean_exec_time DESC
LIMIT $2
"""


@dataclass(frozen=True)
class SlowStatement:
    """One normalised statement whose mean execution time is above the threshold."""

    query: str
    calls: int
    mean_ms: float
    total_ms: float
    rows: int
    role: str
    database: str


async def is_loaded(connection: asyncpg.Connection) -> bool:
    """True when the server preloaded the pg_stat_statements library."""
    return bool(await connection.fetchval(_LOADED_SQL, EXTENSION))


async def ensure_extension(connection: asyncpg.Connection) -> bool:
    """Create the extension in the connected database if the library is loaded.

    Returns whether the extension is usable; does nothing (and returns False) on a server
    that has not loaded the library yet, so it is safe on every ``stack up``.
    """
    if not await is_loaded(connection):
        return False
    await connection.execute(f"CREATE EXTENSION IF NOT EXISTS {EXTENSION}")
    return True


async def slow_statements(
    connection: asyncpg.Connection,
    *,
    min_mean_ms: float = 1000.0,
    limit: int = 20,
    where: str = "PostgreSQL",
) -> list[SlowStatement]:
    """Statements with mean execution time >= ``min_mean_ms``, slowest first.

    ``where`` names the server in error messages (e.g. ``PostgreSQL at 127.0.0.1:23432``).
    """
    if not await is_loaded(connection):
        raise StatementStatsUnavailableError(
            f"{EXTENSION} is not loaded on {where}: shared_preload_libraries does not list it. "
            "`bitvelocity stack up` writes it into the config; it takes effect when PostgreSQL "
            "restarts (`bitvelocity stack down postgres && bitvelocity stack up`)"
        )
    if await connection.fetchval(_CREATED_SQL, EXTENSION) is None:
        raise StatementStatsUnavailableError(
            f"{EXTENSION} is loaded on {where} but the extension is not created in this "
            f"database; run `bitvelocity stack up` (it creates it) or CREATE EXTENSION {EXTENSION}"
        )
    records = await connection.fetch(_SLOW_SQL, min_mean_ms, limit)
    return [
        SlowStatement(
            query=" ".join(str(r["query"]).split()),
            calls=int(r["calls"]),
            mean_ms=float(r["mean_exec_time"]),
            total_ms=float(r["total_exec_time"]),
            rows=int(r["rows"]),
            role=str(r["role"]),
            database=str(r["database"]),
        )
        for r in records
    ]
