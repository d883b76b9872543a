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
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

import asyncpg
from confluent_kafka import Message

from agents.crash_points import CrashPoints
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
from sinks.postgres.schema_changes import SchemaGuard
from sinks.postgres.tables import TABLES
from streams.runtime import ConsumerRuntime, ConsumerSpec, PartitionId, origin_of

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
    #: Partition assignments and revocations seen: one of each per rebalance.
    assignments: int = 0
    revocations: int = 0
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
        self.metrics = metrics or default_metrics()
        self._codec: AvroCodec | None = None
        self.schema_guard = SchemaGuard(
            self._schema_text,
            self.metrics,
            default_policy=settings.sink.schema_policy,
            policies=settings.sink.schema_policies,
            gold_columns=settings.sink.gold_columns,
        )
        self.writer = MedallionWriter(
            self.offsets,
            quality,
            after_bronze=lambda: self._crash.reached("after_bronze"),
            tables=self.schema_guard.tables,
            gold_columns=self.schema_guard.gold_columns,
        )
        self.schema_guard.on_spec_changed = self.writer.respec
        self._last_schema_check = 0.0
        self._event_decoders: dict[str, PlainEventDecoder] = {}
        self._last_sweep = 0.0
        self._sweep_interval_s = 2.0
        self._last_refresh = time.monotonic()
        self._last_lag = 0.0
        self._lineage: LineagePublisher | None = None
        self.on_committed = on_committed
        self.stats = SinkStats()
        self.claims: dict[tuple[str, int], PartitionClaim] = {}
        #: Writer connections, one per lane: partitions of a take are written concurrently.
        self._connections: list[asyncpg.Connection | None] = [None] * settings.sink.write_lanes
        #: Claims on assignment use their own connection: they run while a batch is written.
        self._claims_connection: asyncpg.Connection | None = None
        self._runtime: ConsumerRuntime | None = None
        self._backoff = Backoff(
            settings.sink.retry_initial_backoff_s, settings.sink.retry_max_backoff_s
        )
        self._stop = asyncio.Event()

    def _schema_text(self, schema_id: int) -> str:
        assert self._codec is not None  # set by run() before the first take
        return self._codec.schema_text(schema_id)

    # -- lifecycle ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> SinkStats:
        """Consume and commit until ``stop`` is set; the batch in flight always finishes.

        Pipelined: while one batch is written to PostgreSQL, the consumer's thread already
        takes and decodes the next one (at most one batch ahead; a batch taken but not
        written when ``stop`` is set is simply not committed and read again later).
        """
        self._stop = stop
        connection = await self._db()
        await register_lineage(connection, self._event_lineage())
        registry = RegistryClient(self.settings.registry)
        codec = self._codec = AvroCodec(registry)
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
        runtime = ConsumerRuntime(
            self.settings.kafka.bootstrap_servers,
            self.consumer_spec(),
            start_positions=self._claim_all,
            on_revoked=self._forget,
        )
        self._runtime = runtime
        try:
            await runtime.start()
            taking = asyncio.ensure_future(runtime.take(self._decoding(decoder)))
            while not stop.is_set():
                try:
                    records = await taking
                except TransientError as exc:  # registry down beyond the decode deadline
                    log.warning("decode stalled, re-reading from the stored offsets: %s", exc)
                    await self._rewind()
                    await runtime.hold(self._backoff.max_s, stop)
                    taking = asyncio.ensure_future(runtime.take(self._decoding(decoder)))
                    continue
                if self.schema_guard.paused:  # between takes: a seek cannot race a fetch
                    records = await self._resume_accepted(records)
                # The next batch is taken and decoded while this one is written.
                taking = asyncio.ensure_future(runtime.take(self._decoding(decoder)))
                await self._write_all(by_partition(records), dead_letters)
                await self._sweep_quality()
                await self._refresh_daily_sales()
                await self._report_lag()
            await _settled(taking)  # taken, never written: read again by the next owner
        finally:
            await runtime.stop()  # leaves the group now
            dead_letters.stop()
            if self._lineage is not None:
                self._lineage.close()
            registry.close()
            await self._close_all()
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

    # -- assignment: the seek happens before the first fetch ---------------------------------
    async def _claim_all(self, partitions: list[PartitionId]) -> dict[PartitionId, int]:
        """Claim newly assigned partitions (a new owner epoch) and start at their stored
        offsets; retried with backoff until PostgreSQL answers."""
        self.stats.assignments += 1
        attempt = 0
        while True:
            try:
                connection = await self._claims_db()
                claims = {}
                for topic, partition in partitions:
                    claims[(topic, partition)] = await self.offsets.claim(
                        connection, topic, partition
                    )
                self.claims.update(claims)
                return {key: claim.next_offset for key, claim in claims.items()}
            except _DB_ERRORS as exc:
                attempt += 1
                log.warning("claiming partitions failed (%s), retry %d", exc, attempt)
                await _terminate(self._claims_connection)
                self._claims_connection = None
                await asyncio.sleep(self._backoff.delay(attempt))

    def _forget(self, partitions: list[PartitionId]) -> None:
        self.stats.revocations += 1
        for key in partitions:
            self.claims.pop(key, None)

    async def _rewind(self) -> None:
        """Seek every owned partition back to its stored offset (nothing was committed)."""
        assert self._runtime is not None
        positions = {key: claim.next_offset for key, claim in self.claims.items()}
        await self._runtime.seek(positions)

    # -- decode, in the consumer's thread -----------------------------------------------------
    def _decoding(self, decoder: DebeziumAvroDecoder) -> Callable[[Message], ConsumedRecord]:
        """The per-record conversion of one take; registry faults are retried for 30 s."""
        deadline = time.monotonic() + 30
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

    # -- one partition's batch ------------------------------------------------------------------
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

        lanes = min(len(self._connections), len(batches))
        async with asyncio.TaskGroup() as group:
            for slot in range(lanes):
                group.create_task(lane(slot))

    async def _process(
        self, records: list[ConsumedRecord], dead_letters: DeadLetterPublisher, slot: int = 0
    ) -> None:
        key = (records[0].topic, records[0].partition)
        claim = self.claims.get(key)
        if claim is None:  # revoked or fenced meanwhile: the new owner reads these again
            return
        fresh = [r for r in records if r.offset >= claim.next_offset]
        if fresh:  # a paused table's records stop at its schema change (decision 0021)
            fresh = await self._screen(fresh)
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
        outcome = await self._commit(claim, plan, slot)
        elapsed = time.monotonic() - started
        if outcome is None:
            return
        self._account(plan, outcome, elapsed, fresh)
        self._emit_lineage(plan, outcome, started_at)

    async def _screen(self, records: list[ConsumedRecord]) -> list[ConsumedRecord]:
        """The records the schema guard lets through; retried while PostgreSQL is away."""
        attempt = 0
        while True:
            try:
                return await self.schema_guard.screen(await self._db(), records)
            except _DB_ERRORS as exc:
                attempt += 1
                log.warning("schema check failed (%s); retry %d", exc, attempt)
                await self._close_db()
                if self._stop.is_set():
                    return []  # nothing written: the next owner reads these again
                assert self._runtime is not None
                await self._runtime.hold(self._backoff.delay(attempt), self._stop)

    async def _resume_accepted(self, records: list[ConsumedRecord]) -> list[ConsumedRecord]:
        """Every 2 s while a table is paused: resume those an operator accepted, from their
        stored offsets (the records taken meanwhile lie beyond the pause: read again)."""
        now = time.monotonic()
        if now - self._last_schema_check < 2.0:
            return records
        self._last_schema_check = now
        try:
            resumed = await self.schema_guard.accepted(await self._db())
        except _DB_ERRORS as exc:
            log.warning("paused tables not checked: %s", exc)
            await self._close_db()
            return records
        topics = {paused.topic for paused in resumed}
        if not topics:
            return records
        assert self._runtime is not None
        positions = {k: c.next_offset for k, c in self.claims.items() if k[0] in topics}
        await self._runtime.seek(positions)
        return [r for r in records if r.topic not in topics]

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

    async def _commit(
        self, claim: PartitionClaim, plan: PlannedBatch, slot: int
    ) -> BatchOutcome | None:
        attempt = 0
        while True:
            try:
                connection = await self._db(slot)
                outcome = await self.writer.write(connection, claim, plan)
                self._crash.reached("after_commit")
                self._replace_claim(claim, outcome.claim)
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
                await self._close_db(slot)
                if self._stop.is_set() and attempt >= 3:
                    # Shutting down with the database away: give the batch up. Nothing of
                    # it was committed, so the next owner of the partition reads it again.
                    return None
                settled = await self._settle(claim, plan, attempt, slot)
                if settled is not None:
                    return settled if isinstance(settled, BatchOutcome) else None

    async def _settle(
        self, claim: PartitionClaim, plan: PlannedBatch, attempt: int, slot: int
    ) -> BatchOutcome | bool | None:
        """After a failure: did the commit happen anyway? Read the offsets row to know."""
        while True:
            # Paused, but polling: an outage longer than max.poll.interval.ms must not
            # evict this member from its group.
            assert self._runtime is not None
            await self._runtime.hold(self._backoff.delay(attempt), self._stop)
            try:
                connection = await self._db(slot)
                stored = await self.offsets.read(connection, claim.topic, claim.partition)
                break
            except _DB_ERRORS as exc:
                attempt += 1
                self.stats.db_retries += 1
                log.warning("database still unavailable (%s)", exc)
                await self._close_db(slot)
                if self._stop.is_set() and attempt >= 3:
                    return False  # shutting down: the batch stays uncommitted, read again later
        if stored is None or stored[1] != claim.epoch:
            self._fence(claim, PartitionFencedError(f"epoch moved to {stored}"))
            return False
        if stored[0] == plan.last_offset + 1:
            self.stats.ambiguous_commits += 1
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
        runtime = self._runtime
        assert runtime is not None
        try:
            marks = await runtime.in_thread(read_watermarks, runtime.consumer, list(committed))
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
    async def _db(self, slot: int = 0) -> asyncpg.Connection:
        connection = self._connections[slot]
        if connection is None or connection.is_closed():
            pg = self.settings.postgres
            connection = await connect(
                pg,
                self.database,
                user=pg.worker_user,
                password=pg.worker_password.get_secret_value(),
            )
            self._connections[slot] = connection
            await self.writer.prepare(connection)
        return connection

    async def _claims_db(self) -> asyncpg.Connection:
        if self._claims_connection is None or self._claims_connection.is_closed():
            pg = self.settings.postgres
            self._claims_connection = await connect(
                pg,
                self.database,
                user=pg.worker_user,
                password=pg.worker_password.get_secret_value(),
            )
        return self._claims_connection

    async def _close_db(self, slot: int = 0) -> None:
        """Drop a writer connection (after a failure: the next use opens a new one)."""
        await _terminate(self._connections[slot])
        self._connections[slot] = None

    async def _close_all(self) -> None:
        for slot in range(len(self._connections)):
            await self._close_db(slot)
        await _terminate(self._claims_connection)
        self._claims_connection = None


async def _terminate(connection: asyncpg.Connection | None) -> None:
    if connection is not None:
        connection.terminate()


async def _settled(taking: asyncio.Future[list[ConsumedRecord]]) -> None:
    """Wait for a take in flight to end, whatever its outcome (its records are dropped)."""
    try:
        await taking
    except Exception as exc:  # noqa: BLE001 - stopping: the records are read again anyway
        log.debug("batch taken while stopping dropped: %s", exc)


def by_partition(records: list[ConsumedRecord]) -> list[list[ConsumedRecord]]:
    """A take's records grouped per partition, each group in offset order."""
    groups: dict[tuple[str, int], list[ConsumedRecord]] = {}
    for record in records:
        key = (record.topic, record.partition)
        group = groups.get(key)
        if group is None:
            groups[key] = [record]
        else:
            group.append(record)
    return list(groups.values())


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
