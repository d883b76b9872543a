"""A quiet captured database does not hold the cluster's WAL (oltp migration 0005).

Invariant: while none of the captured tables change and the cluster writes WAL elsewhere,
the connector's replication slot still confirms a position past that WAL within a few
heartbeat intervals, so PostgreSQL may recycle it and a restarted connector does not read
it all again. The heartbeat row is published but not captured: it makes no topic.
"""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from confluent_kafka.admin import AdminClient

from config.settings import Settings
from sinks.postgres.connection import connect
from tests.integration.oltp_database import CapturedDatabase, captured_oltp_database

pytestmark = pytest.mark.usefixtures("no_leftovers")

#: Rows of about 300 bytes: some 30 MB of WAL, far more than a heartbeat writes.
UNCAPTURED_ROWS = 100_000
#: Three heartbeat intervals (10 s) and the worker's offset flush (1 s), with margin.
CONFIRM_WITHIN_S = 45.0


async def _write_uncaptured_wal(settings: Settings, database: str) -> int:
    """Write WAL in a table outside the publication; the LSN after it commits."""
    connection = await connect(settings.postgres, database)
    try:
        await connection.execute("CREATE TABLE public.not_captured (id int, body text)")
        await connection.execute(
            "INSERT INTO public.not_captured "
            f"SELECT g, repeat('x', 280) FROM generate_series(1, {UNCAPTURED_ROWS}) AS g"
        )
        lsn = await connection.fetchval("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn")
        return int(lsn)
    finally:
        await connection.close()


async def _confirmed_lsn(connection: asyncpg.Connection, slot: str) -> int | None:
    value = await connection.fetchval(
        "SELECT confirmed_flush_lsn - '0/0'::pg_lsn FROM pg_replication_slots WHERE slot_name = $1",
        slot,
    )
    return None if value is None else int(value)


async def _wait_confirmed_past(settings: Settings, slot: str, lsn: int) -> int:
    """The slot's confirmed position once it passes ``lsn``; fails after the deadline."""
    connection = await connect(settings.postgres, "postgres")
    try:
        deadline = time.monotonic() + CONFIRM_WITHIN_S
        confirmed = await _confirmed_lsn(connection, slot)
        while (confirmed is None or confirmed < lsn) and time.monotonic() < deadline:
            await asyncio.sleep(1)
            confirmed = await _confirmed_lsn(connection, slot)
        assert confirmed is not None, f"slot {slot} has no confirmed position"
        assert confirmed >= lsn, (
            f"slot {slot} confirmed {confirmed} after {CONFIRM_WITHIN_S:.0f} s; the WAL written "
            f"since (to {lsn}, {lsn - confirmed:,} bytes) is retained"
        )
        return confirmed
    finally:
        await connection.close()


def _topics(settings: Settings) -> set[str]:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    return set(admin.list_topics(timeout=10).topics)


def test_a_quiet_captured_database_confirms_a_position_past_wal_written_elsewhere(
    settings: Settings,
) -> None:
    with captured_oltp_database(settings) as captured:
        written_to = asyncio.run(_write_uncaptured_wal(settings, captured.database))
        confirmed = asyncio.run(_wait_confirmed_past(settings, captured.spec.slot, written_to))
        assert confirmed >= written_to
        assert not _heartbeat_topics(settings, captured)


def _heartbeat_topics(settings: Settings, captured: CapturedDatabase) -> set[str]:
    """Topics of the heartbeat table (there must be none: it is not captured)."""
    return {t for t in _topics(settings) if t.startswith(captured.spec.topic_prefix + ".cdc.")}
