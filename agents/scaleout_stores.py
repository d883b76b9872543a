"""Chat and telemetry into Cassandra, social posts into MongoDB: one agent per topic.

Per batch: decode every record (registry faults retried on the same record, undecodable
ones dead-lettered with their origin), write the batch to its store, and only then commit
the consumed offsets to Kafka. The stores' writes are idempotent (Cassandra: primary key
= the event's identity; MongoDB: a post version is applied only when newer), so the
at-least-once delivery this gives (a crash between write and commit redelivers the batch)
still ends with exactly one row per event and the newest version of each post.
A store that is down is retried with capped exponential backoff on the same batch, never
skipped: nothing is committed past records that are not stored (invariant I7's liveness,
I1's "no loss" for these stores).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

from confluent_kafka import Message

from agents.crash_points import CrashPoints
from config.errors import PermanentError, TransientError
from config.settings import Settings
from serdes.avro import AvroCodec
from serdes.consumer_step import Backoff, decode_with_retry
from serdes.dead_letters import DeadLetter, RecordOrigin, dead_letter
from serdes.framing import Headers
from serdes.registry import RegistryClient
from sinks.cassandra.writer import CassandraTableSink, CassandraWriter
from sinks.contract import BatchSink
from sinks.kafka.dead_letters import DeadLetterPublisher
from sinks.mongo.posts import PostsWriter
from streams.runtime import ConsumerRuntime, ConsumerSpec, origin_of

log = logging.getLogger("bitvelocity.scaleout")

#: A ``BatchSink``'s ``write`` (``sinks/contract.py``): returns the records applied.
Write = Callable[[list[dict[str, Any]]], Awaitable[int]]


@dataclass
class StoreStats:
    """What one agent did (read by tests, the demo and the benchmark)."""

    consumed: int = 0
    written: int = 0
    dead_letters: int = 0
    retries: int = 0
    batches: int = 0
    #: Seconds spent decoding, writing and committing batches (Kafka fetch waits excluded).
    busy_s: float = 0.0


def decode_store_records(
    messages: Sequence[Message], codec: AvroCodec, deadline_s: float = 60
) -> tuple[list[tuple[RecordOrigin, dict[str, Any]]], list[DeadLetter]]:
    """One batch of a scale-out topic: each record's Avro dict with its origin, in consumed
    order, and dead letters for what cannot be decoded (registry faults retried for up to
    ``deadline_s``)."""

    def decode(_key: bytes | None, value: bytes | None, headers: Headers | None) -> Any:
        return codec.decode(value or b"", headers)[1]

    deadline = time.monotonic() + deadline_s
    records: list[tuple[RecordOrigin, dict[str, Any]]] = []
    letters: list[DeadLetter] = []
    for message in messages:
        origin = origin_of(message)
        decoded = decode_with_retry(decode, origin, deadline=deadline)
        if isinstance(decoded, DeadLetter):
            letters.append(decoded)
        else:  # ``Decode`` is typed for Debezium; ours returns the Avro record dict
            records.append((origin, cast(dict[str, Any], decoded)))
    return records, letters


class StoreAgent:
    """Consume ``topic`` and hand each decoded batch to ``write``; ``await run(stop)``."""

    def __init__(
        self, settings: Settings, topic: str, write: Write, *, group_id: str, name: str
    ) -> None:
        self.settings = settings
        self.topic = topic
        self.name = name
        self.group_id = group_id
        self._write = write
        self.stats = StoreStats()
        self._crash = CrashPoints()  # fault tests: ``BV_FAULT_CRASH_AT=<name>_after_write@n``
        scaleout = settings.sink
        self._backoff = Backoff(scaleout.retry_initial_backoff_s, scaleout.retry_max_backoff_s)

    async def run(self, stop: asyncio.Event) -> StoreStats:
        settings = self.settings
        registry = RegistryClient(settings.registry)
        codec = AvroCodec(registry)
        dead_letters = DeadLetterPublisher(settings.kafka.bootstrap_servers)
        dead_letters.start()
        batches = ConsumerRuntime(
            settings.kafka.bootstrap_servers,
            ConsumerSpec(
                name=self.name,
                group_id=self.group_id,
                topics=(self.topic,),
                max_records=settings.sink.batch_max_records,
                max_wait_ms=settings.sink.batch_max_ms,
                fetch_wait_max_ms=20,
            ),
        )
        await batches.start()
        try:
            while not stop.is_set():
                messages = await batches.take_messages()
                if not messages:
                    continue
                started = time.perf_counter()
                decoded, letters = await batches.in_thread(decode_store_records, messages, codec)
                stored = await self.write_until_stored(decoded, letters, stop)
                if not stored:
                    return self.stats  # stopped during an outage: nothing committed
                if letters:
                    await batches.in_thread(_publish, dead_letters, letters)
                self._crash.reached(f"{self.name}_after_write")  # stored, not yet committed
                await batches.commit()
                self.stats.consumed += len(messages)
                self.stats.dead_letters += len(letters)
                self.stats.batches += 1
                self.stats.busy_s += time.perf_counter() - started
        finally:
            await batches.stop()
            dead_letters.stop()
            registry.close()
        return self.stats

    async def write_until_stored(
        self,
        records: list[tuple[RecordOrigin, dict[str, Any]]],
        letters: list[DeadLetter],
        stop: asyncio.Event,
    ) -> bool:
        """Write the batch, retrying outages; records the store refuses join ``letters``."""
        attempt = 0
        while True:
            try:
                try:
                    self.stats.written += await self._write([r for _, r in records])
                except PermanentError:
                    # Some record does not fit: write one by one to find it (rare path).
                    for origin, record in records:
                        try:
                            self.stats.written += await self._write([record])
                        except PermanentError as exc:
                            letters.append(dead_letter(origin, exc))
                return True
            except TransientError as exc:
                self.stats.retries += 1
                delay = self._backoff.delay(attempt)
                log.warning("%s: store write failed, retrying in %.1f s: %s", self.name, delay, exc)
                attempt += 1
                try:
                    await asyncio.wait_for(stop.wait(), timeout=delay)
                except TimeoutError:
                    continue
                return False


def _publish(publisher: DeadLetterPublisher, letters: list[DeadLetter]) -> None:
    for letter in letters:
        publisher.publish(letter)
    publisher.flush()


class ScaleoutStores:
    """The three agents of the scale-out stores sharing one Cassandra and one MongoDB client.

    ``keyspace``/``database``/``group_prefix`` isolate a test or a benchmark run.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        keyspace: str | None = None,
        database: str | None = None,
        group_prefix: str | None = None,
        kinds: Sequence[str] = ("chat", "telemetry", "posts"),
    ) -> None:
        self.settings = settings
        self.cassandra = CassandraWriter(settings.cassandra, keyspace)
        self.posts = PostsWriter(settings.mongo, database)
        prefix = group_prefix or f"{settings.kafka.consumer_group}-scaleout"
        topics = settings.topics
        by_kind: dict[str, tuple[str, BatchSink[dict[str, Any]]]] = {
            "chat": (topics.chat_messages, CassandraTableSink(self.cassandra, "chat")),
            "telemetry": (topics.device_telemetry, CassandraTableSink(self.cassandra, "telemetry")),
            "posts": (topics.social_posts, self.posts),
        }
        #: The sinks the chosen agents write to (chat and telemetry share one session).
        self.sinks = {kind: by_kind[kind][1] for kind in kinds}
        self.agents = {
            kind: StoreAgent(
                settings,
                by_kind[kind][0],
                self.sinks[kind].write,
                group_id=f"{prefix}-{kind}",
                name=kind,
            )
            for kind in kinds
        }

    async def _start_stores(self, stop: asyncio.Event) -> bool:
        """Connect the stores, waiting out an outage with backoff; False when stopped."""
        backoff = Backoff(self.settings.sink.retry_initial_backoff_s, 5.0)
        attempt = 0
        while not stop.is_set():
            try:
                for sink in self.sinks.values():
                    await sink.start()
                return True
            except TransientError as exc:
                log.warning("scale-out stores not reachable yet: %s", exc)
                await self._stop_stores()
                try:
                    await asyncio.wait_for(stop.wait(), timeout=backoff.delay(attempt))
                except TimeoutError:
                    attempt += 1
        return False

    async def _stop_stores(self) -> None:
        for sink in self.sinks.values():
            await sink.stop()

    async def run(self, stop: asyncio.Event) -> dict[str, StoreStats]:
        if not await self._start_stores(stop):
            return {kind: agent.stats for kind, agent in self.agents.items()}
        try:
            results = await asyncio.gather(*(agent.run(stop) for agent in self.agents.values()))
        finally:
            await self._stop_stores()
        return dict(zip(self.agents, results, strict=True))
