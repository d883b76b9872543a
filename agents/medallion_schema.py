"""The medallion sink's schema screen: what a paused table lets through, and its resume.

A table whose source schema changed in a way its policy does not evolve is paused: its
records stop at the change and the sink parks its partitions in the consumer (decision
0021). Every 2 s while any table is paused, tables an operator accepted (``bitvelocity
schema accept``) resume from their stored offsets.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from agents.medallion_commit import BatchCommitter
from agents.medallion_connections import SinkConnections
from serdes.consumer_step import Backoff
from sinks.postgres.batch import ConsumedRecord
from sinks.postgres.connection import DB_ERRORS
from sinks.postgres.schema_changes import SchemaGuard
from streams.runtime import ConsumerRuntime

log = logging.getLogger("bitvelocity.medallion")
RESUME_CHECK_S = 2.0


class SchemaScreen:
    """Screens each partition's records through the schema guard, retrying while
    PostgreSQL is away, and resumes accepted tables."""

    def __init__(
        self,
        guard: SchemaGuard,
        connections: SinkConnections,
        committer: BatchCommitter,
        backoff: Backoff,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.guard = guard
        self._connections = connections
        self._committer = committer
        self._backoff = backoff
        self._clock = clock
        self._last_check = float("-inf")

    async def screen(
        self,
        records: list[ConsumedRecord],
        hold: Callable[[float], Awaitable[None]],
        stop: asyncio.Event,
        slot: int = 0,
    ) -> list[ConsumedRecord]:
        """The records the schema guard lets through (none when stopping meanwhile), checked
        on write lane ``slot``'s connection: the other lanes' are busy with their batches."""
        attempt = 0
        while True:
            try:
                return await self.guard.screen(await self._connections.writer(slot), records)
            except DB_ERRORS as exc:
                attempt += 1
                self._committer.count_db_retry()  # an outage may meet this check first
                log.warning("schema check failed (%s); retry %d", exc, attempt)
                self._connections.drop(slot)
                if stop.is_set():
                    return []  # nothing written: the next owner reads these again
                await hold(self._backoff.delay(attempt))

    def holds(self, topic: str) -> bool:
        """Whether ``topic``'s table is paused here (its partitions are parked)."""
        return any(paused.topic == topic for paused in self.guard.paused.values())

    async def resume_accepted(
        self, records: list[ConsumedRecord], runtime: ConsumerRuntime | None
    ) -> list[ConsumedRecord]:
        """Resume the tables an operator accepted, from their stored offsets; the records of
        their topics taken meanwhile lie beyond the pause and are dropped (read again)."""
        now = self._clock()
        if now - self._last_check < RESUME_CHECK_S:
            return records
        self._last_check = now
        try:
            resumed = await self.guard.accepted(await self._connections.writer())
        except DB_ERRORS as exc:
            log.warning("paused tables not checked: %s", exc)
            self._connections.drop()
            return records
        topics = {paused.topic for paused in resumed}
        if not topics:
            return records
        assert runtime is not None
        await runtime.unpark(self._committer.positions(topics))  # seek; fetch parked again
        return [r for r in records if r.topic not in topics]
