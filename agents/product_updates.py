"""Derive ``product-updates`` (Avro ProductUpdate) from the products CDC topic.

Per batch: decode every record (transient registry faults retried on the same record,
undecodable ones dead-lettered), derive the updates (``cache.product_updates.derive``),
produce them keyed by product id, wait for the acknowledgements, then commit the
consumed offsets. At-least-once: a replayed update only evicts a key once more.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from confluent_kafka import Message, Producer

from agents.cache_consumer import cache_consumer
from cache.product_updates import ProductUpdate, derive, to_avro
from config.errors import TransientError
from config.settings import Settings
from observability.metrics import default_metrics
from records.change_events import ChangeEvent
from serdes.avro import AvroCodec
from serdes.consumer_step import Backoff, decode_with_retry
from serdes.dead_letters import DeadLetter
from serdes.debezium import DebeziumAvroDecoder
from serdes.own_schemas import load
from serdes.registry import RegistryClient
from sinks.kafka.dead_letters import DeadLetterPublisher
from streams.runtime import origin_of

log = logging.getLogger("bitvelocity.product_updates")
PIPELINE = "product-updates"


@dataclass(frozen=True, slots=True)
class DerivedBatch:
    """One batch of products changes, made ``ProductUpdate``s (in consumed order)."""

    updates: list[ProductUpdate]
    dead_letters: list[DeadLetter]
    #: The newest source commit time in the batch (None: no change decoded).
    newest: datetime | None


def derive_batch(
    messages: Sequence[Message], decoder: DebeziumAvroDecoder, deadline: float
) -> DerivedBatch:
    """Decode one batch (transient registry faults retried until ``deadline``, undecodable
    records made dead letters) and derive the updates; pure apart from the registry, so
    the broker-free test driver runs exactly what the agent runs."""
    updates: list[ProductUpdate] = []
    letters: list[DeadLetter] = []
    newest: datetime | None = None
    for message in messages:
        decoded = decode_with_retry(decoder.decode, origin_of(message), deadline=deadline)
        if isinstance(decoded, DeadLetter):
            letters.append(decoded)
        elif isinstance(decoded, ChangeEvent):
            newest = max(newest or decoded.committed_at, decoded.committed_at)
            update = derive(decoded)
            if update is not None:
                updates.append(update)
    return DerivedBatch(updates, letters, newest)


class ProductUpdatesAgent:
    """``await run(stop)`` until ``stop`` is set."""

    def __init__(self, settings: Settings, *, group_id: str | None = None) -> None:
        self.settings = settings
        self.source_topic = settings.topics.cdc_topic("products")
        self.target_topic = settings.topics.product_updates
        self.group_id = group_id or f"{settings.kafka.consumer_group}-product-updates"
        self.produced = 0
        self.dead_letters = 0
        self.metrics = default_metrics()

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        registry = RegistryClient(settings.registry)
        codec = AvroCodec(registry)
        decoder = DebeziumAvroDecoder(codec)
        schema_id = registry.register(
            f"{self.target_topic}-value",
            load("ProductUpdate").text,
            settings.registry.compatibility,
        )
        producer = Producer(
            {
                "bootstrap.servers": settings.kafka.bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
            }
        )
        dead_letters = DeadLetterPublisher(settings.kafka.bootstrap_servers)
        dead_letters.start()
        batches = cache_consumer(settings, "product-updates", self.group_id, self.source_topic)
        await batches.start()
        backoff = Backoff(settings.sink.retry_initial_backoff_s, settings.sink.retry_max_backoff_s)
        try:
            while not stop.is_set():
                messages = await batches.take_messages()
                if not messages:
                    continue
                started = time.monotonic()
                try:
                    newest = await batches.in_thread(
                        self._handle, messages, decoder, codec, schema_id, producer, dead_letters
                    )
                except TransientError as exc:  # nothing committed: the batch is read again
                    log.warning("product-updates batch failed, retrying: %s", exc)
                    await asyncio.sleep(backoff.max_s)
                    continue
                await batches.commit()
                self.metrics.record_batch(PIPELINE, len(messages), time.monotonic() - started)
                if newest is not None:
                    self.metrics.record_committed_event_time(PIPELINE, newest)
        finally:
            await batches.stop()
            producer.flush(10)
            dead_letters.stop()
            registry.close()

    def _handle(
        self,
        messages: list[Message],
        decoder: DebeziumAvroDecoder,
        codec: AvroCodec,
        schema_id: int,
        producer: Producer,
        dead_letters: DeadLetterPublisher,
    ) -> datetime | None:
        """Decode, derive and produce one batch; the newest source commit time in it."""
        deadline = time.monotonic() + 30
        failures: list[str] = []

        def delivered(error: Any, _message: Any) -> None:
            if error is not None:
                failures.append(str(error))

        derived = derive_batch(messages, decoder, deadline)
        updates = derived.updates
        for letter in derived.dead_letters:
            dead_letters.publish(letter)
        letters = len(derived.dead_letters)
        for update in updates:
            producer.produce(
                self.target_topic,
                key=update.key(),
                value=codec.encode(schema_id, to_avro(update)),
                on_delivery=delivered,
            )
        remaining = producer.flush(10)
        if letters:
            dead_letters.flush()
        if remaining or failures:
            raise TransientError(
                f"{remaining} product updates to {self.target_topic} unacknowledged, "
                f"failures {failures[:3]}; is Kafka up?"
            )
        self.produced += len(updates)
        self.dead_letters += letters
        return derived.newest
