"""The one contract every at-least-once writer follows: ``BatchSink[RecordT]``.

A sink holds a connection (or a producer, or a session), so it has an explicit lifecycle:
``await start()`` connects (and prepares statements, creates indexes), ``await stop()``
releases, and ``async with sink:`` does both (``SinkLifecycle``). Nothing connects at
construction.

``await write(batch)`` is the only way records go in. Its promise:

- **Returned**: every record of ``batch`` is durably taken: stored, or recognised as already
  held or superseded (a replay, an older version). The caller may now advance its positions
  (commit Kafka offsets, a changelog) past the whole batch. The int is how many records
  changed the store (rows upserted, versions applied); taken-but-superseded ones are not
  counted, so it is a statistic, never a condition to retry on.
- **Raised ``TransientError``** (the store is down, timed out, restarting): nothing is
  promised about any record of the batch. Retry the *same* batch with backoff; do not
  advance positions. A raise may leave part of the batch written: every conforming sink's
  writes are idempotent (keyed by the record's identity and, where records carry a version,
  applied only when newer), so writing the batch again ends in the same state; on the
  analytics topics a record may appear twice, with the same key and version, which readers
  treat as one. That is what makes the batch all-or-nothing for the caller.
- **Raised ``PermanentError``**: the batch (or the record an error names) cannot be written,
  however often it is tried. The caller writes the records one by one to find the bad ones
  and dead-letters them (``agents/scaleout_stores.py`` does this).

Any other exception is a driver error the sink failed to map: a bug to fix in the sink.

Conforming sinks: ``sinks/cassandra/writer.py`` ``CassandraTableSink`` (chat, telemetry),
``sinks/mongo/posts.py`` ``PostsWriter``, ``sinks/redis/feature_store.py``
``RedisFeatureStore``, ``sinks/analytics_topics.py`` ``AnalyticsPublisher`` and
``sinks/postgres/analytics.py`` ``GoldUpsertSink`` (``gold.hourly_revenue``,
``gold.customer_features``).

**Exactly-once writers store their positions with their rows**, so the position is part
of the write and the answer is what was committed, not a count. They keep their own
signatures and the same error classes:

- ``sinks/postgres/medallion.py`` ``MedallionWriter.write(connection, claim, plan)`` writes
  bronze, silver, gold and the partition's next offset in one PostgreSQL transaction and
  returns a ``BatchOutcome`` holding the advanced claim: that claim *is* what was committed.
  A raise means nothing was (the transaction rolled back); a partition another worker took
  over raises ``PartitionFencedError`` (``sinks/postgres/offsets.py``) and the batch is
  left to the new owner (``agents/medallion_commit.py``).
- ``sinks/delta/store.py`` ``DeltaBronzeStore``: ``stage`` writes Parquet files, ``commit``
  adds them and sets each partition's transaction version (its next offset) in one Delta
  commit; ``positions`` reads back what was committed. A commit that conflicts with
  another writer's fails delta-rs's check and adds nothing.

Their callers read the start position from the same store, never from Kafka, which is why
neither reduces to ``write(batch) -> int``. Neither holds a connection of its own (the
medallion writer is handed one; Delta opens tables by URI), so neither has ``start``/``stop``.
"""

from __future__ import annotations

from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self, TypeVar, runtime_checkable

from config.lifecycle import AsyncStartStop

RecordT_contra = TypeVar("RecordT_contra", contravariant=True)


@runtime_checkable
class BatchSink(Protocol[RecordT_contra]):
    """A writer of batches with an explicit lifecycle (the module docstring is the contract)."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def __aenter__(self) -> Self: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...

    async def write(self, batch: Sequence[RecordT_contra]) -> int:
        """Take every record of ``batch`` durably, or raise (Transient: retry it)."""
        ...


class SinkLifecycle(AsyncStartStop):
    """Mixin for sinks: ``async with sink:`` is ``await start()`` ... ``await stop()``
    (``stop`` runs even when the body raises)."""
