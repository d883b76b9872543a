"""The lake sink: CDC topics -> Delta bronze tables, exactly once (docs/decisions/0010).

Its own consumer group; its exactly-once state lives in the Delta log, not in PostgreSQL:
each commit to a table carries, per Kafka partition of the batch, an application
transaction ``(app id of group+topic+partition, next offset)``. On assignment the sink
reads those versions and seeks there before the first fetch (``on_assign``), so a crash
anywhere (before the Parquet write, between it and the commit, after the commit) neither
loses nor duplicates a record: uncommitted files are invisible and the records are read
again; a committed batch is skipped because the version moved past it.

Consume, decode and dead-letter handling are the medallion sink's (``decode_cdc_record``,
``plan_batch``); the consumer is the one runtime of every pipeline (``streams/runtime.py``).
delta-rs is blocking: each Delta commit runs in a worker thread while the consumer's thread
stays free to poll. ``run(stop)`` returns when ``stop`` is set and the batch in flight is done.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Message
from deltalake.exceptions import DeltaError

from agents.crash_points import CrashPoints
from agents.medallion import medallion_topics
from agents.medallion_records import decode_cdc_record, publish_dead_letters
from config.errors import TransientError
from config.settings import Settings
from observability.metrics import Metrics, default_metrics
from serdes.avro import AvroCodec
from serdes.consumer_step import Backoff
from serdes.debezium import DebeziumAvroDecoder
from serdes.registry import RegistryClient
from sinks.delta.bronze import app_id
from sinks.delta.store import DeltaBronzeStore
from sinks.kafka.dead_letters import DeadLetterPublisher
from sinks.postgres.batch import ConsumedRecord, PlannedBatch, plan_batch
from streams.runtime import ConsumerRuntime, ConsumerSpec, PartitionId

log = logging.getLogger("bitvelocity.lake")
PIPELINE = "lake"
#: Transient storage faults: the commit is settled by reading the log, then retried.
_STORAGE_ERRORS = (OSError, DeltaError)


@dataclass
class LakeStats:
    commits: int = 0
    consumed: int = 0
    rows: int = 0
    dead_letters: int = 0
    filtered: int = 0
    fenced: int = 0
    retries: int = 0
    settled_commits: int = 0


@dataclass
class TopicBatch:
    """One Delta commit: the planned batches of one topic's partitions."""

    topic: str
    table: str
    plans: dict[int, PlannedBatch] = field(default_factory=dict)
    expected: dict[int, int | None] = field(default_factory=dict)  # partition -> stored version

    def rows(self) -> list[tuple[Any, ...]]:
        return [
            row for plan in self.plans.values() for rows in plan.bronze.values() for row in rows
        ]


def lake_group(settings: Settings) -> str:
    return f"{settings.kafka.consumer_group}-{settings.lake.group_suffix}"


def table_of(topic: str) -> str:
    """``<prefix>.public.orders`` -> ``orders``: one topic per source table."""
    return topic.rsplit(".", 1)[-1]


