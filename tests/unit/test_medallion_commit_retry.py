"""A batch whose transaction PostgreSQL rolled back is written again, not fatal.

A deadlock or a serialization failure aborts the whole transaction and asks the client to
retry. Two write lanes (``sink.write_lanes``), or two workers' quality sweeps, can meet on
the same rows; such a batch must be written again like one that lost its connection, not
end the worker. Pure: stand-ins for the writer, the offsets and the connections.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import asyncpg

from agents.crash_points import CrashPoints
from agents.medallion_commit import BatchCommitter, SinkStats
from serdes.consumer_step import Backoff
from sinks.postgres.medallion import BatchOutcome
from sinks.postgres.offsets import PartitionClaim
from tests.unit.lane_connections import LaneConnections

TOPIC = "bv.cdc.public.orders"


@dataclass
class Plan:
    first_offset: int = 10
    last_offset: int = 19
    bronze_rows: int = 10
    silver_rows: int = 10
    dead_letters: tuple[Any, ...] = ()
    filtered: int = 0


class DeadlockedOnce:
    """The first write meets a deadlock (rolled back); the second commits."""

    def __init__(self) -> None:
        self.writes = 0

    async def write(self, connection: str, claim: PartitionClaim, plan: Plan) -> BatchOutcome:
        self.writes += 1
        if self.writes == 1:
            raise asyncpg.DeadlockDetectedError("deadlock detected")
        return BatchOutcome(claim.advanced_to(plan.last_offset + 1), 7, 10, 10, 0, 0)


class StoredOffsets:
    """The offsets row as the rolled-back transaction left it: not moved."""

    def __init__(self, claim: PartitionClaim) -> None:
        self.claim = claim

    async def read(self, connection: str, topic: str, partition: int) -> tuple[int, int]:
        return (self.claim.next_offset, self.claim.epoch)


async def test_a_deadlocked_batch_is_written_again_and_commits() -> None:
    claim = PartitionClaim(TOPIC, 0, 10, 3)
    writer, connections, stats = DeadlockedOnce(), LaneConnections(), SinkStats()
    committer = BatchCommitter(
        StoredOffsets(claim),  # type: ignore[arg-type]
        writer,  # type: ignore[arg-type]
        connections,  # type: ignore[arg-type]
        backoff=Backoff(0.001, 0.001),
        stats=stats,
        crash=CrashPoints(),
        stopping=lambda: False,
    )
    committer.claims[(TOPIC, 0)] = claim

    async def hold(seconds: float) -> None:
        await asyncio.sleep(seconds)

    outcome = await committer.commit(claim, Plan(), 0, hold)  # type: ignore[arg-type]
    assert outcome is not None
    assert outcome.batch_id == 7
    assert writer.writes == 2
    assert stats.db_retries == 1
    assert stats.ambiguous_commits == 0
    assert committer.positions() == {(TOPIC, 0): 20}
