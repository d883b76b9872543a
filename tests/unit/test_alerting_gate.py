"""The alerting gate: the inner gate's verdicts unchanged, and no commit without the alerts."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from pydantic import SecretStr

from alerts.quality_alerting import AlertingQualityGate, quality_gate
from cache.nats_invalidation import NatsInvalidationPublisher
from config.errors import TransientError
from config.settings import NatsSettings, RabbitMQSettings, Settings
from observability.metrics import Metrics
from sinks.postgres.medallion import RowQuality
from sinks.postgres.quality.gate import RulesQualityGate

AT = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)


class FixedGate:
    """A gate whose verdicts are given (the rules engine has its own tests)."""

    def __init__(self, verdicts: list[RowQuality]) -> None:
        self.verdicts = verdicts
        self.swept = 0

    async def check(
        self,
        connection: Any,
        table: str,
        rows: Sequence[dict[str, Any]],
        event_times: Sequence[datetime],
        batch_id: int,
    ) -> list[RowQuality]:
        return self.verdicts

    async def sweep(self, connection: Any) -> None:
        self.swept += 1


def unreachable_gate(verdicts: list[RowQuality]) -> AlertingQualityGate:
    return AlertingQualityGate(FixedGate(verdicts), "127.0.0.1:9", "alerts", flush_timeout_s=0.5)


async def test_a_batch_whose_alerts_kafka_did_not_take_is_not_committed() -> None:
    error = RowQuality(Decimal("0.50"), (), ("ERROR:PATTERN:email",))
    gate = unreachable_gate([error])
    with pytest.raises(TransientError, match="written again"):
        await gate.check(None, "customers", [{"customer_id": 1, "version": 1}], [AT], 1)


async def test_batches_without_errors_pass_through_without_touching_kafka() -> None:
    verdicts = [RowQuality(Decimal("0.90"), (), ("WARNING:PATTERN:email",))]
    gate = unreachable_gate(verdicts)
    rows = [{"customer_id": 1, "version": 1}]
    assert await gate.check(None, "customers", rows, [AT], 1) == verdicts
    await gate.sweep(None)
    assert isinstance(gate.inner, FixedGate)
    assert gate.inner.swept == 1
    assert gate.alerts == 0


def test_alerts_are_on_only_when_enabled() -> None:
    off = Settings(rabbitmq=RabbitMQSettings())
    on = Settings(rabbitmq=RabbitMQSettings(alerts_enabled=True, password=SecretStr("x")))
    assert isinstance(quality_gate(off), RulesQualityGate)
    assert isinstance(quality_gate(on), AlertingQualityGate)


def test_a_full_nats_queue_drops_the_oldest_and_counts_it() -> None:
    metrics = Metrics(CollectorRegistry())
    publisher = NatsInvalidationPublisher(NatsSettings(max_pending=2), metrics)
    for payload in (b"1", b"2", b"3"):
        publisher.submit(payload)  # never blocks, even with no server and no task
    assert publisher.pending == 2
    assert publisher.dropped == 1
    dropped = metrics.registry.get_sample_value(
        "bv_message_publish_failures_total",
        {"broker": "nats", "destination": "cache.invalidate", "outcome": "dropped"},
    )
    assert dropped == 1
