"""A throw-away database for one test module, migrated as asked, dropped afterwards."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import Iterator

from config.settings import Settings
from oltp.schema import migrate_oltp
from sinks.postgres.connection import connect
from sinks.postgres.warehouse import migrate_warehouse


@contextlib.contextmanager
def throwaway_database(
    settings: Settings, prefix: str, *, oltp: bool = True, warehouse: bool = True
) -> Iterator[str]:
    """Yield the name of a fresh database ``<prefix>_<random>`` with the chosen schemas."""
    name = f"{prefix}_{secrets.token_hex(3)}"
    if oltp:
        asyncio.run(migrate_oltp(settings, name))
    if warehouse:
        asyncio.run(migrate_warehouse(settings, name))
    try:
        yield name
    finally:
        asyncio.run(drop_database(settings, name))


async def drop_database(settings: Settings, name: str) -> None:
    admin = await connect(settings.postgres, "postgres")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
