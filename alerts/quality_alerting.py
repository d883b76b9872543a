"""A quality gate that also raises an alert for every row with an ERROR issue.

It wraps the real gate (``RulesQualityGate``). Inside the batch's transaction, after the
verdicts are known and before the sink commits, it writes one alert per ERROR row to the
``quality-alerts`` topic and waits for Kafka's acknowledgement; a failure raises
``TransientError``, so the transaction rolls back and the sink writes the batch again
(same alert ids). So every committed ERROR verdict has its alert on Kafka; the relay
(``agents.alert_relay``) takes it to RabbitMQ. REFERENCE checks that only fail later, in
the sweep, are not alerted here (their batch has long committed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
from confluent_kafka import KafkaError, Message, Producer

from alerts.messages import Alert, quality_alerts
from config.errors import TransientError
from config.settings import Settings
from sinks.postgres.medallion import QualityGate, RowQuality
from sinks.postgres.quality.gate import RulesQualityGate
from sinks.postgres.tables import TABLES


class AlertingQualityGate:
    """``QualityGate`` decorator: the inner gate's verdicts, plus alerts for ERROR rows."""

    def __init__(
        self, inner: QualityGate, bootstrap_servers: str, topic: str, flush_timeout_s: float = 10
    ) -> None:
        self.inner = inner
        self.topic = topic
        self._flush_timeout_s = flush_timeout_s
        self._producer = Producer(
            {
                "bootstrap.servers": bootstrap_servers,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 2,
            }
        )
        self.alerts = 0

    async def check(
        self,
        connection: asyncpg.Connection,
        table: str,
        rows: Sequence[dict[str, Any]],
        event_times: Sequence[datetime],
        batch_id: int,
    ) -> list[RowQuality]:
        verdicts = await self.inner.check(connection, table, rows, event_times, batch_id)
        alerts = quality_alerts(
            table, TABLES[table].key, rows, [v.issues for v in verdicts], event_times
        )
        if alerts:
            await asyncio.to_thread(self._send, alerts)
            self.alerts += len(alerts)
        return verdicts

    async def sweep(self, connection: asyncpg.Connection) -> None:
        await self.inner.sweep(connection)

    def _send(self, alerts: list[Alert]) -> None:
        failures: list[str] = []

        def delivered(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(str(error))

        for alert in alerts:
            self._producer.produce(
                self.topic,
                key=alert.message_id.encode(),
                value=alert.encode(),
                on_delivery=delivered,
            )
        remaining = self._producer.flush(self._flush_timeout_s)
        if remaining or failures:
            raise TransientError(
                f"{remaining} quality alerts to {self.topic} unacknowledged, failures "
                f"{failures[:3]}; the batch is written again (is Kafka up?)"
            )


def quality_gate(settings: Settings) -> QualityGate:
    """The sink's gate: the rules, plus alerts when ``BV_RABBITMQ__ALERTS_ENABLED`` is set."""
    gate = RulesQualityGate(settings)
    if not settings.rabbitmq.alerts_enabled:
        return gate
    return AlertingQualityGate(
        gate, settings.kafka.bootstrap_servers, settings.topics.quality_alerts
    )
