"""Lag from the real brokers' high watermarks, published as bv_consumer_lag_records."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry

from config.settings import Settings
from observability.lag import (
    LagUnavailableError,
    PartitionKey,
    PartitionLag,
    Watermarks,
    ask_watermarks,
    compute_lag,
    read_watermarks,
)
from observability.metrics import Metrics


@pytest.fixture
def topic(settings: Settings) -> Iterator[str]:
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    name = f"bv-test-lag-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(name, num_partitions=2, replication_factor=1)])[name].result(30)
    yield name
    admin.delete_topics([name])[name].result(30)


@pytest.fixture
def consumer(settings: Settings) -> Iterator[Consumer]:
    client = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "bv-test-lag"}
    )
    yield client
    client.close()


def test_lag_per_partition_from_high_watermarks(
    settings: Settings, topic: str, consumer: Consumer
) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for i in range(5):
        producer.produce(topic, value=f"a{i}".encode(), partition=0)
    for i in range(2):
        producer.produce(topic, value=f"b{i}".encode(), partition=1)
    assert producer.flush(30) == 0
    keys = [PartitionKey(topic, 0), PartitionKey(topic, 1)]
    marks = read_watermarks(consumer, keys)
    assert marks == {keys[0]: Watermarks(0, 5), keys[1]: Watermarks(0, 2)}
    lags = compute_lag({keys[0]: 3}, marks)
    assert lags == [PartitionLag(topic, 0, 2), PartitionLag(topic, 1, 2)]
    metrics = Metrics(CollectorRegistry())
    metrics.set_lag(lags)
    sample = metrics.registry.get_sample_value(
        "bv_consumer_lag_records", {"topic": topic, "partition": "0"}
    )
    assert sample == 2


async def test_watermarks_asked_with_a_client_of_its_own_match(
    settings: Settings, topic: str, consumer: Consumer
) -> None:
    producer = Producer({"bootstrap.servers": settings.kafka.bootstrap_servers})
    for i in range(3):
        producer.produce(topic, value=f"c{i}".encode(), partition=1)
    assert producer.flush(30) == 0
    keys = [PartitionKey(topic, 0), PartitionKey(topic, 1)]
    asked = await ask_watermarks(settings.kafka.bootstrap_servers, keys)
    assert (
        asked
        == read_watermarks(consumer, keys)
        == {
            keys[0]: Watermarks(0, 0),
            keys[1]: Watermarks(0, 3),
        }
    )


def test_unreachable_brokers_are_a_transient_error_naming_the_partition() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens here once closed
    client = Consumer({"bootstrap.servers": f"127.0.0.1:{port}", "group.id": "bv-test-lag"})
    try:
        with pytest.raises(LagUnavailableError, match=r"t\[0\]"):
            read_watermarks(client, [PartitionKey("t", 0)], timeout_s=1.0)
    finally:
        client.close()
