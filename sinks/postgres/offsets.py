"""The consumer offsets table: the commit point of the exactly-once sink (DESIGN.md section 5).

``claim`` runs when a partition is assigned: it bumps the row's owner epoch and returns
where to seek. ``advance`` runs inside the batch's transaction: it moves ``next_offset``
only if the row still holds the offset and the epoch this worker last saw; zero rows
updated means another worker owns the partition now (a rebalance, or this worker is a
zombie), and the caller must roll the whole batch back.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from config.errors import BitVelocityError


class PartitionFencedError(BitVelocityError):
    """Another worker claimed the partition: this batch must roll back, not commit."""


@dataclass(frozen=True, slots=True)
class PartitionClaim:
    """This worker's ownership of one partition: where it stands and under which epoch."""

    topic: str
    partition: int
    next_offset: int
    epoch: int

    def advanced_to(self, next_offset: int) -> PartitionClaim:
        return PartitionClaim(self.topic, self.partition, next_offset, self.epoch)


class OffsetStore:
    """Reads and moves the offsets of one consumer group."""

    _CLAIM = """
        INSERT INTO ops.consumer_offsets
            (group_id, topic, partition, next_offset, owner_epoch, owner)
        VALUES ($1, $2, $3, 0, 1, $4)
        ON CONFLICT (group_id, topic, partition) DO UPDATE
            SET owner_epoch = ops.consumer_offsets.owner_epoch + 1,
                owner = EXCLUDED.owner,
                updated_at = now()
        RETURNING next_offset, owner_epoch
    """
    _ADVANCE = """
        UPDATE ops.consumer_offsets
           SET next_offset = $5, updated_at = now()
         WHERE group_id = $1 AND topic = $2 AND partition = $3
           AND next_offset = $4 AND owner_epoch = $6
    """
    _READ = """
        SELECT next_offset, owner_epoch FROM ops.consumer_offsets
         WHERE group_id = $1 AND topic = $2 AND partition = $3
    """

    def __init__(self, group_id: str, worker_id: str) -> None:
        self.group_id = group_id
        self.worker_id = worker_id

    async def claim(
        self, connection: asyncpg.Connection, topic: str, partition: int
    ) -> PartitionClaim:
        """Take ownership of a partition (bumping its epoch); returns where to resume."""
        row = await connection.fetchrow(
            self._CLAIM, self.group_id, topic, partition, self.worker_id
        )
        assert row is not None  # INSERT ... RETURNING always returns the row
        return PartitionClaim(topic, partition, int(row[0]), int(row[1]))

    async def advance(
        self, connection: asyncpg.Connection, claim: PartitionClaim, next_offset: int
    ) -> PartitionClaim:
        """Move the offset inside the caller's transaction, or raise ``PartitionFencedError``."""
        status = await connection.execute(
            self._ADVANCE,
            self.group_id,
            claim.topic,
            claim.partition,
            claim.next_offset,
            next_offset,
            claim.epoch,
        )
        if status != "UPDATE 1":
            raise PartitionFencedError(
                f"{claim.topic}[{claim.partition}] was claimed by another worker since epoch "
                f"{claim.epoch}; this batch rolls back"
            )
        return claim.advanced_to(next_offset)

    async def read(
        self, connection: asyncpg.Connection, topic: str, partition: int
    ) -> tuple[int, int] | None:
        """``(next_offset, epoch)`` as stored, or None when the partition was never claimed."""
        row = await connection.fetchrow(self._READ, self.group_id, topic, partition)
        return None if row is None else (int(row[0]), int(row[1]))
