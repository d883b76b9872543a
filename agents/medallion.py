"""The medallion sink: CDC topics -> bronze, silver, gold, exactly once (DESIGN.md section 5).

It owns a confluent-kafka consumer rather than Faust's aiokafka one, because the seek to
PostgreSQL's stored offsets must happen before the first fetch of an assigned partition:
confluent-kafka's ``on_assign`` lets us set each partition's start offset in the
assignment itself (see docs/decisions/0004-exactly-once-sink-consumer.md).

Loop: take up to N records or T ms, decoded in the consumer's thread
(``agents/medallion_records.py``), plan one batch per partition, write it in one PostgreSQL
transaction that also moves the stored offset (``agents/medallion_commit.py``). Between
batches the upkeep jobs run on their own schedules (``agents/medallion_upkeep.py``).

With ``BV_SINK__SCALEOUT_BRONZE`` the same consumer also reads the scale-out event topics
(plain Avro events, ``serdes.plain_events``) into their bronze tables: decoded by topic,
planned as bronze-only batches, committed by the same writer with the same offsets
compare-and-set (docs/decisions/0015-scaleout-bronze.md).
Crash points for the fault tests (``BV_FAULT_CRASH_AT``): ``before_write`` (dead letters
flushed, transaction not begun), ``after_bronze`` (rows copied, offsets not moved, not
committed), ``after_commit`` (committed, not yet known to the loop).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime

from confluent_kafka import Message

from agents.crash_points import CrashPoints
from agents.medallion_accounting import PIPELINE, account_batch
from agents.medallion_commit import BatchCommitter, SinkStats
from agents.medallion_connections import SinkConnections
from agents.medallion_records import (
    by_partition,
    decode_cdc_record,
    decode_event_record,
    publish_dead_letters,
)
from agents.medallion_schema import SchemaScreen
from agents.medallion_upkeep import BatchLineage, daily_sales_refresh, lag_report, quality_sweep
from config.errors import TransientError
from config.settings import Settings
from lineage.openlineage import LineagePublisher
from observability.lag import PartitionKey, ask_watermarks
from observability.metrics import Metrics, default_metrics
from serdes.avro import AvroCodec
from serdes.consumer_step import Backoff
from serdes.debezium import DebeziumAvroDecoder
from serdes.plain_events import EventSpec, PlainEventDecoder, scaleout_event_specs
from serdes.registry import RegistryClient
from sinks.kafka.dead_letters import DeadLetterPublisher
from sinks.postgres.batch import ConsumedRecord, plan_batch
from sinks.postgres.medallion import BatchOutcome, MedallionWriter, QualityGate, register_lineage
from sinks.postgres.offsets import OffsetStore
from sinks.postgres.schema_changes import SchemaGuard
from sinks.postgres.tables import TABLES
from streams.periodic import Periodic
from streams.runtime import ConsumerRuntime, ConsumerSpec, PartitionId

__all__ = ["MedallionSink", "SinkStats", "event_topics", "medallion_topics", "sink_topics"]
log = logging.getLogger("bitvelocity.medallion")


def medallion_topics(settings: Settings) -> list[str]:
    """The CDC topics of the captured tables (what the lake sink reads too)."""
    return [settings.topics.cdc_topic(table) for table in TABLES]


def event_topics(settings: Settings) -> dict[str, EventSpec]:
    """The event topics the medallion sink also lands in bronze (none unless enabled)."""
    return scaleout_event_specs(settings.topics) if settings.sink.scaleout_bronze else {}


def subscribed_event_specs(settings: Settings, topics: Sequence[str]) -> dict[str, EventSpec]:
    """The event topics among ``topics`` (decoded as plain events, landed in bronze only)."""
    specs = scaleout_event_specs(settings.topics)
    return {topic: specs[topic] for topic in topics if topic in specs}


def guarded_writer(
    settings: Settings,
    offsets: OffsetStore,
    quality: QualityGate,
    metrics: Metrics,
    *,
    schema_text: Callable[[int], str],
    after_bronze: Callable[[], None],
) -> tuple[SchemaGuard, MedallionWriter]:
    """The batch writer and the schema guard that grows its table specs (decision 0021)."""
    sink = settings.sink
    guard = SchemaGuard(
        schema_text,
        metrics,
        default_policy=sink.schema_policy,
        policies=sink.schema_policies,
        gold_columns=sink.gold_columns,
    )
    writer = MedallionWriter(
        offsets,
        quality,
        after_bronze=after_bronze,
        tables=guard.tables,
        gold_columns=guard.gold_columns,
    )
    guard.on_spec_changed = writer.respec
    return guard, writer


def batch_lineage(settings: Settings, event_specs: Mapping[str, EventSpec]) -> BatchLineage | None:
    """The per-batch OpenLineage events, when enabled."""
    if not settings.sink.openlineage_enabled:
        return None
    kafka = settings.kafka.bootstrap_servers
    publisher = LineagePublisher(kafka, settings.topics.openlineage)
    tables = {topic: spec.table for topic, spec in event_specs.items()}
    return BatchLineage(publisher, kafka, tables)


def sink_topics(settings: Settings) -> list[str]:
    """Everything the medallion sink consumes by default: CDC, plus the enabled event topics."""
    return [*medallion_topics(settings), *event_topics(settings)]


class MedallionSink:
    """One worker's share of the medallion pipeline. ``await run(stop)`` until ``stop`` is set."""

    # Set by ``run``: the registry's codec and decoders, lineage, the consumer.
    _codec: AvroCodec | None = None
    _event_decoders: Mapping[str, PlainEventDecoder] = {}
    _lineage: BatchLineage | None = None
    _runtime: ConsumerRuntime | None = None

    def __init__(
        self,
        settings: Settings,
        quality: QualityGate,
        *,
        worker_id: str,
        topics: Sequence[str] | None = None,
        group_id: str | None = None,
        database: str | None = None,
        metrics: Metrics | None = None,
        on_committed: Callable[[BatchOutcome], None] | None = None,
        on_assigned: Callable[[list[PartitionId]], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topics = list(topics or sink_topics(settings))
        # An event topic is decoded as a plain event whenever it is subscribed, so a test or
        # the demo may name it in ``topics`` without the setting.
        self.event_specs = subscribed_event_specs(settings, self.topics)
        self.group_id = group_id or f"{settings.kafka.consumer_group}-medallion"
        self.quality = quality
        self.metrics = metrics or default_metrics()
        self.on_committed = on_committed
        self.on_assigned = on_assigned
        self.stats = SinkStats()
        self._crash = CrashPoints()
        self.schema_guard, self.writer = guarded_writer(
            settings,
            OffsetStore(self.group_id, worker_id),
            quality,
            self.metrics,
            schema_text=self._schema_text,
            after_bronze=lambda: self._crash.reached("after_bronze"),
        )
        self._backoff = Backoff(
            settings.sink.retry_initial_backoff_s, settings.sink.retry_max_backoff_s
        )
        self._stop = asyncio.Event()
        #: Writer connections, one per lane: partitions of a take are written concurrently.
        self.connections = SinkConnections(
            settings, database, lanes=settings.sink.write_lanes, prepare=self.writer.prepare
        )
        self.committer = BatchCommitter(
            self.writer.offsets,
            self.writer,
            self.connections,
            backoff=self._backoff,
            stats=self.stats,
            crash=self._crash,
            stopping=lambda: self._stop.is_set(),
        )
        self.schema_screen = SchemaScreen(
            self.schema_guard, self.connections, self.committer, self._backoff
        )
        self._schedule_upkeep()

    def _schedule_upkeep(self) -> None:
        """The jobs that run between batches, each on its own interval."""
        connect, drop = self.connections.writer, self.connections.drop
        self.quality_sweep = quality_sweep(self.quality, connect, drop)
        refresh_s = self.settings.sink.daily_sales_refresh_s
        watermarks = functools.partial(ask_watermarks, self.settings.kafka.bootstrap_servers)
        self.upkeep: list[Periodic] = [
            self.quality_sweep,
            daily_sales_refresh(connect, drop, interval_s=refresh_s),
            lag_report(self._committed_positions, watermarks, self.metrics, PIPELINE),
        ]

    def _schema_text(self, schema_id: int) -> str:
        assert self._codec is not None  # set by run() before the first take
        return self._codec.schema_text(schema_id)

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> SinkStats:
        """Consume and commit until ``stop`` is set; the batch in flight always finishes.

        Pipelined: while one batch is written to PostgreSQL, the consumer's thread takes and
        decodes the next one, until that write ends (at most one batch ahead; a batch taken
        but not written when ``stop`` is set is simply not committed and read again later).
        """
        self._stop = stop
        await register_lineage(await self.connections.writer(), self._event_lineage())
        await self.connections.open_all()
        registry = RegistryClient(self.settings.registry)
        codec = self._codec = AvroCodec(registry)
        decoder = DebeziumAvroDecoder(codec)
        self._event_decoders = {
            topic: PlainEventDecoder(codec, spec) for topic, spec in self.event_specs.items()
        }
        dead_letters = DeadLetterPublisher(self.settings.kafka.bootstrap_servers)
        dead_letters.start()
        self._lineage = batch_lineage(self.settings, self.event_specs)
        runtime = self._runtime = ConsumerRuntime(
            self.settings.kafka.bootstrap_servers,
            self.consumer_spec(),
            start_positions=self._claim_all,
            on_revoked=self.committer.forget,
        )
        try:
            await runtime.start()
            taking = asyncio.ensure_future(runtime.take(self._decoding(decoder)))
            while not stop.is_set():
                try:
                    records = await taking
                except TransientError as exc:  # registry down beyond the decode deadline
                    log.warning("decode stalled, re-reading from the stored offsets: %s", exc)
                    await runtime.seek(self.committer.positions())
                    await runtime.hold(self._backoff.max_s, stop)
                    taking = asyncio.ensure_future(runtime.take(self._decoding(decoder)))
                    continue
                if self.schema_guard.paused:  # between takes: a seek cannot race a fetch
                    records = await self.schema_screen.resume_accepted(records, self._runtime)
                written = threading.Event()  # the next take is decoded until this write ends
                taking = asyncio.ensure_future(runtime.take(self._decoding(decoder), written))
                try:
                    await self._write_all(by_partition(records), dead_letters)
                finally:
                    written.set()
                for job in self.upkeep:
                    await job.tick()
            await _settled(taking)  # taken, never written: read again by the next owner
        finally:
            for job in self.upkeep:
                await job.settle()
            await runtime.stop()  # leaves the group now
            dead_letters.stop()
            if self._lineage is not None:
                self._lineage.close()
            registry.close()
            self.connections.close()
        return self.stats

    def consumer_spec(self) -> ConsumerSpec:
        sink = self.settings.sink
        return ConsumerSpec(
            name="medallion",
            group_id=self.group_id,
            topics=tuple(self.topics),
            max_records=sink.batch_max_records,
            max_wait_ms=sink.batch_max_ms,
            max_poll_interval_ms=sink.max_poll_interval_ms,
        )

    async def _claim_all(self, partitions: list[PartitionId]) -> dict[PartitionId, int]:
        """Assignment: the claims' stored offsets are the start positions (before any fetch)."""
        starts = await self.committer.claim_all(partitions)
        if self.on_assigned is not None and partitions:
            self.on_assigned(partitions)
        return starts

    @property
    def parked(self) -> frozenset[PartitionId]:
        """Partitions of paused tables the consumer does not fetch (until accepted)."""
        return frozenset() if self._runtime is None else self._runtime.parked

    async def _polling(self, work: Awaitable[BatchOutcome]) -> BatchOutcome:
        assert self._runtime is not None
        return await self._runtime.polling_while(work)

    async def _hold(self, seconds: float) -> None:
        assert self._runtime is not None
        await self._runtime.hold(seconds, self._stop)

    def _committed_positions(self) -> dict[PartitionKey, int]:
        return {PartitionKey(t, p): offset for (t, p), offset in self.committer.positions().items()}

    def _decoding(self, decoder: DebeziumAvroDecoder) -> Callable[[Message], ConsumedRecord]:
        """The per-record conversion of one take; registry faults are retried for up to 30 s,
        less when max.poll.interval.ms is short (the consumer's thread does not poll)."""
        deadline = time.monotonic() + self.consumer_spec().convert_stall_s
        events = self._event_decoders
        backoff = self._backoff

        def convert(message: Message) -> ConsumedRecord:
            event_decoder = events.get(message.topic() or "") if events else None
            if event_decoder is not None:
                return decode_event_record(event_decoder, message, backoff, deadline)
            return decode_cdc_record(decoder, message, backoff, deadline)

        return convert

    def _event_lineage(self) -> list[tuple[str, str, str, int]]:
        """The lineage edges of the subscribed event topics (Kafka topic -> bronze table)."""
        return [
            (f"kafka.{topic}", f"bronze.{spec.table}", "EVENT_INGEST", 1)
            for topic, spec in self.event_specs.items()
        ]

    # -- one take: each partition's batch ---------------------------------------------------
    async def _write_all(
        self, batches: list[list[ConsumedRecord]], dead_letters: DeadLetterPublisher
    ) -> None:
        """Each partition's batch in its own transaction, on a few connections at once:
        while PostgreSQL writes one, this process plans the next (partitions are
        independent: a key always lives in one partition of its topic)."""
        pending = list(reversed(batches))

        async def lane(slot: int) -> None:
            while pending:
                await self._process(pending.pop(), dead_letters, slot)

        lanes = min(self.connections.lanes, len(batches))
        async with asyncio.TaskGroup() as group:
            for slot in range(lanes):
                group.create_task(lane(slot))

    async def _process(
        self, records: list[ConsumedRecord], dead_letters: DeadLetterPublisher, slot: int = 0
    ) -> None:
        key = (records[0].topic, records[0].partition)
        claim = self.committer.claims.get(key)
        if claim is None:  # revoked or fenced meanwhile: the new owner reads these again
            return
        fresh = [r for r in records if r.offset >= claim.next_offset]
        if fresh:  # a paused table's records stop at its schema change (decision 0021)
            screened = await self.schema_screen.screen(fresh, self._hold, self._stop, slot)
            if len(screened) < len(fresh) and self.schema_screen.holds(key[0]):
                assert self._runtime is not None
                await self._runtime.park([key])  # fetched no more until accepted
            fresh = screened
        if not fresh:
            return
        started = time.monotonic()
        started_at = datetime.now(UTC)
        plan = plan_batch(
            fresh, f"postgres.{self.settings.postgres.database}", tables=self.schema_guard.tables
        )
        if plan.dead_letters:
            await asyncio.to_thread(publish_dead_letters, dead_letters, plan.dead_letters)
        self._crash.reached("before_write")
        outcome = await self.committer.commit(claim, plan, slot, self._hold, self._polling)
        elapsed = time.monotonic() - started
        if outcome is None:
            return
        account_batch(self.stats, self.metrics, plan, outcome, elapsed, fresh)
        if self.on_committed is not None:
            self.on_committed(outcome)
        if self._lineage is not None:
            self._lineage.emit(plan, outcome, started_at)


async def _settled(taking: asyncio.Future[list[ConsumedRecord]]) -> None:
    """Wait for a take in flight to end, whatever its outcome (its records are dropped)."""
    try:
        await taking
    except Exception as exc:  # noqa: BLE001 - stopping: the records are read again anyway
        log.debug("batch taken while stopping dropped: %s", exc)
