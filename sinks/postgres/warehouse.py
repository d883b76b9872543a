"""Apply the warehouse migrations (bronze, silver, gold, ops, ref) to the warehouse database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import asyncpg

from config.settings import Settings
from sinks.postgres.migrate import Migration, migrate_namespace

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
NAMESPACE = "warehouse"

#: 0004 gives gold.daily_sales to the worker role (REFRESH ... CONCURRENTLY is the owner's).
#: A non-superuser admin may give a relation only to a role that may create in its schema,
#: so the worker holds CREATE on gold for that one transaction, never after it
#: (docs/decisions/0016-no-superuser-in-settings.md).
_AROUND = {
    4: (
        # The role exists on the stack (its bootstrap); elsewhere 0004 creates it, which only
        # works as a superuser, who needs no grant.
        "DO $$ BEGIN IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'bv_worker') THEN "
        "GRANT CREATE ON SCHEMA gold TO bv_worker; END IF; END $$",
        "REVOKE CREATE ON SCHEMA gold FROM bv_worker",
    )
}


async def migrate_warehouse(
    settings: Settings,
    database: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Migration]:
    """Apply pending warehouse migrations to ``database``; returns those applied now."""
    return await migrate_namespace(
        settings, database, NAMESPACE, MIGRATIONS, progress, around=_AROUND
    )


async def refresh_daily_sales(connection: asyncpg.Connection) -> None:
    """Refresh ``gold.daily_sales`` without blocking its readers (CONCURRENTLY)."""
    await connection.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY gold.daily_sales")
