"""One way to open a PostgreSQL connection from the settings (admin credentials for now)."""

from __future__ import annotations

import asyncpg

from config.settings import PostgresSettings


async def connect(pg: PostgresSettings, database: str | None = None) -> asyncpg.Connection:
    """A connection to ``database`` (default: the configured one) as the admin user."""
    return await asyncpg.connect(
        host=pg.host,
        port=pg.port,
        user=pg.admin_user,
        password=pg.admin_password.get_secret_value(),
        database=database or pg.database,
        timeout=pg.connect_timeout_s,
    )
