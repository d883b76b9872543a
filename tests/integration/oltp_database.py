"""A throw-away OLTP database with its own connector, slot and topics, for one test module."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from admin.capture import drop_slot_when_released, remove_capture_outputs
from admin.connectors import (
    ConnectClient,
    ConnectorSpec,
    debezium_postgres_config,
    oltp_connector_spec,
)
from config.settings import Settings
from oltp.schema import migrate_oltp
from sinks.postgres.connection import connect


@dataclass(frozen=True)
class CapturedDatabase:
    database: str
    spec: ConnectorSpec

    def topic(self, table: str) -> str:
        return f"{self.spec.topic_prefix}.public.{table}"


@contextmanager
def captured_oltp_database(settings: Settings) -> Iterator[CapturedDatabase]:
    """Migrate a fresh database, capture it with its own connector; remove it all afterwards."""
    run_id = secrets.token_hex(3)
    database = f"bv_it_{run_id}"
    spec = oltp_connector_spec(
        settings,
        database=database,
        name=f"bv-it-{run_id}",
        topic_prefix=f"bvit{run_id}",
        slot=f"bv_it_{run_id}",
    )
    asyncio.run(migrate_oltp(settings, database))
    try:
        with ConnectClient(settings) as client:
            client.put(spec.name, debezium_postgres_config(settings, spec))
            client.wait_running(spec.name)
        yield CapturedDatabase(database, spec)
    finally:
        with ConnectClient(settings) as client:
            client.delete(spec.name)
        asyncio.run(_drop(settings, database, spec.slot))
        remove_capture_outputs(settings, spec.topic_prefix)


async def _drop(settings: Settings, database: str, slot: str) -> None:
    connection = await connect(settings.postgres, "postgres")
    try:
        await drop_slot_when_released(connection, slot)
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await connection.close()
