"""A quality ERROR and a dead letter, both produced by the real sink, each reach RabbitMQ once.

OLTP insert of a customer whose e-mail breaks the seeded ERROR rule, and a record on the
customers CDC topic that is not Avro -> MedallionSink (with the alerting gate) -> silver
with the ERROR issue and the record dead-lettered -> AlertRelay -> a durable queue. The
test reads the queue back with its own consumer.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from confluent_kafka import Producer

from agents.alert_relay import AlertRelay
from agents.medallion import MedallionSink
from alerts.messages import DLQ_RECORD, QUALITY_ERROR
from alerts.quality_alerting import AlertingQualityGate
from config.settings import Settings
from serdes.dead_letters import dlq_topic
from sinks.postgres.connection import connect
from sinks.postgres.quality.gate import RulesQualityGate
from tests.integration.rabbitmq_queue import drain_queue
from tests.integration.scaleout_env import require_scaleout
from tests.integration.sink_env import SinkEnv, eventually, sink_environment


@pytest.fixture
def env(settings: Settings) -> Iterator[SinkEnv]:
    require_scaleout(settings)
    with sink_environment(settings, batch_max_records=100) as environment:
        yield environment


async def test_quality_error_and_dead_letter_each_reach_rabbitmq_once(env: SinkEnv) -> None:
    base = env.settings
    alerts_topic = f"{base.topics.cdc_prefix}.quality-alerts"
    queue = f"bvtest.{secrets.token_hex(4)}.alerts"
    settings = base.model_copy(
        update={"topics": base.topics.model_copy(update={"quality_alerts": alerts_topic})}
    )
    customers_topic = settings.topics.cdc_topic("customers")
    gate = AlertingQualityGate(
        RulesQualityGate(settings), settings.kafka.bootstrap_servers, alerts_topic
    )
    sink = MedallionSink(settings, gate, worker_id="alerts-w1")
    relay = AlertRelay(
        settings,
        topics=[alerts_topic, dlq_topic(customers_topic)],
        group_id=f"{settings.kafka.consumer_group}-alerts-test",
        queue=queue,
    )
    stop = asyncio.Event()
    tasks = [asyncio.create_task(sink.run(stop)), asyncio.create_task(relay.run(stop))]
    db = await connect(settings.postgres)
    try:
        customer = await db.fetchval(
            "INSERT INTO customers (email, first_name, last_name, country) "
            "VALUES ('no-dot@example', 'Ann', 'Lee', 'SE') RETURNING customer_id"
        )

        async def customer_in_silver() -> bool:
            issues = await db.fetchval(
                "SELECT quality_issues FROM silver.customers WHERE customer_id = $1", customer
            )
            return issues is not None and "ERROR:PATTERN:email" in issues

        await eventually(
            customer_in_silver, timeout_s=90, what="the customer with an ERROR issue in silver"
        )
        producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
        poison_offset: list[int] = []
        producer.produce(
            customers_topic,
            key=b"poison",
            value=b"definitely not avro",
            on_delivery=lambda _e, m: poison_offset.append(m.offset()),
        )
        assert producer.flush(10) == 0

        def complete(messages: list[dict[str, Any]]) -> bool:
            kinds = {m["kind"] for m in messages}
            return {QUALITY_ERROR, DLQ_RECORD} <= kinds

        received = await drain_queue(settings.rabbitmq, queue, complete, 90, settle_s=3)
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=30)
        await db.close()

    quality = [m for m in received if m["kind"] == QUALITY_ERROR]
    letters = [m for m in received if m["kind"] == DLQ_RECORD]
    assert [m["key"] for m in quality] == [{"customer_id": customer}]
    assert quality[0]["table"] == "customers"
    assert "ERROR:PATTERN:email" in quality[0]["issues"]
    assert len(letters) == 1
    assert letters[0]["origin"] == {
        "topic": customers_topic,
        "partition": letters[0]["origin"]["partition"],
        "offset": poison_offset[0],
    }
    assert letters[0]["error_class"]
    # the AMQP message_id is the dedup id, the same one the body names
    for message in received:
        assert message["_message_id"] == message["message_id"]
    assert len({m["message_id"] for m in received}) == len(received) == 2
    assert gate.alerts == 1
    assert relay.confirmed == 2
