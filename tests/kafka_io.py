"""Small Kafka helpers for tests: make a topic, produce, and drive the decode step."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from config.errors import TransientError
from records.change_events import Decoded
from serdes.consumer_step import Backoff, Decode, decode_with_retry
from serdes.dead_letters import DeadLetter, RecordOrigin
from sinks.kafka.dead_letters import DeadLetterPublisher


def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        future.result(timeout=15)


def produce(
    bootstrap: str, topic: str, records: Sequence[tuple[bytes | None, bytes | None]]
) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for key, value in records:
        producer.produce(topic, key=key, value=value)
    assert producer.flush(15) == 0


def read_all(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 30
) -> list[RecordOrigin]:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bv-test-{secrets.token_hex(3)}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    out: list[RecordOrigin] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for m in consumer.consume(100, 0.5):
                if m.error():
                    continue
                out.append(
                    RecordOrigin(
                        str(m.topic()),
                        int(m.partition() or 0),
                        int(m.offset() or 0),
                        m.key(),
                        m.value(),
                        tuple((k, v or b"") for k, v in (m.headers() or [])),
                    )
                )
    finally:
        consumer.close()
    return out


@dataclass
class PipelineRun:
    decoded: list[tuple[int, Decoded]] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    retries: int = 0


def run_pipeline(
    bootstrap: str,
    topic: str,
    decode: Decode,
    publisher: DeadLetterPublisher,
    expected: int,
    *,
    timeout_s: float = 60,
    before_each: Callable[[int], None] | None = None,
) -> PipelineRun:
    """Consume ``topic`` one record at a time like an agent: decode, retrying transient
    errors on the same record, dead-letter permanent ones, never skip."""
    run = PipelineRun()
    deadline = time.monotonic() + timeout_s

    def on_retry(_: TransientError, __: int) -> None:
        run.retries += 1

    for origin in read_all(bootstrap, topic, expected, timeout_s):
        if before_each is not None:
            before_each(origin.offset)
        result = decode_with_retry(
            decode, origin, backoff=Backoff(0.2, 1.0), deadline=deadline, on_retry=on_retry
        )
        if isinstance(result, DeadLetter):
            publisher.publish(result)
            run.dead.append(result)
        else:
            run.decoded.append((origin.offset, result))
    publisher.flush()
    return run
