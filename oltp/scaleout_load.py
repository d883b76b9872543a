"""Produce the seeded scale-out events (``oltp.scaleout_events``) to their Avro topics.

Called by ``bitvelocity loadgen --chat/--telemetry/--posts``. Values are Avro with
registry framing (schemas registered under ``<topic>-value``); keys are the room id, the
device id and the post id, so a room's messages, a device's readings and a post's
versions each stay in one partition, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from config.errors import TransientError
from config.settings import Settings
from oltp.scaleout_events import ScaleoutLoad, chat_events, post_events, telemetry_events
from serdes.avro import AvroCodec
from serdes.own_schemas import load as load_schema
from serdes.registry import RegistryClient


class ScaleoutProduceError(TransientError):
    """Kafka did not acknowledge every scale-out event; produce again (writes are idempotent)."""


@dataclass(frozen=True, slots=True)
class ScaleoutProduced:
    chat_messages: int
    telemetry: int
    posts: int
    post_versions: int


def scaleout_events(load: ScaleoutLoad) -> dict[str, list[dict[str, Any]]]:
    """Schema name -> the events of ``load``."""
    return {
        "ChatMessage": chat_events(load),
        "DeviceTelemetry": telemetry_events(load),
        "SocialPost": post_events(load),
    }


def topic_of(settings: Settings, schema: str) -> str:
    topics = settings.topics
    return {
        "ChatMessage": topics.chat_messages,
        "DeviceTelemetry": topics.device_telemetry,
        "SocialPost": topics.social_posts,
    }[schema]


_KEYS: dict[str, Callable[[dict[str, Any]], str]] = {
    "ChatMessage": lambda r: str(r["roomId"]),
    "DeviceTelemetry": lambda r: str(r["deviceId"]),
    "SocialPost": lambda r: str(r["postId"]),
}


def ensure_topics(settings: Settings) -> None:
    """Create the three topics with the configured partition count (existing ones kept)."""
    admin = AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers})
    names = [topic_of(settings, schema) for schema in _KEYS]
    existing = set(admin.list_topics(timeout=15).topics)
    new = [NewTopic(n, settings.topics.partitions, 1) for n in names if n not in existing]
    for future in admin.create_topics(new).values() if new else ():
        try:
            future.result(timeout=30)
        except Exception as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise


def produce_scaleout(settings: Settings, load: ScaleoutLoad) -> ScaleoutProduced:
    """Produce every event of ``load``; returns the counts once Kafka acknowledged them all."""
    ensure_topics(settings)
    registry = RegistryClient(settings.registry)
    codec = AvroCodec(registry)
    failures: list[KafkaError] = []

    def delivered(error: KafkaError | None, _message: Message) -> None:
        if error is not None:
            failures.append(error)

    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "enable.idempotence": True,
            "linger.ms": 10,
            "compression.type": "lz4",
        }
    )
    events = scaleout_events(load)
    try:
        for schema, records in events.items():
            if not records:
                continue
            topic = topic_of(settings, schema)
            schema_id = registry.register(
                f"{topic}-value", load_schema(schema).text, settings.registry.compatibility
            )
            key_of = _KEYS[schema]
            for record in records:
                value = codec.encode(schema_id, record)
                while True:
                    try:
                        producer.produce(
                            topic, key=key_of(record).encode(), value=value, on_delivery=delivered
                        )
                        break
                    except BufferError:  # local queue full: let it drain
                        producer.poll(0.1)
                producer.poll(0)
        remaining = producer.flush(60)
    finally:
        registry.close()
    if remaining or failures:
        raise ScaleoutProduceError(
            f"{remaining} scale-out events unacknowledged, {len(failures)} failed "
            f"({failures[:1]}); check Kafka at {settings.kafka.bootstrap_servers}"
        )
    posts = events["SocialPost"]
    return ScaleoutProduced(
        chat_messages=len(events["ChatMessage"]),
        telemetry=len(events["DeviceTelemetry"]),
        posts=len({p["postId"] for p in posts}),
        post_versions=len(posts),
    )
