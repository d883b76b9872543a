"""Forward quality ERROR alerts and DLQ notifications from Kafka to RabbitMQ, confirmed.

Inputs: the ``quality-alerts`` topic (written by ``alerts.quality_alerting.AlertingQualityGate``
before the sink's batch commits) and every dead-letter topic (``BV_RABBITMQ__DLQ_PATTERN``).
Per batch: turn each record into an ``Alert``, publish them all to the durable queue, wait
for the broker's confirms, and only then commit the Kafka offsets: a record is acknowledged
to the pipeline after RabbitMQ confirmed its alert. RabbitMQ down: the same batch is retried
with backoff (counted in ``bv_message_publish_failures_total``) until it is confirmed, and
the pipeline itself never waits for it. At least once: a crash between confirm and commit
sends the batch again, with the same ``message_id``s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from confluent_kafka import KafkaException, Message

from alerts.messages import Alert, AlertFormatError, decode_alert, dlq_notification
from alerts.rabbitmq import BrokerUnavailableError, ConfirmedPublisher
from config.settings import Settings
from observability.metrics import Metrics, default_metrics
from serdes.consumer_step import Backoff
from streams.runtime import ConsumerRuntime, ConsumerSpec, origin_of

log = logging.getLogger("bitvelocity.alert_relay")
BROKER = "rabbitmq"


def alert_of(message: Message, alerts_topic: str) -> Alert | None:
    """The alert a consumed record stands for (None for what is not one)."""
    topic = message.topic() or ""
    if topic == alerts_topic:
        try:
            return decode_alert(message.value())
        except AlertFormatError as exc:
            log.warning("skipped %s[%s]@%s: %s", topic, message.partition(), message.offset(), exc)
            return None
    origin = origin_of(message)
    return dlq_notification(topic, origin.partition, origin.offset, origin.headers)


class AlertRelay:
    """``await run(stop)`` until ``stop`` is set."""

    def __init__(
        self,
        settings: Settings,
        *,
        topics: Sequence[str] | None = None,
        group_id: str | None = None,
        queue: str | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings
        self.alerts_topic = settings.topics.quality_alerts
        self.topics = list(topics or [self.alerts_topic, settings.rabbitmq.dlq_pattern])
        self.group_id = group_id or f"{settings.kafka.consumer_group}-alert-relay"
        self.queue = queue or settings.rabbitmq.alerts_queue
        self.metrics = metrics or default_metrics()
        self.confirmed = 0
        self.failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        settings = self.settings
        r = settings.rabbitmq
        backoff = Backoff(r.retry_initial_backoff_s, r.retry_max_backoff_s)
        batches = ConsumerRuntime(
            settings.kafka.bootstrap_servers,
            ConsumerSpec(
                name="alert-relay",
                group_id=self.group_id,
                topics=tuple(self.topics),
                max_records=500,
                max_wait_ms=200,
                fetch_wait_max_ms=20,
            ),
        )
        await batches.start()
        try:
            async with ConfirmedPublisher(r, self.queue) as publisher:
                while not stop.is_set():
                    messages = await batches.take_messages()
                    if not messages:
                        continue
                    alerts = [a for m in messages if (a := alert_of(m, self.alerts_topic))]
                    if not await self._deliver(publisher, alerts, backoff, stop):
                        return  # stopping before the broker confirmed: not committed
                    try:
                        await batches.commit()
                    except KafkaException as exc:  # redelivered later: same message ids
                        log.warning("relay offsets not committed (alerts may repeat): %s", exc)
        finally:
            await batches.stop()

    async def _deliver(
        self,
        publisher: ConfirmedPublisher,
        alerts: list[Alert],
        backoff: Backoff,
        stop: asyncio.Event,
    ) -> bool:
        attempt = 0
        while True:
            try:
                await publisher.publish_all(alerts)
            except BrokerUnavailableError as exc:
                self.failures += 1
                self.metrics.record_publish_failure(BROKER, self.queue, "retried", len(alerts))
                log.warning("alerts not confirmed, retry %d: %s", attempt, exc)
                try:
                    await asyncio.wait_for(stop.wait(), timeout=backoff.delay(attempt))
                    return False
                except TimeoutError:
                    attempt += 1
                    continue
            self.confirmed += len(alerts)
            self.metrics.record_published(BROKER, self.queue, len(alerts))
            return True
