"""Writing one partition's batch exactly once: claims, commit, settle, fence.

Each assigned partition is claimed (a new owner epoch in ``ops.consumer_offsets``) and
read from its stored offset. A batch commits its rows and the moved offset in one
transaction, through a compare-and-set on the claim. A lost connection is retried with
backoff; a commit whose outcome is unknown is settled by reading the offsets row. A
partition another worker claimed meanwhile is fenced: dropped until the next assignment.
While the database is away the consumer holds (paused, still polling), so an outage longer
than ``max.poll.interval.ms`` keeps the group membership (docs/decisions/0022).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from agents.crash_points import CrashPoints
from agents.medallion_connections import SinkConnections
from serdes.consumer_step import Backoff
from sinks.postgres.batch import PlannedBatch
from sinks.postgres.connection import DB_ERRORS
from sinks.postgres.medallion import BatchOutcome, MedallionWriter
from sinks.postgres.offsets import OffsetStore, PartitionClaim, PartitionFencedError

log = logging.getLogger("bitvelocity.medallion")
PartitionKey = tuple[str, int]
#: Waits ``seconds`` unless stopped; the sink passes its consumer's hold (pause + poll).
Hold = Callable[[float], Awaitable[None]]
#: Awaits a database write; the sink passes its consumer's ``polling_while``, so a write that
#: takes long (a lock wait, a slow disk) keeps the member polling, paused, in its group.
Polling = Callable[[Awaitable[BatchOutcome]], Awaitable[BatchOutcome]]


@dataclass
class SinkStats:
    """Running totals of one sink, for tests, logs and the worker's summary."""

    batches: int = 0
    consumed: int = 0
    bronze_rows: int = 0
    dead_letters: int = 0
    filtered: int = 0
    fenced: int = 0
    #: Partition assignments and revocations seen: one of each per rebalance.
    assignments: int = 0
    revocations: int = 0
    db_retries: int = 0
    ambiguous_commits: int = 0
    outcomes: list[BatchOutcome] = field(default_factory=list)


class BatchCommitter:
    """The claims of the partitions this worker owns, and the exactly-once batch commit."""

    def __init__(
        self,
        offsets: OffsetStore,
        writer: MedallionWriter,
        connections: SinkConnections,
        *,
        backoff: Backoff,
        stats: SinkStats,
        crash: CrashPoints,
        stopping: Callable[[], bool],
    ) -> None:
        self.offsets = offsets
        self.writer = writer
        self.connections = connections
        self.claims: dict[PartitionKey, PartitionClaim] = {}
        self._backoff = backoff
        self._stats = stats
        self._crash = crash
        self._stopping = stopping

    async def claim_all(self, partitions: list[PartitionKey]) -> dict[PartitionKey, int]:
        """Claim newly assigned partitions and return their stored offsets (the start
        positions); retried with backoff until PostgreSQL answers."""
        self._stats.assignments += 1
        attempt = 0
        while True:
            try:
                connection = await self.connections.claims()
                claims = {}
                for topic, partition in partitions:
                    claims[(topic, partition)] = await self.offsets.claim(
                        connection, topic, partition
                    )
                self.claims.update(claims)
                return {key: claim.next_offset for key, claim in claims.items()}
            except DB_ERRORS as exc:
                attempt += 1
                log.warning("claiming partitions failed (%s), retry %d", exc, attempt)
                self.connections.drop_claims()
                await asyncio.sleep(self._backoff.delay(attempt))

    def count_db_retry(self) -> None:
        """A database retry outside a commit (the schema check before it)."""
        self._stats.db_retries += 1

    def forget(self, partitions: list[PartitionKey]) -> None:
        """Revoked: the next owner claims these."""
        self._stats.revocations += 1
        for key in partitions:
            self.claims.pop(key, None)

    def positions(self, topics: set[str] | None = None) -> dict[PartitionKey, int]:
        """The stored next offset of each owned partition (of ``topics``, if given)."""
        return {
            key: claim.next_offset
            for key, claim in self.claims.items()
            if topics is None or key[0] in topics
        }

    async def commit(
        self,
        claim: PartitionClaim,
        plan: PlannedBatch,
        slot: int,
        hold: Hold,
        polling: Polling | None = None,
    ) -> BatchOutcome | None:
        """Write ``plan`` with its offsets; None when it was not committed by us (fenced,
        or given up while stopping: the next owner reads it again)."""
        attempt = 0
        while True:
            try:
                connection = await self.connections.writer(slot)
                writing = self.writer.write(connection, claim, plan)
                outcome = await (writing if polling is None else polling(writing))
                self._crash.reached("after_commit")
                self._replace_claim(claim, outcome.claim)
                return outcome
            except PartitionFencedError as exc:
                self._fence(claim, exc)
                return None
            except DB_ERRORS as exc:
                attempt += 1
                self._stats.db_retries += 1
                log.warning(
                    "batch %s[%d] at %d failed (%s); retry %d",
                    claim.topic,
                    claim.partition,
                    plan.first_offset,
                    exc,
                    attempt,
                )
                self.connections.drop(slot)
                if self._stopping() and attempt >= 3:
                    # Shutting down with the database away: give the batch up. Nothing of
                    # it was committed, so the next owner of the partition reads it again.
                    return None
                settled = await self._settle(claim, plan, attempt, slot, hold)
                if settled is not None:
                    return settled if isinstance(settled, BatchOutcome) else None

    async def _settle(
        self, claim: PartitionClaim, plan: PlannedBatch, attempt: int, slot: int, hold: Hold
    ) -> BatchOutcome | bool | None:
        """After a failure: did the commit happen anyway? Read the offsets row to know.
        An outcome (it did), False (fenced or stopping) or None (write it again)."""
        while True:
            # Paused, but polling: an outage longer than max.poll.interval.ms must not
            # evict this member from its group.
            await hold(self._backoff.delay(attempt))
            try:
                connection = await self.connections.writer(slot)
                stored = await self.offsets.read(connection, claim.topic, claim.partition)
                break
            except DB_ERRORS as exc:
                attempt += 1
                self._stats.db_retries += 1
                log.warning("database still unavailable (%s)", exc)
                self.connections.drop(slot)
                if self._stopping() and attempt >= 3:
                    return False  # shutting down: the batch stays uncommitted, read again later
        if stored is None or stored[1] != claim.epoch:
            self._fence(claim, PartitionFencedError(f"epoch moved to {stored}"))
            return False
        if stored[0] == plan.last_offset + 1:
            self._stats.ambiguous_commits += 1
            committed = claim.advanced_to(plan.last_offset + 1)
            self._replace_claim(claim, committed)
            return BatchOutcome(
                committed,
                -1,
                plan.bronze_rows,
                plan.silver_rows,
                len(plan.dead_letters),
                plan.filtered,
            )
        return None  # not committed: write the same batch again

    def _fence(self, claim: PartitionClaim, exc: Exception) -> None:
        self._stats.fenced += 1
        key = (claim.topic, claim.partition)
        if self.claims.get(key) == claim:  # not a newer claim taken meanwhile
            self.claims.pop(key)
        log.warning("fenced: %s", exc)

    def _replace_claim(self, used: PartitionClaim, committed: PartitionClaim) -> None:
        """Move our claim forward, unless a rebalance revoked it or re-claimed it (a newer
        epoch) while this batch was being written."""
        key = (used.topic, used.partition)
        if self.claims.get(key) == used:
            self.claims[key] = committed
