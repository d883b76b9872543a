"""Consume ``product-updates`` and evict what each update invalidates, in L2 and every L1.

Per batch: decode the ProductUpdates, compute the keys (``cache.product_updates``), evict
them all in one Redis MULTI that also broadcasts them on the invalidation channel
(``RedisLayer.evict``), then commit the offsets. Redis down: the batch is retried with
backoff and nothing is committed, so no eviction is lost; replays are harmless.
With ``BV_NATS__INVALIDATION_ENABLED`` every applied eviction is also handed to NATS
(``cache.nats_invalidation``), after Redis and without waiting for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import Message

from agents.cache_consumer import cache_consumer
from cache.keys import CacheKey
from cache.l2 import CacheUnavailableError, RedisLayer
from cache.nats_invalidation import NatsInvalidationPublisher, eviction_message, source_ranges
from cache.product_updates import ProductUpdate, eviction_keys, from_avro
from config.errors import PermanentError
from config.settings import Settings
from observability.metrics import Metrics, default_metrics
from serdes.avro import AvroCodec
from serdes.consumer_step import Backoff
from serdes.dead_letters import DeadLetter, dead_letter
from serdes.registry import RegistryClient
from sinks.kafka.dead_letters import DeadLetterPublisher
from streams.runtime import origin_of

log = logging.getLogger("bitvelocity.cache_invalidation")
PIPELINE = "cache-invalidation"


@dataclass(frozen=True, slots=True)
class EvictedBatch:
    """One applied batch: the updates, the keys evicted, when (UTC)."""

    updates: tuple[ProductUpdate, ...]
    keys: tuple[CacheKey, ...]
    evicted_at: datetime


def decode_updates(
    messages: Sequence[Message], codec: AvroCodec
) -> tuple[list[ProductUpdate], list[DeadLetter]]:
    """The batch's ``ProductUpdate``s in consumed order, and dead letters for the records
    that are not one (tombstones skipped); the keys to evict are ``eviction_keys(updates)``."""
    updates: list[ProductUpdate] = []
    letters: list[DeadLetter] = []
    for message in messages:
        origin = origin_of(message)
        if origin.value is None:
            continue
        try:
            _, record = codec.decode(origin.value, origin.headers)
            updates.append(from_avro(record))
        except (PermanentError, KeyError, TypeError, ValueError) as exc:
            error = exc if isinstance(exc, PermanentError) else PermanentError(str(exc))
            letters.append(dead_letter(origin, error))
    return updates, letters


class CacheInvalidationAgent:
    """``await run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str | None = None,
        metrics: Metrics | None = None,
        on_evicted: Callable[[EvictedBatch], None] | None = None,
    ) -> None:
        self.settings = settings
        self.topic = settings.topics.product_updates
        self.group_id = group_id or f"{settings.kafka.consumer_group}-cache-invalidation"
        self.metrics = metrics or default_metrics()
        self.on_evicted = on_evicted
        self.evicted_keys = 0
        self.batches = 0
        self.nats: NatsInvalidationPublisher | None = None

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        registry = RegistryClient(settings.registry)
        codec = AvroCodec(registry)
        dead_letters = DeadLetterPublisher(settings.kafka.bootstrap_servers)
        dead_letters.start()
        layer = RedisLayer(settings.redis, settings.cache)
        await layer.start()
        if settings.nats.invalidation_enabled:
            self.nats = NatsInvalidationPublisher(settings.nats, self.metrics)
            await self.nats.start()
        batches = cache_consumer(settings, "cache-invalidation", self.group_id, self.topic)
        await batches.start()
        backoff = Backoff(settings.sink.retry_initial_backoff_s, settings.sink.retry_max_backoff_s)
        try:
            while not stop.is_set():
                messages = await batches.take_messages()
                if not messages:
                    continue
                updates = await batches.in_thread(self._decode, messages, codec, dead_letters)
                keys = await self._evict(layer, updates, backoff, stop)
                self._fan_out(keys, updates, messages)
                await batches.commit()
        finally:
            await batches.stop()
            if self.nats is not None:
                await self.nats.stop()
            await layer.stop()
            dead_letters.stop()
            registry.close()

    def _decode(
        self, messages: list[Message], codec: AvroCodec, dead_letters: DeadLetterPublisher
    ) -> list[ProductUpdate]:
        updates, letters = decode_updates(messages, codec)
        for letter in letters:
            dead_letters.publish(letter)
        if letters:
            dead_letters.flush()
        return updates

    def _fan_out(
        self, keys: list[CacheKey], updates: list[ProductUpdate], messages: list[Message]
    ) -> None:
        """Hand the batch's evictions to NATS (queued; Redis already has them)."""
        if self.nats is None or not keys:
            return
        source = source_ranges(
            (m.topic() or "", m.partition() or 0, m.offset() or 0) for m in messages
        )
        newest = max((u.changed_at for u in updates), default=None)
        self.nats.submit(eviction_message(keys, source, newest, datetime.now(UTC)))

    async def _evict(
        self,
        layer: RedisLayer,
        updates: list[ProductUpdate],
        backoff: Backoff,
        stop: asyncio.Event,
    ) -> list[CacheKey]:
        """Evict the batch's keys from Redis (retried until it works); returns them."""
        keys = eviction_keys(updates)
        if not keys:
            return keys
        attempt = 0
        started = time.monotonic()
        while True:
            try:
                await layer.evict(keys)
                break
            except CacheUnavailableError as exc:
                log.warning("eviction of %d keys failed, retry %d: %s", len(keys), attempt, exc)
                await asyncio.sleep(max(backoff.delay(attempt), 0.05))
                attempt += 1
                if stop.is_set() and attempt > 3:
                    raise  # not committed: the next run evicts them
        evicted_at = datetime.now(UTC)
        self.batches += 1
        self.evicted_keys += len(keys)
        for kind, count in Counter(k.kind.value for k in keys).items():
            self.metrics.record_cache_evictions(kind, count)
        self.metrics.record_batch(PIPELINE, len(updates), time.monotonic() - started)
        newest = max((u.changed_at for u in updates), default=None)
        if newest is not None:
            self.metrics.record_committed_event_time(PIPELINE, newest)
        if self.on_evicted is not None:
            self.on_evicted(EvictedBatch(tuple(updates), tuple(keys), evicted_at))
        return keys
