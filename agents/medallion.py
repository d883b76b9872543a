"""The medallion sink: CDC topics -> bronze, silver, gold, exactly once (DESIGN.md section 5).

It owns a confluent-kafka consumer rather than Faust's aiokafka one, because the seek to
PostgreSQL's stored offsets must happen before the first fetch of an assigned partition:
confluent-kafka's ``on_assign`` lets us set each partition's start offset in the
assignment itself (see docs/decisions/0004-exactly-once-sink-consumer.md).

Loop: consume up to N records or T ms, decode (transient registry faults are retried on
the same record; undecodable ones become dead letters, flushed to Kafka before the
commit), plan one batch per partition, write it in one PostgreSQL transaction that also
moves the stored offset. A lost connection is retried with backoff; a commit whose
outcome is unknown is settled by reading the offsets row. A fenced partition (another
worker claimed it) is dropped until the next assignment.

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
import logging
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
from confluent_kafka import Consumer, KafkaError, Message, TopicPartition

from agents.crash_points import CrashPoints
from agents.kafka_batches import assign_at, origin_of, revoke_claims
from config.errors import PermanentError, TransientError
from config.settings import Settings
from lineage.openlineage import Dataset, LineagePublisher, batch_events
from observability.lag import PartitionKey, compute_lag, read_watermarks
from observability.logging import distinct_trace_ids, trace_id_from_headers
from observability.metrics import Metrics, default_metrics
from serdes.avro import AvroCodec
from serdes.consumer_step import Backoff, decode_with_retry
from serdes.dead_letters import DeadLetter, DeadLetterPublisher, RecordOrigin, dead_letter
from serdes.debezium import ChangeEvent, DebeziumAvroDecoder
from serdes.plain_events import EventSpec, PlainEventDecoder, scaleout_event_specs
from serdes.registry import RegistryClient
from sinks.postgres.batch import ConsumedRecord, PlannedBatch, plan_batch
from sinks.postgres.connection import DB_ERRORS, connect
from sinks.postgres.medallion import (
    BatchOutcome,
    MedallionWriter,
    QualityGate,
    register_lineage,
)
from sinks.postgres.offsets import OffsetStore, PartitionClaim, PartitionFencedError
from sinks.postgres.tables import TABLES

log = logging.getLogger("bitvelocity.medallion")
PIPELINE = "medallion"
CORRELATION_COLUMN = "last_correlation_id"
_DB_ERRORS = DB_ERRORS


@dataclass
class SinkStats:
    """Running totals of one sink, for tests, logs and the worker's summary."""

    batches: int = 0
    consumed: int = 0
    bronze_rows: int = 0
    dead_letters: int = 0
    filtered: int = 0
    fenced: int = 0
    db_retries: int = 0
    ambiguous_commits: int = 0
    outcomes: list[BatchOutcome] = field(default_factory=list)


def medallion_topics(settings: Settings) -> list[str]:
    """The CDC topics of the captured tables (what the lake sink reads too)."""
    return [settings.topics.cdc_topic(table) for table in TABLES]


def event_topics(settings: Settings) -> dict[str, EventSpec]:
    """The event topics the medallion sink also lands in bronze (none unless enabled)."""
    return scaleout_event_specs(settings.topics) if settings.sink.scaleout_bronze else {}


def sink_topics(settings: Settings) -> list[str]:
    """Everything the medallion sink consumes by default: CDC, plus the enabled event topics."""
    return [*medallion_topics(settings), *event_topics(settings)]


