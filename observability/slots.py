"""Replication slots holding back WAL: the classic way PostgreSQL fills a disk.

A slot keeps every WAL segment from its ``restart_lsn`` on, whether or not its consumer
(a Debezium connector, a replica) still exists. ``stack status`` lists the slots whose
retained WAL exceeds ``BV_MONITORING__SLOT_RETAINED_WAL_WARN_BYTES``.
"""

from __future__ import annotations

from dataclasses import dataclass

from config.settings import PostgresSettings
from sinks.postgres.connection import connect


@dataclass(frozen=True)
class SlotRetention:
    name: str
    database: str | None
    active: bool
    #: WAL bytes between the server's current position and the slot's restart point.
    retained_bytes: int


async def slot_retention(pg: PostgresSettings) -> list[SlotRetention]:
    """Every replication slot of the cluster with the WAL it holds back."""
    connection = await connect(pg, "postgres")
    try:
        rows = await connection.fetch(
            "SELECT slot_name, database, active, "
            "coalesce(pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn), 0)::bigint AS retained "
            "FROM pg_replication_slots ORDER BY slot_name"
        )
    finally:
        await connection.close()
    return [
        SlotRetention(r["slot_name"], r["database"], r["active"], int(r["retained"])) for r in rows
    ]


def oversized(slots: list[SlotRetention], threshold_bytes: int) -> list[SlotRetention]:
    """The slots retaining more WAL than ``threshold_bytes``, largest first."""
    return sorted(
        (s for s in slots if s.retained_bytes > threshold_bytes),
        key=lambda s: s.retained_bytes,
        reverse=True,
    )


def slot_warning(slot: SlotRetention, threshold_bytes: int) -> str:
    state = "active" if slot.active else "INACTIVE (no consumer: abandoned?)"
    return (
        f"replication slot {slot.name} ({slot.database or 'physical'}, {state}) retains "
        f"{slot.retained_bytes / 1e6:,.0f} MB of WAL, over {threshold_bytes / 1e6:,.0f} MB; "
        "resume or delete its connector, or drop it: "
        f"SELECT pg_drop_replication_slot('{slot.name}')"
    )
