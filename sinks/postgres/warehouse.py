"""Apply the warehouse migrations (bronze, silver, gold, ops, ref) to the warehouse database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from config.settings import Settings
from oltp.schema import ensure_database
from sinks.postgres.connection import connect
from sinks.postgres.migrate import Migration, apply_migrations, load_migrations

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
NAMESPACE = "warehouse"


async def migrate_warehouse(
    settings: Settings,
    database: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Migration]:
    """Apply pending warehouse migrations to ``database``; returns those applied now."""
    target = database or settings.postgres.database
    await ensure_database(settings, target)
    connection = await connect(settings.postgres, target)
    try:
        return await apply_migrations(connection, NAMESPACE, load_migrations(MIGRATIONS), progress)
    finally:
        await connection.close()