class MedallionSink:
    """One worker's share of the medallion pipeline. ``await run(stop)`` until ``stop`` is set."""

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
    ) -> None:
        self.settings = settings
        self.topics = list(topics or sink_topics(settings))
        # An event topic is decoded as a plain event whenever it is subscribed, so a test or
        # the demo may name it in ``topics`` without the setting.
        specs = scaleout_event_specs(settings.topics)
        self.event_specs = {t: specs[t] for t in self.topics if t in specs}
        self.group_id = group_id or f"{settings.kafka.consumer_group}-medallion"
        self.database = database
        self.offsets = OffsetStore(self.group_id, worker_id)
        self.quality = quality
        self._crash = CrashPoints()
        self.writer = MedallionWriter(
            self.offsets, quality, after_bronze=lambda: self._crash.reached("after_bronze")
        )
        self._event_decoders: dict[str, PlainEventDecoder] = {}
        self._last_sweep = 0.0
        self._batch_opened = time.monotonic()
        self._sweep_interval_s = 2.0
        self._last_refresh = time.monotonic()
        self._last_lag = 0.0
        self._subscribed_at = 0.0
        self._assigned_once = False
        self._lineage: LineagePublisher | None = None
        self.metrics = metrics or default_metrics()
        self.on_committed = on_committed
        self.stats = SinkStats()
        self.claims: dict[tuple[str, int], PartitionClaim] = {}
        self._connection: asyncpg.Connection | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="medallion-kafka")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._consumer: Consumer | None = None
        self._backoff = Backoff(
            settings.sink.retry_initial_backoff_s, settings.sink.retry_max_backoff_s
        )
        self._stop = asyncio.Event()

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> SinkStats:
        """Consume and commit until ``stop`` is set; the batch in flight always finishes."""
        self._stop = stop
        self._loop = asyncio.get_running_loop()
        connection = await self._db()
        await register_lineage(connection, self._event_lineage())
        registry = RegistryClient(self.settings.registry)
        codec = AvroCodec(registry)
        decoder = DebeziumAvroDecoder(codec)
        self._event_decoders = {
            topic: PlainEventDecoder(codec, spec) for topic, spec in self.event_specs.items()
        }
        dead_letters = DeadLetterPublisher(self.settings.kafka.bootstrap_servers)
        dead_letters.start()
        if self.settings.sink.openlineage_enabled:
            self._lineage = LineagePublisher(
                self.settings.kafka.bootstrap_servers, self.settings.topics.openlineage
            )
        self._consumer = Consumer(self._consumer_config())
        try:
            await self._subscribe()
            while not stop.is_set():
                await self._resubscribe_if_never_assigned()
                try:
                    batches = await self._in_kafka_thread(self._poll, decoder)
                except TransientError as exc:  # registry down beyond the decode deadline
                    log.warning("decode stalled, re-reading from the stored offsets: %s", exc)
                    await self._rewind()
                    await self._sleep(self._backoff.max_s)
                    continue
                for records in batches.values():
                    await self._process(records, dead_letters)
                await self._sweep_quality()
                await self._refresh_daily_sales()
                await self._report_lag()
        finally:
            await self._in_kafka_thread(self._consumer.close)  # leaves the group now
            dead_letters.stop()
            if self._lineage is not None:
                self._lineage.close()
            registry.close()
            await self._close_db()
            self._executor.shutdown(wait=True)
        return self.stats

    def _consumer_config(self) -> dict[str, Any]:
        return {
            "bootstrap.servers": self.settings.kafka.bootstrap_servers,
            "group.id": self.group_id,
            "enable.auto.commit": False,  # PostgreSQL holds the real offsets
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 10000,
            "heartbeat.interval.ms": 2000,
            "max.poll.interval.ms": 120000,
            "fetch.wait.max.ms": 100,
            # Debezium creates a table's topic with its first change; without a short
            # refresh a subscription would not see a late topic for 5 minutes.
            "topic.metadata.refresh.interval.ms": 3000,
        }

    async def _in_kafka_thread(
        self, function: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: function(*args, **kwargs))

    # -- assignment: the seek happens before the first fetch ---------------------------------
    async def _subscribe(self) -> None:
        assert self._consumer is not None
        self._subscribed_at = time.monotonic()
        await self._in_kafka_thread(
            self._consumer.subscribe,
            self.topics,
            on_assign=self._on_assign,
            on_revoke=self._on_revoke,
        )

    async def _resubscribe_if_never_assigned(self) -> None:
        """Subscribe again if no assignment ever arrived: seen with librdkafka when the worker
        subscribed before Debezium had created any of the topics (the group was never joined)."""
        if self._assigned_once or time.monotonic() - self._subscribed_at < 30:
            return
        log.warning(
            "no partition assigned 30 s after subscribing to %s; subscribing again",
            ", ".join(self.topics),
        )
        assert self._consumer is not None
        await self._in_kafka_thread(self._consumer.unsubscribe)
        await self._subscribe()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        assert self._loop is not None
        self._assigned_once = True
        future = asyncio.run_coroutine_threadsafe(self._claim_all(partitions), self._loop)
        claims = future.result()
        for partition in partitions:
            partition.offset = claims[(partition.topic, partition.partition)].next_offset
        assign_at(consumer, partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        revoke_claims(self.claims, consumer, partitions)

    async def _claim_all(
        self, partitions: list[TopicPartition]
    ) -> dict[tuple[str, int], PartitionClaim]:
        attempt = 0
        while True:
            try:
                connection = await self._db()
                for partition in partitions:
                    claim = await self.offsets.claim(
                        connection, partition.topic, partition.partition
                    )
                    self.claims[(partition.topic, partition.partition)] = claim
                return dict(self.claims)
            except _DB_ERRORS as exc:
                attempt += 1
                log.warning("claiming partitions failed (%s), retry %d", exc, attempt)
                await self._close_db()
                await asyncio.sleep(self._backoff.delay(attempt))

    async def _rewind(self) -> None:
        """Seek every owned partition back to its stored offset (nothing was committed)."""
        assert self._consumer is not None
        for (topic, partition), claim in list(self.claims.items()):
            await self._in_kafka_thread(
                self._consumer.seek, TopicPartition(topic, partition, claim.next_offset)
            )

    # -- consume + decode, in the Kafka thread ------------------------------------------------
    def _poll(self, decoder: DebeziumAvroDecoder) -> dict[tuple[str, int], list[ConsumedRecord]]:
        assert self._consumer is not None
        sink = self.settings.sink
        # The batch window opened when the previous batch was taken: records that queued up
        # while it was being written have waited already, so take them without a second wait.
        wait_s = self._batch_opened + sink.batch_max_ms / 1000 - time.monotonic()
        messages = self._consumer.consume(
            num_messages=sink.batch_max_records, timeout=max(0.0, wait_s)
        )
        self._batch_opened = time.monotonic()
        batches: dict[tuple[str, int], list[ConsumedRecord]] = defaultdict(list)
        deadline = time.monotonic() + 30
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
                    log.debug("topic not created yet: %s", error)  # Debezium creates it later
                elif error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consume error: %s", error)
                continue
            batches[(message.topic() or "", message.partition() or 0)].append(
                self._decode(decoder, message, deadline)
            )
        return batches

    def _decode(
        self, decoder: DebeziumAvroDecoder, message: Message, deadline: float
    ) -> ConsumedRecord:
        events = self._event_decoders.get(message.topic() or "")
        if events is not None:
            return decode_event_record(events, message, self._backoff, deadline)
        return decode_cdc_record(decoder, message, self._backoff, deadline)

    def _event_lineage(self) -> list[tuple[str, str, str, int]]:
        """The lineage edges of the subscribed event topics (Kafka topic -> bronze table)."""
        return [
            (f"kafka.{topic}", f"bronze.{spec.table}", "EVENT_INGEST", 1)
            for topic, spec in self.event_specs.items()
        ]

    # -- one partition's batch ------------------------------------------------------------------
    async def _process(
        self, records: list[ConsumedRecord], dead_letters: DeadLetterPublisher
    ) -> None:
        key = (records[0].topic, records[0].partition)
        claim = self.claims.get(key)
        if claim is None:  # revoked or fenced meanwhile: the new owner reads these again
            return
        fresh = [r for r in records if r.offset >= claim.next_offset]
        if not fresh:
            return
        started = time.monotonic()
        started_at = datetime.now(UTC)
        plan = plan_batch(fresh, f"postgres.{self.settings.postgres.database}")
        if plan.dead_letters:
            await self._in_kafka_thread(publish_dead_letters, dead_letters, plan.dead_letters)
        self._crash.reached("before_write")
        outcome = await self._commit(claim, plan)
        elapsed = time.monotonic() - started
        if outcome is None:
            return
        self._account(plan, outcome, elapsed, fresh)
        self._emit_lineage(plan, outcome, started_at)

    def _emit_lineage(self, plan: PlannedBatch, outcome: BatchOutcome, started: datetime) -> None:
        if self._lineage is None:
            return
        spec = self.event_specs.get(plan.topic)
        if spec is not None:  # an event topic: bronze only
            table = spec.table
            outputs = [Dataset("postgres", f"bronze.{table}")]
        else:
            table = plan.topic.rsplit(".", 1)[-1]
            outputs = [
                Dataset("postgres", f"bronze.{table}"),
                Dataset("postgres", f"silver.{table}"),
            ]
            if table == "orders":
                outputs.append(Dataset("postgres", "gold.order_facts"))
        events = batch_events(
            job=f"medallion.{table}",
            batch_key=f"{plan.topic}/{plan.partition}/{plan.first_offset}-{plan.last_offset}",
            started=started,
            finished=datetime.now(UTC),
            inputs=[Dataset(f"kafka://{self.settings.kafka.bootstrap_servers}", plan.topic)],
            outputs=outputs,
            counts={
                "consumed": plan.consumed,
                "bronze_rows": outcome.bronze_rows,
                "silver_rows": outcome.silver_rows,
                "dead_letters": outcome.dead_letters,
            },
        )
        self._lineage.publish(events, key=plan.topic)

    async def _commit(self, claim: PartitionClaim, plan: PlannedBatch) -> BatchOutcome | None:
        attempt = 0
        while True:
            try:
                connection = await self._db()
                outcome = await self.writer.write(connection, claim, plan)
                self._crash.reached("after_commit")
                self.claims[(claim.topic, claim.partition)] = outcome.claim
                return outcome
            except PartitionFencedError as exc:
                self._fence(claim, exc)
                return None
            except _DB_ERRORS as exc:
                attempt += 1
                self.stats.db_retries += 1
                log.warning(
                    "batch %s[%d] at %d failed (%s); retry %d",
                    claim.topic,
                    claim.partition,
                    plan.first_offset,
                    exc,
                    attempt,
                )
                await self._close_db()
                if self._stop.is_set() and attempt >= 3:
                    # Shutting down with the database away: give the batch up. Nothing of
                    # it was committed, so the next owner of the partition reads it again.
                    return None
                settled = await self._settle(claim, plan, attempt)
                if settled is not None:
                    return settled if isinstance(settled, BatchOutcome) else None

    async def _settle(
        self, claim: PartitionClaim, plan: PlannedBatch, attempt: int
    ) -> BatchOutcome | bool | None:
        """After a failure: did the commit happen anyway? Read the offsets row to know."""
        while True:
            await self._sleep(self._backoff.delay(attempt))
            try:
                connection = await self._db()
                stored = await self.offsets.read(connection, claim.topic, claim.partition)
                break
            except _DB_ERRORS as exc:
                attempt += 1
                self.stats.db_retries += 1
                log.warning("database still unavailable (%s)", exc)
                await self._close_db()
                if self._stop.is_set() and attempt >= 3:
                    return False  # shutting down: the batch stays uncommitted, read again later
        if stored is None or stored[1] != claim.epoch:
            self._fence(claim, PartitionFencedError(f"epoch moved to {stored}"))
            return False
        if stored[0] == plan.last_offset + 1:
            self.stats.ambiguous_commits += 1
            committed = claim.advanced_to(plan.last_offset + 1)
            self.claims[(claim.topic, claim.partition)] = committed
            return BatchOutcome(
                committed,
                -1,
                plan.bronze_rows,
                plan.silver_rows,
                len(plan.dead_letters),
                plan.filtered,
            )
        return None  # not committed: write the same batch again

    async def _sweep_quality(self) -> None:
        """Every few seconds, settle REFERENCE checks parked by earlier batches."""
        now = time.monotonic()
        if now - self._last_sweep < self._sweep_interval_s:
            return
        self._last_sweep = now
        try:
            connection = await self._db()
            async with connection.transaction():
                await self.quality.sweep(connection)
        except _DB_ERRORS as exc:  # the next sweep tries again; nothing is lost meanwhile
            log.warning("quality sweep skipped: %s", exc)
            await self._close_db()

    async def _report_lag(self) -> None:
        """Every few seconds: records not yet committed per owned partition (a gauge)."""
        now = time.monotonic()
        if now - self._last_lag < 5.0 or not self.claims:
            return
        self._last_lag = now
        committed = {
            PartitionKey(topic, partition): claim.next_offset
            for (topic, partition), claim in self.claims.items()
        }
        try:
            marks = await self._in_kafka_thread(read_watermarks, self._consumer, list(committed))
        except TransientError as exc:
            log.debug("lag not measured: %s", exc)
            return
        self.metrics.set_lag(compute_lag(committed, marks), PIPELINE)

    async def _refresh_daily_sales(self) -> None:
        """Keep gold.daily_sales fresh without blocking readers (CONCURRENTLY)."""
        now = time.monotonic()
        if now - self._last_refresh < self.settings.sink.daily_sales_refresh_s:
            return
        self._last_refresh = now
        try:
            connection = await self._db()
            await connection.execute("REFRESH MATERIALIZED VIEW CONCURRENTLY gold.daily_sales")
        except _DB_ERRORS as exc:
            log.warning("daily_sales refresh skipped: %s", exc)
            await self._close_db()

    def _fence(self, claim: PartitionClaim, exc: Exception) -> None:
        self.stats.fenced += 1
        self.claims.pop((claim.topic, claim.partition), None)
        log.warning("fenced: %s", exc)

    def _account(
        self,
        plan: PlannedBatch,
        outcome: BatchOutcome,
        seconds: float,
        records: list[ConsumedRecord],
    ) -> None:
        stats = self.stats
        stats.batches += 1
        stats.consumed += plan.consumed
        stats.bronze_rows += outcome.bronze_rows
        stats.dead_letters += outcome.dead_letters
        stats.filtered += outcome.filtered
        stats.outcomes.append(outcome)
        self.metrics.record_batch(PIPELINE, plan.consumed, seconds, "ok")
        self.metrics.record_sink_commit(outcome.bronze_rows + outcome.silver_rows, seconds)
        # Dead letters count as errors of their class; the DLQ counter is the publisher's.
        for reason, count in Counter(letter.reason for letter in plan.dead_letters).items():
            self.metrics.record_errors(PIPELINE, reason, count)
        newest = max(
            (r.decoded.committed_at for r in records if isinstance(r.decoded, ChangeEvent)),
            default=None,
        )
        if newest is not None:
            self.metrics.record_committed_event_time(PIPELINE, newest)
        log.info(
            "committed %s[%d] %d..%d: %d bronze, %d silver, %d dead letters, %d filtered",
            plan.topic,
            plan.partition,
            plan.first_offset,
            plan.last_offset,
            outcome.bronze_rows,
            outcome.silver_rows,
            outcome.dead_letters,
            outcome.filtered,
            extra={"trace_ids": distinct_trace_ids(r.trace_id for r in records)},
        )
        if self.on_committed is not None:
            self.on_committed(outcome)

    # -- database connection ----------------------------------------------------------------------
    async def _db(self) -> asyncpg.Connection:
        if self._connection is None or self._connection.is_closed():
            pg = self.settings.postgres
            self._connection = await connect(
                pg,
                self.database,
                user=pg.worker_user,
                password=pg.worker_password.get_secret_value(),
            )
            await self.writer.prepare(self._connection)
        return self._connection

    async def _close_db(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.terminate()

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            return


def decode_cdc_record(
    decoder: DebeziumAvroDecoder, message: Message, backoff: Backoff, deadline: float
) -> ConsumedRecord:
    """One consumed CDC record, decoded (transient registry faults retried until
    ``deadline``) or made a dead letter; a table without a silver table is a dead letter."""
    origin = origin_of(message)
    decoded = decode_with_retry(decoder.decode, origin, backoff=backoff, deadline=deadline)
    if isinstance(decoded, ChangeEvent) and decoded.table not in TABLES:
        decoded = _unknown_table(origin, decoded)
    return ConsumedRecord(
        origin.topic,
        origin.partition,
        origin.offset,
        decoded,
        trace_id_from_headers(list(origin.headers)) or _row_correlation_id(decoded),
        origin,
    )


def decode_event_record(
    decoder: PlainEventDecoder, message: Message, backoff: Backoff, deadline: float
) -> ConsumedRecord:
    """One consumed record of an event topic, decoded (transient registry faults retried
    until ``deadline``) or made a dead letter."""
    origin = origin_of(message)
    decoded = decode_with_retry(decoder.decode, origin, backoff=backoff, deadline=deadline)
    return ConsumedRecord(
        origin.topic,
        origin.partition,
        origin.offset,
        decoded,
        trace_id_from_headers(list(origin.headers)),
        origin,
    )


class UnknownTableError(PermanentError):
    """A change of a table the medallion pipeline has no silver table for."""


def _unknown_table(origin: RecordOrigin, event: ChangeEvent) -> DeadLetter:
    return dead_letter(
        origin,
        UnknownTableError(f"no silver table for {event.schema}.{event.table}"),
        event.schema_id,
    )


def _row_correlation_id(decoded: object) -> str | None:
    """The OLTP transaction's correlation id, stamped on the row by oltp migration 0003."""
    if isinstance(decoded, ChangeEvent) and decoded.after is not None:
        value = decoded.after.get(CORRELATION_COLUMN)
        return value if isinstance(value, str) else None
    return None


def publish_dead_letters(publisher: DeadLetterPublisher, letters: list[DeadLetter]) -> None:
    for letter in letters:
        publisher.publish(letter)
    publisher.flush()  # acknowledged before the offset moves past them
