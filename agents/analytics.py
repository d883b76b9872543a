"""The real-time analytics pipeline: CDC -> ``tables.analytics`` -> gold, Redis, Kafka.

``AnalyticsSinks`` writes one drained batch of outputs: PostgreSQL (one transaction, version
-guarded upserts), then Redis (one pipeline), then Kafka (flushed); every output is an
idempotent versioned upsert, so a batch written twice is harmless.

``AnalyticsRunner`` drives the core from a confluent-kafka consumer (one thread for
consume + decode, the event loop for the sinks), the same consumer family the medallion
sink uses (docs/decisions/0007-analytics-state-and-consumer.md). Its state is either plain
dicts rebuilt by replaying the CDC topics from the beginning (no ``store``), or an
``AnalyticsStateStore``: restored from its changelog topic and local folder, resuming every
partition at the position stored with the state (docs/decisions/0009). Either way it
replays to the topics' ends as they were at start, reconciles with gold, then every
``flush_interval`` ticks the clock (windows close, orders age out) and flushes: outputs,
then the changed state and positions in one changelog transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any, TypeVar

import asyncpg
from confluent_kafka import OFFSET_BEGINNING, Consumer, Message
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from agents.analytics_decode import AppliedRecord, RegistryWait, record_converter
from agents.analytics_state import (
    AnalyticsStateStore,
    RestoreStats,
    check_own_state,
    commit_retrying,
)
from config.errors import PermanentError, TransientError
from config.settings import Settings
from observability.metrics import default_metrics
from records.change_events import ChangeEvent
from serdes.avro import AvroCodec
from serdes.consumer_step import Backoff
from serdes.debezium import DebeziumAvroDecoder
from serdes.own_schemas import register_all
from serdes.registry import RegistryClient
from sinks.analytics_topics import AnalyticsPublisher
from sinks.postgres.analytics import (
    GoldUpsertSink,
    gold_feature_chunks,
    load_currency_rates,
    read_gold_windows,
    write_customer_features,
    write_hourly_revenue,
)
from sinks.postgres.connection import DB_ERRORS, connect
from sinks.redis.feature_store import RedisFeatureStore
from streams.runtime import ConsumerRuntime, ConsumerSpec, PartitionId
from tables.analytics import TABLES, AnalyticsCore, AnalyticsOutputs, AnalyticsState
from tables.revenue import LateEvent, WindowTotals

log = logging.getLogger("bitvelocity.analytics")
Clock = Callable[[], datetime]
T = TypeVar("T")
#: A lost PostgreSQL or Redis connection: reconnect and write the batch again.
_OUTAGES = (*DB_ERRORS, RedisConnectionError, RedisTimeoutError)


def utc_now() -> datetime:
    return datetime.now(UTC)


def heartbeat_topic(settings: Settings) -> str:
    return f"__debezium-heartbeat.{settings.topics.cdc_prefix}"


def analytics_topics(settings: Settings) -> list[str]:
    return [settings.topics.cdc_topic(table) for table in TABLES]


class AnalyticsSinks:
    """PostgreSQL, Redis and Kafka outputs of the analytics; ``async with`` or start/stop."""

    def __init__(self, settings: Settings, *, redis_db: int | None = None) -> None:
        self.settings = settings
        self.redis = RedisFeatureStore(
            settings.redis, prefix=settings.features.redis_prefix, db=redis_db
        )
        self.connection: asyncpg.Connection | None = None
        self.gold_hourly = GoldUpsertSink(
            "gold.hourly_revenue", self._current_connection, write_hourly_revenue
        )
        self.gold_features = GoldUpsertSink(
            "gold.customer_features", self._current_connection, write_customer_features
        )
        self.publisher: AnalyticsPublisher | None = None
        self._registry: RegistryClient | None = None

    async def start(self) -> None:
        await self.reconnect()
        await self.redis.start()
        self._registry = RegistryClient(self.settings.registry)
        ids = await asyncio.to_thread(register_all, self.settings, self._registry)
        topics = self.settings.topics
        self.publisher = AnalyticsPublisher(
            self.settings.kafka.bootstrap_servers,
            AvroCodec(self._registry),
            hourly_topic=topics.hourly_revenue,
            hourly_schema_id=ids[f"{topics.hourly_revenue}-value"],
            features_topic=topics.customer_features,
            features_schema_id=ids[f"{topics.customer_features}-value"],
            late_topic=topics.late_events,
        )
        await self.publisher.start()

    def _current_connection(self) -> asyncpg.Connection:
        if self.connection is None:
            raise PermanentError("AnalyticsSinks used before start(); call start()")
        return self.connection

    async def reconnect(self) -> None:
        """A new PostgreSQL connection (after the old one was lost, e.g. a restart). When
        this fails the old connection stays, so the next use fails as a lost connection."""
        pg = self.settings.postgres
        fresh = await connect(
            pg, user=pg.worker_user, password=pg.worker_password.get_secret_value()
        )
        old, self.connection = self.connection, fresh
        if old is not None:
            old.terminate()

    async def stop(self) -> None:
        if self.publisher is not None:
            await self.publisher.stop()
        await self.redis.stop()
        if self.connection is not None:
            await self.connection.close()
        if self._registry is not None:
            self._registry.close()

    async def __aenter__(self) -> AnalyticsSinks:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def flush(self, outputs: AnalyticsOutputs) -> None:
        """Sinks first (PostgreSQL, then Redis), then Kafka; the caller advances offsets."""
        if not len(outputs):
            return
        if self.connection is None or self.publisher is None:
            raise PermanentError("AnalyticsSinks.flush before start(); call start()")
        async with self.connection.transaction():  # both gold tables in one transaction
            await self.gold_hourly.write(outputs.hourly)
            await self.gold_features.write(outputs.features)
        await self.redis.write(outputs.features)
        await self.publisher.write([*outputs.hourly, *outputs.features, *outputs.late])
        default_metrics().record_late_events(len(outputs.late))

    async def retrying(
        self,
        work: Callable[[], Awaitable[T]],
        backoff: Backoff,
        *,
        stopping: Callable[[], bool],
        on_retry: Callable[[], None],
    ) -> T:
        """``work`` until it gets through a lost PostgreSQL or Redis connection (I7: a restart
        must not stop the analytics); reconnects with backoff. Gives up only when stopping."""
        attempt = 0
        while True:
            try:
                return await work()
            except _OUTAGES as exc:
                attempt += 1
                on_retry()
                if stopping() and attempt >= 3:
                    raise
                log.warning("analytics: a sink is unavailable (%r); retry %d", exc, attempt)
                await asyncio.sleep(backoff.delay(attempt))
                try:
                    await self.reconnect()
                except DB_ERRORS as again:
                    log.warning("analytics: reconnect failed (%s)", again)

    async def publish_late(self, events: list[LateEvent]) -> None:
        """Late events alone (seen while replaying, before any flush): keyed by the change's
        identity, so one published again after a crash is recognisably the same."""
        if not events:
            return
        if self.publisher is None:
            raise PermanentError("AnalyticsSinks.publish_late before start(); call start()")
        await self.publisher.write(events)
        default_metrics().record_late_events(len(events))


@dataclass
class RunnerStats:
    consumed: int = 0
    changes: int = 0
    heartbeats: int = 0
    undecodable: int = 0
    flushes: int = 0
    hourly_rows: int = 0
    feature_rows: int = 0
    late_events: int = 0
    late_events_replayed: int = 0
    db_retries: int = 0


class AnalyticsRunner:
    """Consume, apply, tick, flush, until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str,
        state: AnalyticsState | None = None,
        store: AnalyticsStateStore | None = None,
        clock: Clock = utc_now,
        redis_db: int | None = None,
    ) -> None:
        self.settings = settings
        self.group_id = group_id
        self.store = store
        self.state = store.state if store is not None else state
        self.restore: RestoreStats | None = None
        self.clock = clock
        self.redis_db = redis_db
        self.stats = RunnerStats()
        self.core: AnalyticsCore | None = None
        self.sinks: AnalyticsSinks | None = None
        self.positions: dict[tuple[str, int], int] = {}
        #: Source commit time of the newest change applied (freshness, for ``/metrics``).
        self.newest_committed_at: datetime | None = None
        self._runtime: ConsumerRuntime | None = None
        self._heartbeats = heartbeat_topic(settings)
        self._orders_topic = settings.topics.cdc_topic("orders")
        self._targets: dict[tuple[str, int], int] | None = None
        self._started = time.monotonic()
        #: True until the replay reached the topics' ends as they were at start.
        self.recovering = True
        self.recovered_after_s: float | None = None
        self._flush_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._backoff = Backoff(
            settings.sink.retry_initial_backoff_s, settings.sink.retry_max_backoff_s
        )

    async def run(self, stop: asyncio.Event, *, ready: asyncio.Event | None = None) -> RunnerStats:
        self._started = time.monotonic()
        self._stop = stop
        async with AnalyticsSinks(self.settings, redis_db=self.redis_db) as sinks:
            self.sinks = sinks
            if sinks.connection is None:
                raise PermanentError("analytics sinks did not connect")
            store = self.store
            core = self.core = await self._open_core(sinks.connection)
            registry = RegistryClient(self.settings.registry)
            codec = AvroCodec(registry)
            decoder = DebeziumAvroDecoder(codec)
            runtime = self._runtime = ConsumerRuntime(
                self.settings.kafka.bootstrap_servers,
                self.consumer_spec(),
                start_positions=self._start_positions,
                on_assigned=self._assigned,
                on_revoked=self._revoked,
            )
            await runtime.start()
            if ready is not None:
                ready.set()
            interval = self.settings.features.flush_interval.total_seconds()
            last_flush = time.monotonic()
            try:
                while not stop.is_set():
                    try:
                        taken = await runtime.take(self._decoding(decoder, codec))
                    except TransientError as exc:  # the registry is away past the deadline
                        log.warning("analytics: decoding stalled, re-reading: %s", exc)
                        await self._rewind(runtime)
                        await runtime.hold(self._backoff.max_s, stop)
                        continue
                    for partition, topic, next_offset, event in taken:
                        if event is not None:
                            self._apply(core, partition, topic, event)
                        self.positions[(topic, partition)] = next_offset  # applied: storable
                    if self.recovering:
                        await self._replaying(core, sinks, runtime)
                        continue
                    if time.monotonic() - last_flush >= interval:
                        await self.flush_now()
                        last_flush = time.monotonic()
                await self.flush_now()
            finally:
                if store is not None:
                    await runtime.in_thread(store.close)
                await runtime.stop()
                registry.close()
        return self.stats

    async def _open_core(self, connection: asyncpg.Connection) -> AnalyticsCore:
        """The core over the restored state (its positions and progress), or a fresh one."""
        rates = await load_currency_rates(connection)
        store = self.store
        if store is None:
            return AnalyticsCore(self.settings, rates, self.state)
        self.restore = await asyncio.to_thread(store.open)
        topics = [*analytics_topics(self.settings), self._heartbeats]
        try:
            check_own_state(store.topic, store.positions, topics)
        except PermanentError:
            await asyncio.to_thread(store.close)
            raise
        self.positions.update(store.positions)
        core = AnalyticsCore(self.settings, rates, self.state)
        core.restore_progress(store.progress)
        return core

    async def _replaying(
        self, core: AnalyticsCore, sinks: AnalyticsSinks, runtime: ConsumerRuntime
    ) -> None:
        """One take of the replay: rows are superseded by ``reconcile`` at its end; late
        events are published now (on a first start or with the state lost no earlier run
        saw them, and one published twice keeps its identity: decision 0020)."""
        late = core.drain().late
        await self._retrying(partial(sinks.publish_late, late))
        self.stats.late_events_replayed += len(late)
        if await runtime.in_thread(self._replayed):
            await self._reconcile(core)
        elif (
            self.store is not None
            and len(self.store.dirty) >= self.settings.features.replay_commit_entries
        ):
            # A long replay (a first start, a lost changelog folder) commits its state as it
            # goes: uncommitted entries are held in memory, so memory stays bounded. Safe: a
            # crash resumes the replay from these positions, and ``reconcile`` still compares
            # the whole state with gold at its end.
            await self._commit_state(self.store, core)

    def consumer_spec(self) -> ConsumerSpec:
        return ConsumerSpec(
            name="analytics",
            group_id=self.group_id,
            topics=(*analytics_topics(self.settings), self._heartbeats),
            max_records=5000,
            max_wait_ms=200,
            # One worker owns every partition (docs/decisions/0007): a static member takes
            # its partitions back at once after a crash, instead of waiting for the dead
            # member's session to expire; the changelog's transactional id fences the
            # zombie's writes.
            static_member_id=f"{self.group_id}-owner",
            max_poll_interval_ms=self.settings.sink.max_poll_interval_ms,
        )

    def _replayed(self) -> bool:
        """True once every assigned partition is read up to its high watermark at start
        (the consumer's thread)."""
        assert self._runtime is not None
        targets = self._targets = self._targets or start_ends(self._runtime.consumer)
        if targets is None:  # not assigned yet
            return False
        return all(self.positions.get(key, 0) >= end for key, end in targets.items())

    async def _reconcile(self, core: AnalyticsCore) -> None:
        sinks = self.sinks
        assert sinks is not None

        async def read_windows() -> dict[str, WindowTotals]:
            assert sinks.connection is not None
            return await read_gold_windows(sinks.connection)

        async def adopt_features() -> None:  # again from the start after a lost connection
            assert sinks.connection is not None
            async for chunk in gold_feature_chunks(sinks.connection):
                core.adopt_features(chunk)

        windows = await self._retrying(read_windows)
        await self._retrying(adopt_features)
        core.reconcile(windows)
        self.recovered_after_s = time.monotonic() - self._started
        log.info(
            "analytics state %s and replayed to the topics' ends in %.1f s",
            "restored from its changelog" if self.store is not None else "rebuilt",
            self.recovered_after_s,
        )
        self.recovering = False
        await self.flush_now()

    async def flush_now(self, now: datetime | None = None) -> AnalyticsOutputs:
        """Tick the clock and write what the core emitted; returns what was written."""
        if self.core is None or self.sinks is None or self.recovering:
            return AnalyticsOutputs()
        async with self._flush_lock:  # the loop and a caller may flush concurrently
            self.core.tick(now or self.clock())
            outputs = self.core.drain()
            sinks = self.sinks
            # Every output is a versioned upsert: writing the whole batch again is harmless.
            await self._retrying(lambda: sinks.flush(outputs))
            if self.store is not None:
                await self._commit_state(self.store, self.core)
        stats = self.stats
        stats.flushes += 1
        stats.hourly_rows += len(outputs.hourly)
        stats.feature_rows += len(outputs.features)
        stats.late_events += len(outputs.late)
        return outputs

    async def _commit_state(self, store: AnalyticsStateStore, core: AnalyticsCore) -> None:
        """After the outputs: changed state and positions, one transaction, with retries."""
        assert self._runtime is not None
        sink = self.settings.sink
        records = store.changes(self.positions, core.progress())
        await commit_retrying(
            store,
            records,
            self._runtime.in_thread,
            initial_s=sink.retry_initial_backoff_s,
            max_s=sink.retry_max_backoff_s,
        )

    async def _retrying(self, work: Callable[[], Awaitable[T]]) -> T:
        """``work`` through lost PostgreSQL or Redis connections (I7); see ``sinks.retrying``."""
        assert self.sinks is not None
        return await self.sinks.retrying(
            work, self._backoff, stopping=self._stop.is_set, on_retry=self._count_retry
        )

    def _count_retry(self) -> None:
        self.stats.db_retries += 1

    def _apply(self, core: AnalyticsCore, partition: int, topic: str, event: Any) -> None:
        if topic == self._heartbeats:
            self.stats.heartbeats += 1
            core.heartbeat(event)
        elif isinstance(event, ChangeEvent):
            self.stats.changes += 1
            core.apply(partition, event)
            newest = self.newest_committed_at
            if newest is None or event.committed_at > newest:
                self.newest_committed_at = event.committed_at

    # -- the consumer's thread ------------------------------------------------------------------
    def _start_positions(self, partitions: list[PartitionId]) -> dict[PartitionId, int]:
        """Where the applied state ends (restored with it), else from the beginning."""
        return {key: self.positions.get(key, OFFSET_BEGINNING) for key in partitions}

    def _assigned(self, partitions: list[PartitionId]) -> None:
        if self.core is not None:
            self.core.assign([p for topic, p in partitions if topic == self._orders_topic])

    def _revoked(self, partitions: list[PartitionId]) -> None:
        if self.core is not None:
            self.core.revoke([p for topic, p in partitions if topic == self._orders_topic])

    def _decoding(
        self, decoder: DebeziumAvroDecoder, codec: AvroCodec
    ) -> Callable[[Message], AppliedRecord]:
        """The per-record conversion of one take (decoded in the consumer's thread)."""
        return record_converter(
            decoder,
            codec,
            heartbeats=self._heartbeats,
            stats=self.stats,
            retry=RegistryWait(self._backoff, self._stop.is_set),
            stall_s=self.consumer_spec().convert_stall_s,
        )

    async def _rewind(self, runtime: ConsumerRuntime) -> None:
        """Back to the applied positions: a batch cut short by the registry is read again."""
        owned = await runtime.in_thread(runtime.assignment)
        await runtime.seek(self._start_positions(owned))


def start_ends(consumer: Consumer) -> dict[tuple[str, int], int] | None:
    """The high watermark of each non-empty assigned partition now (the replay's target),
    or None before the first assignment."""
    assignment = consumer.assignment()
    if not assignment:
        return None
    ends = {}
    for tp in assignment:
        _, high = consumer.get_watermark_offsets(tp, timeout=10)
        if high > 0:
            ends[(tp.topic, tp.partition)] = high
    return ends
