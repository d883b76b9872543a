"""Dead-letter topics: count them, read them back, plan and send a replay to the origin.

Replay is bounded and explicit: it reads at most ``limit`` records that exist when it starts
(never follows new ones), re-produces each to its ``bv.origin.topic`` with the original key,
value and headers (our ``bv.error.*`` headers dropped) plus ``bv.replay.of =
<dlq topic>:<partition>:<offset>``. The planning is pure; reading and sending use Kafka.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass

from confluent_kafka import Consumer, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from config.errors import BitVelocityError, TransientError
from config.settings import Settings
from serdes.dead_letters import (
    ORIGIN_OFFSET,
    ORIGIN_PARTITION,
    ORIGIN_TOPIC,
    REPLAY_OF,
    SCHEMA_ID,
    RecordOrigin,
    header,
)


@dataclass(frozen=True)
class ReplayPlan:
    dlq: RecordOrigin
    target_topic: str
    headers: tuple[tuple[str, bytes], ...]


def replay_plan(letter: RecordOrigin) -> ReplayPlan:
    """Where a dead letter goes back to, and with which headers (pure)."""
    target = header(letter.headers, ORIGIN_TOPIC)
    if not target:
        raise BitVelocityError(
            f"{letter.topic}:{letter.partition}:{letter.offset} has no {ORIGIN_TOPIC} header: "
            "not a BitVelocity dead letter, not replayable"
        )
    kept = tuple(
        (k, v)
        for k, v in letter.headers
        if not k.startswith("bv.error.")
        and k not in (ORIGIN_TOPIC, ORIGIN_PARTITION, ORIGIN_OFFSET, SCHEMA_ID, REPLAY_OF)
    )
    marker = f"{letter.topic}:{letter.partition}:{letter.offset}".encode()
    return ReplayPlan(letter, target, (*kept, (REPLAY_OF, marker)))


def one_per_origin(plans: list[ReplayPlan]) -> tuple[list[ReplayPlan], int]:
    """The plans with each origin record once, and how many repeats were dropped (pure).

    Two consumer groups that read the same topic (the scale-out store agents and the bronze
    sink) each dead-letter a record neither can decode: replaying both copies would put the
    record on its topic twice, so the first dead letter of an origin is kept."""
    seen: set[tuple[str, str | None, str | None]] = set()
    kept: list[ReplayPlan] = []
    for plan in plans:
        headers = plan.dlq.headers
        origin = (
            plan.target_topic,
            header(headers, ORIGIN_PARTITION),
            header(headers, ORIGIN_OFFSET),
        )
        if origin[1] is not None and origin[2] is not None and origin in seen:
            continue
        seen.add(origin)
        kept.append(plan)
    return kept, len(plans) - len(kept)


def _headers(message: Message) -> tuple[tuple[str, bytes], ...]:
    raw: list[tuple[str, bytes | None]] = list(message.headers() or [])  # type: ignore[arg-type]
    return tuple((str(k), bytes(v) if v is not None else b"") for k, v in raw)


#: librdkafka's level 3 logs one FAIL line per connection attempt on stderr; an unreachable
#: broker surfaces as the KafkaException the CLI turns into its one ``error:`` line instead.
_QUIET = {"log_level": 2}


def _admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka.bootstrap_servers, **_QUIET})


def read_dead_letters(
    settings: Settings, topic: str, limit: int, from_offset: int, partition: int | None
) -> list[RecordOrigin]:
    """At most ``limit`` records of ``topic`` that exist now, from ``from_offset`` on."""
    metadata = _admin(settings).list_topics(topic=topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None or not metadata.partitions:
        raise BitVelocityError(f"topic {topic} does not exist (see `bitvelocity dlq list`)")
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "group.id": f"bv-dlq-cli-{secrets.token_hex(3)}",
            "enable.auto.commit": False,
            **_QUIET,
        }
    )
    records: list[RecordOrigin] = []
    try:
        ends: dict[int, int] = {}
        assignments = []
        for p in sorted(metadata.partitions):
            if partition is not None and p != partition:
                continue
            low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            start = max(low, from_offset)
            if start < high:
                ends[p] = high
                assignments.append(TopicPartition(topic, p, start))
        if not assignments:
            return []
        consumer.assign(assignments)
        deadline = time.monotonic() + 30
        while ends and len(records) < limit and time.monotonic() < deadline:
            for m in consumer.consume(min(500, limit - len(records)), 1.0):
                if m.error():
                    continue
                p, offset = int(m.partition() or 0), int(m.offset() or 0)
                if p not in ends or offset >= ends[p]:
                    continue
                records.append(
                    RecordOrigin(
                        topic,
                        p,
                        offset,
                        m.key(),
                        m.value(),
                        _headers(m),
                    )
                )
                if offset + 1 >= ends[p]:
                    del ends[p]
                if len(records) >= limit:
                    break
    finally:
        consumer.close()
    return sorted(records, key=lambda r: (r.partition, r.offset))[:limit]


def dead_letter_counts(settings: Settings) -> list[tuple[str, int]]:
    """Every ``*.dlq`` topic with how many records it holds now, by name."""
    metadata = _admin(settings).list_topics(timeout=10).topics
    topics = sorted(t for t in metadata if t.endswith(".dlq"))
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka.bootstrap_servers, "group.id": "bv-dlq-cli", **_QUIET}
    )
    counts: list[tuple[str, int]] = []
    try:
        for topic in topics:
            count = 0
            for p in metadata[topic].partitions:
                low, high = consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                count += high - low
            counts.append((topic, count))
    finally:
        consumer.close()
    return counts


def send_replay(settings: Settings, plans: list[ReplayPlan]) -> None:
    """Produce each planned record to its origin topic (idempotent producer), all acknowledged."""
    producer = Producer(
        {
            "bootstrap.servers": settings.kafka.bootstrap_servers,
            "enable.idempotence": True,
            **_QUIET,
        }
    )
    for plan in plans:
        producer.produce(
            plan.target_topic,
            key=plan.dlq.key,
            value=plan.dlq.value,
            headers=list(plan.headers),
        )
    remaining = producer.flush(30)
    if remaining:
        raise TransientError(f"{remaining} replayed records not acknowledged in 30 s")
