"""RabbitMQ stopped: alerts are retried and all delivered once it is back, none lost.

The stack's RabbitMQ is stopped (this test owns the scale-out services while it runs) and
dead letters are written with the pipeline's own ``DeadLetterPublisher``; one of them twice,
as a sink that wrote its batch again would. The relay cannot get confirms, counts failures
and retries with backoff; after the broker is started again every alert arrives. Delivery
is at least once: the test asserts none is lost and that the dedup ids, once deduplicated,
are exactly the expected ones.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator

import pytest
from prometheus_client import CollectorRegistry

from agents.alert_relay import AlertRelay
from alerts.messages import DLQ_RECORD
from config.errors import PermanentError
from config.settings import Settings
from observability.metrics import Metrics
from serdes.dead_letters import RecordOrigin, dead_letter
from sinks.kafka.dead_letters import DeadLetterPublisher
from stack.base import Service
from stack.manager import Stack
from tests.integration.rabbitmq_queue import drain_queue
from tests.integration.scaleout_env import require_scaleout

LETTERS = 20


class PoisonError(PermanentError):
    """Stands for whatever made the sink dead-letter a record."""


def start_and_wait(service: Service, timeout_s: float = 120) -> None:
    if service.pid() is None:
        service.prepare(lambda _line: None)
        service.start()
    deadline = time.monotonic() + timeout_s
    while service.probe_quietly() is None:
        assert time.monotonic() < deadline, f"{service.name} did not come back"
        time.sleep(0.5)  # polling a starting server under a deadline


@pytest.fixture
def rabbitmq(settings: Settings) -> Iterator[Service]:
    require_scaleout(settings)
    service = Stack(settings, with_scaleout=True).service("rabbitmq")
    try:
        yield service
    finally:
        start_and_wait(service)  # leave it as we found it


async def test_alerts_survive_a_broker_outage(settings: Settings, rabbitmq: Service) -> None:
    run = secrets.token_hex(4)
    origin_topic = f"bvtest-{run}-orders"
    queue = f"bvtest.{run}.alerts"
    fast = settings.rabbitmq.model_copy(
        update={"retry_initial_backoff_s": 0.2, "retry_max_backoff_s": 1.0}
    )
    relay_settings = settings.model_copy(update={"rabbitmq": fast})
    metrics = Metrics(CollectorRegistry())
    relay = AlertRelay(
        relay_settings,
        topics=[f"{origin_topic}.dlq"],
        group_id=f"bvtest-{run}-relay",
        queue=queue,
        metrics=metrics,
    )
    await asyncio.to_thread(rabbitmq.stop)
    assert rabbitmq.probe_quietly() is None

    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        origins = [
            RecordOrigin(origin_topic, 0, offset, b"k", b"bad bytes") for offset in range(LETTERS)
        ]
        with DeadLetterPublisher(settings.kafka.bootstrap_servers) as publisher:
            for origin in [*origins, origins[7]]:  # the 8th twice: a batch written again
                publisher.publish(dead_letter(origin, PoisonError("not decodable")))
            publisher.flush()
        deadline = time.monotonic() + 60
        while relay.failures < 3:
            assert time.monotonic() < deadline, "the relay never tried the stopped broker"
            await asyncio.sleep(0.2)
        assert relay.confirmed == 0
        failed = metrics.registry.get_sample_value(
            "bv_message_publish_failures_total",
            {"broker": "rabbitmq", "destination": queue, "outcome": "retried"},
        )
        assert failed is not None
        assert failed >= 3

        await asyncio.to_thread(start_and_wait, rabbitmq)
        deadline = time.monotonic() + 90
        while relay.confirmed < LETTERS + 1:
            assert time.monotonic() < deadline, f"only {relay.confirmed} alerts confirmed"
            await asyncio.sleep(0.2)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    expected = {f"dlq:{origin_topic}:0:{offset}" for offset in range(LETTERS)}
    received = await drain_queue(
        settings.rabbitmq, queue, lambda got: {m["message_id"] for m in got} >= expected, 60
    )
    ids = [m["_message_id"] for m in received]
    assert all(m["kind"] == DLQ_RECORD for m in received)
    assert set(ids) == expected  # none lost, nothing else
    assert len(dict.fromkeys(ids)) == LETTERS  # unique after dedup
    assert len(ids) >= LETTERS + 1  # the repeated dead letter came through, under its same id