class LakeSink:
    """One worker's share of the lake pipeline."""

    def __init__(
        self,
        settings: Settings,
        *,
        worker_id: str,
        topics: Sequence[str] | None = None,
        group_id: str | None = None,
        store: DeltaBronzeStore | None = None,
        metrics: Metrics | None = None,
        on_committed: Callable[[str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self.worker_id = worker_id
        self.topics = list(topics or medallion_topics(settings))
        self.group_id = group_id or lake_group(settings)
        self.store = store or DeltaBronzeStore(
            settings.lake, settings.lake.root(settings.stack.state_dir)
        )
        self.metrics = metrics or default_metrics()
        self.on_committed = on_committed
        self.stats = LakeStats()
        #: (topic, partition) -> the next offset committed in Delta (None: nothing yet).
        self.claims: dict[tuple[str, int], int | None] = {}
        self._backoff = Backoff(
            settings.sink.retry_initial_backoff_s, settings.sink.retry_max_backoff_s
        )
        self._crash = CrashPoints()
        self._source_system = f"postgres.{settings.postgres.database}"
        self._stop = threading.Event()

    def run(self, stop: threading.Event) -> LakeStats:
        """Consume and commit until ``stop`` is set (blocking; its own event loop)."""
        return asyncio.run(self.serve(stop))

    async def serve(self, stop: threading.Event) -> LakeStats:
        """Consume and commit until ``stop`` is set, on the one consumer runtime.

        Delta writes are blocking: each topic's batch is written in a worker thread while
        the consumer's thread stays free to poll (paused) if a write waits out an outage."""
        self._stop = stop
        registry = RegistryClient(self.settings.registry)
        decoder = DebeziumAvroDecoder(AvroCodec(registry))
        dead_letters: DeadLetterPublisher | None = None
        if self.settings.lake.publish_dead_letters:
            dead_letters = DeadLetterPublisher(self.settings.kafka.bootstrap_servers)
            dead_letters.start()
        sink = self.settings.sink
        runtime = ConsumerRuntime(
            self.settings.kafka.bootstrap_servers,
            ConsumerSpec(
                name="lake",
                group_id=self.group_id,
                topics=tuple(self.topics),
                max_records=sink.batch_max_records,
                max_wait_ms=sink.batch_max_ms,
                max_poll_interval_ms=sink.max_poll_interval_ms,
            ),
            start_positions=self._start_positions,
            on_revoked=self._forget,
        )
        try:
            await runtime.start()
            while not stop.is_set():
                try:
                    records = await runtime.take(self._decoding(decoder))
                except TransientError as exc:  # registry down beyond the decode deadline
                    log.warning("decode stalled, re-reading from the committed versions: %s", exc)
                    await runtime.seek(self._stored_positions())
                    await runtime.hold(self._backoff.max_s, stop)
                    continue
                for topic, members in by_topic(records).items():
                    await runtime.polling_while(
                        asyncio.to_thread(self._process, topic, members, dead_letters)
                    )
        finally:
            await runtime.stop()
            if dead_letters is not None:
                dead_letters.stop()
            registry.close()
        return self.stats

    # -- assignment: seek to the Delta log's versions before the first fetch -----------------
    def _start_positions(self, partitions: list[PartitionId]) -> dict[PartitionId, int]:
        by_table: dict[str, list[PartitionId]] = defaultdict(list)
        for topic, partition in partitions:
            by_table[table_of(topic)].append((topic, partition))
        starts: dict[PartitionId, int] = {}
        for table, members in by_table.items():
            apps = {
                app_id(self.group_id, topic, partition): (topic, partition)
                for topic, partition in members
            }
            stored = self._read_positions(table, list(apps))
            for app, key in apps.items():
                self.claims[key] = stored[app]
                starts[key] = _start_of(stored[app])
        return starts

    def _forget(self, partitions: list[PartitionId]) -> None:
        for key in partitions:
            self.claims.pop(key, None)

    def _stored_positions(self) -> dict[PartitionId, int]:
        """Every owned partition's committed version (where a rewind goes back to)."""
        return {key: _start_of(version) for key, version in self.claims.items()}

    # -- decode, in the consumer's thread ------------------------------------------------------
    def _decoding(self, decoder: DebeziumAvroDecoder) -> Callable[[Message], ConsumedRecord]:
        deadline = time.monotonic() + 30
        backoff = self._backoff
        return lambda message: decode_cdc_record(decoder, message, backoff, deadline)

    # -- one topic's batch: one Delta commit -------------------------------------------------------
    def _process(
        self,
        topic: str,
        records: list[ConsumedRecord],
        dead_letters: DeadLetterPublisher | None,
    ) -> None:
        started = time.monotonic()
        batch = plan_topic_batch(topic, records, self.claims, self._source_system)
        if not batch.plans:
            return
        letters = [letter for plan in batch.plans.values() for letter in plan.dead_letters]
        if letters and dead_letters is not None:
            publish_dead_letters(dead_letters, letters)
        self._crash.reached("before_write")
        if self._commit(batch):
            self._account(batch, time.monotonic() - started)

    def _commit(self, batch: TopicBatch) -> bool:
        """Write and commit ``batch``; False when every partition of it was fenced."""
        attempt = 0
        while True:
            try:
                self._fence_moved(batch)
                if not batch.plans:
                    return False
                files = self.store.stage(batch.table, batch.rows())
                self._crash.reached("after_parquet")
                targets = {
                    app_id(self.group_id, batch.topic, p): plan.last_offset + 1
                    for p, plan in batch.plans.items()
                }
                self.store.commit(
                    batch.table, files, targets, metadata={"bv.worker": self.worker_id}
                )
                self._crash.reached("after_commit")
                self._advance(batch)
                return True
            except _STORAGE_ERRORS as exc:
                attempt += 1
                self.stats.retries += 1
                log.warning("lake commit of %s failed (%s); retry %d", batch.topic, exc, attempt)
                if self._settled(batch):
                    return True
                if self._stop.wait(self._backoff.delay(attempt)) and attempt >= 3:
                    return False  # shutting down: nothing was committed, read again later

    def _fence_moved(self, batch: TopicBatch) -> None:
        """Drop partitions whose Delta version moved away from what this worker holds
        (another worker owns them now); the commit's conflict check covers the rest."""
        apps = {app_id(self.group_id, batch.topic, p): p for p in batch.plans}
        stored = self.store.positions(batch.table, list(apps))
        for app, partition in apps.items():
            if stored[app] != batch.expected[partition]:
                log.warning(
                    "fenced: %s[%d] is at %s in Delta, this worker holds %s",
                    batch.topic,
                    partition,
                    stored[app],
                    batch.expected[partition],
                )
                self.stats.fenced += 1
                self.claims.pop((batch.topic, partition), None)
                del batch.plans[partition]

    def _settled(self, batch: TopicBatch) -> bool:
        """After a failed commit: did it land anyway (all versions at the batch's end)?"""
        try:
            apps = {app_id(self.group_id, batch.topic, p): p for p in batch.plans}
            stored = self.store.positions(batch.table, list(apps))
        except _STORAGE_ERRORS as exc:
            log.warning("lake log unreadable (%s)", exc)
            return False
        if all(stored[a] == batch.plans[p].last_offset + 1 for a, p in apps.items()):
            self.stats.settled_commits += 1
            self._advance(batch)
            return True
        return False  # not committed (or fenced: the next attempt's check drops it)

    def _advance(self, batch: TopicBatch) -> None:
        for partition, plan in batch.plans.items():
            if (batch.topic, partition) in self.claims:
                self.claims[(batch.topic, partition)] = plan.last_offset + 1

    def _account(self, batch: TopicBatch, seconds: float) -> None:
        consumed = sum(plan.consumed for plan in batch.plans.values())
        rows = sum(plan.bronze_rows for plan in batch.plans.values())
        stats = self.stats
        stats.commits += 1
        stats.consumed += consumed
        stats.rows += rows
        stats.dead_letters += sum(len(plan.dead_letters) for plan in batch.plans.values())
        stats.filtered += sum(plan.filtered for plan in batch.plans.values())
        self.metrics.record_batch(PIPELINE, consumed, seconds, "ok")
        log.info(
            "committed %s to Delta: %d rows from %s",
            batch.topic,
            rows,
            ", ".join(
                f"[{p}] {plan.first_offset}..{plan.last_offset}" for p, plan in batch.plans.items()
            ),
        )
        if self.on_committed is not None:
            self.on_committed(batch.topic, consumed)

    def _read_positions(self, table: str, apps: list[str]) -> dict[str, int | None]:
        attempt = 0
        while True:
            try:
                return self.store.positions(table, apps)
            except _STORAGE_ERRORS as exc:
                attempt += 1
                log.warning("reading the lake's positions failed (%s), retry %d", exc, attempt)
                time.sleep(self._backoff.delay(attempt))


def plan_topic_batch(
    topic: str,
    records: list[ConsumedRecord],
    claims: dict[tuple[str, int], int | None],
    source_system: str,
) -> TopicBatch:
    """One topic's records made one Delta commit: per partition in ``claims`` (owned; the
    value is the next offset Delta holds, None: nothing yet), its records from there on,
    planned bronze only. A partition not owned (revoked or fenced meanwhile) is left to
    its new owner; records below the stored offset were committed before (a replay)."""
    batch = TopicBatch(topic, table_of(topic))
    by_partition: dict[int, list[ConsumedRecord]] = defaultdict(list)
    for record in records:
        by_partition[record.partition].append(record)
    for partition, members in by_partition.items():
        key = (topic, partition)
        if key not in claims:
            continue
        stored = claims[key]
        fresh = [r for r in members if stored is None or r.offset >= stored]
        if fresh:
            batch.plans[partition] = plan_batch(fresh, source_system, bronze_only=True)
            batch.expected[partition] = stored
    return batch


def by_topic(records: list[ConsumedRecord]) -> dict[str, list[ConsumedRecord]]:
    """A take's records per topic (one Delta commit each), in the order consumed."""
    grouped: dict[str, list[ConsumedRecord]] = defaultdict(list)
    for record in records:
        grouped[record.topic].append(record)
    return grouped


def _start_of(version: int | None) -> int:
    return OFFSET_BEGINNING if version is None else version
