"""Apply the warehouse migrations (bronze, silver, gold, ops, ref) to the warehouse database."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from config.settings import Settings
from sinks.postgres.migrate import Migration, migrate_namespace

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
NAMESPACE = "warehouse"


async def migrate_warehouse(
    settings: Settings,
    database: str | None = None,
    progress: Callable[[str], None] = lambda _: None,
) -> list[Migration]:
    """Apply pending warehouse migrations to ``database``; returns those applied now."""
    return await migrate_namespace(settings, database, NAMESPACE, MIGRATIONS, progress)
