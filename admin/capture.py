"""Housekeeping around a capture: replication slots, topics, reading a topic back.

A replication slot nobody reads makes PostgreSQL keep WAL forever, so whoever removes a
connector must also drop its slot, once Connect has released it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

import asyncpg
from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from config.errors import ServiceStartError, TransientError
from config.settings import Settings
from serdes.registry import RegistryClient


async def drop_slot_when_released(
    connection: asyncpg.Connection, slot: str, timeout_s: float = 60.0
) -> bool:
    """Drop ``slot`` as soon as no walsender holds it; False when there was no such slot."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        active = await connection.fetchval(
            "SELECT active FROM pg_replication_slots WHERE slot_name = $1", slot
        )
        if active is None:
            return False
        if not active:
            await connection.execute("SELECT pg_drop_replication_slot($1)", slot)
            return True
        await asyncio.sleep(0.5)
    raise TransientError(f"replication slot {slot} still in use after {timeout_s:.0f} s")


def delete_topics_with_prefix(bootstrap: str, prefix: str) -> list[str]:
    """Delete every topic named ``<prefix>.*``; returns their names."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [t for t in admin.list_topics(timeout=5).topics if t.startswith(prefix + ".")]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=10).values():
            future.result(timeout=15)
    return topics


#: Debezium's heartbeat topic of a connector is this plus its topic prefix.
HEARTBEAT_TOPIC_PREFIX = "__debezium-heartbeat."


def remove_capture_outputs(settings: Settings, prefix: str, *, subjects: bool = True) -> list[str]:
    """Delete what a throw-away connector with topic prefix ``prefix`` left in Kafka and the
    registry: topics ``<prefix>.*``, its heartbeat topic, and their key and value subjects.

    Returns the topics and subjects deleted. Without this a long-lived stack collects a
    heartbeat topic and a handful of subjects per test run. ``subjects=False`` keeps the
    subjects for a caller still decoding records by schema id (it removes them later).
    """
    heartbeat = HEARTBEAT_TOPIC_PREFIX + prefix
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    topics = [
        t
        for t in admin.list_topics(timeout=5).topics
        if t.startswith(prefix + ".") or t == heartbeat
    ]
    if topics:
        for future in admin.delete_topics(topics, operation_timeout=10).values():
            future.result(timeout=15)
    if not subjects:
        return topics
    with RegistryClient(settings.registry) as registry:
        names = [
            s
            for s in registry.subjects()
            if s.startswith(prefix + ".") or s.startswith(heartbeat + "-")
        ]
        for subject in names:
            registry.delete_subject(subject)
    return topics + names


def wait_for_topic(bootstrap: str, topic: str, deadline: float) -> list[int]:
    """The partitions of ``topic`` once it exists (raises at ``deadline``)."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    while time.monotonic() < deadline:
        metadata = admin.list_topics(topic=topic, timeout=5).topics.get(topic)
        if metadata is not None and metadata.error is None and metadata.partitions:
            return sorted(metadata.partitions)
        time.sleep(0.5)
    raise ServiceStartError(f"topic {topic} did not appear: is the connector producing?")


def read_topics(
    bootstrap: str,
    topics: Iterable[str],
    *,
    done: Callable[[list[Message]], bool],
    timeout_s: float,
) -> list[Message]:
    """Read ``topics`` from the beginning until ``done(messages)`` or the timeout."""
    deadline = time.monotonic() + timeout_s
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": "bv-capture-reader",
            "enable.auto.commit": False,
        }
    )
    assignment = [
        TopicPartition(topic, partition, 0)
        for topic in topics
        for partition in wait_for_topic(bootstrap, topic, deadline)
    ]
    consumer.assign(assignment)
    messages: list[Message] = []
    try:
        while not done(messages) and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.5):
                if message.error():
                    raise ServiceStartError(f"reading {message.topic()}: {message.error()}")
                messages.append(message)
    finally:
        consumer.close()
    return messages


#: Answers of a partition whose leadership is still being set up right after creation.
_SETTLING = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
    }
)


def partition_high_watermarks(
    consumer: Consumer, admin: AdminClient, topics: Iterable[str], *, settle_s: float = 10.0
) -> dict[tuple[str, int], int]:
    """``(topic, partition) -> high watermark`` of the existing ones among ``topics``.

    A topic Debezium has just created may briefly answer "not leader for partition": such
    answers are asked again for up to ``settle_s`` before they count as failures.
    """
    wanted = list(topics)
    deadline = time.monotonic() + settle_s
    while True:
        try:
            metadata = admin.list_topics(timeout=5).topics
            return {
                (topic, p): consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1]
                for topic in wanted
                if topic in metadata
                for p in metadata[topic].partitions
            }
        except KafkaException as exc:
            error = exc.args[0]
            settling = error.retriable() or error.code() in _SETTLING
            if not settling or time.monotonic() > deadline:
                raise TransientError(f"watermarks of {', '.join(wanted)}: {error}") from exc
            time.sleep(0.2)
