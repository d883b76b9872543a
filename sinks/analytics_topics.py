"""Publishing the analytics outputs: ``hourly-revenue``, ``customer-features``, ``late-events``.

Values are Avro with registry framing (schemas registered BACKWARD by ``serdes.own_schemas``);
keys are UTF-8 text: ``<window start ISO>|<currency>`` and the customer id (DESIGN.md
section 4). They are versioned upserts, so a record published twice is harmless. Late
events are JSON: the order, the window it missed, the change's commit time and LSN; their
key is the change's identity (``LateEvent.identity``), the same whenever it is published.
``AnalyticsPublisher`` is one ``BatchSink`` (``sinks/contract.py``) over all three kinds:
a batch mixes them, and one flush waits for every acknowledgement of the batch.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Sequence
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from config.errors import PermanentError, TransientError
from serdes.avro import AvroCodec
from sinks.contract import SinkLifecycle
from tables.features import CustomerFeatures
from tables.revenue import HourlyRevenueRow, LateEvent, window_key

#: What the analytics publish: each kind goes to its own topic.
AnalyticsRecord = HourlyRevenueRow | CustomerFeatures | LateEvent


class PublishError(TransientError):
    """Kafka did not acknowledge an analytics record in time; it is published again."""


class PublisherNotStartedError(PermanentError):
    """The publisher was used before ``start()`` (a wiring bug)."""


def hourly_record(row: HourlyRevenueRow) -> dict[str, Any]:
    return {
        "windowStart": row.window_start,
        "windowEnd": row.window_end,
        "currency": row.currency,
        "revenue": row.revenue,
        "orderCount": row.order_count,
        "avgOrderValue": row.avg_order_value,
        "isFinal": row.is_final,
        "version": row.version,
    }


def features_record(features: CustomerFeatures) -> dict[str, Any]:
    v = features.values
    return {
        "customerId": features.customer_id,
        "orderCountLast30Days": v.order_count_last_30_days,
        "totalSpentLast30Days": v.total_spent_last_30_days,
        "avgOrderValue": v.avg_order_value,
        "preferredCategory": v.preferred_category,
        "lifetimeOrderCount": v.lifetime_order_count,
        "lifetimeValue": v.lifetime_value,
        "lifetimeSegment": v.lifetime_segment,
        "featuresUpdatedAt": features.features_updated_at,
        "featureVersion": features.feature_version,
        "asOf": features.as_of,
    }


def late_record(event: LateEvent) -> bytes:
    return json.dumps(
        {
            "order_id": event.order_id,
            "window_start": event.window_start.isoformat(),
            "window_end": event.window_end.isoformat(),
            "currency": event.currency,
            "changed_at": event.changed_at.isoformat(),
            "lsn": event.lsn,
            "identity": event.identity,
        }
    ).encode()


class AnalyticsPublisher(SinkLifecycle):
    """One idempotent producer; ``write`` publishes a batch and waits for every ack
    (``publish_*`` buffer, ``flush()`` waits)."""

    def __init__(
        self,
        bootstrap_servers: str,
        codec: AvroCodec,
        *,
        hourly_topic: str,
        hourly_schema_id: int,
        features_topic: str,
        features_schema_id: int,
        late_topic: str,
        flush_timeout_s: float = 10.0,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.codec = codec
        self.hourly_topic = hourly_topic
        self.hourly_schema_id = hourly_schema_id
        self.features_topic = features_topic
        self.features_schema_id = features_schema_id
        self.late_topic = late_topic
        self.flush_timeout_s = flush_timeout_s
        self._producer: Producer | None = None
        self._errors: list[KafkaError] = []

    async def start(self) -> None:
        self._producer = Producer(
            {
                "bootstrap.servers": self.bootstrap_servers,
                "enable.idempotence": True,
                "linger.ms": 5,
            }
        )

    async def stop(self) -> None:
        if self._producer is not None:
            await asyncio.to_thread(self._producer.flush, self.flush_timeout_s)
            self._producer = None

    async def write(self, batch: Sequence[AnalyticsRecord]) -> int:
        """Publish every record to its kind's topic and wait for all acknowledgements
        (``PublishError``, transient, when any is missing); returns how many."""
        self.publish_hourly(r for r in batch if isinstance(r, HourlyRevenueRow))
        self.publish_features(r for r in batch if isinstance(r, CustomerFeatures))
        self.publish_late(r for r in batch if isinstance(r, LateEvent))
        await asyncio.to_thread(self.flush)
        return len(batch)

    def _on_delivery(self, error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            self._errors.append(error)

    def _produce(self, topic: str, key: bytes, value: bytes) -> None:
        producer = self._producer
        if producer is None:
            raise PublisherNotStartedError("AnalyticsPublisher used before start(); call it")
        producer.produce(topic, value=value, key=key, on_delivery=self._on_delivery)
        producer.poll(0)

    def publish_hourly(self, rows: Iterable[HourlyRevenueRow]) -> None:
        for row in rows:
            value = self.codec.encode(self.hourly_schema_id, hourly_record(row))
            key = window_key(row.window_start, row.currency).encode()
            self._produce(self.hourly_topic, key, value)

    def publish_features(self, rows: Iterable[CustomerFeatures]) -> None:
        for row in rows:
            value = self.codec.encode(self.features_schema_id, features_record(row))
            self._produce(self.features_topic, str(row.customer_id).encode(), value)

    def publish_late(self, events: Iterable[LateEvent]) -> None:
        for event in events:
            self._produce(self.late_topic, event.identity.encode(), late_record(event))

    def flush(self) -> None:
        """Block until every buffered record is acknowledged; raise if any failed."""
        if self._producer is None:
            return
        remaining = self._producer.flush(self.flush_timeout_s)
        errors, self._errors = self._errors, []
        if remaining or errors:
            raise PublishError(
                f"{remaining} analytics records unacknowledged, {len(errors)} failed"
                f" ({errors[:1]}); check the brokers at {self.bootstrap_servers}"
            )
